//! nodedrift: compares a Kubernetes node with its supported baseline.
//!
//! The flow (see the README): [`host::HostRoot`] → [`inspect`] → [`facts::Facts`] →
//! [`baseline`] rules → [`finding::Finding`]s → [`report`].

pub mod facts;
pub mod host;
pub mod inspect;
