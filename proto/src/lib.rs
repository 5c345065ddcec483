//! The wire contract of wasmos: every type that crosses a process boundary, the zenoh key
//! layout, the codec, and resource arithmetic.
//!
//! Architecture invariant: this is the only crate that defines bytes on the wire. It knows
//! nothing of zenoh, tokio or wasmtime.

pub mod admin;
pub mod attributes;
pub mod codec;
pub mod declared;
pub mod explain;
pub mod ids;
pub mod keys;
pub mod messages;
pub mod operator;
pub mod principal;
pub mod resources;
pub mod task;
pub mod thin_store;
pub mod time;

pub use attributes::{
    Attributes, CONSTRAINT_FORMS, Constraint, ConstraintError, ConstraintFault, ConstraintOp,
};
pub use codec::{DecodeError, EncodeError, PROTOCOL_VERSION, decode, encode};
pub use ids::{AgentId, FrameworkId, ModuleHash, OfferId, StatusUuid, TaskId};
pub use keys::Keys;
pub use messages::*;
pub use principal::{Principal, Role};
pub use resources::{Kind, KindMap, RangeError, RangeSet, Resources, Scalar};
pub use task::*;
pub use time::Millis;
