//! Placement constraints: the forms accepted and refused, and what each operator means.

use proto::{Attributes, Constraint, ConstraintFault, ConstraintOp};

fn c(key: &str, op: ConstraintOp, value: &str) -> Constraint {
    Constraint::new(key, op, value)
}

#[test]
fn accepted_forms_parse_and_print_canonically() {
    use ConstraintOp::{Eq, Ne};
    for (given, want, canonical) in [
        ("arch=aarch64", c("arch", Eq, "aarch64"), "arch=aarch64"),
        ("arch==aarch64", c("arch", Eq, "aarch64"), "arch=aarch64"),
        ("arch!=x86_64", c("arch", Ne, "x86_64"), "arch!=x86_64"),
        ("has=camera", c("has", Eq, "camera"), "has=camera"),
        (
            "zone.name/x-1=eu:west_2",
            c("zone.name/x-1", Eq, "eu:west_2"),
            "zone.name/x-1=eu:west_2",
        ),
    ] {
        let parsed = Constraint::parse(given).unwrap_or_else(|e| panic!("{given}: {e}"));
        assert_eq!(parsed, want, "{given}");
        assert_eq!(parsed.to_string(), canonical);
        assert_eq!(Constraint::parse(canonical), Ok(parsed));
    }
}

#[test]
fn refused_forms_name_the_constraint_the_fault_and_the_accepted_forms() {
    use ConstraintFault::*;
    for (given, fault) in [
        ("", Empty),
        ("arch", NoOperator),
        ("arch<5", Operator("<".into())),
        ("arch>5", Operator(">".into())),
        ("arch>=5", Operator(">=".into())),
        ("arch=~arm.*", Operator("=~".into())),
        ("arch!aarch64", Operator("!".into())),
        ("arch===aarch64", Operator("===".into())),
        ("arch = aarch64", Operator(" = ".into())),
        (" arch=aarch64", Operator(" ".into())),
        ("arch=aarch64 ", ValueChar(' ')),
        ("arch=a b", ValueChar(' ')),
        ("arch=a=b", ValueChar('=')),
        ("arch=aarch64,has=camera", ValueChar(',')),
        ("ärch=x", Operator("ä".into())),
        ("arch=ä", Operator("=ä".into())),
        ("arch=aä", ValueChar('ä')),
        ("=aarch64", EmptyKey),
        ("!=aarch64", EmptyKey),
        ("arch=", EmptyValue),
        ("arch!=", EmptyValue),
    ] {
        let e = Constraint::parse(given).expect_err(given);
        assert_eq!(e.given, given);
        assert_eq!(e.fault, fault, "{given}");
        let message = e.to_string();
        assert!(message.contains(&format!("{given:?}")), "{message}");
        for form in ["key=value", "key==value", "key!=value", "commas"] {
            assert!(message.contains(form), "{message}");
        }
    }
}

#[test]
fn lists_are_comma_separated_and_refused_whole() {
    assert_eq!(
        Constraint::parse_list("arch=aarch64,has=camera,os!=windows"),
        Ok(vec![
            c("arch", ConstraintOp::Eq, "aarch64"),
            c("has", ConstraintOp::Eq, "camera"),
            c("os", ConstraintOp::Ne, "windows"),
        ])
    );
    assert_eq!(
        Constraint::parse_list("arch!=x86_64"),
        Ok(vec![c("arch", ConstraintOp::Ne, "x86_64")])
    );
    for (given, fault) in [
        ("", ConstraintFault::Empty),
        ("arch=aarch64,", ConstraintFault::EmptyItem),
        (",arch=aarch64", ConstraintFault::EmptyItem),
        ("arch=aarch64,,has=camera", ConstraintFault::EmptyItem),
        (
            "arch=aarch64, has=camera",
            ConstraintFault::Operator(" ".into()),
        ),
        ("arch=aarch64,has<3", ConstraintFault::Operator("<".into())),
    ] {
        let e = Constraint::parse_list(given).expect_err(given);
        assert_eq!((e.given.as_str(), e.fault), (given, fault));
    }
}

