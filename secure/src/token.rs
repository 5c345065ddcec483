//! HTTP bearer tokens: made once, shown once, stored only as a hash.
//!
//! A token is [`TOKEN_PREFIX`] followed by [`TOKEN_RANDOM_BYTES`] random bytes in
//! base64url without padding. `DIR/tokens.toml` (mode 0600) keeps per token its name, its
//! role, the sha256 of the token and when it was made; the token itself is never written
//! there, so reading that file does not give anyone a token. The hash is plain sha256:
//! the token is 256 random bits, so there is nothing to guess a dictionary for.
//!
//! A name holds one token: the name is who the policy and the logs see, and two tokens
//! under one name (perhaps of different roles) could not be told apart there. To replace
//! a token, remove its entry from `tokens.toml` and make a new one.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use proto::Principal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::files::{FileError, PRIVATE_FILE_MODE, io_error, write_new};
use crate::identity::{NameError, Role, valid_identity_name};

/// What every token starts with, so that one pasted in the wrong place (a log, a
/// repository) can be recognized.
pub const TOKEN_PREFIX: &str = "wsm_";
/// Random bytes in a token.
pub const TOKEN_RANDOM_BYTES: usize = 32;
/// Longest presented token that is hashed at all; a real one is 47 bytes. Anything longer
/// is refused before any work is done for it.
pub const PRESENTED_TOKEN_BYTES_MAX: usize = 128;
/// Most tokens in a book: every request is compared against all of them.
pub const TOKENS_MAX: usize = 1024;
/// Largest `tokens.toml` read: [`TOKENS_MAX`] entries of about 170 bytes fit well.
const TOKENS_FILE_BYTES_MAX: u64 = 512 * 1024;
/// The token book of a cluster directory.
pub const TOKENS_FILE: &str = "tokens.toml";
/// Permission bits that let anybody but the owner read or change a file.
const GROUP_OR_OTHER_BITS: u32 = 0o077;
/// What `tokens.toml` starts with.
const TOKENS_FILE_HEADER: &str = "# HTTP bearer tokens of this wasmos cluster (`wasmos secure token`).\n\
# Only the sha256 of each token is here, never the token. Keep this file mode 0600.\n\n";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error(
        "{path} is open to other users (mode {mode:o}); a token book must be mode 600: `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "{path} has a token named {name:?} already; a name holds one token (remove its entry to replace it)"
    )]
    NameTaken { path: PathBuf, name: String },
    #[error("{path} holds {TOKENS_MAX} tokens, the most a cluster may have")]
    TooMany { path: PathBuf },
    #[error("an HTTP token's role is viewer, operator or admin, not {0}")]
    Role(Role),
    #[error("{0} is not a cluster directory (no ca.pem); `wasmos secure init DIR` makes one")]
    NotACluster(PathBuf),
    #[error("the operating system's random generator: {0}")]
    Random(String),
}

/// Whether `role` may be given to an HTTP token: only operators' roles.
pub fn is_token_role(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Operator | Role::Viewer)
}

/// One line of `tokens.toml`, as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: Role,
    /// Lower-case hex of the sha256 of the token.
    sha256: String,
    /// Unix seconds.
    created: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// A token as the book keeps it in memory: who it is and its hash.
#[derive(Clone)]
struct StoredToken {
    principal: Principal,
    sha256: [u8; 32],
}

/// The tokens of a cluster, read from `DIR/tokens.toml`: what the HTTP API checks a
/// presented bearer token against.
#[derive(Clone, Default)]
pub struct TokenBook {
    tokens: Vec<StoredToken>,
}

/// Names and roles only: the hashes stay out of logs.
impl std::fmt::Debug for TokenBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        for token in &self.tokens {
            list.entry(&format_args!("{}", token.principal));
        }
        list.finish()
    }
}

impl TokenBook {
    /// Reads `dir/tokens.toml`; a missing file is an empty book. Refused: a file others
    /// may read or change, one over the size limit, one that is not a token book.
    pub fn load(dir: &Path) -> Result<TokenBook, TokenError> {
        let (_, entries) = read_entries(dir)?;
        let path = dir.join(TOKENS_FILE);
        let tokens = entries
            .iter()
            .map(|entry| stored(&path, entry))
            .collect::<Result<_, _>>()?;
        Ok(TokenBook { tokens })
    }

