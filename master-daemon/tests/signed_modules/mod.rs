//! A master that trusts keys: a module stored before it did (so never checked by the
//! store) is still refused when a hosted framework names it, before it is compiled.

use net::modules::ModuleStore;
use proto::operator::{HostedFramework, HostedReply, HostedRequest, OperatorReply};
use signing::{SecretKey, TrustedKeys};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusting_master_hosts_no_unsigned_module_stored_before_it_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    // An empty core module: the store takes it, and it is not signed.
    let unsigned: &[u8] = b"\0asm\x01\0\0\0";
    let sha256 = ModuleStore::open(&store_dir)
        .unwrap()
        .insert(unsigned)
        .unwrap();

    let alice = SecretKey::from_seed(&[1; signing::SEED_BYTES]);
    let mut config = MasterDaemonConfig::new(NetConfig::loopback_ephemeral(), &store_dir);
    config.trusted = TrustedKeys::new([alice.public_key()]).unwrap();
    let master = MasterDaemon::start(config).await.unwrap();
    let net = Net::open(&NetConfig::member(master.endpoints().to_vec()))
        .await
        .unwrap();
    let add = HostedRequest::Add(HostedFramework {
        name: "old".to_owned(),
        role: "default".to_owned(),
        weight: 1.0,
        module: ModuleRef {
            sha256,
            size_bytes: unsigned.len() as u64,
            name: "old.wasm".to_owned(),
        },
        config: Vec::new(),
    });
    let reply = tools::ask(&net, &OperatorRequest::Hosted(add), 10_000)
        .await
        .unwrap();
    assert_eq!(
        reply,
        OperatorReply::Hosted(HostedReply::Error {
            message: "module old.wasm: refused: the module is unsigned (only modules signed by a \
                      trusted key run here)"
                .to_owned()
        })
    );
    master.shutdown().await;
}
