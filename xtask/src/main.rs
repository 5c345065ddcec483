//! Build, test and bench automation: `cargo xtask <modules|test|bench|setup|demo|fleet>`.
//!
//! `test` is the one command that runs every test on a fresh Debian machine: it installs
//! what is missing (wasm and aarch64 targets and clippy with rustup; runc, busybox-static,
//! chromium, etcd-server, nftables, the aarch64 cross linker and qemu-user with apt-get),
//! builds the WASM modules, the `wasmos` binary and its aarch64 build, runs clippy (warnings
//! are errors), then runs the whole suite.

mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const WASM_TARGETS: [&str; 3] = ["wasm32-wasip1", "wasm32-wasip2", "wasm32-unknown-unknown"];
/// The devices' other architecture: `cargo xtask cross` builds `wasmos` for it, and an e2e
/// test runs that build under qemu.
const CROSS_TARGET: &str = "aarch64-unknown-linux-gnu";
/// Debian's cross linker for [`CROSS_TARGET`]. Given to cargo by `cross` only: in
/// .cargo/config.toml it would also apply to native builds on an aarch64 host.
const CROSS_LINKER: &str = "aarch64-linux-gnu-gcc";
/// (program on PATH, or absolute path of a file, that must exist; Debian packages that
/// provide it)
const APT_TOOLS: [(&str, &[&str]); 5] = [
    ("runc", &["runc"]),
    ("busybox", &["busybox-static"]),
    ("chromium", &["chromium"]),
    ("etcd", &["etcd-server"]),
    ("nft", &["nftables"]),
];
/// What building for and running [`CROSS_TARGET`] on another host needs, as [`APT_TOOLS`].
const CROSS_APT_TOOLS: [(&str, &[&str]); 3] = [
    (CROSS_LINKER, &["gcc-aarch64-linux-gnu"]),
    // Only a recommendation of the compiler package; qemu's `-L` finds the loader there.
    (
        "/usr/aarch64-linux-gnu/lib/libc.so",
        &["libc6-dev-arm64-cross"],
    ),
    ("qemu-aarch64", &["qemu-user"]),
];

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("modules") => modules(),
        Some("setup") => setup(),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("cross") => cross(),
        Some("demo") => demo(&args[1..]),
        Some("fleet") => fleet(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 setup     install what the tests need (wasm and aarch64 targets, clippy, runc, busybox,\n            \
                 chromium, etcd, nft, aarch64 cross linker, qemu-user)\n  \
                 modules   build the WASM modules in modules/ into target/modules/\n  \
                 cross     build `wasmos` for aarch64 into target/aarch64-unknown-linux-gnu/cross/\n  \
                 test      setup + modules + build + clippy + every test (extra args go to cargo test)\n  \
                 bench     run the criterion benchmarks (extra args go to cargo bench)\n  \
                 bench --report [--dist] [--no-criterion] [ARGS]: the fleet-scale figures beside\n            \
                 their goals in target/bench-report.md and .json (sim, idle daemons, every\n            \
                 criterion bench)\n  \
                 demo      modules + `wasmos demo`: a cluster, two frameworks, DRF, in one process\n  \
                 fleet     AGENTS FRAMEWORKS [--fill]: print a generated `wasmos sim` scenario"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn setup() -> Result<()> {
    setup_targets(&WASM_TARGETS)?;
    setup_targets(&[CROSS_TARGET])?;
    setup_clippy()?;
    apt_install_missing(&APT_TOOLS)?;
    setup_cross_tools()
}

/// Installs the packages of the `tools` that are missing.
fn apt_install_missing(tools: &[(&str, &[&str])]) -> Result<()> {
    let packages: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| match tool.starts_with('/') {
            true => !Path::new(tool).exists(),
            false => !on_path(tool),
        })
        .flat_map(|(_, pkgs)| pkgs.iter().copied())
        .collect();
    if packages.is_empty() {
        Ok(())
    } else {
        apt_install(&packages)
    }
}