    /// Who `presented` belongs to, or `None`. Its hash is compared with every stored
    /// hash in constant time, all of them whatever matched, so that the time taken does
    /// not tell which entry (or how much of one) matched.
    pub fn check(&self, presented: &str) -> Option<Principal> {
        if presented.len() > PRESENTED_TOKEN_BYTES_MAX {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = u32::MAX;
        for (index, token) in self.tokens.iter().enumerate() {
            // TOKENS_MAX is far below u32::MAX.
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, token.sha256.ct_eq(&digest));
        }
        let index = usize::try_from(found).ok()?;
        self.tokens.get(index).map(|t| t.principal.clone())
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// The token book of a cluster directory as a running master holds it: read again when
/// `DIR/tokens.toml` changes (one `stat` per check), so that a token `wasmos secure token`
/// makes works at once, on a master started before it. A file that changed into
/// something unreadable keeps the last good book, with an error in the log.
pub struct LiveTokenBook {
    dir: PathBuf,
    state: std::sync::Mutex<(Option<FileStamp>, std::sync::Arc<TokenBook>)>,
}

/// What tells a changed `tokens.toml` from the one last read. The modification time
/// alone misses a write within the same clock tick (coarse on many file systems); a
/// token book is written by rename, so the inode changes with every `wasmos secure
/// token`, and a hand edit in place changes the length or the time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for LiveTokenBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveTokenBook({})", self.dir.display())
    }
}

impl LiveTokenBook {
    /// Reads the book now: a bad book is refused at start, not at the first request.
    pub fn open(dir: &Path) -> Result<LiveTokenBook, TokenError> {
        let stamp = stamp(dir);
        let book = TokenBook::load(dir)?;
        Ok(LiveTokenBook {
            dir: dir.to_owned(),
            state: std::sync::Mutex::new((stamp, std::sync::Arc::new(book))),
        })
    }

    /// [`TokenBook::check`] against the book as the file holds it now.
    pub fn check(&self, presented: &str) -> Option<Principal> {
        self.current().check(presented)
    }

    fn current(&self) -> std::sync::Arc<TokenBook> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = stamp(&self.dir);
        if now != state.0 {
            match TokenBook::load(&self.dir) {
                Ok(book) => *state = (now, std::sync::Arc::new(book)),
                Err(e) => {
                    tracing::error!(%e, "the token book changed into one that cannot be read; keeping the last good one");
                    state.0 = now;
                }
            }
        }
        state.1.clone()
    }
}

fn stamp(dir: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(dir.join(TOKENS_FILE)).ok()?;
    Some(FileStamp {
        inode: metadata.ino(),
        len: metadata.len(),
        modified: metadata.modified().ok(),
    })
}

fn stored(path: &Path, entry: &TokenEntry) -> Result<StoredToken, TokenError> {
    let malformed = |message: String| TokenError::Malformed {
        path: path.to_owned(),
        message,
    };
    valid_identity_name(&entry.name).map_err(|e| malformed(e.to_string()))?;
    if !is_token_role(entry.role) {
        return Err(malformed(format!(
            "token {:?}: {}",
            entry.name,
            TokenError::Role(entry.role)
        )));
    }
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&entry.sha256, &mut sha256).map_err(|e| {
        malformed(format!(
            "token {:?}: sha256 is not 64 hex digits: {e}",
            entry.name
        ))
    })?;
    Ok(StoredToken {
        principal: Principal::new(&entry.name, entry.role),
        sha256,
    })
}

/// Makes a token for `name` with `role`, adds its hash to `dir/tokens.toml` (replaced
/// whole: a new file moved into place, mode 0600) and answers the token: the only time
/// it is seen.
pub fn create_token(dir: &Path, name: &str, role: Role) -> Result<String, TokenError> {
    valid_identity_name(name)?;
    if !is_token_role(role) {
        return Err(TokenError::Role(role));
    }
    if !dir.join("ca.pem").is_file() {
        return Err(TokenError::NotACluster(dir.to_owned()));
    }
    let (path, mut entries) = read_entries(dir)?;
    if entries.iter().any(|e| e.name == name) {
        return Err(TokenError::NameTaken {
            path,
            name: name.to_owned(),
        });
    }
    if entries.len() >= TOKENS_MAX {
        return Err(TokenError::TooMany { path });
    }
    let token = new_token()?;
    entries.push(TokenEntry {
        name: name.to_owned(),
        role,
        sha256: hex::encode(Sha256::digest(token.as_bytes())),
        created: unix_seconds(),
    });
    write_entries(&path, entries)?;
    Ok(token)
}

