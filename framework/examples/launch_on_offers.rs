//! A complete scheduler in one file: upload a WASM module, subscribe, launch `--count`
//! copies of it on the offers that fit, print every status update, and exit when all
//! copies ended (status 0 when all finished, 1 otherwise).
//!
//! ```text
//! wasmos up &        # or: wasmos master + wasmos agent
//! cargo run -p wasmos-framework --example launch_on_offers -- \
//!     --module target/modules/p1_hello.wasm --count 3 --cpus 0.25 --mem 32
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use framework::{FrameworkClient, FrameworkConfig, Net, NetConfig};
use proto::{
    Event, Filters, FrameworkId, ModuleRef, Offer, Resources, TaskId, TaskKind, TaskLimits,
    TaskSpec, TaskState, WasmTask,
};

#[derive(Parser)]
struct Args {
    /// The master's zenoh endpoint.
    #[arg(long, default_value = net::DEFAULT_ENDPOINT)]
    connect: Vec<String>,
    #[arg(long, default_value = proto::keys::DEFAULT_CLUSTER)]
    cluster: String,
    /// The WASM module to run.
    #[arg(long)]
    module: PathBuf,
    /// Arguments passed to the module.
    #[arg(last = true)]
    args: Vec<String>,
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[arg(long, default_value_t = 0.25)]
    cpus: f64,
    /// Memory per task, MiB.
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    #[arg(long, default_value = "launch-on-offers")]
    name: String,
    #[arg(long, default_value = "default")]
    role: String,
    #[arg(long, default_value_t = 1.0)]
    weight: f64,
}

/// Offers this framework cannot use are declined for this long, leaving them to others.
const DECLINE_REFUSE_SECONDS: f64 = 30.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let net =
        Net::open(&NetConfig::member(args.connect.clone()).with_cluster(&args.cluster)).await?;

    let module = upload(&net, &args.module).await?;

    let config = FrameworkConfig::new(&args.name).with_role(&args.role, args.weight);
    let (client, mut events) = FrameworkClient::subscribe(net, config).await?;
    println!("subscribed as {}", client.framework_id());

    let mut pending = tasks(&args, client.framework_id(), &module);
    let mut ended: BTreeSet<TaskId> = BTreeSet::new();
    let mut all_finished = true;

    while let Some(event) = events.recv().await {
        match event {
            Event::Offers { offers } => {
                for offer in offers {
                    use_offer(&client, offer, &mut pending).await?;
                }
            }
            Event::Update { status } => {
                println!(
                    "{} {} {}",
                    status.task_id,
                    status.state.as_str(),
                    status.reason
                );
                if status.state.is_terminal() && ended.insert(status.task_id.clone()) {
                    all_finished &= status.state == TaskState::Finished;
                }
                if ended.len() == args.count as usize {
                    break;
                }
            }
            Event::Error { message } => eprintln!("master: {message}"),
            Event::Subscribed { .. } | Event::Rescind { .. } | Event::Heartbeat => {}
        }
    }
    client.teardown().await?;
    std::process::exit(if all_finished { 0 } else { 1 });
}

/// Puts the module into the master's module store.
async fn upload(net: &Net, path: &Path) -> anyhow::Result<ModuleRef> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let module = net::modules::upload_module(net, &name, &bytes, |p| {
        eprintln!("uploaded {} of {} bytes", p.sent_bytes, p.total_bytes);
    })
    .await?;
    Ok(module)
}

/// The `--count` tasks to launch, each running the module with `args.args`.
fn tasks(args: &Args, framework_id: &FrameworkId, module: &ModuleRef) -> Vec<TaskSpec> {
    let per_task = Resources::new()
        .with_scalar("cpus", args.cpus)
        .with_scalar("mem", args.mem);
    (0..args.count)
        .map(|i| TaskSpec {
            task_id: TaskId::new(format!("{framework_id}-{}-{i}", std::process::id())),
            name: format!("{} #{i}", module.name),
            resources: per_task.clone(),
            kind: TaskKind::Wasm(WasmTask {
                module: module.clone(),
                args: args.args.clone(),
                ..WasmTask::default()
            }),
            limits: TaskLimits::default(),
            disconnect: None,
            replaces: None,
        })
        .collect()
}

/// Launches as many pending tasks as fit in `offer`, or declines it.
async fn use_offer(
    client: &FrameworkClient,
    offer: Offer,
    pending: &mut Vec<TaskSpec>,
) -> anyhow::Result<()> {
    let mut left = offer.resources.clone();
    let mut launch = Vec::new();
    while let Some(task) = pending.last() {
        let Some(rest) = left.checked_sub(&task.resources) else {
            break;
        };
        left = rest;
        launch.extend(pending.pop());
    }
    if launch.is_empty() {
        let filters = Filters {
            refuse_seconds: DECLINE_REFUSE_SECONDS,
        };
        return Ok(client.decline(vec![offer.offer_id], filters).await?);
    }
    println!(
        "launching {} task(s) on {} ({})",
        launch.len(),
        offer.hostname,
        offer.agent_id
    );
    if let Err(e) = client.launch(offer.offer_id, launch.clone()).await {
        eprintln!("launch refused: {e}; will retry on the next offer");
        pending.extend(launch);
    }
    Ok(())
}
