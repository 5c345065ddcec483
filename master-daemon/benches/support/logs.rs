//! Logs for the benchmarks, shared by all that run daemons.

/// Logs to stderr when `RUST_LOG` is set: a bench's stdout is its figures.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
}
