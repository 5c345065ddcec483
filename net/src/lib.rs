//! The transport of wasmos: thin adapters over zenoh 1.x shared by the master, agents,
//! frameworks and tools.
//!
//! - [`access`]: mutual TLS files and the access control generated for the principals.
//! - [`session`]: opening a session ([`NetConfig`] → [`Net`]), scouting off by default,
//!   and the endpoints actually listened on.
//! - [`endpoint`]: endpoints checked before zenoh sees them.
//! - [`typed`]: put (on keys declared once, `declared.rs`), subscribe, query and queryables over the `proto` codec; what does not
//!   decode is counted per key in [`DecodeErrors`], logged and dropped, never a panic.
//! - [`liveliness`]: tokens that say a node is up, and watching them.
//! - [`clock`]: the daemons' monotonic clock in the cores' [`proto::Millis`], and wall time.
//! - [`modules`]: the content-addressed module store, its chunked transfer and upload.
//!
//! Architecture invariant: this is the only crate that touches zenoh; keys come from
//! `proto::Keys` and bytes from `proto`'s codec, never spelled here.

pub mod access;
pub mod clock;
mod declared;
pub mod decode_errors;
pub mod endpoint;
pub mod error;
pub mod liveliness;
pub mod modules;
pub mod session;
pub mod typed;

pub use access::{AclPrincipal, TlsFiles, access_control};
pub use declared::KEYS_DECLARED_MAX;
pub use decode_errors::DecodeErrors;
pub use endpoint::{EndpointError, EndpointUse, check_endpoint};
pub use error::{NetError, QueryError};
pub use liveliness::{AliveToken, AliveWatch, Liveness};
pub use session::{
    DEFAULT_ENDPOINT, DEFAULT_PORT, DEFAULT_TLS_ENDPOINT, Mode, Net, NetConfig,
    ZENOH_CONFIG_BYTES_MAX,
};
pub use typed::{Received, Request, Requests, Responder, Subscription};
