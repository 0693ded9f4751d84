//! `nodedrift run`: the continuous agent.
//!
//! One task per trigger source (file watcher, `/proc` poller, sysctl poller, re-check timer,
//! signals), one evaluation loop that coalesces triggers and re-checks, and one task per sink.
//! Every loop takes the same cancellation token; SIGTERM drains within the grace period.

pub mod engine;
pub mod systemd;
pub mod triggers;
