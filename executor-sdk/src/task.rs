//! Helpers for task modules (WASI commands run by an agent): argument flags and the exit
//! codes the agent reports in a task's status.

/// The task did its work.
pub const EXIT_OK: i32 = 0;
/// The task was started with arguments it cannot use (sysexits' `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;
/// A granted file or directory could not be read (sysexits' `EX_IOERR`).
pub const EXIT_IO: i32 = 74;

/// The value of `--name VALUE` or `--name=VALUE` in `args` (the last one wins).
pub fn flag<'a, S: AsRef<str>>(args: &'a [S], name: &str) -> Option<&'a str> {
    let mut found = None;
    let mut iter = args.iter().map(AsRef::as_ref).peekable();
    while let Some(arg) = iter.next() {
        let Some(rest) = arg.strip_prefix("--").and_then(|a| a.strip_prefix(name)) else {
            continue;
        };
        if let Some(value) = rest.strip_prefix('=') {
            found = Some(value);
        } else if rest.is_empty() {
            found = iter.next();
        }
    }
    found
}
