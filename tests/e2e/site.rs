//! `wasmos router`: a site router between the master and a site's devices. The master
//! runs in the root namespace, the router in a namespace of its own (its uplink), and two
//! agents in a third namespace joined only to the router's (the site's LAN): they cannot
//! reach the master but through the router. Checked: tasks run there (modules fetched
//! through the router), a router restart is survived (tasks kept, an update made while
//! it was down delivered), and the loss of an agent behind it is noticed. The router
//! runs from the configuration `--print-config` wrote (`--zenoh-config`), which is what
//! an ordinary `zenohd -c FILE` would read. Plain TCP only, as the chaos test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmos_tests::netns::Netns;

use crate::cluster::json_rows;
use wasmos_tests::{Killed, free_port, module, spawn_master, wasmos, wasmos_bin};

/// A generous bound for a loaded 2-core machine; not a speed claim.
const WAIT: Duration = Duration::from_secs(60);
/// Longer than a router restart plus the agents' reconnection (zenoh retries a lost link
/// after 1, 2, then every 4 s), with room for a loaded machine.
const AGENT_LOST_TIMEOUT_S: &str = "15";

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "not {what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn states(local: &str, ids: &[String]) -> Vec<String> {
    let all = json_rows(&["ps", "--json"], local);
    ids.iter()
        .map(|id| {
            all.iter()
                .find(|r| r["id"] == id.as_str())
                .and_then(|r| r["state"].as_str())
                .unwrap_or("none")
                .to_owned()
        })
        .collect()
}

fn active_agents(local: &str) -> usize {
    json_rows(&["agents", "--json"], local)
        .iter()
        .filter(|a| a["state"] == "active")
        .count()
}

fn run(local: &str, module_name: &str, count: &str, args: &[&str]) -> Vec<String> {
    let out = wasmos()
        .args(["run", "--connect", local])
        .arg(module(module_name))
        .args(["--count", count, "--"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let n: usize = count.parse().unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    lines[lines.len() - n..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// A master listening on every interface (the router reaches it from its namespace).
fn start_master(dir: &Path, port: u16) -> Killed {
    let mut master = wasmos();
    master
        .args(["master", "--listen", &format!("tcp/0.0.0.0:{port}")])
        .args([
            "--agent-lost-timeout",
            AGENT_LOST_TIMEOUT_S,
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--store-dir")
        .arg(dir.join("store"))
        .stderr(Stdio::inherit());
    spawn_master(master, &format!("tcp/0.0.0.0:{port}"))
}

fn router(uplink: &Netns, config: &Path) -> Killed {
    let child = uplink
        .command(&wasmos_bin())
        .arg("router")
        .arg("--zenoh-config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Killed(child)
}

fn agent(lan: &Netns, router: &str, dir: &Path, name: &str) -> Killed {
    let child = lan
        .command(&wasmos_bin())
        .args(["agent", "--connect", router, "--work-dir"])
        .arg(dir.join(name))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Killed(child)
}

#[test]
fn agents_behind_a_site_router_run_tasks_and_survive_its_restart() {
    let Some(uplink) = Netns::create_or_skip("site", 3) else {
        return;
    };
    let lan = Netns::create_behind("site", 4, Some(&uplink)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (master_port, router_port) = (free_port(), free_port());
    let local = format!("tcp/127.0.0.1:{master_port}");
    let _master = start_master(dir.path(), master_port);

    // The router's configuration, as an operator would hand it to zenohd.
    let printed = Command::new(wasmos_bin())
        .args(["router", "--print-config"])
        .args([
            "--connect",
            &format!("tcp/{}:{master_port}", uplink.host_addr),
        ])
        .args(["--listen", &format!("tcp/0.0.0.0:{router_port}")])
        .output()
        .unwrap();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let config = dir.path().join("site.json5");
    std::fs::write(&config, &printed.stdout).unwrap();
    let mut site_router = router(&uplink, &config);

    let via_router = format!("tcp/{}:{router_port}", lan.host_addr);
    let mut agents = vec![
        agent(&lan, &via_router, dir.path(), "a1"),
        agent(&lan, &via_router, dir.path(), "a2"),
    ];
    wait_until("both agents active", || active_agents(&local) == 2);

    // Tasks run behind the router (their module fetched through it).
    let hello = run(&local, "p1_hello", "2", &[]);
    wait_until("hello finished", || {
        states(&local, &hello).iter().all(|s| s == "finished")
    });
    let long = run(&local, "p1_ticks", "2", &["100000", "100"]);
    let short = run(&local, "p1_ticks", "1", &["30", "100"]);
    let mut watched = long.clone();
    watched.extend(short.clone());
    wait_until("running", || {
        states(&local, &watched).iter().all(|s| s == "running")
    });

    // The router restarts; the short task ends meanwhile.
    site_router.kill();
    std::thread::sleep(Duration::from_secs(4));
    let _site_router = router(&uplink, &config);
    wait_until("the short task's end delivered", || {
        states(&local, &short) == ["finished"]
    });
    assert_eq!(
        states(&local, &long),
        ["running", "running"],
        "nothing lost"
    );
    wait_until("both agents active again", || active_agents(&local) == 2);

    // An agent behind the router is lost: the master notices.
    agents.remove(0).kill();
    wait_until("one agent lost", || active_agents(&local) == 1);
    wait_until("its task lost", || {
        states(&local, &long).iter().any(|s| s == "lost")
    });
}
