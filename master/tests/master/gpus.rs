//! Agents with free GPUs go to frameworks that declare the GPU capability (Mesos'
//! `GPU_RESOURCES`); others have them only as a last resort, when the operator allows it.

use master::{Master, MasterConfig};
use proto::{Attributes, Capability, FrameworkId, FrameworkInfo, Resources};

use crate::common::*;

fn gpu_box() -> Resources {
    res(4.0, 4096.0).with_scalar("gpus", 1.0)
}

fn gpu_info(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        capabilities: vec![Capability::GpuResources],
        ..info(name, name, 1.0)
    }
}

fn master_with(last_resort: bool) -> Master {
    Master::new(
        MasterConfig {
            offer_timeout_ms: None,
            reclaim: None,
            gpu_agents_last_resort: last_resort,
            ..MasterConfig::default()
        },
        7,
    )
}

/// Hostnames offered to `fw` in `actions`, sorted.
fn hosts_offered(actions: &[master::Action], fw: &FrameworkId) -> Vec<String> {
    let mut hosts: Vec<String> = offers_to(actions, fw)
        .into_iter()
        .map(|o| o.hostname)
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn a_framework_without_the_gpu_capability_is_never_offered_a_gpu_box_by_default() {
    let mut m = master_with(false);
    let cpu = subscribe(&mut m, 0, info("cpu", "cpu", 1.0));
    join(&mut m, 0, advert("gpu-box", gpu_box(), Attributes::new()));
    join(&mut m, 0, advert("pi", res(4.0, 1024.0), Attributes::new()));
    let actions = step(&mut m, 10);
    assert_eq!(hosts_offered(&actions, &cpu), ["pi"]);
    // Even with nothing else free and nobody else wanting it.
    let later = step(&mut m, 60_000);
    assert!(hosts_offered(&later, &cpu).is_empty(), "{later:?}");
    // Its share counts no GPU (a cluster's only GPU would be a share of 1): it holds
    // the pi, half the cpus.
    let row = m
        .frameworks_view()
        .into_iter()
        .find(|r| r.framework_id == cpu);
    let share = row.map(|r| r.dominant_share).unwrap_or_default();
    assert!((share - 0.5).abs() < 1e-9, "share {share}");
}

#[test]
fn a_gpu_framework_gets_the_gpu_box_and_others_the_rest() {
    let mut m = master_with(false);
    let cpu = subscribe(&mut m, 0, info("cpu", "cpu", 1.0));
    let vision = subscribe(&mut m, 0, gpu_info("vision"));
    join(&mut m, 0, advert("gpu-box", gpu_box(), Attributes::new()));
    join(
        &mut m,
        0,
        advert("pi-1", res(2.0, 1024.0), Attributes::new()),
    );
    join(
        &mut m,
        0,
        advert("pi-2", res(2.0, 1024.0), Attributes::new()),
    );
    let actions = step(&mut m, 10);
    assert!(hosts_offered(&actions, &vision).contains(&"gpu-box".to_owned()));
    assert!(!hosts_offered(&actions, &cpu).contains(&"gpu-box".to_owned()));
    assert!(!hosts_offered(&actions, &cpu).is_empty());
}

#[test]
fn with_last_resort_a_gpu_box_no_gpu_framework_takes_goes_to_the_others() {
    let mut m = master_with(true);
    let cpu = subscribe(&mut m, 0, info("cpu", "cpu", 1.0));
    join(&mut m, 0, advert("gpu-box", gpu_box(), Attributes::new()));
    join(&mut m, 0, advert("pi", res(1.0, 512.0), Attributes::new()));
    let actions = step(&mut m, 10);
    assert_eq!(hosts_offered(&actions, &cpu), ["gpu-box", "pi"]);

    // A GPU framework that wants offers is served first.
    let mut m = master_with(true);
    let cpu = subscribe(&mut m, 0, info("cpu", "cpu", 1.0));
    let vision = subscribe(&mut m, 0, gpu_info("vision"));
    join(&mut m, 0, advert("gpu-box", gpu_box(), Attributes::new()));
    let actions = step(&mut m, 10);
    assert_eq!(hosts_offered(&actions, &vision), ["gpu-box"]);
    assert!(hosts_offered(&actions, &cpu).is_empty());
}

#[test]
fn an_agent_whose_gpus_are_in_use_is_offered_to_anyone() {
    let mut m = master_with(false);
    let vision = subscribe(&mut m, 0, gpu_info("vision"));
    join(&mut m, 0, advert("gpu-box", gpu_box(), Attributes::new()));
    let offer = offers_to(&step(&mut m, 10), &vision).remove(0);
    let gpu_task = task("t1", res(1.0, 256.0).with_scalar("gpus", 1.0));
    call(&mut m, 20, &vision, accept(&[&offer], vec![gpu_task])).unwrap();
    drain(&mut m);
    // Its GPU is taken: what is left of the box is an ordinary agent.
    let cpu = subscribe(&mut m, 30, info("cpu", "cpu", 1.0));
    let actions = step(&mut m, 40);
    assert_eq!(hosts_offered(&actions, &cpu), ["gpu-box"]);
}
