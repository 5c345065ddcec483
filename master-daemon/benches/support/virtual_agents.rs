//! Virtual agents for the benchmarks, shared by `failover.rs` and `throughput.rs`: real
//! agent daemons (real executors, real journals) in the bench process, sharing one zenoh
//! session and one WASM engine (a session and an epoch thread each would starve 2 cores
//! at 1,000 agents).

use std::path::Path;

use agent::wasm::{ExecutorConfig, WasmExecutor};
use agent_daemon::{AgentDaemon, AgentDaemonConfig, AgentHandle, SharedParts};
use net::{Net, NetConfig};
use proto::{AgentAdvert, AgentId, Attributes, Resources};

/// `count` agents named `virtual-<i>` of `cpus` and `mem_mib` each, connected to
/// `endpoint`, working in `dir`.
pub async fn start(
    endpoint: &str,
    dir: &Path,
    count: usize,
    cpus: f64,
    mem_mib: f64,
) -> Vec<AgentHandle> {
    let shared = SharedParts {
        net: Net::open(&NetConfig::member(vec![endpoint.to_owned()]))
            .await
            .unwrap(),
        wasm: WasmExecutor::new(ExecutorConfig {
            cache_dir: Some(dir.join("code-cache")),
            ..ExecutorConfig::default()
        })
        .unwrap(),
    };
    let mut agents = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("virtual-{i}");
        let advert = AgentAdvert {
            agent_id: AgentId::new(id.as_str()),
            hostname: id.clone(),
            attributes: Attributes::new(),
            total: Resources::new()
                .with_scalar("cpus", cpus)
                .with_scalar("mem", mem_mib),
            reserved: Resources::new(),
            seq: 0,
            incarnation: 1,
            tasks: Vec::new(),
            version: String::new(),
            last_census: None,
        };
        let net = NetConfig::member(vec![endpoint.to_owned()]);
        let mut config = AgentDaemonConfig::new(net, advert, dir.join(&id));
        config.shared = Some(shared.clone());
        agents.push(AgentDaemon::start(config).await.unwrap());
    }
    agents
}