/// The cross linker and qemu, unless this host is aarch64 itself.
fn setup_cross_tools() -> Result<()> {
    match cfg!(target_arch = "aarch64") {
        true => Ok(()),
        false => apt_install_missing(&CROSS_APT_TOOLS),
    }
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let sudo: &[&str] = if is_root { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut cmd = Command::new(all[0]);
        cmd.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(packages);
    apt(&args).map_err(|e| {
        format!(
            "{e}; install {} by hand (apt-get install {})",
            packages.join(" "),
            packages.join(" ")
        )
    })
}

/// Which target a module crate builds for, from its folder and name (see modules/Cargo.toml).
fn module_target(kind: &str, name: &str) -> Option<&'static str> {
    match kind {
        "tasks" if name.starts_with("p1_") => Some("wasm32-wasip1"),
        "tasks" if name.starts_with("p2_") => Some("wasm32-wasip2"),
        "schedulers" | "allocators" => Some("wasm32-unknown-unknown"),
        _ => None,
    }
}

fn module_crates() -> Result<Vec<(&'static str, String)>> {
    let mut crates = Vec::new();
    for kind in ["tasks", "schedulers", "allocators"] {
        let dir = root().join("modules").join(kind);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.path().join("Cargo.toml").exists() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().to_string();
            let target = module_target(kind, &name).ok_or_else(|| {
                format!("modules/{kind}/{name}: task modules are named p1_* or p2_*")
            })?;
            crates.push((target, name));
        }
    }
    crates.sort();
    Ok(crates)
}

fn modules() -> Result<()> {
    setup_targets(&WASM_TARGETS)?;
    let root = root();
    let build_dir = root.join("target/modules-build");
    let out_dir = root.join("target/modules");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let crates = module_crates()?;
    for target in WASM_TARGETS {
        let names: Vec<&str> = crates
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, n)| n.as_str())
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut cmd = Command::new(cargo());
        cmd.arg("build")
            .arg("--release")
            .arg("--target")
            .arg(target);
        cmd.arg("--manifest-path")
            .arg(root.join("modules/Cargo.toml"));
        cmd.arg("--target-dir").arg(&build_dir);
        for name in &names {
            cmd.arg("-p").arg(name);
        }
        run(&mut cmd)?;
        for name in names {
            let built = build_dir
                .join(target)
                .join("release")
                .join(format!("{name}.wasm"));
            let dest = out_dir.join(format!("{name}.wasm"));
            std::fs::copy(&built, &dest).map_err(|e| format!("copy {}: {e}", built.display()))?;
        }
    }
    eprintln!("xtask: {} modules in {}", crates.len(), out_dir.display());
    Ok(())
}

/// `cargo xtask cross`: installs the aarch64 target, linker and qemu when missing, then builds
/// `wasmos` for aarch64 with the `cross` profile (built cold in CI: light optimisation).
fn cross() -> Result<()> {
    setup_targets(&[CROSS_TARGET])?;
    setup_cross_tools()?;
    let root = root();
    let mut build = Command::new(cargo());
    build.current_dir(&root).args([
        "build",
        "--profile",
        "cross",
        "--target",
        CROSS_TARGET,
        "--bin",
        "wasmos",
    ]);
    if !cfg!(target_arch = "aarch64") {
        build.env(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            CROSS_LINKER,
        );
    }
    run(&mut build)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    eprintln!(
        "xtask: {} (on x86_64 run it with `qemu-aarch64 -L /usr/aarch64-linux-gnu`)",
        target_dir.join(CROSS_TARGET).join("cross/wasmos").display()
    );
    Ok(())
}

/// Adds the rustup targets of `targets` that are not installed.
fn setup_targets(targets: &[&str]) -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("rustup")
        .arg("target")
        .arg("add")
        .args(&missing))
}

