//! The demo's two frameworks: what each wants to run, and the scheduler that runs it, an
//! ordinary program over `framework::FrameworkClient`.
//!
//! The scheduler launches one task per offer and hands the rest back at once (accept
//! filters of 0 s), as Mesos' fair schedulers do, so that what remains goes back through
//! the master's DRF allocator to whichever framework is furthest below its share.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use framework::{FrameworkClient, FrameworkConfig, Net};
use proto::{
    Capability, DirGrant, Event, Filters, ModuleRef, Offer, Operation, Resources, TaskId, TaskKind,
    TaskLimits, TaskSpec, TaskState, TaskStatus, WasmTask,
};

use super::fleet::{SENSOR_FILE, SENSOR_GUEST_DIR};
use super::{DemoModules, Printer};

/// An offer nothing pending fits is declined for this long; short, because a task that
/// ends on that agent may make it fit again.
const DECLINE_REFUSE_SECONDS: f64 = 1.0;
/// Sensor samples per task (at least, and how many more at most) and the pause between
/// them: 1 to 1.8 s per task, long enough for the frameworks to hold resources at once and
/// for their shares to show.
const SENSOR_SAMPLES_MIN: u32 = 10;
const SENSOR_SAMPLES_SPREAD: u32 = 8;
const SENSOR_INTERVAL_MS: u32 = 100;
/// A task that runs longer than this is stopped by the agent (and the demo fails).
const TASK_TIMEOUT_MS: u64 = 20_000;

/// One task and where it may run.
pub struct DemoTask {
    spec: TaskSpec,
    /// An attribute the agent must have (`arch=aarch64`), checked against the offer.
    needs: Option<(&'static str, &'static str)>,
}

/// A framework of the demo and the tasks it runs.
pub struct FrameworkPlan {
    pub name: String,
    role: String,
    weight: f64,
    /// Smaller offers are not made to it (the smallest of its tasks).
    min_offer: Resources,
    /// It runs GPU work, so it declares the GPU capability: only such frameworks are
    /// offered GPU boxes.
    uses_gpus: bool,
    pub tasks: Vec<DemoTask>,
}

/// How a framework's tasks ended.
pub struct Tally {
    pub name: String,
    pub launched: usize,
    pub finished: usize,
}

/// The demo's frameworks, each also its identity's name on the demo's secure cluster.
pub const FRAMEWORK_NAMES: [&str; 2] = ["telemetry", "vision"];

/// `telemetry` (weight 1) samples sensors and greets from an aarch64 board; `vision`
/// (weight 3) has three times the claim on the fleet, twice the work, and one task that
/// needs the GPU.
pub fn plans(modules: &DemoModules, device_dir: &Path) -> Vec<FrameworkPlan> {
    let sensor = |name: String, i: u32, cpus: f64, mem: f64| DemoTask {
        spec: sensor_task(name, &modules.sensor, device_dir, samples(i), cpus, mem),
        needs: None,
    };
    let mut telemetry = vec![DemoTask {
        spec: wasm_task(
            "telemetry-arm-hello".into(),
            &modules.hello_p1,
            Resources::new()
                .with_scalar("cpus", 0.5)
                .with_scalar("mem", 32.0),
            vec!["from".into(), "telemetry".into()],
        ),
        needs: Some(("arch", "aarch64")),
    }];
    telemetry.extend((0..14).map(|i| sensor(format!("telemetry-sample-{i}"), i, 1.0, 64.0)));
    let mut vision = vec![DemoTask {
        spec: wasm_task(
            "vision-gpu-hello".into(),
            &modules.hello_p2,
            Resources::new()
                .with_scalar("cpus", 1.0)
                .with_scalar("mem", 128.0)
                .with_scalar("gpus", 1.0),
            vec!["from".into(), "vision".into()],
        ),
        needs: Some(("has", "gpu")),
    }];
    vision.extend((0..36).map(|i| sensor(format!("vision-frame-{i}"), i, 1.0, 128.0)));
    vec![
        FrameworkPlan {
            name: FRAMEWORK_NAMES[0].into(),
            role: "telemetry".into(),
            weight: 1.0,
            min_offer: Resources::new()
                .with_scalar("cpus", 0.5)
                .with_scalar("mem", 32.0),
            uses_gpus: false,
            tasks: telemetry,
        },
        FrameworkPlan {
            name: FRAMEWORK_NAMES[1].into(),
            role: "vision".into(),
            weight: 3.0,
            min_offer: Resources::new()
                .with_scalar("cpus", 1.0)
                .with_scalar("mem", 128.0),
            uses_gpus: true,
            tasks: vision,
        },
    ]
}

