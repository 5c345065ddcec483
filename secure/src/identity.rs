//! Who is who: roles, identity names and paths, and reading a cluster's identities back.

use std::path::{Path, PathBuf};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{FileError, io_error};

/// Longest identity name: it is a key chunk (`agents/<name>/…`) and a DNS-style SAN.
pub const IDENTITY_NAME_BYTES_MAX: usize = 63;
/// Largest certificate file read back.
const CERT_FILE_BYTES_MAX: u64 = 64 * 1024;
/// Names that are cluster files, not identities.
const RESERVED_NAMES: [&str; 4] = ["ca", "tokens", "policy", "issued"];

pub use proto::Role;

/// The organizational unit that marks a certificate of `role`.
pub fn role_unit(role: Role) -> String {
    format!("wasmos-{}", role.as_str())
}

fn role_of_unit(unit: &str) -> Option<Role> {
    Role::parse(unit.strip_prefix("wasmos-")?)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("an identity name may not be empty")]
    Empty,
    #[error("identity name {0:?} is over {IDENTITY_NAME_BYTES_MAX} bytes")]
    TooLong(String),
    #[error(
        "identity name {0:?}: use letters, digits, '-' and '_', starting with a letter or digit"
    )]
    Characters(String),
    #[error("{0:?} names a cluster file, not an identity")]
    Reserved(String),
}

/// Checks a name used as a certificate's common name, a zenoh key chunk and a file name.
pub fn valid_identity_name(name: &str) -> Result<(), NameError> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() {
        Err(NameError::Empty)
    } else if name.len() > IDENTITY_NAME_BYTES_MAX {
        Err(NameError::TooLong(name.to_owned()))
    } else if !(first_ok && rest_ok) {
        Err(NameError::Characters(name.to_owned()))
    } else if RESERVED_NAMES.contains(&name) {
        Err(NameError::Reserved(name.to_owned()))
    } else {
        Ok(())
    }
}

/// `DIR/NAME` as given to `--identity`: the cluster directory and one identity in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPath {
    pub dir: PathBuf,
    pub name: String,
}

impl IdentityPath {
    /// Splits `DIR/NAME`; a bare `NAME` is in the current directory.
    pub fn parse(path: &Path) -> Result<IdentityPath, NameError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        valid_identity_name(&name)?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(IdentityPath { dir, name })
    }

    pub fn new(dir: &Path, name: &str) -> IdentityPath {
        IdentityPath {
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join(format!("{}.key", self.name))
    }

    /// The three files a TLS session needs, each checked to exist, or which one is missing.
    pub fn tls_files(&self) -> Result<[PathBuf; 3], FileError> {
        let files = [self.ca_cert(), self.cert(), self.key()];
        for file in &files {
            std::fs::metadata(file).map_err(io_error(file))?;
        }
        Ok(files)
    }
}

/// Checks an identity's own files before they are used: the certificate is one of a
/// cluster (its common name the identity's name, a wasmos role), the key is the
/// certificate's. Says which is wrong; the CA chain is checked by TLS on connect.
pub fn check_identity(identity: &IdentityPath) -> Result<Role, String> {
    let cert_path = identity.cert();
    let pem = read_pem(&cert_path).map_err(|e| e.to_string())?;
    let (_, cert) = X509Certificate::from_der(&pem.contents)
        .map_err(|e| format!("{}: not a certificate: {e}", cert_path.display()))?;
    let (name, role) = name_and_role(&cert).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    if name != identity.name {
        return Err(format!(
            "{}: the certificate is {name:?}'s, not {:?}'s",
            cert_path.display(),
            identity.name
        ));
    }
    let key_path = identity.key();
    let key_text =
        std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let key = rcgen::KeyPair::from_pem(&key_text)
        .map_err(|e| format!("{}: not a private key: {e}", key_path.display()))?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(format!(
            "{} is not the key of {}",
            key_path.display(),
            cert_path.display()
        ));
    }
    Ok(role)
}

fn name_and_role(cert: &X509Certificate<'_>) -> Result<(String, Role), String> {
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("no common name")?;
    let role = subject
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok())
        .find_map(role_of_unit)
        .ok_or("no wasmos role (organizational unit)")?;
    Ok((name.to_owned(), role))
}

/// One identity of a cluster, read from its certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// Every identity in `dir` whose certificate the cluster CA signed, by name; certificates
/// that are not the CA's, carry no wasmos role or whose name is not their file's are left
/// out and listed with the reason in the second vector.
pub fn cluster_identities(dir: &Path) -> Result<(Vec<Identity>, Vec<String>), FileError> {
    let ca_path = dir.join("ca.pem");
    let ca_pem = read_pem(&ca_path)?;
    let mut identities = Vec::new();
    let mut skipped = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    for entry in entries {
        let path = entry.map_err(io_error(dir))?.path();
        let Some(name) = pem_stem(&path) else {
            continue;
        };
        match read_identity(&path, &name, &ca_pem) {
            Ok(identity) => identities.push(identity),
            Err(reason) => skipped.push(format!("{}: {reason}", path.display())),
        }
    }
    identities.sort();
    skipped.sort();
    Ok((identities, skipped))
}

fn pem_stem(path: &Path) -> Option<String> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".pem")?;
    (stem != "ca").then(|| stem.to_owned())
}

fn read_pem(path: &Path) -> Result<x509_parser::pem::Pem, FileError> {
    let bytes = read_small(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes).map_err(|e| FileError::Io {
        path: path.to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })?;
    Ok(pem)
}

fn read_small(path: &Path) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut bytes = Vec::new();
    file.take(CERT_FILE_BYTES_MAX)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    Ok(bytes)
}

fn read_identity(
    path: &Path,
    name: &str,
    ca_pem: &x509_parser::pem::Pem,
) -> Result<Identity, String> {
    let pem = read_pem(path).map_err(|e| e.to_string())?;
    let (_, cert) = X509Certificate::from_der(&pem.contents).map_err(|e| e.to_string())?;
    let (_, ca) = X509Certificate::from_der(&ca_pem.contents).map_err(|e| e.to_string())?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| "not signed by this cluster's CA".to_owned())?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("no common name")?;
    if common_name != name {
        return Err(format!(
            "common name {common_name:?} is not the file's name"
        ));
    }
    let role = subject
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok())
        .find_map(role_of_unit)
        .ok_or("no wasmos role (organizational unit)")?;
    Ok(Identity {
        name: name.to_owned(),
        role,
    })
}
