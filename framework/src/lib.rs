//! The native framework client of wasmos: the offer protocol over zenoh, so that a
//! scheduler is an ordinary program.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use framework::{FrameworkClient, FrameworkConfig, Net, NetConfig};
//! let net = Net::open(&NetConfig::member(vec!["tcp/127.0.0.1:7447".into()])).await?;
//! let (client, mut events) = FrameworkClient::subscribe(net, FrameworkConfig::new("my-scheduler")).await?;
//! while let Some(event) = events.recv().await {
//!     if let proto::Event::Offers { offers } = event {
//!         for offer in offers {
//!             client.decline(vec![offer.offer_id], proto::Filters::default()).await?;
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Protocol, as this client speaks it:
//! 1. `Subscribe` on the `master/calls` queryable (retried until the master answers or
//!    [`FrameworkConfig::subscribe_timeout_ms`] passes); the reply names the framework id.
//! 2. The client subscribes to `frameworks/<id>/events`, *then* declares the liveliness
//!    token `frameworks/<id>/alive`. zenoh keeps the two declarations in order, so a
//!    master that waits for the token before sending events loses none of them.
//! 3. Events go to [`Events`]; calls are queries on `master/calls` whose
//!    [`proto::CallReply`] comes back as a `Result`.
//! 4. When the `master/alive` token goes and comes back (a master restart or failover),
//!    the client subscribes again with its framework id, as Mesos' schedulers do.
//! 5. With implicit acknowledgements (the default) every `Update` is acknowledged once it
//!    is handed to [`Events`]; the agent resends an update until it is acknowledged.

mod client;

pub use client::{
    CALL_TIMEOUT_MS_DEFAULT, EVENTS_QUEUED_MAX_DEFAULT, Events, FrameworkClient, FrameworkConfig,
    FrameworkError, SUBSCRIBE_TIMEOUT_MS_DEFAULT,
};
pub use net::{Net, NetConfig};
