//! The transport over real zenoh sessions on loopback: a master (router) on a free port
//! and peers connected to it, scouting off, one cluster per test so tests run in parallel.

#![allow(clippy::too_many_lines)]

use std::sync::Arc;
use std::time::Duration;

use net::modules::{
    FetchError, ModuleCache, ModuleServer, ModuleStore, UploadProgress, module_hash, upload_module,
};
use net::{Liveness, Net, NetConfig, QueryError};
use proto::admin::UploadReply;
use proto::{
    AgentAdvert, AgentId, Attributes, CallReply, FrameworkCall, FrameworkId,
    MODULE_CHUNK_BYTES_MAX, ModuleChunk, ModuleHash, ModuleRef, Resources,
};

/// Bound on every wait, so that a broken test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

async fn master() -> Net {
    Net::open(&NetConfig::loopback_ephemeral()).await.unwrap()
}

async fn peer_of(master: &Net) -> Net {
    Net::open(&NetConfig::member(master.endpoints().await))
        .await
        .unwrap()
}

fn advert(agent: &str, seq: u64) -> AgentAdvert {
    AgentAdvert {
        agent_id: AgentId::new(agent),
        hostname: format!("{agent}.local"),
        attributes: Attributes::new()
            .with("arch", "aarch64")
            .with("has", "camera"),
        total: Resources::new()
            .with_scalar("cpus", 4.0)
            .with_scalar("mem", 2048.0),
        reserved: Resources::new().with_scalar("mem", 256.0),
        seq,
        incarnation: 7,
        tasks: Vec::new(),
        version: "test".to_owned(),
        last_census: None,
    }
}

/// A WebAssembly binary of exactly `len` bytes (at least 16) that does not compress to a
/// pattern, from a fixed seed: the header, then one custom section of noise, framed as
/// the store checks (`check_wasm`).
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    const HEADER: &[u8; 8] = b"\0asm\x01\0\0\0";
    const NAME: &[u8] = b"\x01x"; // the section's name: length 1, "x"
    let leb = |mut n: usize| {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    };
    // The section's size takes as many LEB128 bytes as it says.
    let (size, size_bytes) = (1..=5)
        .map(|width| (len - HEADER.len() - 1 - width, width))
        .find(|&(size, width)| leb(size).len() == width)
        .expect("a size that fits its own encoding");
    let mut state = seed | 1;
    let noise = (0..size - NAME.len()).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    });
    let mut bytes = HEADER.to_vec();
    bytes.push(0); // a custom section
    bytes.extend(leb(size));
    bytes.extend(NAME);
    bytes.extend(noise);
    assert_eq!((bytes.len(), size_bytes), (len, leb(size).len()));
    bytes
}

/// Every agent's adverts, as the master hears them.
async fn adverts_of(master: &Net) -> net::Subscription<AgentAdvert> {
    master
        .subscribe::<AgentAdvert>(&master.keys().all_agent_adverts())
        .await
        .unwrap()
}