/// Writes `token` to `dir/NAME.token` (mode 0600, never over an existing file), for
/// scripts and for the operator who lost the terminal it was printed on.
pub fn save_token(dir: &Path, name: &str, token: &str) -> Result<PathBuf, TokenError> {
    valid_identity_name(name)?;
    let path = dir.join(format!("{name}.token"));
    write_new(&path, PRIVATE_FILE_MODE, format!("{token}\n").as_bytes())?;
    Ok(path)
}

fn new_token() -> Result<String, TokenError> {
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    random.fill(0);
    Ok(format!("{TOKEN_PREFIX}{encoded}"))
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The entries of `dir/tokens.toml` (none when it does not exist) and its path. The mode
/// is checked on the open file, so that it is the file read.
fn read_entries(dir: &Path) -> Result<(PathBuf, Vec<TokenEntry>), TokenError> {
    let path = dir.join(TOKENS_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((path, Vec::new())),
        Err(e) => return Err(io_error(&path)(e).into()),
    };
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        file.metadata()
            .map_err(io_error(&path))?
            .permissions()
            .mode()
    };
    if mode & GROUP_OR_OTHER_BITS != 0 {
        return Err(TokenError::Exposed {
            path,
            mode: mode & 0o777,
        });
    }
    let mut text = String::new();
    file.take(TOKENS_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io_error(&path))?;
    let malformed = |message: String| TokenError::Malformed {
        path: path.clone(),
        message,
    };
    if text.len() as u64 > TOKENS_FILE_BYTES_MAX {
        return Err(malformed(format!(
            "over {TOKENS_FILE_BYTES_MAX} bytes, too large for a token book"
        )));
    }
    let parsed: TokensFile = toml::from_str(&text).map_err(|e| malformed(one_line(&text, &e)))?;
    if parsed.token.len() > TOKENS_MAX {
        return Err(TokenError::TooMany { path });
    }
    Ok((path, parsed.token))
}