/// Sensor samples of task `i`: 10 to 18, so that tasks end at different times and each
/// freed slot goes through the allocator on its own.
fn samples(i: u32) -> u32 {
    SENSOR_SAMPLES_MIN + (i * 7) % (SENSOR_SAMPLES_SPREAD + 1)
}

fn sensor_task(
    name: String,
    module: &ModuleRef,
    device_dir: &Path,
    samples: u32,
    cpus: f64,
    mem: f64,
) -> TaskSpec {
    let mut spec = wasm_task(
        name,
        module,
        Resources::new()
            .with_scalar("cpus", cpus)
            .with_scalar("mem", mem),
        vec![
            "--device".into(),
            format!("{SENSOR_GUEST_DIR}/{SENSOR_FILE}"),
            "--samples".into(),
            samples.to_string(),
            "--interval-ms".into(),
            SENSOR_INTERVAL_MS.to_string(),
        ],
    );
    if let TaskKind::Wasm(wasm) = &mut spec.kind {
        wasm.dirs.push(DirGrant {
            host: device_dir.display().to_string(),
            guest: SENSOR_GUEST_DIR.to_owned(),
            read_only: true,
        });
    }
    spec
}

fn wasm_task(
    name: String,
    module: &ModuleRef,
    resources: Resources,
    args: Vec<String>,
) -> TaskSpec {
    TaskSpec {
        task_id: TaskId::new(name.clone()),
        name,
        resources,
        kind: TaskKind::Wasm(WasmTask {
            module: module.clone(),
            args,
            ..WasmTask::default()
        }),
        limits: TaskLimits {
            timeout_ms: Some(TASK_TIMEOUT_MS),
            ..TaskLimits::default()
        },
        disconnect: None,
        replaces: None,
    }
}

/// Subscribes as `plan` says, launches its tasks on the offers that fit, prints what
/// happens, and returns once every task ended.
pub async fn run(net: Net, plan: FrameworkPlan, printer: Printer) -> anyhow::Result<Tally> {
    let mut config = FrameworkConfig::new(&plan.name).with_role(&plan.role, plan.weight);
    config.info.min_offer = plan.min_offer.clone();
    if plan.uses_gpus {
        config.info.capabilities.push(Capability::GpuResources);
    }
    let (client, mut events) = FrameworkClient::subscribe(net, config)
        .await
        .context("subscribing")?;
    printer.line(
        "subscribe",
        format!(
            "{} (weight {}, {} tasks to run) is framework {}",
            plan.name,
            plan.weight,
            plan.tasks.len(),
            client.framework_id()
        ),
    );
    let mut scheduler = Scheduler {
        name: plan.name.clone(),
        launched: plan.tasks.len(),
        pending: plan.tasks,
        placed: BTreeMap::new(),
        ended: BTreeSet::new(),
        finished: 0,
        printer,
    };
    while scheduler.ended.len() < scheduler.launched {
        let Some(event) = events.recv().await else {
            anyhow::bail!("the event stream ended before the tasks did");
        };
        match event {
            Event::Offers { offers } => {
                for offer in offers {
                    scheduler.on_offer(&client, offer).await?;
                }
            }
            Event::Update { status } => scheduler.on_update(&client, status).await,
            Event::Error { message } => scheduler
                .printer
                .line("error", format!("{}: {message}", scheduler.name)),
            Event::Subscribed { .. } | Event::Rescind { .. } | Event::Heartbeat => {}
        }
    }
    client.teardown().await.context("tearing down")?;
    Ok(Tally {
        name: scheduler.name,
        launched: scheduler.launched,
        finished: scheduler.finished,
    })
}

struct Scheduler {
    name: String,
    /// Tasks in the plan; all are launched in the end.
    launched: usize,
    pending: Vec<DemoTask>,
    /// Launched tasks: the agent's hostname and when.
    placed: BTreeMap<TaskId, (String, Instant)>,
    ended: BTreeSet<TaskId>,
    finished: usize,
    printer: Printer,
}

