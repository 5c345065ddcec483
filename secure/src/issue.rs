//! Making a cluster CA and signing identities with it (rcgen, ECDSA P-256).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::files::{FileError, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, refuse_existing, write_new};
use crate::identity::{IdentityPath, NameError, Role, role_unit, valid_identity_name};

/// The operator identity `init_cluster` makes, whose HTTP token is `DIR/admin.token`.
pub const ADMIN_NAME: &str = "admin";
/// How long the cluster CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long an identity is valid: devices in the field are re-issued rarely.
pub const IDENTITY_VALIDITY_DAYS: i64 = 825;
/// Certificates start this much before now, for devices whose clocks lag.
const CLOCK_SKEW_HOURS: i64 = 1;
/// Names the master's certificate always carries, so that clients on the master's own
/// machine check the name on connect.
const MASTER_LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("cannot make the certificate: {0}")]
    Certificate(String),
    #[error("subject alternative name {name:?}: {message}")]
    San { name: String, message: String },
    #[error(
        "{0:?} was issued in this cluster before; a name is never issued twice, so that an \
         old certificate never gets a new identity's rights: choose another name"
    )]
    IssuedBefore(String),
}

fn issued_before(dir: &Path, name: &str) -> Result<bool, FileError> {
    let path = dir.join(ISSUED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().any(|line| line == name)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(FileError::Io { path, error }),
    }
}

fn record_issued(dir: &Path, name: &str) -> Result<(), FileError> {
    use std::io::Write;
    let path = dir.join(ISSUED_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(crate::files::io_error(&path))?;
    writeln!(file, "{name}")
        .and_then(|()| file.sync_all())
        .map_err(crate::files::io_error(&path))
}

/// What `init_cluster` wrote.
#[derive(Debug)]
pub struct InitOutcome {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub master: IdentityPath,
    pub admin: IdentityPath,
}

/// Creates `dir` (private) with a new CA, the master's identity (`master`; its certificate
/// names `localhost`, the loopback addresses, this host's name and `master_names`) and an
/// operator identity `admin`. Refuses a directory that already holds a CA.
pub fn init_cluster(dir: &Path, master_names: &[String]) -> Result<InitOutcome, IssueError> {
    create_private_dir(dir)?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    refuse_existing(&ca_cert)?;
    refuse_existing(&ca_key)?;
    let key = KeyPair::generate().map_err(certificate_error)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "wasmos cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key).map_err(certificate_error)?;
    write_new(&ca_key, PRIVATE_FILE_MODE, key.serialize_pem().as_bytes())?;
    write_new(&ca_cert, PUBLIC_FILE_MODE, cert.pem().as_bytes())?;
    let mut names: Vec<String> = MASTER_LOCAL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    names.extend(host_name());
    names.extend(master_names.iter().cloned());
    let master = issue(dir, "master", Role::Master, &names)?;
    let admin = issue(dir, ADMIN_NAME, Role::Admin, &[])?;
    Ok(InitOutcome {
        ca_cert,
        ca_key,
        master,
        admin,
    })
}

/// Names only `init_cluster` gives: the master's, and the one every caller of an insecure
/// cluster has.
const NAMES_OF_INIT: [&str; 2] = ["master", proto::principal::ANONYMOUS];
/// The names ever issued in a cluster directory, one per line: a name is never issued
/// twice, so an old certificate (which the CA signed and nothing revokes) never gets
/// the rights of a new identity of the same name. Revoking an identity is deleting its
/// `NAME.pem` and restarting the master.
pub const ISSUED_FILE: &str = "issued";

/// Writes `dir/NAME.pem` and `dir/NAME.key`: a key pair and a certificate signed by the
/// cluster CA, common name `name`, role `role`, valid for the DNS names and addresses in
/// `extra_names` besides `name` itself. Neither file may exist, and the name may never
/// have been issued in `dir` before ([`ISSUED_FILE`]).
pub fn issue_identity(
    dir: &Path,
    name: &str,
    role: Role,
    extra_names: &[String],
) -> Result<IdentityPath, IssueError> {
    if NAMES_OF_INIT.contains(&name) {
        return Err(NameError::Reserved(name.to_owned()).into());
    }
    issue(dir, name, role, extra_names)
}

fn issue(
    dir: &Path,
    name: &str,
    role: Role,
    extra_names: &[String],
) -> Result<IdentityPath, IssueError> {
    valid_identity_name(name)?;
    let identity = IdentityPath::new(dir, name);
    refuse_existing(&identity.cert())?;
    refuse_existing(&identity.key())?;
    let issuer = load_issuer(dir)?;
    if issued_before(dir, name)? {
        return Err(IssueError::IssuedBefore(name.to_owned()));
    }
    let mut names = vec![name.to_owned()];
    names.extend(extra_names.iter().filter(|n| *n != name).cloned());
    let mut params = CertificateParams::new(Vec::new()).map_err(certificate_error)?;
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, role_unit(role));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, IDENTITY_VALIDITY_DAYS);
    let key = KeyPair::generate().map_err(certificate_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(certificate_error)?;
    // Recorded first: a name once signed for is never signed for again.
    record_issued(dir, name)?;
    write_new(
        &identity.key(),
        PRIVATE_FILE_MODE,
        key.serialize_pem().as_bytes(),
    )?;
    if let Err(e) = write_new(&identity.cert(), PUBLIC_FILE_MODE, cert.pem().as_bytes()) {
        let _ = std::fs::remove_file(identity.key());
        return Err(e.into());
    }
    Ok(identity)
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, IssueError> {
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| IssueError::Ca {
            path: path.to_owned(),
            message: format!("{e} (is this a cluster directory? `wasmos secure init` makes one)"),
        })
    };
    let ca_error = |path: &Path| {
        let path = path.to_owned();
        move |e: rcgen::Error| IssueError::Ca {
            path,
            message: e.to_string(),
        }
    };
    let key = KeyPair::from_pem(&read(&ca_key)?).map_err(ca_error(&ca_key))?;
    Issuer::from_ca_cert_pem(&read(&ca_cert)?, key).map_err(ca_error(&ca_cert))
}

fn san(name: &str) -> Result<rcgen::SanType, IssueError> {
    let error = |message: String| IssueError::San {
        name: name.to_owned(),
        message,
    };
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
        Err(_) => Ok(rcgen::SanType::DnsName(
            name.to_owned()
                .try_into()
                .map_err(|e: rcgen::Error| error(e.to_string()))?,
        )),
    }
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(CLOCK_SKEW_HOURS);
    params.not_after = now + Duration::days(days);
}

fn certificate_error(e: rcgen::Error) -> IssueError {
    IssueError::Certificate(e.to_string())
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(crate::files::io_error(dir))
}
