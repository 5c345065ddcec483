use std::os::unix::fs::PermissionsExt;

use crate::{
    FileError, Identity, IdentityPath, IssueError, Role, cluster_identities, init_cluster,
    issue_identity,
};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[test]
fn init_makes_a_private_ca_the_master_and_an_admin_and_issue_adds_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let outcome = init_cluster(&dir, &["edge.example".to_owned()]).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&outcome.ca_key), 0o600);
    assert_eq!(mode(&outcome.master.key()), 0o600);
    issue_identity(&dir, "a1", Role::Agent, &[]).unwrap();
    issue_identity(&dir, "f1", Role::Framework, &[]).unwrap();
    issue_identity(&dir, "watcher", Role::Viewer, &[]).unwrap();
    let (identities, skipped) = cluster_identities(&dir).unwrap();
    let expected = [
        ("a1", Role::Agent),
        ("admin", Role::Admin),
        ("f1", Role::Framework),
        ("master", Role::Master),
        ("watcher", Role::Viewer),
    ]
    .map(|(name, role)| Identity {
        name: name.to_owned(),
        role,
    });
    assert_eq!(identities, expected);
    assert!(skipped.is_empty(), "{skipped:?}");
}

#[test]
fn a_certificate_of_another_ca_or_under_another_name_is_not_an_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    init_cluster(&ours, &[]).unwrap();
    init_cluster(&theirs, &[]).unwrap();
    issue_identity(&theirs, "a2", Role::Agent, &[]).unwrap();
    std::fs::copy(theirs.join("a2.pem"), ours.join("a2.pem")).unwrap();
    issue_identity(&ours, "a1", Role::Agent, &[]).unwrap();
    std::fs::copy(ours.join("a1.pem"), ours.join("a3.pem")).unwrap();
    let (identities, skipped) = cluster_identities(&ours).unwrap();
    let names: Vec<&str> = identities.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a1", "admin", "master"]);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].contains("a2.pem: not signed by this cluster's CA"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("a3.pem: common name \"a1\""),
        "{skipped:?}"
    );
}

#[test]
fn nothing_is_overwritten_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_cluster(dir, &[]).unwrap();
    assert!(matches!(
        init_cluster(dir, &[]),
        Err(IssueError::File(FileError::Exists { .. }))
    ));
    assert!(matches!(
        issue_identity(dir, "admin", Role::Operator, &[]),
        Err(IssueError::File(FileError::Exists { .. }))
    ));
    for bad in ["", "-x", "a/b", "a.b", "ca", "tokens"] {
        assert!(
            issue_identity(dir, bad, Role::Agent, &[]).is_err(),
            "{bad:?}"
        );
    }
    let elsewhere = tmp.path().join("not-a-cluster");
    std::fs::create_dir(&elsewhere).unwrap();
    let error = issue_identity(&elsewhere, "a1", Role::Agent, &[]).unwrap_err();
    assert!(error.to_string().contains("wasmos secure init"), "{error}");
}

#[test]
fn an_identity_path_is_a_directory_and_a_name() {
    let path = IdentityPath::parse(std::path::Path::new("/etc/wasmos/a1")).unwrap();
    assert_eq!(path.dir, std::path::Path::new("/etc/wasmos"));
    assert_eq!(path.cert(), std::path::Path::new("/etc/wasmos/a1.pem"));
    let bare = IdentityPath::parse(std::path::Path::new("a1")).unwrap();
    assert_eq!(bare.ca_cert(), std::path::Path::new("./ca.pem"));
    assert!(IdentityPath::parse(std::path::Path::new("/etc/wasmos/")).is_ok());
    assert!(IdentityPath::parse(std::path::Path::new("/")).is_err());
}

#[test]
fn a_name_is_never_issued_twice_nor_one_of_init_s() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_cluster(dir, &[]).unwrap();
    issue_identity(dir, "a2", Role::Agent, &[]).unwrap();
    std::fs::remove_file(dir.join("a2.pem")).unwrap();
    std::fs::remove_file(dir.join("a2.key")).unwrap();
    let again = issue_identity(dir, "a2", Role::Operator, &[]).unwrap_err();
    assert!(matches!(again, IssueError::IssuedBefore(_)), "{again}");
    for reserved in ["master", "anonymous", "issued"] {
        assert!(
            issue_identity(dir, reserved, Role::Framework, &[]).is_err(),
            "{reserved}"
        );
    }
}

#[test]
fn an_identity_s_files_are_checked_before_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_cluster(dir, &[]).unwrap();
    issue_identity(dir, "a1", Role::Agent, &[]).unwrap();
    assert_eq!(
        crate::check_identity(&IdentityPath::new(dir, "a1")),
        Ok(Role::Agent)
    );
    assert_eq!(
        crate::check_identity(&IdentityPath::new(dir, "master")),
        Ok(Role::Master)
    );
    std::fs::copy(dir.join("admin.key"), dir.join("a1.key")).unwrap();
    let wrong_key = crate::check_identity(&IdentityPath::new(dir, "a1")).unwrap_err();
    assert!(wrong_key.contains("is not the key of"), "{wrong_key}");
    std::fs::copy(dir.join("admin.pem"), dir.join("a1.pem")).unwrap();
    let wrong_cert = crate::check_identity(&IdentityPath::new(dir, "a1")).unwrap_err();
    assert!(
        wrong_cert.contains("\"admin\"'s, not \"a1\"'s"),
        "{wrong_cert}"
    );
    std::fs::write(dir.join("a1.pem"), "junk").unwrap();
    assert!(crate::check_identity(&IdentityPath::new(dir, "a1")).is_err());
}
