use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;

/// A module built by `cargo xtask modules` (`p1_hello`, `p2_hello`).
fn built_module(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/modules")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask modules`", path.display()))
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed(&[byte; SEED_BYTES])
}

fn trusting(keys: &[&SecretKey]) -> TrustedKeys {
    TrustedKeys::new(keys.iter().map(|k| k.public_key())).unwrap()
}

/// `module` with the first occurrence of `from` replaced by `to` (same length).
fn replaced(module: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = module
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in the module", String::from_utf8_lossy(from)));
    let mut changed = module.to_vec();
    changed[at..at + to.len()].copy_from_slice(to);
    changed
}

/// A custom section named `name` holding `payload` (both short).
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut section = vec![0, (1 + name.len() + payload.len()) as u8, name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(payload);
    section
}

#[test]
fn core_modules_and_components_round_trip() {
    let alice = key(1);
    for (name, text) in [("p1_hello", "hello from p1"), ("p2_hello", "hello from p2")] {
        let module = built_module(name);
        let signed = sign(&module, &alice).unwrap();
        assert_eq!(
            signed.len(),
            module.len() + SIGNATURE_SECTION_BYTES,
            "{name}"
        );
        assert_eq!(
            &signed[..module.len()],
            &module[..],
            "{name}: appended only"
        );
        assert_eq!(
            verify(&signed, &trusting(&[&alice])),
            Ok(alice.public_key().key_id()),
            "{name}"
        );

        let tampered = replaced(&signed, text.as_bytes(), text.replace('h', "j").as_bytes());
        assert_eq!(
            verify(&tampered, &trusting(&[&alice])),
            Err(VerifyError::Tampered {
                key_id: alice.public_key().key_id()
            }),
            "{name}"
        );
        assert_eq!(
            verify(&module, &trusting(&[&alice])),
            Err(VerifyError::Unsigned),
            "{name}"
        );
    }
}

#[test]
fn another_keys_signature_is_untrusted_and_names_that_key() {
    let (alice, mallory) = (key(1), key(2));
    let signed = sign(&built_module("p1_hello"), &mallory).unwrap();
    let refused = verify(&signed, &trusting(&[&alice])).unwrap_err();
    assert_eq!(
        refused,
        VerifyError::UntrustedKey {
            key_id: mallory.public_key().key_id()
        }
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "the module is signed by an untrusted key {}",
            mallory.public_key().key_id()
        )
    );
    // Any of several trusted keys will do.
    assert_eq!(
        verify(&signed, &trusting(&[&alice, &mallory])),
        Ok(mallory.public_key().key_id())
    );
}

#[test]
fn a_trusted_public_key_put_on_another_keys_signature_is_tampering() {
    let (alice, mallory) = (key(1), key(2));
    let mut signed = sign(&built_module("p1_hello"), &mallory).unwrap();
    let key_at = signed.len() - 64 - 32;
    signed[key_at..key_at + 32].copy_from_slice(&alice.public_key().to_bytes());
    assert_eq!(
        verify(&signed, &trusting(&[&alice])),
        Err(VerifyError::Tampered {
            key_id: alice.public_key().key_id()
        })
    );
}

#[test]
fn every_byte_before_the_signature_counts() {
    let alice = key(1);
    let module = built_module("p2_hello");
    let signed = sign(&module, &alice).unwrap();
    let trusted = trusting(&[&alice]);
    // A custom section slipped in before the signature: still well formed, not signed.
    let mut inserted = module.clone();
    inserted.extend_from_slice(&custom_section("extra", b"x"));
    inserted.extend_from_slice(&signed[module.len()..]);
    assert!(matches!(
        verify(&inserted, &trusted),
        Err(VerifyError::Tampered { .. })
    ));
    // The header is signed too.
    let mut header = signed.clone();
    header[4] = 0x0e;
    assert!(matches!(
        verify(&header, &trusted),
        Err(VerifyError::Tampered { .. })
    ));
    // And so is the signature itself.
    let mut signature = signed.clone();
    let last = signature.len() - 1;
    signature[last] ^= 1;
    assert!(matches!(
        verify(&signature, &trusted),
        Err(VerifyError::Tampered { .. })
    ));
}