#[test]
fn operators_compare_with_every_value_of_the_attribute() {
    let camera_gpu = Attributes::new()
        .with("arch", "aarch64")
        .with("has", "camera")
        .with("has", "gpu");
    let holds = |s: &str, a: &Attributes| a.satisfies(&Constraint::parse_list(s).unwrap());
    assert!(holds("arch=aarch64", &camera_gpu));
    assert!(holds("arch==aarch64", &camera_gpu));
    assert!(!holds("arch=x86_64", &camera_gpu));
    assert!(holds("arch!=x86_64", &camera_gpu));
    assert!(!holds("arch!=aarch64", &camera_gpu));
    // Set membership: either value of `has` satisfies `=`, and `!=` fails on either.
    assert!(holds("has=camera,has=gpu", &camera_gpu));
    assert!(!holds("has!=gpu", &camera_gpu));
    assert!(holds("has!=lidar", &camera_gpu));
    // A missing key fails `=` and satisfies `!=`.
    assert!(!holds("os=linux", &camera_gpu));
    assert!(holds("os!=linux", &camera_gpu));
    // All of a list must hold.
    assert!(!holds("arch=aarch64,has=lidar", &camera_gpu));
    assert!(holds("arch=aarch64,has!=lidar", &camera_gpu));
    assert!(camera_gpu.satisfies(&[]));
    assert!(Attributes::new().satisfies(&Constraint::parse_list("arch!=x86_64").unwrap()));
}

#[test]
fn json_without_an_operator_reads_as_equality_and_operators_round_trip() {
    let old: Constraint = serde_json::from_str(r#"{"key": "arch", "value": "aarch64"}"#).unwrap();
    assert_eq!(old, c("arch", ConstraintOp::Eq, "aarch64"));
    let ne = c("arch", ConstraintOp::Ne, "x86_64");
    let json = serde_json::to_value(&ne).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"key": "arch", "op": "!=", "value": "x86_64"})
    );
    assert_eq!(serde_json::from_value::<Constraint>(json).unwrap(), ne);
    let bytes = proto::encode(&ne).unwrap();
    assert_eq!(proto::decode::<Constraint>(&bytes), Ok(ne));
}

#[test]
fn attributes_keep_the_wire_and_json_forms_of_a_map_of_sets() {
    use std::collections::{BTreeMap, BTreeSet};
    let a = Attributes::new()
        .with("has", "gpu")
        .with("arch", "aarch64")
        .with("has", "camera")
        .with("has", "gpu");
    assert_eq!(a.values("has"), ["camera", "gpu"], "sorted, distinct");
    assert_eq!(a.get("arch"), Some("aarch64"));
    assert!(a.has("has", "camera") && !a.has("has", "lidar") && !a.has("zone", "x"));

    let as_map: BTreeMap<String, BTreeSet<String>> = BTreeMap::from([
        ("arch".to_owned(), BTreeSet::from(["aarch64".to_owned()])),
        (
            "has".to_owned(),
            BTreeSet::from(["camera".to_owned(), "gpu".to_owned()]),
        ),
    ]);
    let wire = postcard::to_allocvec(&a).unwrap();
    assert_eq!(wire, postcard::to_allocvec(&as_map).unwrap());
    assert_eq!(postcard::from_bytes::<Attributes>(&wire).unwrap(), a);

    let json = serde_json::to_string(&a).unwrap();
    assert_eq!(json, r#"{"arch":"aarch64","has":["camera","gpu"]}"#);
    assert_eq!(serde_json::from_str::<Attributes>(&json).unwrap(), a);
    let unsorted: Attributes = serde_json::from_str(r#"{"has":["gpu","camera","gpu"]}"#).unwrap();
    assert_eq!(unsorted.values("has"), ["camera", "gpu"]);
}
