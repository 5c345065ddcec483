//! `wasmos`: the one command operators, framework authors and tests use.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agent_cmd;
mod args;
mod demo;
mod explain_cmd;
mod files;
mod framework_cmd;
mod identity;
mod job_cmd;
mod leader;
mod listing;
mod logs;
mod master_cmd;
mod module_cmd;
mod router_cmd;
mod run_cmd;
mod secure_cmd;
mod sim;
mod task_run;
mod up;

#[derive(Parser)]
#[command(
    name = "wasmos",
    version,
    about = "WebAssembly-sandboxed two-level scheduler for edge fleets"
)]
struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `master_daemon=debug`.
    /// Logs go to stderr, coloured only on a terminal. Default: what happens (agents
    /// joining and lost, frameworks subscribing, the master coming and going) for
    /// `master`, `agent` and `up`; warnings only for the other commands.
    #[arg(long, global = true, env = "WASMOS_LOG")]
    log: Option<String>,
    /// Logs as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the master core in virtual time on a JSON scenario and print the allocation.
    Sim(sim::SimArgs),
    /// Run one task locally through the agent's executors.
    #[command(subcommand)]
    Task(task_run::TaskCommand),
    /// Signed modules: make a key pair, sign a module, check a signature.
    ///
    /// A master, agent or `task run` given `--trust KEY.pub` (repeatable) refuses every
    /// module that none of its keys signed: unsigned, tampered (changed after signing) or
    /// signed by another key, with a reason saying which, before the module is compiled.
    /// Without `--trust`, nothing is checked and signed modules run like any other.
    #[command(subcommand)]
    Module(module_cmd::ModuleCommand),
    /// Cluster security: the CA, identities for masters, agents, frameworks and
    /// operators, and HTTP tokens.
    ///
    /// `init DIR` makes a cluster directory (CA, master and admin identities, an admin
    /// HTTP token); `issue` signs more identities; `token` makes HTTP bearer tokens, of
    /// which only a hash is kept.
    #[command(subcommand)]
    Secure(secure_cmd::SecureCommand),
    /// Run the agent daemon of this device, connected to a master (or print its advert).
    Agent(agent_cmd::AgentArgs),
    /// Run the master daemon (a zenoh router) and print the endpoints it listens on.
    Master(master_cmd::MasterCommandArgs),
    /// Run a site router: the devices of a site connect to it, and it to the master (a
    /// zenoh router with wasmos' configuration; `--print-config` writes it for zenohd).
    Router(router_cmd::RouterArgs),
    /// Run an embedded cluster in one process: a master and one agent for this machine.
    Up(up::UpArgs),
    /// Start a whole cluster in this process and watch two frameworks share it (DRF).
    #[command(long_about = demo::LONG_ABOUT)]
    Demo(demo::DemoArgs),
    /// List the agents the master knows, with their resources.
    Agents(listing::ListArgs),
    /// Frameworks whose scheduler is a WASM module run inside the master.
    #[command(subcommand)]
    Framework(framework_cmd::FrameworkCommand),
    /// List the frameworks, with their DRF dominant shares.
    Frameworks(listing::ListArgs),
    /// Deploy copies of a WASM module or an OCI image through the built-in jobs framework;
    /// prints the new task ids, one per line, last.
    Run(run_cmd::RunArgs),
    /// Declare a job from a file (TOML or JSON): N copies, or one per matching agent,
    /// kept running; a changed module, args or resources rolls out health-gated
    /// (canaries, max_parallel, auto_revert). Follows the rollout: exit 0 once healthy,
    /// 1 if it failed (reverted) or was superseded.
    Deploy(job_cmd::DeployArgs),
    /// Declared jobs: list, status, history, promote, revert, stop.
    #[command(subcommand)]
    Job(job_cmd::JobCommand),
    /// Why a task, or a job's copies, are not running: per agent (a constraint that
    /// fails, a resource short and by how much, a decline filter, a quarantine, the agent
    /// unreachable) and the framework's place in DRF.
    Explain(explain_cmd::ExplainArgs),
    /// List the tasks with their states and why: pending ones (not placed yet), live
    /// ones, then the most recently ended (newest first, at most `--history`, 200; the
    /// master remembers the last 10,000 ended tasks, and forgets them when it restarts
    /// but for those its agents still report).
    Ps(listing::PsArgs),
    /// Print what a task wrote, running or ended (stdout, then stderr); -f follows it.
    Logs(logs::LogsArgs),
    /// Kill a task on behalf of its framework.
    Kill(listing::TaskArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // clap: 0 for --help/--version, 2 for usage errors.
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    let daemon = matches!(
        cli.command,
        Command::Agent(_) | Command::Master(_) | Command::Up(_) | Command::Router(_)
    );
    let default_filter = match daemon {
        true => LOG_FILTER_DAEMON_DEFAULT,
        false => LOG_FILTER_TOOL_DEFAULT,
    };
    init_logging(cli.log.as_deref().unwrap_or(default_filter), cli.log_json);
    let prints_a_listing = matches!(
        cli.command,
        Command::Agents(_)
            | Command::Frameworks(_)
            | Command::Ps(_)
            | Command::Logs(_)
            | Command::Explain(_)
            | Command::Sim(_)
    );
    if prints_a_listing {
        end_quietly_when_the_reader_goes();
    }
    if matches!(cli.command, Command::Agent(_)) {
        limit_malloc_arenas();
    }
    let result = match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Task(cmd) => task_run::run(cmd),
        Command::Module(cmd) => module_cmd::run(cmd),
        Command::Secure(cmd) => secure_cmd::run(cmd),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Master(args) => master_cmd::run(args),
        Command::Router(args) => router_cmd::run(args),
        Command::Up(args) => up::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Agents(args) => listing::list(listing::Listing::Agents, args),
        Command::Framework(cmd) => framework_cmd::run(cmd),
        Command::Frameworks(args) => listing::list(listing::Listing::Frameworks, args),
        Command::Run(args) => run_cmd::run(args),
        Command::Deploy(args) => job_cmd::deploy(args),
        Command::Job(cmd) => job_cmd::run(cmd),
        Command::Explain(args) => explain_cmd::explain(args),
        Command::Ps(args) => listing::ps(args),
        Command::Logs(args) => logs::logs(args),
        Command::Kill(args) => listing::kill(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `wasmos ps | head`: the command ends when `head` does, as Unix tools do, instead of
/// panicking in `println!` (Rust ignores SIGPIPE, so the write fails). Only for commands
/// that print: the others run daemons or children, whose pipes must fail as errors.
fn end_quietly_when_the_reader_goes() {
    // SAFETY: sets one signal's disposition back to the default, no handler involved;
    // sockets are written with MSG_NOSIGNAL and are unaffected.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Most malloc arenas of an agent (glibc's default is eight per core).
#[cfg(target_env = "gnu")]
const AGENT_MALLOC_ARENAS_MAX: libc::c_int = 2;

/// An agent on a small device: glibc gives each thread that allocates an arena of its own,
/// and keeps what a thread freed in it after the thread ends. The blocking pool's threads
/// (sandboxes, journal syncs, the tasks' file operations) come and go in dozens, so after
/// 3,000 tasks two arenas held 10.1 MiB of anonymous memory where the default held 12.9
/// (#19). The master keeps the default: it is not on the device, and its calls are hot.
/// `MALLOC_ARENA_MAX` in the environment still decides when set. Called before any thread.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: a malloc tunable, set while this process has one thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, AGENT_MALLOC_ARENAS_MAX);
        }
    }
}

/// What the daemons log by default: their lifecycle at info, zenoh's errors only.
const LOG_FILTER_DAEMON_DEFAULT: &str = "warn,master=info,master_daemon=info,agent_daemon=info,agent_core=info,jobs=info,framework=info,wasmos=info,zenoh=error";
/// What the one-shot commands log by default.
const LOG_FILTER_TOOL_DEFAULT: &str = "warn,zenoh=error";

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: --log {filter:?} is not a log filter ({e}); logging warnings only");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