#[test]
fn the_signature_section_must_be_last_and_alone() {
    let (alice, bob) = (key(1), key(2));
    let module = built_module("p1_hello");
    let signed = sign(&module, &alice).unwrap();
    let trusted = trusting(&[&alice]);

    let mut followed = signed.clone();
    followed.extend_from_slice(&custom_section("after", b"x"));
    assert_eq!(
        verify(&followed, &trusted),
        Err(VerifyError::Malformed(Malformed::SignatureNotLast))
    );
    assert_eq!(sign(&followed, &alice), Err(Malformed::SignatureNotLast));

    let by_bob = sign(&module, &bob).unwrap();
    let mut twice = signed.clone();
    twice.extend_from_slice(&by_bob[module.len()..]);
    assert_eq!(
        verify(&twice, &trusted),
        Err(VerifyError::Malformed(Malformed::TwoSignatures))
    );
}

#[test]
fn a_signature_section_in_another_encoding_or_version_is_malformed() {
    let alice = key(1);
    let module = built_module("p1_hello");
    let signed = sign(&module, &alice).unwrap();
    let section = &signed[module.len()..];
    let trusted = trusting(&[&alice]);

    // The same contents with the size as a two-byte LEB128.
    let mut padded = module.clone();
    padded.extend_from_slice(&[0, section[1] | 0x80, 0]);
    padded.extend_from_slice(&section[2..]);
    assert_eq!(
        verify(&padded, &trusted),
        Err(VerifyError::Malformed(Malformed::NonCanonical))
    );

    let mut version = signed.clone();
    version[module.len() + 2 + 1 + SIGNATURE_SECTION_NAME.len()] = 2;
    assert_eq!(
        verify(&version, &trusted),
        Err(VerifyError::Malformed(Malformed::UnknownVersion(2)))
    );

    let mut short = module.clone();
    short.extend_from_slice(&custom_section(SIGNATURE_SECTION_NAME, &[1; 10]));
    assert_eq!(
        verify(&short, &trusted),
        Err(VerifyError::Malformed(Malformed::NonCanonical))
    );
}

#[test]
fn truncated_and_foreign_bytes_are_malformed() {
    let alice = key(1);
    let signed = sign(&built_module("p2_hello"), &alice).unwrap();
    let trusted = trusting(&[&alice]);
    for cut in [1, 50, SIGNATURE_SECTION_BYTES - 1] {
        assert_eq!(
            verify(&signed[..signed.len() - cut], &trusted),
            Err(VerifyError::Malformed(Malformed::Truncated)),
            "{cut} bytes cut"
        );
    }
    assert_eq!(
        verify(&signed[..5], &trusted),
        Err(VerifyError::Malformed(Malformed::NotWasm))
    );
    assert_eq!(sign(b"(module)", &alice), Err(Malformed::NotWasm));
    assert_eq!(
        verify(b"\x7fELF\x02\x01\x01\0rest", &trusted),
        Err(VerifyError::Malformed(Malformed::NotWasm))
    );
    // A header alone is a module with no sections: unsigned, and signable.
    let empty = b"\0asm\x01\0\0\0".to_vec();
    assert_eq!(verify(&empty, &trusted), Err(VerifyError::Unsigned));
    assert!(verify(&sign(&empty, &alice).unwrap(), &trusted).is_ok());
}

#[test]
fn signing_again_replaces_the_signature() {
    let (alice, bob) = (key(1), key(2));
    let module = built_module("p1_hello");
    let by_alice = sign(&module, &alice).unwrap();
    let by_bob = sign(&by_alice, &bob).unwrap();
    assert_eq!(by_bob, sign(&module, &bob).unwrap());
    assert!(matches!(
        verify(&by_bob, &trusting(&[&alice])),
        Err(VerifyError::UntrustedKey { .. })
    ));
}

