//! Property tests of resource arithmetic.

#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proto::{Kind, RangeSet, Resources, Scalar};

const KINDS: [&str; 3] = ["cpus", "mem", "gpus"];

fn scalars() -> impl Strategy<Value = BTreeMap<String, Scalar>> {
    proptest::collection::btree_map(
        proptest::sample::select(KINDS.to_vec()).prop_map(str::to_owned),
        (0u64..1_000_000_000).prop_map(Scalar),
        0..3,
    )
}

/// Resources whose ports lie in `[base, base + 999]` and whose devices are named
/// `<tag>N`, so two values built from different `base`/`tag` are disjoint.
fn resources(base: u64, tag: &'static str) -> impl Strategy<Value = Resources> {
    (
        scalars(),
        proptest::collection::vec((0u64..1000, 0u64..50), 0..4),
        proptest::collection::btree_set(0u32..8, 0..4),
    )
        .prop_map(move |(scalars, ports, devices)| {
            let mut r = Resources {
                scalars: scalars
                    .into_iter()
                    .map(|(k, v)| (Kind::from(k), v))
                    .collect(),
                ..Resources::default()
            };
            r.scalars.retain(|_, v| *v != Scalar::ZERO);
            let intervals = ports
                .into_iter()
                .map(|(s, len)| (base + s, base + (s + len).min(999)));
            let ports = RangeSet::from_intervals(intervals).unwrap_or_default();
            if !ports.is_empty() {
                r.ranges.insert("ports".into(), ports);
            }
            if !devices.is_empty() {
                r.sets.insert(
                    "gpu_ids".into(),
                    devices.into_iter().map(|d| format!("{tag}{d}")).collect(),
                );
            }
            r
        })
}

proptest! {
    #[test]
    fn add_then_subtract_is_identity(a in resources(0, "a"), b in resources(10_000, "b")) {
        let sum = a.plus(&b);
        prop_assert_eq!(sum.checked_sub(&b), Some(a.clone()));
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
    }

    #[test]
    fn subtraction_never_goes_negative(a in resources(0, "a"), b in resources(0, "a")) {
        let mut left = a.clone();
        left.subtract_saturating(&b);
        prop_assert!(a.contains(&left));
        for (k, v) in &left.scalars {
            prop_assert!(*v <= a.scalar(k));
        }
        prop_assert_eq!(a.checked_sub(&b).is_some(), a.contains(&b));
    }

    #[test]
    fn contains_is_a_partial_order(a in resources(0, "a"), b in resources(0, "a"), c in resources(0, "a")) {
        prop_assert!(a.contains(&a));
        if a.contains(&b) && b.contains(&a) {
            prop_assert_eq!(&a, &b);
        }
        if a.contains(&b) && b.contains(&c) {
            prop_assert!(a.contains(&c));
        }
    }

    #[test]
    fn dominant_share_is_the_largest_fraction(a in resources(0, "a"), b in resources(10_000, "b")) {
        let total = a.plus(&b).quantities();
        let share = a.dominant_share(&total);
        prop_assert!((0.0..=1.0).contains(&share));
        for (k, q) in a.quantities() {
            prop_assert!(q as f64 / total[&k] as f64 <= share);
        }
    }
}

#[test]
fn range_difference_splits_intervals() {
    let all = RangeSet::from_intervals([(1000, 2000)]).unwrap();
    let hole = RangeSet::from_intervals([(1500, 1500), (1999, 2500)]).unwrap();
    assert_eq!(
        all.difference(&hole).intervals(),
        &[(1000, 1499), (1501, 1998)]
    );
    assert!(RangeSet::from_intervals([(5, 1)]).is_err());
}

#[test]
fn scalars_are_units_in_json_and_millis_on_the_wire() {
    let r = Resources::new()
        .with_scalar("cpus", 0.5)
        .with_scalar("mem", 64.0);
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"scalars":{"cpus":0.5,"mem":64.0},"ranges":{},"sets":{}}"#
    );
    let back: Resources = proto::decode(&proto::encode(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    assert!(serde_json::from_str::<Resources>(r#"{"scalars":{"cpus":-1}}"#).is_err());
}

/// Kinds are shared names, but the wire and JSON forms are those of string-keyed maps.
#[test]
fn kinds_serialize_as_strings_and_well_known_ones_are_shared() {
    let r = Resources::new()
        .with_scalar("cpus", 2.0)
        .with_scalar("tpu", 1.0)
        .with_range("ports", 80, 81);
    #[derive(serde::Serialize)]
    struct AsMaps {
        scalars: BTreeMap<String, u64>,
        ranges: BTreeMap<String, RangeSet>,
        sets: BTreeMap<String, std::collections::BTreeSet<String>>,
    }
    let as_maps = AsMaps {
        scalars: BTreeMap::from([("cpus".to_owned(), 2000), ("tpu".to_owned(), 1000)]),
        ranges: BTreeMap::from([(
            "ports".to_owned(),
            RangeSet::from_intervals([(80, 81)]).unwrap(),
        )]),
        sets: BTreeMap::new(),
    };
    assert_eq!(
        postcard::to_allocvec(&r).unwrap(),
        postcard::to_allocvec(&as_maps).unwrap()
    );
    let back: Resources = proto::decode(&proto::encode(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    let (mine, decoded) = (r.scalars.iter().next(), back.scalars.iter().next());
    let (Some((mine, _)), Some((decoded, _))) = (mine, decoded) else {
        panic!("no scalars");
    };
    assert_eq!(mine, &Kind::from("cpus"));
    assert!(
        std::ptr::eq(mine.as_str(), decoded.as_str()),
        "a well-known kind is one shared string"
    );
}

/// A hostile frame names a map of four billion kinds: refused, not one huge allocation
/// that aborts the process.
#[test]
fn a_huge_declared_kind_count_is_refused() {
    let frame = [0xffu8, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3];
    assert!(postcard::from_bytes::<Resources>(&frame).is_err());
    let size = std::mem::size_of::<Resources>();
    assert_eq!(
        size,
        3 * std::mem::size_of::<usize>(),
        "a pointer per kind map"
    );
}
