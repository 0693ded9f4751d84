//! End-to-end tests: the real binary against fixture host trees, live /proc and a real
//! containerd.

mod util;

mod check;
mod cli;
mod hostile;

mod containerd;
mod kube_proxy;
mod kubelet;
mod os;
mod reboot;
mod sysctl;
