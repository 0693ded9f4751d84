//! Shared helpers: run the binary, locate fixtures.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The fixture host tree `tests/fixtures/hosts/<name>`.
pub fn fixture_host(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(name)
}

/// A command running the real `nodedrift` binary, with a clean environment for its knobs.
pub fn nodedrift() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nodedrift"));
    c.env_remove("NODEDRIFT_HOST_ROOT")
        .env_remove("NODEDRIFT_PROFILE")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    c
}

/// Runs `nodedrift args...` and returns its output.
pub fn run(args: &[&str]) -> Output {
    nodedrift().args(args).output().expect("run nodedrift")
}

/// Runs `nodedrift inspect <component> --host-root <root>` and parses the JSON it prints.
pub fn inspect(component: &str, root: &std::path::Path) -> serde_json::Value {
    let out = run(&[
        "inspect",
        component,
        "--host-root",
        root.to_str().expect("utf-8 root"),
    ]);
    assert!(
        out.status.success(),
        "inspect failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect prints JSON")
}
