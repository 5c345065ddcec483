//! The built-in jobs framework of wasmos: run N copies of a WASM module or an OCI image
//! with resources, constraints and a restart policy, spread across agents, without
//! writing a scheduler.
//!
//! - [`request`]: a job as operators submit it (`wasmos run`, `POST /api/v1/jobs`, both
//!   answered by the master's operator protocol) and its validation.
//! - [`book`]: the scheduler, sans-IO: jobs and master events in, framework calls out.
//! - [`framework`]: the adapter that runs the book over `framework::FrameworkClient`, and
//!   the [`JobsClient`] through which the master hands it submissions and kills.

pub mod book;
pub mod declared;
pub mod framework;
pub mod persist;
mod placement;
mod quarantine;
pub mod request;
pub mod restart;
pub mod service;
pub mod store;
pub mod waiting;

pub use book::{JobBook, JobBookConfig, KillError, SubmitError};
pub use declared::{DeclError, Desired, ValidDecl};
pub use framework::{JobsClient, JobsConfig, JobsError, JobsFramework, JobsHandle};
pub use request::{JobAccepted, JobError, JobRequest, RestartPolicy, ValidJob, ValidateJob};
pub use service::{ServiceError, ServiceRequest};
