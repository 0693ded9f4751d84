//! Kernel live patches, as the kernel's livepatch core shows them in
//! `/sys/kernel/livepatch/<patch>/{enabled,transition}` (kpatch, Canonical Livepatch and
//! Azure Linux's livepatch packages all load through it).
//!
//! A patch whose `transition` is 1 is not yet in effect for every task: the kernel switches
//! each task to the patched code when it leaves the patched functions, and a task that never
//! does keeps the old code (an operator then signals that task or reboots). That is the
//! "pending" state reported here.

use std::path::Path;

use serde_json::{Value, json};

use crate::host::HostRoot;

pub(super) const DIR: &str = "/sys/kernel/livepatch";

/// More patches than any kernel carries; the rest is not listed.
const PATCHES_LIMIT: usize = 256;

/// One loaded live patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Patch {
    pub name: String,
    /// `None` when the attribute could not be read (the reason is in `error`).
    pub enabled: Option<bool>,
    pub transition: Option<bool>,
    pub error: Option<String>,
}

impl Patch {
    pub fn to_json(&self) -> Value {
        let mut v =
            json!({"name": self.name, "enabled": self.enabled, "transition": self.transition});
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}

/// The loaded patches, or `None` when the kernel has no livepatch support (or none loaded yet:
/// the directory appears with the first patch on some kernels).
pub(super) fn patches(host: &HostRoot) -> Result<Option<Vec<Patch>>, String> {
    let entries = match host.read_dir(Path::new(DIR), PATCHES_LIMIT) {
        Ok(e) => e,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for e in entries {
        let Some(name) = e.name.to_str() else {
            continue;
        };
        let dir = Path::new(DIR).join(name);
        let mut errors = Vec::new();
        let mut flag = |attr: &str| match host.read_string(&dir.join(attr), 64) {
            Ok(s) => match s.trim() {
                "0" => Some(false),
                "1" => Some(true),
                other => {
                    errors.push(format!("{}/{attr}: not 0 or 1: {other:?}", dir.display()));
                    None
                }
            },
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        let enabled = flag("enabled");
        let transition = flag("transition");
        out.push(Patch {
            name: name.to_owned(),
            enabled,
            transition,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(out))
}
