//! Signed modules: who may run code on a wasmos cluster.
//!
//! An operator makes an ed25519 key pair ([`SecretKey::from_seed`], written by
//! [`write_key_pair`]), signs a module with the secret key ([`sign`]) and gives the public
//! key to the master and the agents (`--trust KEY.pub`, read by [`TrustedKeys::read`]).
//! With any key trusted, a module runs only when [`TrustedKeys::check`] says it was signed
//! by one of them and not changed since; the error says why not ([`VerifyError`]:
//! unsigned, tampered, signed by an untrusted key, malformed).
//!
//! # What is signed
//!
//! A signed module is the unsigned module followed by one custom section, the
//! **signature section**, in exactly this encoding (every number a one-byte LEB128):
//!
//! ```text
//! 0x00                      custom section id (also a component's custom section id)
//! 0x72                      content size: 114 bytes
//! 0x10 "wasmos-signature"   the section's name, 16 bytes
//! 0x01                      signature format version
//! 32 bytes                  the signer's ed25519 public key
//! 64 bytes                  the ed25519 signature (RFC 8032, checked strictly)
//! ```
//!
//! The signature is over `"wasmos module signature v1\0"` followed by the 32-byte sha256 of
//! **every byte of the module before the signature section** (header included). The
//! section must be the last one and appear once: a section after it, a second signature
//! section, or another encoding of it is refused as malformed, so that no byte of a signed
//! module escapes the signature except the 116 bytes of the section itself. The context
//! string keeps a wasmos signature from meaning anything else the same key signs.
//!
//! Core modules and components share the top level this relies on (an 8-byte preamble,
//! then sections of an id byte, a LEB128 size and the contents; custom sections are id 0
//! in both), so one rule signs both. wasmtime skips unknown custom sections: a signed
//! module runs as the unsigned one does where nothing checks signatures.
//!
//! Signing an already signed module replaces its signature.
//!
//! # Key files
//!
//! One line of text each (a newline at the end is optional):
//!
//! - `NAME.key`: `wasmos-ed25519-secret-key-v1 <64 hex digits>`, the 32-byte ed25519
//!   secret seed; mode 0600, and refused when group or others may read it.
//! - `NAME.pub`: `wasmos-ed25519-public-key-v1 <64 hex digits> [COMMENT]`, the 32-byte
//!   public key, then free text (the key's name, as `wasmos module keygen` writes it).
//!
//! A key is named in messages by its [`KeyId`]: the first 8 bytes of the public key in hex.
//!
//! # Purity
//!
//! Everything but [`files`] is pure: bytes in, bytes or verdicts out. Randomness comes in
//! as the seed of [`SecretKey::from_seed`].

pub mod files;
mod keys;
mod section;

pub use files::{KeyFileError, read_public_key, read_secret_key, write_key_pair};
pub use keys::{KeyFormatError, KeyId, PUBLIC_KEY_FILE_TAG, PublicKey, SECRET_KEY_FILE_TAG};
pub use keys::{SEED_BYTES, SecretKey};
pub use section::{Malformed, SIGNATURE_SECTION_BYTES, SIGNATURE_SECTION_NAME};

use ed25519_dalek::{Signature, Signer};
use sha2::{Digest, Sha256};

/// Largest module signed or verified: the module store's limit (`net::modules`), which is
/// above the agent's own.
pub const SIGNED_MODULE_BYTES_MAX: usize = 256 << 20;
/// Most keys one master or agent trusts at once.
pub const TRUSTED_KEYS_MAX: usize = 64;
/// What the signature signs before the sha256 of the module's signed bytes.
pub const SIGNING_CONTEXT: &[u8] = b"wasmos module signature v1\0";

/// Why a module is refused. The `Display` text is the reason a task fails with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the module is unsigned")]
    Unsigned,
    #[error("the module is tampered: its bytes do not match its signature by key {key_id}")]
    Tampered { key_id: KeyId },
    #[error("the module is signed by an untrusted key {key_id}")]
    UntrustedKey { key_id: KeyId },
    #[error("the module is malformed: {0}")]
    Malformed(#[from] Malformed),
}

/// `module` signed by `key`: its bytes (without any earlier signature section) followed by
/// a new signature section. Refuses what is not a WebAssembly binary (WAT text must be
/// compiled first) and a module whose sections do not parse.
pub fn sign(module: &[u8], key: &SecretKey) -> Result<Vec<u8>, Malformed> {
    let layout = section::layout(module)?;
    let unsigned = &module[..layout.unsigned_len];
    let signature = key.dalek().sign(&signed_message(unsigned));
    let payload = section::SignaturePayload {
        public_key: key.public_key().to_bytes(),
        signature: signature.to_bytes(),
    };
    let mut signed = Vec::with_capacity(unsigned.len() + SIGNATURE_SECTION_BYTES);
    signed.extend_from_slice(unsigned);
    signed.extend_from_slice(&section::encode(&payload));
    Ok(signed)
}

/// The key among `trusted` that signed `module`, or why none did. Reads every byte of
/// the module once (one sha256); the signature check is ed25519's strict verification.
pub fn verify(module: &[u8], trusted: &TrustedKeys) -> Result<KeyId, VerifyError> {
    let layout = section::layout(module)?;
    let Some(payload) = layout.signature else {
        return Err(VerifyError::Unsigned);
    };
    let key_id = KeyId::of(&payload.public_key);
    let Some(key) = trusted.find(&payload.public_key) else {
        return Err(VerifyError::UntrustedKey { key_id });
    };
    let signature = Signature::from_bytes(&payload.signature);
    let message = signed_message(&module[..layout.unsigned_len]);
    key.dalek()
        .verify_strict(&message, &signature)
        .map_err(|_| VerifyError::Tampered { key_id })?;
    Ok(key_id)
}

/// What the signature is over: the context, then the sha256 of the signed bytes.
fn signed_message(unsigned: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + 32);
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&Sha256::digest(unsigned));
    message
}

/// The public keys a master or agent trusts. None (the default) means no check at all:
/// every module runs, signed or not, as before signing existed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

/// More keys than [`TRUSTED_KEYS_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} trusted keys are more than the {TRUSTED_KEYS_MAX} allowed")]
pub struct TooManyKeys(pub usize);

impl TrustedKeys {
    /// Trusts `keys` (a key given twice counts once).
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Result<TrustedKeys, TooManyKeys> {
        let mut unique: Vec<PublicKey> = Vec::new();
        for key in keys {
            if !unique.contains(&key) {
                unique.push(key);
            }
            if unique.len() > TRUSTED_KEYS_MAX {
                return Err(TooManyKeys(unique.len()));
            }
        }
        Ok(TrustedKeys { keys: unique })
    }

    /// True when no key is trusted: modules are not checked.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The gate every module passes before it is compiled or stored: `Ok(None)` when no
    /// key is trusted (nothing is checked), `Ok(Some(signer))` when a trusted key signed
    /// it, else why it is refused.
    pub fn check(&self, module: &[u8]) -> Result<Option<KeyId>, VerifyError> {
        if self.is_empty() {
            return Ok(None);
        }
        verify(module, self).map(Some)
    }

    fn find(&self, public_key: &[u8; 32]) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.to_bytes() == *public_key)
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests;