/// toml's error on one line: where, then what (its own text draws the line over several).
fn one_line(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', "; ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// Replaces `path` with `entries`: written to a new private file beside it, then renamed
/// over it, so that a reader sees the old book or the new one, never half of one.
fn write_entries(path: &Path, entries: Vec<TokenEntry>) -> Result<(), TokenError> {
    let text =
        toml::to_string(&TokensFile { token: entries }).map_err(|e| TokenError::Malformed {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let temp = path.with_file_name(format!(".{TOKENS_FILE}.{}.tmp", std::process::id()));
    // Left by a process of the same id that died between writing and renaming.
    let _ = std::fs::remove_file(&temp);
    write_new(
        &temp,
        PRIVATE_FILE_MODE,
        format!("{TOKENS_FILE_HEADER}{text}").as_bytes(),
    )?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(io_error(path)(e).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cluster() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("ca.pem"), "not read by tokens").unwrap();
        tmp
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_token_is_the_prefix_and_43_base64url_characters() {
        let tmp = cluster();
        let token = create_token(tmp.path(), "alice", Role::Operator).unwrap();
        let random = token.strip_prefix(TOKEN_PREFIX).unwrap();
        assert_eq!(random.len(), 43);
        assert!(
            random
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let again = create_token(tmp.path(), "bob", Role::Operator).unwrap();
        assert_ne!(token, again);
    }

    #[test]
    fn the_book_knows_each_token_by_its_hash_only() {
        let tmp = cluster();
        let dir = tmp.path();
        assert!(TokenBook::load(dir).unwrap().is_empty());
        let admin = create_token(dir, "admin", Role::Admin).unwrap();
        let watcher = create_token(dir, "watcher", Role::Viewer).unwrap();
        let path = dir.join(TOKENS_FILE);
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&admin) && !text.contains(&watcher[4..]),
            "{text}"
        );
        assert!(text.contains(&hex::encode(Sha256::digest(admin.as_bytes()))));
        let book = TokenBook::load(dir).unwrap();
        assert_eq!(book.len(), 2);
        assert_eq!(
            book.check(&admin),
            Some(Principal::new("admin", Role::Admin))
        );
        assert_eq!(
            book.check(&watcher),
            Some(Principal::new("watcher", Role::Viewer))
        );
        assert_eq!(book.check(""), None);
        assert_eq!(book.check(&admin[..admin.len() - 1]), None);
        assert_eq!(book.check(&format!("{admin}x")), None);
        assert_eq!(book.check(&"x".repeat(PRESENTED_TOKEN_BYTES_MAX + 1)), None);
        // No temporary file is left behind.
        let files: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert_eq!(files.len(), 2, "{files:?}");
    }

    #[test]
    fn names_are_checked_and_held_by_one_token() {
        let tmp = cluster();
        let dir = tmp.path();
        create_token(dir, "ops", Role::Operator).unwrap();
        assert!(matches!(
            create_token(dir, "ops", Role::Viewer),
            Err(TokenError::NameTaken { .. })
        ));
        for bad in ["", "a b", "-x", "tokens", "../x"] {
            assert!(
                matches!(
                    create_token(dir, bad, Role::Viewer),
                    Err(TokenError::Name(_))
                ),
                "{bad:?}"
            );
        }
        for role in [Role::Master, Role::Agent, Role::Framework] {
            assert!(matches!(
                create_token(dir, "dev", role),
                Err(TokenError::Role(_))
            ));
        }
        let elsewhere = tempfile::tempdir().unwrap();
        let error = create_token(elsewhere.path(), "ops", Role::Viewer).unwrap_err();
        assert!(matches!(error, TokenError::NotACluster(_)), "{error}");
        assert_eq!(TokenBook::load(dir).unwrap().len(), 1);
    }

    #[test]
    fn an_open_or_malformed_book_is_refused_in_one_line() {
        let tmp = cluster();
        let dir = tmp.path();
        create_token(dir, "ops", Role::Operator).unwrap();
        let path = dir.join(TOKENS_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = TokenBook::load(dir).unwrap_err();
        assert!(
            matches!(error, TokenError::Exposed { mode: 0o644, .. }),
            "{error}"
        );
        assert!(create_token(dir, "other", Role::Viewer).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        let cases = [
            ("[[token]]\nname = \"a\"\n", "missing field"),
            (
                "[[token]]\nname = \"a\"\nrole = \"agent\"\nsha256 = \"00\"\ncreated = 1\n",
                "viewer, operator or admin",
            ),
            (
                "[[token]]\nname = \"a\"\nrole = \"viewer\"\nsha256 = \"zz\"\ncreated = 1\n",
                "64 hex digits",
            ),
            (
                "[[token]]\nname = \"a\"\nrole = \"king\"\nsha256 = \"\"\ncreated = 1\n",
                "line 3",
            ),
            ("token = 3\n", "line 1"),
            (
                "[[token]]\nname = \"a\"\nrole = \"viewer\"\nsha256 = \"\"\ncreated = 1\ntoken = \"wsm_x\"\n",
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let error = TokenBook::load(dir).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn a_saved_token_is_private_and_never_overwritten() {
        let tmp = cluster();
        let path = save_token(tmp.path(), "admin", "wsm_abc").unwrap();
        assert_eq!(path, tmp.path().join("admin.token"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "wsm_abc\n");
        assert!(save_token(tmp.path(), "admin", "wsm_def").is_err());
    }

    #[test]
    fn a_live_book_knows_a_token_made_after_it_was_opened() {
        let tmp = cluster();
        let first = create_token(tmp.path(), "first", Role::Operator).unwrap();
        let live = LiveTokenBook::open(tmp.path()).unwrap();
        assert!(live.check(&first).is_some());
        let later = create_token(tmp.path(), "later", Role::Viewer).unwrap();
        let caller = live.check(&later).expect("the new token");
        assert_eq!((caller.name.as_str(), caller.role), ("later", Role::Viewer));
        // A book broken since keeps the last good one.
        std::fs::write(tmp.path().join(TOKENS_FILE), "garbage = [").unwrap();
        assert!(live.check(&later).is_some());
    }
}
