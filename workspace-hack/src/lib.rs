//! Empty on purpose: this crate exists for its `Cargo.toml`, which names every third-party
//! dependency with the union of the features the workspace asks for (see `cargo hakari`).
