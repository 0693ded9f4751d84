//! nodedrift: compares a Kubernetes node with its supported baseline.
//!
//! The flow (see the README): [`host::HostRoot`] → [`inspect`] → [`facts::Facts`] →
//! [`baseline`] rules → [`finding::Finding`]s → [`report`].

pub mod attrib;
pub mod baseline;
pub mod check;
pub mod clock;
pub mod config;
pub mod facts;
pub mod files;
pub mod finding;
#[doc(hidden)]
pub mod fuzzing;
pub mod host;
pub mod inspect;
pub mod journal;
pub mod ledger;
pub mod localfile;
pub mod redact;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod sys;
pub mod yamlpos;
