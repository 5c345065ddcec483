//! The decoder rejects every malformed frame with an error and never panics.

#![allow(clippy::too_many_lines)]

use proptest::prelude::*;
use proto::*;

fn sample_frames() -> Vec<Vec<u8>> {
    let status = TaskStatus {
        task_id: "t1".into(),
        framework_id: "fw".into(),
        agent_id: "a1".into(),
        state: TaskState::Running,
        exit_code: None,
        reason: String::new(),
        uuid: StatusUuid(7),
        timestamp_ms: 1,
    };
    let advert = AgentAdvert {
        agent_id: "a1".into(),
        hostname: "h".into(),
        attributes: Attributes::new()
            .with("arch", "aarch64")
            .with("has", "camera"),
        total: Resources::new()
            .with_scalar("cpus", 4.0)
            .with_range("ports", 31000, 32000),
        reserved: Resources::new(),
        seq: 3,
        incarnation: 9,
        tasks: vec![AdvertTask {
            status: status.clone(),
            name: "camera-feed".into(),
            resources: Resources::new().with_scalar("cpus", 0.5),
        }],
        version: "0.1.0".into(),
        last_census: None,
    };
    let call = FrameworkCall {
        framework_id: Some("fw".into()),
        call: Call::Decline {
            offer_ids: vec!["o-1".into()],
            filters: Filters::default(),
        },
    };
    vec![
        encode(&advert).unwrap(),
        encode(&status).unwrap(),
        encode(&call).unwrap(),
        encode(&Event::Update { status }).unwrap(),
    ]
}

/// Decoding a frame as every message type must return, not panic.
fn decode_all(frame: &[u8]) {
    let _ = decode::<AgentAdvert>(frame);
    let _ = decode::<TaskStatus>(frame);
    let _ = decode::<FrameworkCall>(frame);
    let _ = decode::<Event>(frame);
    let _ = decode::<AgentCommand>(frame);
    let _ = decode::<CallReply>(frame);
    let _ = decode::<ModuleChunk>(frame);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        // Without the version byte a frame is never valid.
        if bytes.first() != Some(&PROTOCOL_VERSION) {
            prop_assert!(decode::<AgentAdvert>(&bytes).is_err());
            prop_assert!(decode::<FrameworkCall>(&bytes).is_err());
        }
    }

    #[test]
    fn mutated_frames_never_panic(which in 0usize..4, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut frame = sample_frames()[which].clone();
        for (at, byte) in flips {
            let i = at % frame.len();
            frame[i] ^= byte | 1;
        }
        decode_all(&frame);
        let cut = cut % frame.len();
        decode_all(&frame[..cut]);
    }
}

#[test]
fn valid_frames_round_trip() {
    for frame in sample_frames() {
        decode_all(&frame);
    }
    let frame = &sample_frames()[0];
    let advert: AgentAdvert = decode(frame).unwrap();
    assert_eq!(&encode(&advert).unwrap(), frame);
}

#[test]
fn each_rejection_has_its_reason() {
    let frame = sample_frames().remove(0);
    assert_eq!(decode::<AgentAdvert>(&[]), Err(DecodeError::Empty));
    let mut wrong = frame.clone();
    wrong[0] = 99;
    assert_eq!(
        decode::<AgentAdvert>(&wrong),
        Err(DecodeError::Version {
            found: 99,
            expected: PROTOCOL_VERSION
        })
    );
    let mut long = frame.clone();
    long.push(0);
    assert_eq!(
        decode::<AgentAdvert>(&long),
        Err(DecodeError::TrailingBytes(1))
    );
    assert!(matches!(
        decode::<AgentAdvert>(&frame[..frame.len() / 2]),
        Err(DecodeError::Malformed(_))
    ));
    let huge = vec![PROTOCOL_VERSION; codec::FRAME_BYTES_MAX + 1];
    assert!(matches!(
        decode::<AgentAdvert>(&huge),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn keys_follow_the_layout() {
    let keys = Keys::new("default").unwrap();
    assert_eq!(keys.agent_advert("a1"), "wasmos/default/agents/a1/advert");
    assert_eq!(keys.all_agent_alive(), "wasmos/default/agents/*/alive");
    assert_eq!(keys.master_calls("p"), "wasmos/default/master/calls/p");
    assert_eq!(
        keys.framework_events(&FrameworkId::owned_by("p", "fw")),
        "wasmos/default/frameworks/p/p.fw/events"
    );
    assert_eq!(
        keys.framework_events(&FrameworkId::from("fw")),
        "wasmos/default/frameworks/anonymous/fw/events"
    );
    assert_eq!(keys.id_in("wasmos/default/agents/a1/status"), Some("a1"));
    let owned = FrameworkId::owned_by("p", "fw");
    assert_eq!(keys.id_in(&keys.framework_alive(&owned)), Some("p.fw"));
    assert_eq!(keys.principal_in(&keys.framework_alive(&owned)), Some("p"));
    assert_eq!(keys.principal_in(&keys.master_admin("ops")), Some("ops"));
    assert_eq!(keys.principal_in(&keys.agent_cmd("a1")), None);
    assert!(Keys::new("a/b").is_err());
    assert!(keys::valid_chunk("agent id", "x*").is_err());
}
