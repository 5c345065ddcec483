// A build script, so that cargo takes the `[build-dependencies]` of Cargo.toml into account.
fn main() {}