/// Puts `advert(agent, 0)` until the subscription sees one: afterwards the route from
/// `publisher` to `subscription` exists and later puts arrive in order.
async fn sync_route(publisher: &Net, subscription: &mut net::Subscription<AgentAdvert>, key: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            publisher.put(key, &advert("sync", 0)).await.unwrap();
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(100), subscription.recv()).await
            {
                return;
            }
        }
    })
    .await
    .expect("the subscription never saw a put");
    // Drain the duplicates of the sync message still on the way.
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(200), subscription.recv()).await
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_report_the_port_given_for_port_zero() {
    let master = master().await;
    let endpoints = master.endpoints().await;
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    let port = endpoints[0]
        .strip_prefix("tcp/127.0.0.1:")
        .expect("a loopback tcp endpoint");
    assert_ne!(port.parse::<u16>().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zenoh_configuration_file_is_used_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zenoh.json5");
    let json5 = r#"{
        // zenoh's own format, comments and all
        mode: "peer",
        listen: { endpoints: ["tcp/127.0.0.1:0"] },
        scouting: { multicast: { enabled: false }, gossip: { enabled: false } },
    }"#;
    std::fs::write(&file, json5).unwrap();
    // The file gives the endpoints; the role given in code still applies.
    let mut config = NetConfig::loopback_ephemeral().with_zenoh_config_file(Some(file.clone()));
    config.listen.clear();
    assert_eq!(
        config.to_zenoh().unwrap().get_json("mode").unwrap(),
        "\"router\""
    );
    let master = Net::open(&config).await.unwrap();
    let endpoints = master.endpoints().await;
    assert!(
        endpoints
            .iter()
            .all(|e| e.starts_with("tcp/127.0.0.1:") && !e.ends_with(":0")),
        "{endpoints:?}"
    );
    let member = Net::open(&NetConfig::member(endpoints)).await.unwrap();
    member.close().await.unwrap();

    std::fs::write(&file, "{ mode: ").unwrap();
    let error = Net::open(&config)
        .await
        .err()
        .expect("a broken file must not open");
    assert!(error.to_string().contains("zenoh.json5"), "{error}");

    // Regression: zenoh reads the file whole; `/dev/zero` took 23 GB before the kernel
    // killed the process.
    let endless = config
        .clone()
        .with_zenoh_config_file(Some("/dev/zero".into()));
    let error = endless
        .to_zenoh()
        .expect_err("a device is no configuration");
    assert!(error.to_string().contains("not a regular file"), "{error}");
    let huge = dir.path().join("huge.json5");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(net::ZENOH_CONFIG_BYTES_MAX + 1).unwrap();
    let error = (config.with_zenoh_config_file(Some(huge)))
        .to_zenoh()
        .expect_err("too large");
    assert!(error.to_string().contains("over the limit"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fails_to_open_when_no_master_listens() {
    // A port that was free a moment ago and that nobody listens on now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = NetConfig::tool(vec![format!("tcp/127.0.0.1:{port}")]);
    config.connect_timeout_ms = Some(300);
    let error = Net::open(&config)
        .await
        .err()
        .expect("no master: opening must fail");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_put_query_and_liveliness_round_trip() {
    let master = master().await;
    let agent = peer_of(&master).await;
    let keys = master.keys().clone();

    let mut adverts = adverts_of(&master).await;
    sync_route(&agent, &mut adverts, &keys.agent_advert("a1")).await;
    let sent = advert("a1", 42);
    agent.put(&keys.agent_advert("a1"), &sent).await.unwrap();
    let received = tokio::time::timeout(WAIT, adverts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.key, "wasmos/default/agents/a1/advert");
    assert_eq!(received.message, sent);

    let mut calls = master
        .serve::<FrameworkCall>(&keys.master_calls(proto::principal::ANONYMOUS))
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let request = calls.recv().await.unwrap();
        let framework_id = request.message.framework_id.clone().unwrap();
        request
            .reply(&CallReply::Subscribed {
                framework_id,
                heartbeat_interval_ms: 1500,
            })
            .await
            .unwrap();
    });
    let call = FrameworkCall {
        framework_id: Some(FrameworkId::new("fw-1")),
        call: proto::Call::Revive,
    };
    let reply: CallReply = agent
        .query(
            &keys.master_calls(proto::principal::ANONYMOUS),
            &call,
            5_000,
        )
        .await
        .unwrap();
    assert_eq!(
        reply,
        CallReply::Subscribed {
            framework_id: FrameworkId::new("fw-1"),
            heartbeat_interval_ms: 1500
        }
    );
    server.await.unwrap();

    let mut alive = master.watch_alive(&keys.all_agent_alive()).await.unwrap();
    let token = agent.declare_alive(&keys.agent_alive("a1")).await.unwrap();
    let seen = tokio::time::timeout(WAIT, alive.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen,
        Liveness::Alive {
            key: keys.agent_alive("a1")
        }
    );
    drop(token);
    let seen = tokio::time::timeout(WAIT, alive.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seen,
        Liveness::Gone {
            key: keys.agent_alive("a1")
        }
    );

    // A token whose session dies without withdrawing it is seen gone too.
    let _token = agent.declare_alive(&keys.agent_alive("a2")).await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, alive.recv())
            .await
            .unwrap()
            .unwrap(),
        Liveness::Alive {
            key: keys.agent_alive("a2")
        }
    );
    agent.close().await.unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, alive.recv())
            .await
            .unwrap()
            .unwrap(),
        Liveness::Gone {
            key: keys.agent_alive("a2")
        }
    );
    assert_eq!(master.decode_errors().total(), 0);
}

