//! When a copy whose task ended starts again: the one backoff rule, shared with the agent
//! (which restarts tasks in place while offline), lives in `proto`.

pub use proto::{
    Backoff, RESTART_BACKOFF_INITIAL_MS_DEFAULT, RESTART_BACKOFF_MAX_MS_DEFAULT,
    RESTART_STARTS_MAX_DEFAULT,
};
