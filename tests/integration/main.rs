//! End-to-end tests: the real binary against fixture host trees, live /proc and a real
//! containerd.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod util;

mod check;
mod cli;
mod delivery;
mod deploy;
mod egress;
mod faults;
mod files;
mod files_run;
mod fuzz_regressions;
mod health;
mod hostile;
mod http_sink;

mod cni;
mod containerd;
mod kube_proxy;
mod kubelet;
mod node_sink;
mod os;
mod patches;
mod reboot;
mod reboot_live;
pub mod run;
mod secrets;
mod snapshot;
mod snapshot_journal;
mod snapshot_run;
mod soak;
mod sysctl;
mod systemd_unit;