/// A master restarted in a fleet of more tokens than a handler's queue holds (zenoh's
/// default is 256) used to hang in start-up: the tokens alive were pushed into the queue
/// while the watch was being declared, before anyone could read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_more_tokens_than_a_queue_holds_returns_them_all() {
    const TOKENS: usize = 1_000;
    let master = master().await;
    let agents = peer_of(&master).await;
    let keys = master.keys().clone();
    let mut tokens = Vec::with_capacity(TOKENS);
    for i in 0..TOKENS {
        let key = keys.agent_alive(&format!("a{i}"));
        tokens.push(agents.declare_alive(&key).await.unwrap());
    }
    // The history is delivered as the routes settle: wait until it is all there.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < TOKENS {
        let mut alive = tokio::time::timeout(WAIT, master.watch_alive(&keys.all_agent_alive()))
            .await
            .expect("declaring the watch returns")
            .unwrap();
        seen.clear();
        while let Ok(Some(change)) =
            tokio::time::timeout(Duration::from_millis(500), alive.recv()).await
        {
            assert!(matches!(change, Liveness::Alive { .. }), "{change:?}");
            seen.insert(change.key().to_owned());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {TOKENS} tokens seen",
            seen.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_counted_and_dropped_while_good_messages_flow() {
    let master = master().await;
    let agent = peer_of(&master).await;
    let keys = master.keys().clone();
    let key = keys.agent_advert("a1");

    let mut adverts = adverts_of(&master).await;
    sync_route(&agent, &mut adverts, &key).await;
    let garbage: [Vec<u8>; 5] = [
        vec![],                        // empty
        vec![0xff, 1, 2, 3],           // another protocol version
        vec![proto::PROTOCOL_VERSION], // version byte, no message
        b"\x01not postcard at all".to_vec(),
        pseudo_random_bytes(4096, 9),
    ];
    for (seq, junk) in (1..).zip(&garbage) {
        agent.put_raw(&key, junk.clone()).await.unwrap();
        agent.put(&key, &advert("a1", seq)).await.unwrap();
    }
    for seq in 1..=garbage.len() as u64 {
        let received = tokio::time::timeout(WAIT, adverts.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            received.message.seq, seq,
            "good adverts arrive in order, none lost"
        );
    }
    assert_eq!(master.decode_errors().count(&key), garbage.len() as u64);
    assert_eq!(master.decode_errors().total(), garbage.len() as u64);

    // A query that does not decode is answered with an error and counted; the queryable
    // goes on serving good ones.
    let mut calls = master
        .serve::<FrameworkCall>(&keys.master_calls(proto::principal::ANONYMOUS))
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let request = calls.recv().await.unwrap();
        request.reply(&CallReply::Ok).await.unwrap();
    });
    let error = agent
        .query_raw(
            &keys.master_calls(proto::principal::ANONYMOUS),
            Some(b"\x01\xff\xff\xff".to_vec()),
            5_000,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, QueryError::Remote { message, .. } if message.contains("does not decode")),
        "{error}"
    );
    assert!(
        error.request_not_understood() && !error.no_answer(),
        "{error}"
    );
    let call = FrameworkCall {
        framework_id: None,
        call: proto::Call::Teardown,
    };
    let reply: CallReply = agent
        .query(
            &keys.master_calls(proto::principal::ANONYMOUS),
            &call,
            5_000,
        )
        .await
        .unwrap();
    assert_eq!(reply, CallReply::Ok);
    server.await.unwrap();
    assert_eq!(
        master
            .decode_errors()
            .count(&keys.master_calls(proto::principal::ANONYMOUS)),
        1
    );
}

