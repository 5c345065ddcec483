//! `wasmos module keygen|sign|verify`: signed modules (the format is in the `signing`
//! crate), and the `--trust KEY.pub` flag the master, the agent and `task run` share.
//!
//! Contracts: `keygen DIR/NAME` writes `DIR/NAME.key` (mode 0600) and `DIR/NAME.pub` and
//! never overwrites either; `sign` prints the signed module's path as its last line of
//! stdout and never overwrites a file without `--force`; `verify` exits 0 when a trusted
//! key signed the module, 1 when not (saying why on stderr).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use signing::{SecretKey, TrustedKeys};

#[derive(clap::Subcommand)]
pub enum ModuleCommand {
    /// Make an ed25519 key pair: DIR/NAME.key (secret) and DIR/NAME.pub (public).
    ///
    /// DIR/NAME.key is the secret key, mode 0600; DIR/NAME.pub is the public key, for
    /// `--trust`. Existing files are never overwritten.
    Keygen(KeygenArgs),
    /// Sign a module (a core module or a component) with a secret key.
    ///
    /// The signed module is the module's bytes followed by a signature section (a custom
    /// section, skipped by wasmtime) over every byte before it. It is written to
    /// MODULE.signed.wasm beside MODULE, or to OUT; an existing file is overwritten only
    /// with --force. Its path is printed. A signature already there is replaced.
    Sign(SignArgs),
    /// Check that a module was signed by a trusted key and not changed since.
    ///
    /// Exit 0 if so (printing the key's id), else 1 with the reason: unsigned, tampered,
    /// signed by an untrusted key, or malformed.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the pair: DIR/NAME makes DIR/NAME.key and DIR/NAME.pub (DIR is made,
    /// mode 0700, if missing; NAME goes into the public key file as its comment).
    #[arg(value_name = "DIR/NAME")]
    pub base: PathBuf,
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// The secret key (`wasmos module keygen` writes it); refused when others may read it.
    #[arg(long, value_name = "DIR/NAME.key")]
    pub key: PathBuf,
    /// The module to sign (.wasm: a core module or a component; compile WAT text first).
    #[arg(value_name = "MODULE.wasm")]
    pub module: PathBuf,
    /// Where to write the signed module; default MODULE.signed.wasm beside MODULE.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Overwrite OUT when it exists (without it, an existing OUT is an error).
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A public key whose signatures are trusted (repeatable; at least one).
    #[arg(long = "trust", value_name = "KEY.pub", required = true)]
    pub trust: Vec<PathBuf>,
    /// The module to check.
    #[arg(value_name = "MODULE.wasm")]
    pub module: PathBuf,
}

/// Bytes of the seed of a new key, from the operating system's generator.
const SEED_BYTES: usize = signing::SEED_BYTES;

pub fn run(cmd: ModuleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModuleCommand::Keygen(args) => keygen(&args),
        ModuleCommand::Sign(args) => sign(&args),
        ModuleCommand::Verify(args) => verify(&args),
    }
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    // `keys/` or `keys/.` would make the hidden `keys/.key` or `keys/..key`.
    let name = (args
        .base
        .as_os_str()
        .as_encoded_bytes()
        .rsplit(|b| *b == b'/'))
    .next();
    if name.is_none_or(|n| n.is_empty() || n.starts_with(b".")) {
        anyhow::bail!(
            "{}: give DIR/NAME, the key's name (not starting with a dot) after the directory",
            args.base.display()
        );
    }
    let mut seed = [0u8; SEED_BYTES];
    getrandom::fill(&mut seed)
        .map_err(|e| anyhow::anyhow!("the operating system's random generator: {e}"))?;
    let key = SecretKey::from_seed(&seed);
    seed.fill(0);
    // A new key directory is private (0700): it holds secret keys.
    if let Some(dir) = args
        .base
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                anyhow::anyhow!("cannot create the key directory {}: {e}", dir.display())
            })?;
    }
    let (secret, public) = signing::write_key_pair(&args.base, &key)?;
    println!(
        "secret key {} (mode 0600: keep it private)",
        secret.display()
    );
    println!(
        "public key {} (give it to `--trust`), key id {}",
        public.display(),
        key.public_key().key_id()
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(args: &SignArgs) -> anyhow::Result<ExitCode> {
    let key = signing::read_secret_key(&args.key)?;
    let module = read_module(&args.module)?;
    let signed = signing::sign(&module, &key)
        .map_err(|e| anyhow::anyhow!("{}: cannot be signed: {e}", args.module.display()))?;
    let output = match &args.output {
        Some(output) => output.clone(),
        None => signed_path(&args.module),
    };
    write_output(&output, &signed, args.force)?;
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let trusted = trusted_keys(&args.trust)?;
    let module = read_module(&args.module)?;
    match signing::verify(&module, &trusted) {
        Ok(key_id) => {
            println!("{}: signed by trusted key {key_id}", args.module.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(refused) => {
            eprintln!("{}: {refused}", args.module.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// The keys of `--trust KEY.pub` flags (none: nothing is checked), logged when any.
pub fn trusted_keys(paths: &[PathBuf]) -> anyhow::Result<TrustedKeys> {
    let trusted = TrustedKeys::read(paths).context("--trust")?;
    if !trusted.is_empty() {
        let ids: Vec<String> = trusted
            .keys()
            .iter()
            .map(|k| k.key_id().to_string())
            .collect();
        tracing::info!(keys = %ids.join(", "), "trusted keys: modules no other key signed are refused");
    }
    Ok(trusted)
}

/// `DIR/NAME.wasm` → `DIR/NAME.signed.wasm` (any other name gets `.signed.wasm` added).
fn signed_path(module: &Path) -> PathBuf {
    let name = module
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".wasm").unwrap_or(&name);
    module.with_file_name(format!("{stem}.signed.wasm"))
}

/// The module's bytes, at most [`signing::SIGNED_MODULE_BYTES_MAX`].
fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let max = signing::SIGNED_MODULE_BYTES_MAX as u64;
    crate::files::read_capped(path, max).with_context(|| path.display().to_string())
}

/// Writes `bytes` to `output` whole or not at all (a temporary file moved into place);
/// an existing `output` is replaced only with `force`.
fn write_output(output: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = output.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, bytes).with_context(|| temp.display().to_string())?;
    // A hard link fails on an existing name, where a rename would replace it.
    let placed = match force {
        true => std::fs::rename(&temp, output),
        false => std::fs::hard_link(&temp, output).and_then(|()| std::fs::remove_file(&temp)),
    };
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::bail!(
                "{} exists already; pass --force to overwrite it, or -o to write elsewhere",
                output.display()
            );
        }
        return Err(e).with_context(|| output.display().to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_modules_go_beside_the_module() {
        assert_eq!(
            signed_path(Path::new("dir/p1_hello.wasm")),
            Path::new("dir/p1_hello.signed.wasm")
        );
        assert_eq!(
            signed_path(Path::new("module")),
            Path::new("module.signed.wasm")
        );
    }
}