impl Scheduler {
    /// Launches the first pending task that fits `offer`, or declines it.
    async fn on_offer(&mut self, client: &FrameworkClient, offer: Offer) -> anyhow::Result<()> {
        self.printer.line(
            "offer",
            format!("{} ← {}: {}", self.name, offer.hostname, offer.resources),
        );
        let fits = |task: &DemoTask| {
            offer.resources.contains(&task.spec.resources)
                && task
                    .needs
                    .is_none_or(|(key, value)| offer.attributes.has(key, value))
        };
        let Some(index) = self.pending.iter().position(fits) else {
            return self
                .decline(
                    client,
                    offer,
                    "no pending task fits",
                    DECLINE_REFUSE_SECONDS,
                )
                .await;
        };
        self.launch(client, offer, index).await
    }

    /// Launches pending task `index` on `offer`; a refused launch stays pending.
    async fn launch(
        &mut self,
        client: &FrameworkClient,
        offer: Offer,
        index: usize,
    ) -> anyhow::Result<()> {
        let task = self.pending.remove(index);
        let spec = task.spec.clone();
        let needs = task.needs.map_or(String::new(), |(key, value)| {
            format!(" (needs {key}={value})")
        });
        self.printer.line(
            "accept",
            format!(
                "{} → {}: {}{needs}, {}",
                self.name, offer.hostname, spec.task_id, spec.resources
            ),
        );
        let operations = vec![Operation::Launch {
            tasks: vec![spec.clone()],
        }];
        // The rest of the offer goes back to the allocator at once.
        let filters = Filters {
            refuse_seconds: 0.0,
        };
        if let Err(e) = client
            .accept(vec![offer.offer_id], operations, filters)
            .await
        {
            self.printer.line(
                "refused",
                format!("{}: {}: {e}; will retry", self.name, spec.task_id),
            );
            self.pending.insert(index, task);
            return Ok(());
        }
        self.placed.insert(
            spec.task_id.clone(),
            (offer.hostname.clone(), Instant::now()),
        );
        if self.pending.is_empty() {
            self.printer.line(
                "suppress",
                format!("{}: every task launched; no more offers", self.name),
            );
            client.suppress().await?;
        }
        Ok(())
    }

    async fn decline(
        &self,
        client: &FrameworkClient,
        offer: Offer,
        why: &str,
        refuse_seconds: f64,
    ) -> anyhow::Result<()> {
        self.printer.line(
            "decline",
            format!("{} ✗ {}: {why}", self.name, offer.hostname),
        );
        let filters = Filters { refuse_seconds };
        Ok(client.decline(vec![offer.offer_id], filters).await?)
    }

    /// Counts a task's end (once, however often the update comes) and prints it.
    async fn on_update(&mut self, client: &FrameworkClient, status: TaskStatus) {
        if !status.state.is_terminal() || !self.ended.insert(status.task_id.clone()) {
            return;
        }
        let (host, took) = match self.placed.get(&status.task_id) {
            Some((host, at)) => (host.clone(), at.elapsed()),
            None => (status.agent_id.to_string(), Duration::ZERO),
        };
        let head = format!(
            "{}: {} on {host} after {:.2} s",
            self.name,
            status.task_id,
            took.as_secs_f64()
        );
        if status.state == TaskState::Finished {
            self.finished += 1;
            let said = last_output_line(client, &status).await;
            self.printer.line("finished", format!("{head}: {said}"));
        } else {
            self.printer.line(
                status.state.as_str(),
                format!(
                    "{head}: {} (exit code {:?})",
                    status.reason, status.exit_code
                ),
            );
        }
    }
}

/// The last line the task wrote on stdout, through the master (a framework may read its
/// own tasks' output); a note when it cannot be had.
async fn last_output_line(client: &FrameworkClient, status: &TaskStatus) -> String {
    match master_daemon::tools::task_logs(client.net(), &status.task_id).await {
        Ok(output) => String::from_utf8_lossy(&output.stdout.text_since(0))
            .lines()
            .last()
            .unwrap_or("(no output)")
            .to_owned(),
        Err(master_daemon::tools::ToolError::Refused(message)) => {
            format!("(output not available: {message})")
        }
        Err(e) => format!("(output not available: {e})"),
    }
}
