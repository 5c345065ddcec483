//! Ed25519 keys and their one-line text files (the format is in the crate's docs).

use ed25519_dalek::{SigningKey, VerifyingKey};

/// Bytes of an ed25519 secret seed (and of a public key).
pub const SEED_BYTES: usize = 32;
/// The first word of a secret key file.
pub const SECRET_KEY_FILE_TAG: &str = "wasmos-ed25519-secret-key-v1";
/// The first word of a public key file.
pub const PUBLIC_KEY_FILE_TAG: &str = "wasmos-ed25519-public-key-v1";
/// Bytes of a [`KeyId`]: enough to tell an operator's keys apart, short enough to read.
const KEY_ID_BYTES: usize = 8;

/// Why text is not a key file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a wasmos {kind} key file (its first word is not `{tag}`)")]
    WrongTag {
        kind: &'static str,
        tag: &'static str,
    },
    #[error("the key must be 64 hex digits after `{tag}`")]
    BadHex { tag: &'static str },
    #[error("a key file is one line; this one has more")]
    MoreThanOneLine,
    #[error("a key file is text; this one is not UTF-8")]
    NotText,
    #[error("the key is not a valid ed25519 public key (or is a weak one)")]
    NotAPublicKey,
    #[error("a secret key file holds nothing after the key")]
    TrailingText,
}

/// An ed25519 secret key: what `wasmos module sign --key` signs with. Its `Debug` never
/// shows the key; the key is zeroed when dropped.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().key_id())
    }
}

impl SecretKey {
    /// The key of a 32-byte seed, which must be secret and uniformly random (the CLI reads
    /// it from the operating system's generator).
    pub fn from_seed(seed: &[u8; SEED_BYTES]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn dalek(&self) -> &SigningKey {
        &self.0
    }

    /// The text of a `NAME.key` file.
    pub fn to_key_file(&self) -> String {
        format!("{SECRET_KEY_FILE_TAG} {}\n", hex::encode(self.0.to_bytes()))
    }

    /// Reads the text of a `NAME.key` file.
    pub fn from_key_file(text: &str) -> Result<SecretKey, KeyFormatError> {
        let (bytes, rest) = parse_line(text, "secret", SECRET_KEY_FILE_TAG)?;
        if !rest.is_empty() {
            return Err(KeyFormatError::TrailingText);
        }
        Ok(SecretKey::from_seed(&bytes))
    }
}

/// An ed25519 public key: what `--trust` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key's 32 bytes, as the signature section carries them.
    pub fn to_bytes(&self) -> [u8; SEED_BYTES] {
        self.0.to_bytes()
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.to_bytes())
    }

    pub(crate) fn dalek(&self) -> &VerifyingKey {
        &self.0
    }

    /// The text of a `NAME.pub` file; `comment` (one line, usually the key's name) follows
    /// the key.
    pub fn to_key_file(&self, comment: &str) -> String {
        let comment: String = comment.chars().filter(|c| !c.is_control()).collect();
        let key = hex::encode(self.to_bytes());
        match comment.trim() {
            "" => format!("{PUBLIC_KEY_FILE_TAG} {key}\n"),
            comment => format!("{PUBLIC_KEY_FILE_TAG} {key} {comment}\n"),
        }
    }

    /// Reads the text of a `NAME.pub` file (the comment is ignored). A weak key (of small
    /// order, which would accept forged signatures) is refused.
    pub fn from_key_file(text: &str) -> Result<PublicKey, KeyFormatError> {
        let (bytes, _comment) = parse_line(text, "public", PUBLIC_KEY_FILE_TAG)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyFormatError::NotAPublicKey)?;
        if key.is_weak() {
            return Err(KeyFormatError::NotAPublicKey);
        }
        Ok(PublicKey(key))
    }
}

/// `TAG HEX [REST]` on one line: the 32 bytes of HEX and the rest, trimmed.
fn parse_line<'a>(
    text: &'a str,
    kind: &'static str,
    tag: &'static str,
) -> Result<([u8; SEED_BYTES], &'a str), KeyFormatError> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains('\n') {
        return Err(KeyFormatError::MoreThanOneLine);
    }
    let mut words = line.trim().splitn(3, ' ');
    if words.next() != Some(tag) {
        return Err(KeyFormatError::WrongTag { kind, tag });
    }
    let digits = words.next().unwrap_or_default();
    let mut bytes = [0; SEED_BYTES];
    hex::decode_to_slice(digits, &mut bytes).map_err(|_| KeyFormatError::BadHex { tag })?;
    Ok((bytes, words.next().unwrap_or_default().trim()))
}

/// How messages name a key: the first 8 bytes of the public key, as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; KEY_ID_BYTES]);

impl KeyId {
    pub fn of(public_key: &[u8; SEED_BYTES]) -> KeyId {
        let mut id = [0; KEY_ID_BYTES];
        id.copy_from_slice(&public_key[..KEY_ID_BYTES]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