/// Puts an advert of `agent_id` and waits until `adverts` hears it; one at a time, since
/// zenoh's congestion control may drop puts of a burst.
async fn put_and_hear(
    agent: &Net,
    agent_id: &str,
    seq: u64,
    adverts: &mut net::Subscription<AgentAdvert>,
) {
    let key = agent.keys().agent_advert(agent_id);
    agent.put(&key, &advert(agent_id, seq)).await.unwrap();
    let received = tokio::time::timeout(WAIT, adverts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (received.key.as_str(), received.message.seq),
        (key.as_str(), seq)
    );
}

/// Keys are declared to zenoh on first use, up to a bound (`declared.rs`): messages on
/// keys past the bound, on declared keys, and to a subscriber that comes after the key
/// was declared all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_arrive_on_declared_keys_and_on_keys_past_the_bound() {
    let master = master().await;
    let agent = peer_of(&master).await;
    let keys = master.keys().clone();
    let mut adverts = adverts_of(&master).await.declaring_keys();
    sync_route(&agent, &mut adverts, &keys.agent_advert("sync")).await;
    for i in 0..net::KEYS_DECLARED_MAX + 10 {
        put_and_hear(&agent, &format!("a{i}"), 1, &mut adverts).await;
    }
    // Again, on a key declared on both sides and on one past the bound.
    put_and_hear(&agent, "a0", 2, &mut adverts).await;
    let past = format!("a{}", net::KEYS_DECLARED_MAX + 5);
    put_and_hear(&agent, &past, 2, &mut adverts).await;

    // A subscriber that comes later hears a declared key: its cached route was renewed.
    let listener = peer_of(&master).await;
    let mut late = listener
        .subscribe::<AgentAdvert>(&keys.agent_advert("a0"))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            agent
                .put(&keys.agent_advert("a0"), &advert("a0", 3))
                .await
                .unwrap();
            if let Ok(Some(received)) =
                tokio::time::timeout(Duration::from_millis(100), late.recv()).await
            {
                assert_eq!(received.message.seq, 3);
                return;
            }
        }
    })
    .await
    .expect("the later subscriber never heard the declared key");
}

/// Regression: two puts on a key's first use, at once, each declared the key; zenoh gave
/// the second the key's id before the first had sent the declaration, so the second put
/// could reach the router first, which dropped it ("Route data with unknown scope").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_at_once_on_a_new_key_all_arrive() {
    let master = master().await;
    let agent = Arc::new(peer_of(&master).await);
    let keys = master.keys().clone();
    let mut adverts = adverts_of(&master).await;
    sync_route(&agent, &mut adverts, &keys.agent_advert("sync")).await;
    const AT_ONCE: u64 = 8;
    for i in 0..1000 {
        let key = keys.agent_advert(&format!("b{i}"));
        let puts: Vec<_> = (0..AT_ONCE)
            .map(|seq| {
                let (agent, key) = (agent.clone(), key.clone());
                tokio::spawn(async move { agent.put(&key, &advert("b", seq)).await })
            })
            .collect();
        for put in puts {
            put.await.unwrap().unwrap();
        }
        let mut heard = Vec::new();
        while heard.len() < AT_ONCE as usize {
            match tokio::time::timeout(WAIT, adverts.recv()).await {
                Ok(Some(received)) if received.key == key => heard.push(received.message.seq),
                Ok(Some(_)) => {}
                _ => panic!("key {i}: heard only {heard:?} of {AT_ONCE} puts"),
            }
        }
        heard.sort_unstable();
        assert_eq!(heard, (0..AT_ONCE).collect::<Vec<_>>(), "key {i}");
    }
}

struct Store {
    _dir: tempfile::TempDir,
    store: Arc<ModuleStore>,
    server: ModuleServer,
}

