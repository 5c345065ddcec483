use master::sim::run_scenario;

#[test]
fn drf_paper_example() {
    let json = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/scenarios/drf-demo.json")).unwrap();
    let report = run_scenario(&json).unwrap();
    let out = serde_json::to_string(&report).unwrap();
    println!("{out}");
    assert_eq!(out, r#"{"launched":{"fw0":3,"fw1":2},"placements":[{"framework":"fw0","agent":"a1","tasks":3},{"framework":"fw1","agent":"a1","tasks":2}]}"#);
}