/// `cargo xtask test` runs clippy; a minimal rustup profile lacks it.
fn setup_clippy() -> Result<()> {
    let installed = Command::new(cargo())
        .args(["clippy", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "clippy"]))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn test(extra: &[String]) -> Result<()> {
    let started = Instant::now();
    setup()?;
    modules()?;
    let root = root();
    // One build of everything the tests need, `wasmos` included. Every command resolves
    // the same features for the dependencies (workspace-hack/), so this build, clippy's,
    // the tests' and a later `cargo xtask demo` share one compiled tree.
    run(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--workspace",
        "--bins",
        "--tests",
    ]))?;
    run(Command::new(cargo()).current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The aarch64 `wasmos` that e2e/aarch64.rs runs under qemu.
    cross()?;
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&root)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(extra);
    let result = run(&mut cmd);
    // The cluster, failover, plugin and fleet tests again, on a secure cluster (mutual
    // TLS, access control, every process its own identity): what passes plain must pass
    // secure. (`demo` and `secure` are secure already; two fleet tests keep to plain TCP,
    // see e2e/fleet.rs.)
    let mut secure = Command::new(cargo());
    secure
        .current_dir(&root)
        .env("WASMOS_E2E_SECURE", "1")
        .args(["test", "-p", "wasmos-tests", "--test", "e2e", "--"])
        .args(["cluster::", "failover::", "plugins::", "fleet::"]);
    let result = result.and(run(&mut secure));
    // The WASM executor's suite (the hostile modules among it) again on the Pulley
    // interpreter: every limit must hold there too. `--workspace`, not `-p wasmos-agent`:
    // one package alone resolves other features and rebuilds wasmtime (7 minutes cold).
    let mut pulley = Command::new(cargo());
    pulley
        .current_dir(&root)
        .env("WASMOS_TEST_ENGINE", "pulley")
        .args(["test", "--workspace", "--test", "wasm"]);
    let result = result.and(run(&mut pulley));
    eprintln!(
        "xtask: test finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    result
}

fn bench(extra: &[String]) -> Result<()> {
    if extra.first().is_some_and(|a| a == "--report") {
        return report::bench_report(&extra[1..]);
    }
    modules()?;
    run(Command::new(cargo())
        .current_dir(root())
        .args(["bench", "--workspace"])
        .args(extra))
}

/// The README's first command: builds the example modules (installing the wasm targets
/// if needed), then runs `wasmos demo` from the workspace root.
fn demo(extra: &[String]) -> Result<()> {
    modules()?;
    run(Command::new(cargo())
        .current_dir(root())
        .args(["run", "-q", "--bin", "wasmos", "--", "demo"])
        .args(extra))
}

/// `fleet AGENTS FRAMEWORKS [--fill]`: a `wasmos sim` scenario of a mixed fleet, the same
/// every time: agents of 2, 4 or 8 cpus with 1 GiB of memory per cpu, half x86_64 and half
/// aarch64, in ten zones; frameworks wanting unlimited tasks of 0.5 or 1 cpu and 128, 256
/// or 512 MiB (with `--fill`, as many per offer as fit).
fn fleet(args: &[String]) -> Result<()> {
    let usage = || "usage: cargo xtask fleet AGENTS FRAMEWORKS [--fill]".to_owned();
    let count =
        |i: usize| -> Result<u64> { args.get(i).and_then(|a| a.parse().ok()).ok_or_else(usage) };
    let (agents, frameworks) = (count(0)?, count(1)?);
    let fill = match args.get(2).map(String::as_str) {
        None => false,
        Some("--fill") => true,
        Some(_) => return Err(usage()),
    };
    println!("{}", fleet_scenario(agents, frameworks, fill));
    Ok(())
}

/// The scenario `fleet` prints (also what `bench --report` simulates).
fn fleet_scenario(agents: u64, frameworks: u64, fill: bool) -> String {
    let mut rng = 0x5eed_u64;
    let mut pick = |n: u64| {
        // splitmix64: deterministic and dependency-free.
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    };
    let agents: Vec<String> = (0..agents)
        .map(|i| {
            let cpus = [2, 4, 8][pick(3) as usize];
            let arch = ["x86_64", "aarch64"][pick(2) as usize];
            format!(
                r#"{{"id":"a{i}","resources":{{"cpus":{cpus},"mem":{}}},"attributes":{{"arch":"{arch}","zone":"z{}"}}}}"#,
                cpus * 1024,
                i % 10
            )
        })
        .collect();
    let frameworks: Vec<String> = (0..frameworks)
        .map(|j| {
            let cpus = ["0.5", "1"][pick(2) as usize];
            let mem = [128, 256, 512][pick(3) as usize];
            let fill = if fill { r#","fill":true"# } else { "" };
            format!(r#"{{"id":"f{j}","task":{{"cpus":{cpus},"mem":{mem}}}{fill}}}"#)
        })
        .collect();
    format!(
        r#"{{"agents":[{}],"frameworks":[{}]}}"#,
        agents.join(","),
        frameworks.join(",")
    )
}