async fn serve_store(master: &Net) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ModuleStore::open(dir.path().join("modules")).unwrap());
    let server = ModuleServer::start(master, store.clone(), std::sync::Arc::new(|_: &str| Ok(())))
        .await
        .unwrap();
    Store {
        _dir: dir,
        store,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_module_is_uploaded_and_fetched_in_chunks_then_cached() {
    let master = master().await;
    let store = serve_store(&master).await;
    let client = peer_of(&master).await;
    let agent = peer_of(&master).await;
    let module = pseudo_random_bytes(3 * MODULE_CHUNK_BYTES_MAX + 12_345, 1);

    let mut progress = Vec::new();
    let uploaded = upload_module(&client, "big.wasm", &module, |p| progress.push(p))
        .await
        .unwrap();
    assert_eq!(uploaded.sha256, module_hash(&module));
    assert_eq!(uploaded.size_bytes, module.len() as u64);
    let total_bytes = module.len() as u64;
    let sent: Vec<u64> = progress.iter().map(|p| p.sent_bytes).collect();
    let chunk = MODULE_CHUNK_BYTES_MAX as u64;
    assert_eq!(
        sent,
        [chunk, 2 * chunk, 3 * chunk, total_bytes],
        "one progress report per chunk"
    );
    assert!(progress.iter().all(|p| p.total_bytes == total_bytes));
    assert!(store.store.contains(&uploaded.sha256));

    // Uploading it again sends chunk 0 only: the store has it.
    let mut again = Vec::new();
    upload_module(&client, "big.wasm", &module, |p| again.push(p))
        .await
        .unwrap();
    assert_eq!(
        again,
        [UploadProgress {
            sent_bytes: total_bytes,
            total_bytes
        }]
    );

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::open(cache_dir.path()).unwrap();
    let fetched = cache.get(&agent, &uploaded).await.unwrap();
    assert!(!fetched.from_cache);
    assert_eq!(fetched.size_bytes, total_bytes);
    assert_eq!(std::fs::read(&fetched.path).unwrap(), module);

    // With the store gone, the cache still answers: nothing is fetched again.
    drop(store.server);
    let cached = cache.get(&agent, &uploaded).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.path, fetched.path);
    assert_eq!(
        std::fs::read_dir(cache_dir.path()).unwrap().count(),
        1,
        "no partial files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_bytes_do_not_match_its_hash_is_refused() {
    let master = master().await;
    let store = serve_store(&master).await;
    let agent = peer_of(&master).await;

    // The store's copy of a module is replaced on disk by other bytes.
    let expected = module_hash(b"the real module");
    let damaged = pseudo_random_bytes(MODULE_CHUNK_BYTES_MAX + 10, 2);
    std::fs::write(store.store.path_of(&expected).unwrap(), &damaged).unwrap();
    let module = ModuleRef {
        sha256: expected.clone(),
        size_bytes: 15,
        name: "real.wasm".to_owned(),
    };

    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::open(cache_dir.path()).unwrap();
    let error = cache.get(&agent, &module).await.unwrap_err();
    let FetchError::HashMismatch {
        expected: named,
        actual,
        ..
    } = &error
    else {
        panic!("{error}")
    };
    assert_eq!(*named, expected);
    assert_eq!(*actual, module_hash(&damaged));
    let message = error.to_string();
    assert!(
        message.contains("real.wasm") && message.contains("upload the module again"),
        "{message}"
    );
    assert_eq!(
        std::fs::read_dir(cache_dir.path()).unwrap().count(),
        0,
        "nothing cached"
    );

    // A module the store does not hold fails at once, saying so.
    let unknown = ModuleRef {
        sha256: module_hash(b"never uploaded"),
        size_bytes: 14,
        name: "x.wasm".to_owned(),
    };
    let error = cache.get(&agent, &unknown).await.unwrap_err();
    assert!(error.to_string().contains("not in the store"), "{error}");
    // So does a hash that is no hash, before anything is asked.
    let bogus = ModuleRef {
        sha256: ModuleHash("../../etc/passwd".to_owned()),
        ..unknown
    };
    assert!(matches!(
        cache.get(&agent, &bogus).await,
        Err(FetchError::BadHash { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_uploads_that_do_not_hash_to_their_name_and_bad_chunk_queries() {
    let master = master().await;
    let store = serve_store(&master).await;
    let client = peer_of(&master).await;
    let keys = master.keys().clone();

    let claimed = module_hash(b"what the client claims");
    let chunk = ModuleChunk {
        sha256: claimed.clone(),
        size_bytes: 9,
        index: 0,
        count: 1,
        bytes: b"\0asm\x01\0\0\0!".to_vec(),
    };
    let reply: UploadReply = client
        .query(
            &keys.master_upload(proto::principal::ANONYMOUS),
            &chunk,
            5_000,
        )
        .await
        .unwrap();
    let UploadReply::Error { message } = reply else {
        panic!("{reply:?}")
    };
    assert!(message.contains("send it again"), "{message}");
    assert!(!store.store.contains(&claimed));

    let chunk = ModuleChunk {
        sha256: claimed,
        size_bytes: 5,
        index: 1,
        count: 1,
        bytes: Vec::new(),
    };
    let reply: UploadReply = client
        .query(
            &keys.master_upload(proto::principal::ANONYMOUS),
            &chunk,
            5_000,
        )
        .await
        .unwrap();
    assert!(matches!(reply, UploadReply::Error { .. }), "{reply:?}");

    // Chunk queries that name no module or no chunk are refused and counted.
    let no_chunk = keys.module(&module_hash(b"x").0);
    let error = client.query_raw(&no_chunk, None, 5_000).await.unwrap_err();
    assert!(
        matches!(&error, QueryError::Remote { message, .. } if message.contains("chunk=N")),
        "{error}"
    );
    let not_a_hash = format!("{}?chunk=0", keys.module("not-a-hash"));
    let error = client
        .query_raw(&not_a_hash, None, 5_000)
        .await
        .unwrap_err();
    assert!(matches!(error, QueryError::Remote { .. }), "{error}");
    assert_eq!(master.decode_errors().count(&no_chunk), 1);
    assert_eq!(master.decode_errors().count(&keys.module("not-a-hash")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_uploads_that_are_not_webassembly() {
    let master = master().await;
    let store = serve_store(&master).await;
    let client = peer_of(&master).await;
    let mut garbage = pseudo_random_bytes(4096, 3);
    garbage[0] = b'x';
    let cases: [(&str, &[u8], &str); 3] = [
        ("empty.wasm", b"", "the module is empty"),
        ("short.wasm", b"\0as", "shorter than the 8-byte header"),
        ("random.wasm", &garbage, "not a WebAssembly binary"),
    ];
    for (name, bytes, says) in cases {
        let error = upload_module(&client, name, bytes, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(says), "{name}: {error}");
        assert!(!store.store.contains(&module_hash(bytes)), "{name} stored");
    }
    // Regression: a binary cut short after its header (a type section announcing five
    // bytes, holding two) was stored and scheduled, and failed on an agent. The client
    // refuses to send it, and the store refuses it from any other client.
    let cut: &[u8] = b"\0asm\x01\0\0\0\x01\x05\x01\x60";
    let error = upload_module(&client, "cut.wasm", cut, |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("not a well-formed WebAssembly binary"),
        "{error}"
    );
    let chunk = ModuleChunk {
        sha256: module_hash(cut),
        size_bytes: cut.len() as u64,
        index: 0,
        count: 1,
        bytes: cut.to_vec(),
    };
    let key = master.keys().master_upload(proto::principal::ANONYMOUS);
    let reply: UploadReply = client.query(&key, &chunk, 5_000).await.unwrap();
    let UploadReply::Error { message } = reply else {
        panic!("{reply:?}")
    };
    assert!(message.contains("not a well-formed"), "{message}");
    assert!(!store.store.contains(&module_hash(cut)));
}