#[test]
fn no_trusted_key_checks_nothing() {
    let none = TrustedKeys::default();
    assert!(none.is_empty());
    assert_eq!(none.check(b"anything at all"), Ok(None));
    let alice = key(1);
    let one = trusting(&[&alice]);
    assert_eq!(one.check(b"(module)"), Err(Malformed::NotWasm.into()));
    let signed = sign(&built_module("p1_hello"), &alice).unwrap();
    assert_eq!(one.check(&signed), Ok(Some(alice.public_key().key_id())));
}

#[test]
fn trusted_keys_are_bounded_and_deduplicated() {
    let alice = key(1);
    let twice = TrustedKeys::new([alice.public_key(), alice.public_key()]).unwrap();
    assert_eq!(twice.keys().len(), 1);
    let many = (0..=TRUSTED_KEYS_MAX).map(|i| key(i as u8).public_key());
    assert_eq!(
        TrustedKeys::new(many),
        Err(TooManyKeys(TRUSTED_KEYS_MAX + 1))
    );
}

#[test]
fn key_files_round_trip_and_refuse_what_they_are_not() {
    let alice = key(7);
    let secret = alice.to_key_file();
    assert!(secret.starts_with("wasmos-ed25519-secret-key-v1 ") && secret.ends_with('\n'));
    let back = SecretKey::from_key_file(&secret).unwrap();
    assert_eq!(back.public_key(), alice.public_key());

    let public = alice.public_key().to_key_file("release\nkey");
    assert_eq!(public.lines().count(), 1, "{public:?}");
    assert!(public.trim_end().ends_with(" releasekey"), "{public:?}");
    assert_eq!(
        PublicKey::from_key_file(&public).unwrap(),
        alice.public_key()
    );

    assert!(matches!(
        PublicKey::from_key_file(&secret),
        Err(KeyFormatError::WrongTag { .. })
    ));
    assert!(matches!(
        SecretKey::from_key_file(&public),
        Err(KeyFormatError::WrongTag { .. })
    ));
    assert!(matches!(
        SecretKey::from_key_file("wasmos-ed25519-secret-key-v1 abcd\n"),
        Err(KeyFormatError::BadHex { .. })
    ));
    assert_eq!(
        SecretKey::from_key_file(&format!("{secret}{secret}")).unwrap_err(),
        KeyFormatError::MoreThanOneLine
    );
    // The identity point: of small order, it would accept forged signatures.
    let weak = format!("{PUBLIC_KEY_FILE_TAG} 01{}\n", "00".repeat(31));
    assert_eq!(
        PublicKey::from_key_file(&weak),
        Err(KeyFormatError::NotAPublicKey)
    );
}

#[test]
fn key_pairs_are_written_private_once_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("release");
    let alice = key(3);
    let (secret, public) = write_key_pair(&base, &alice).unwrap();
    assert_eq!(
        (secret.clone(), public.clone()),
        files::key_pair_paths(&base)
    );
    let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(mode(&public), 0o644);
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .trim_end()
            .ends_with(" release")
    );
    assert_eq!(
        read_secret_key(&secret).unwrap().public_key(),
        alice.public_key()
    );
    assert_eq!(read_public_key(&public).unwrap(), alice.public_key());
    let trusted = TrustedKeys::read(std::slice::from_ref(&public)).unwrap();
    assert_eq!(trusted.keys(), [alice.public_key()]);

    let again = write_key_pair(&base, &key(4)).unwrap_err();
    assert!(matches!(again, KeyFileError::Exists { .. }), "{again}");
    assert_eq!(read_public_key(&public).unwrap(), alice.public_key());

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = read_secret_key(&secret).unwrap_err();
    assert!(
        matches!(open, KeyFileError::NotPrivate { mode: 0o644, .. }),
        "{open}"
    );
    // A public key given as the secret one is named for what it is, whatever its mode.
    let not_secret = read_secret_key(&public).unwrap_err();
    assert!(
        matches!(not_secret, KeyFileError::Format { .. }),
        "{not_secret}"
    );
}
