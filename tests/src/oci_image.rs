//! OCI image layouts for end-to-end tests, built from Debian's `busybox-static`; the same
//! builder as the agent's own OCI tests.

#[path = "../../agent/tests/oci/layout.rs"]
mod layout;

pub use layout::*;
