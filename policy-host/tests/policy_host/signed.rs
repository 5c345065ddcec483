//! `--allocator MODULE.wasm` on a master that trusts keys: refused unless one signed it.

use policy_host::{Limits, allocator_from_spec};
use signing::{SecretKey, TrustedKeys};

use crate::module_bytes;

#[test]
fn an_allocator_module_must_be_signed_where_keys_are_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let unsigned = dir.path().join("drf.wasm");
    let signed = dir.path().join("drf.signed.wasm");
    let alice = SecretKey::from_seed(&[1; signing::SEED_BYTES]);
    std::fs::write(&unsigned, module_bytes("drf")).unwrap();
    std::fs::write(
        &signed,
        signing::sign(&module_bytes("drf"), &alice).unwrap(),
    )
    .unwrap();
    let (unsigned, signed) = (unsigned.to_str().unwrap(), signed.to_str().unwrap());
    let trusted = TrustedKeys::new([alice.public_key()]).unwrap();

    let refused = allocator_from_spec(unsigned, 0, Limits::default(), &trusted)
        .err()
        .expect("an unsigned allocator is refused");
    assert_eq!(
        refused.to_string(),
        format!(
            "allocator module {unsigned} refused: the module is unsigned (only modules signed \
             by a trusted key run here)"
        )
    );
    assert!(allocator_from_spec(signed, 0, Limits::default(), &trusted).is_ok());
    assert!(allocator_from_spec(unsigned, 0, Limits::default(), &TrustedKeys::default()).is_ok());
}
