//! The os inspector: which operating system and kernel the node runs, since when, from which
//! node image, and whether it carries the marks of an AKS node.
//!
//! Profile detection reads two of these facts: `os.release.ID` and
//! `os.aks.markers` (`aks-ubuntu` for `ubuntu` with markers, `aks-azurelinux` for
//! `azurelinux`/`mariner` with markers, `generic` otherwise).
//!
//! Sources, all read through [`HostRoot`]:
//!
//! * os-release(5): `/etc/os-release`, falling back to `/usr/lib/os-release`; every variable
//!   becomes `os.release.<KEY>` with shell quoting and escapes undone.
//! * the kernel: `/proc/sys/kernel/osrelease` (fallback: the release word of `/proc/version`)
//!   and the full `/proc/version` line.
//! * the boot: `/proc/sys/kernel/random/boot_id`, `/proc/uptime`, `btime` of `/proc/stat`.
//! * the node image: AKS records no image file on the node that the agent can rely on; the
//!   version is the `kubernetes.azure.com/node-image-version` node label that AKS's
//!   provisioning (AgentBaker's `ensureKubelet`) writes into `KUBELET_NODE_LABELS` of
//!   `/etc/default/kubelet` and the kubelet receives as `--node-labels`. The running kubelet's
//!   flag is preferred (it is what the node registered with); elsewhere the image is unknown,
//!   with the reason.
//! * AKS markers, each specific to nodes provisioned by AKS: `/opt/azure/vhd-install.complete`
//!   (written by the AKS VHD build), `/opt/azure/containers` (AgentBaker's provisioning
//!   scripts), and `kubernetes.azure.com/` labels in `/etc/default/kubelet` or on the kubelet's
//!   command line. `/etc/kubernetes/azure.json` and `/var/lib/waagent` are also present on
//!   self-managed clusters on Azure VMs (cluster-api-provider-azure, plain VMs), so they are
//!   reported separately as `os.azure.markers` and do not make a node "AKS".

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::facts::{ComponentFacts, Evidence};
use crate::host::{self, HostError, HostRoot};

use super::Context;
use super::process::parse_flags;

pub const NAME: &str = "os";

/// os-release and friends are a few hundred bytes.
const SMALL_FILE_LIMIT: u64 = 64 << 10;

pub(crate) const OS_RELEASE_PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
pub(crate) const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
pub(crate) const PROC_VERSION: &str = "/proc/version";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
const UPTIME: &str = "/proc/uptime";
pub(crate) const PROC_STAT: &str = "/proc/stat";
const KUBELET_DEFAULTS: &str = "/etc/default/kubelet";
const NODE_IMAGE_LABEL: &str = "kubernetes.azure.com/node-image-version";

/// Paths whose existence marks a node provisioned by AKS.
const AKS_MARKER_PATHS: [&str; 2] = ["/opt/azure/vhd-install.complete", "/opt/azure/containers"];
/// Paths present on Azure VMs in general.
const AZURE_MARKER_PATHS: [&str; 2] = ["/etc/kubernetes/azure.json", "/var/lib/waagent"];

/// Parses os-release(5) text: `KEY=value` lines with shell-style quoting. Returns the variables
/// and `(line, message)` for lines that are not valid assignments.
pub fn parse_os_release(text: &str) -> (BTreeMap<String, String>, Vec<(usize, String)>) {
    let mut vars = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            errors.push((i + 1, format!("not an assignment: {line:?}")));
            continue;
        };
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            errors.push((i + 1, format!("invalid variable name {key:?}")));
            continue;
        }
        match shell_unquote(value) {
            Ok(v) => {
                vars.insert(key.to_owned(), v);
            }
            Err(e) => errors.push((i + 1, format!("{key}: {e}"))),
        }
    }
    (vars, errors)
}

/// Undoes shell quoting of one word: `"..."` (backslash escapes `\ " $ `` ` ``), `'...'`
/// (literal), and unquoted text (backslash escapes any character). Unquoted whitespace ends
/// the word; what follows must be a comment.
fn shell_unquote(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next() {
                    None => return Err("unterminated double quote".to_owned()),
                    Some('"') => break,
                    Some('\\') => match chars.peek() {
                        Some(&n @ ('\\' | '"' | '$' | '`')) => {
                            out.push(n);
                            chars.next();
                        }
                        Some('\n') => {
                            chars.next();
                        }
                        _ => out.push('\\'),
                    },
                    Some(c) => out.push(c),
                }
            },
            '\'' => loop {
                match chars.next() {
                    None => return Err("unterminated single quote".to_owned()),
                    Some('\'') => break,
                    Some(c) => out.push(c),
                }
            },
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c if c.is_whitespace() => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err(format!("unquoted whitespace in value (quote it): {s:?}"));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The running kernel's release and the file it came from.
pub(crate) fn running_kernel(host: &HostRoot) -> Result<(String, &'static str), String> {
    let first = match host.read_string(Path::new(OSRELEASE), SMALL_FILE_LIMIT) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_owned(), OSRELEASE)),
        Ok(_) => format!("{OSRELEASE}: empty"),
        Err(e) => e.to_string(),
    };
    match host.read_string(Path::new(PROC_VERSION), SMALL_FILE_LIMIT) {
        Ok(s) => match release_from_proc_version(&s) {
            Some(r) => Ok((r, PROC_VERSION)),
            None => Err(format!(
                "{first}; {PROC_VERSION}: no \"Linux version <release>\" in {s:?}"
            )),
        },
        Err(e) => Err(format!("{first}; {e}")),
    }
}

/// `Linux version 5.15.0-1061-azure (buildd@...) ...` → `5.15.0-1061-azure`.
fn release_from_proc_version(s: &str) -> Option<String> {
    let rest = s.trim_start().strip_prefix("Linux version ")?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// True for the 8-4-4-4-12 hex form of `boot_id`.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The first field of `/proc/uptime`.
fn parse_uptime(s: &str) -> Result<f64, String> {
    let field = s.split_whitespace().next().unwrap_or("");
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{UPTIME}: not a number of seconds: {:?}",
            truncate(s, 64)
        )),
    }
}

/// When the running kernel booted (Unix seconds): `btime` of `/proc/stat`.
pub(crate) fn boot_time(host: &HostRoot) -> Result<i64, String> {
    // /proc/stat grows with the CPU count and interrupt lines; the default bound covers
    // thousands of CPUs.
    let b = host
        .read(Path::new(PROC_STAT), host::DEFAULT_READ_LIMIT)
        .map_err(|e| e.to_string())?;
    parse_btime(&String::from_utf8_lossy(&b))
}

/// The `btime` line of `/proc/stat`.
fn parse_btime(s: &str) -> Result<i64, String> {
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("btime ") {
            return v
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|b| *b > 0)
                .ok_or_else(|| format!("{PROC_STAT}: btime is not a time: {:?}", truncate(v, 64)));
        }
    }
    Err(format!("{PROC_STAT}: no btime line"))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The labels of a kubelet `--node-labels` value (`k=v,k2=v2`).
fn node_labels(value: &str) -> BTreeMap<&str, &str> {
    value
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// The node labels `/etc/default/kubelet` gives the kubelet: `KUBELET_NODE_LABELS`, and any
/// `--node-labels` inside `KUBELET_FLAGS`.
fn labels_from_defaults(text: &str) -> Vec<String> {
    let (vars, _) = parse_os_release(text);
    let mut out = Vec::new();
    if let Some(l) = vars.get("KUBELET_NODE_LABELS") {
        out.push(l.clone());
    }
    if let Some(flags) = vars.get("KUBELET_FLAGS") {
        let args: Vec<String> = flags.split_whitespace().map(str::to_owned).collect();
        let parsed = parse_flags(&args, |_| false);
        if let Some(v) = parsed.values.get("node-labels") {
            out.extend(v.iter().cloned());
        }
    }
    out
}

/// `AKSUbuntu-2204gen2containerd-202309.06.0` → `2023-09-06` (the VHD release date).
pub(crate) fn image_build_date(version: &str) -> Option<String> {
    let tail = version.rsplit('-').next()?;
    let mut parts = tail.split('.');
    let (ym, d) = (parts.next()?, parts.next()?);
    if ym.len() != 6 || d.len() != 2 || !ym.chars().chain(d.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(format!("{}-{}-{}", &ym[..4], &ym[4..], d))
}

pub fn inspect(ctx: &Context<'_>) -> ComponentFacts {
    let host = ctx.host;
    let mut cf = ComponentFacts::new(NAME);
    release(host, &mut cf);
    kernel(host, &mut cf);
    boot(host, &mut cf);
    let defaults = host.read_string(Path::new(KUBELET_DEFAULTS), SMALL_FILE_LIMIT);
    node_image(ctx, &defaults, &mut cf);
    markers(ctx, &defaults, &mut cf);
    cf
}

fn release(host: &HostRoot, cf: &mut ComponentFacts) {
    let mut reasons = Vec::new();
    for path in OS_RELEASE_PATHS {
        match host.read(Path::new(path), SMALL_FILE_LIMIT) {
            Ok(bytes) => {
                let (vars, errors) = parse_os_release(&String::from_utf8_lossy(&bytes));
                let vars: Map<String, Value> = vars
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                cf.set(&["release"], Value::Object(vars));
                cf.evidence(&["release"], Evidence::file(path).with_source("config"));
                let errors: Vec<Value> = errors
                    .into_iter()
                    .map(|(line, message)| json!({"file": path, "line": line, "message": message}))
                    .collect();
                cf.set(&["parseErrors"], Value::Array(errors));
                return;
            }
            // Only a missing file falls through to the next: an unreadable /etc/os-release
            // still overrides /usr/lib/os-release, so the fallback would be a guess.
            Err(e) if e.is_not_found() => reasons.push(e.to_string()),
            Err(e) => {
                reasons.push(e.to_string());
                break;
            }
        }
    }
    cf.unknown(&["release"], reasons.join("; "));
    cf.set(&["parseErrors"], json!([]));
}

fn kernel(host: &HostRoot, cf: &mut ComponentFacts) {
    match running_kernel(host) {
        Ok((release, file)) => {
            cf.set(&["kernel", "release"], release);
            cf.evidence(
                &["kernel", "release"],
                Evidence::file(file).with_source("runtime"),
            );
        }
        Err(reason) => cf.unknown(&["kernel", "release"], reason),
    }
    match host.read(Path::new(PROC_VERSION), SMALL_FILE_LIMIT) {
        Ok(b) if !String::from_utf8_lossy(&b).trim().is_empty() => {
            cf.set(&["kernel", "version"], String::from_utf8_lossy(&b).trim());
            cf.evidence(
                &["kernel", "version"],
                Evidence::file(PROC_VERSION).with_source("runtime"),
            );
        }
        Ok(_) => cf.unknown(&["kernel", "version"], format!("{PROC_VERSION}: empty")),
        Err(e) => cf.unknown(&["kernel", "version"], e),
    }
}

fn boot(host: &HostRoot, cf: &mut ComponentFacts) {
    match host.read(Path::new(BOOT_ID), SMALL_FILE_LIMIT) {
        Ok(b) => {
            let id = String::from_utf8_lossy(&b).trim().to_owned();
            if is_uuid(&id) {
                cf.set(&["bootId"], id);
                cf.evidence(&["bootId"], Evidence::file(BOOT_ID).with_source("runtime"));
            } else if id.is_empty() {
                cf.unknown(&["bootId"], format!("{BOOT_ID}: empty"));
            } else {
                cf.unknown(
                    &["bootId"],
                    format!("{BOOT_ID}: not a UUID: {:?}", truncate(&id, 64)),
                );
            }
        }
        Err(e) => cf.unknown(&["bootId"], e),
    }
    match host.read(Path::new(UPTIME), SMALL_FILE_LIMIT) {
        Ok(b) => match parse_uptime(&String::from_utf8_lossy(&b)) {
            Ok(v) => {
                cf.set(&["uptimeSeconds"], v);
                cf.evidence(
                    &["uptimeSeconds"],
                    Evidence::file(UPTIME).with_source("runtime"),
                );
            }
            Err(r) => cf.unknown(&["uptimeSeconds"], r),
        },
        Err(e) => cf.unknown(&["uptimeSeconds"], e),
    }
    match boot_time(host) {
        Ok(t) => {
            cf.set(&["bootTime"], crate::clock::rfc3339_secs(t));
            cf.set(&["bootTimeUnix"], t);
            cf.evidence(
                &["bootTime"],
                Evidence::file(PROC_STAT).with_source("runtime"),
            );
            cf.evidence(
                &["bootTimeUnix"],
                Evidence::file(PROC_STAT).with_source("runtime"),
            );
        }
        Err(r) => {
            cf.unknown(&["bootTime"], &r);
            cf.unknown(&["bootTimeUnix"], &r);
        }
    }
}

/// The node image version AKS stamped on the node (the `node-image-version` node label), from
/// the running kubelet's flags or else `/etc/default/kubelet`, with where it was read.
pub(crate) fn node_image_label(
    ctx: &Context<'_>,
    defaults: &Result<String, HostError>,
) -> Option<(String, Evidence)> {
    for p in ctx.procs.find("kubelet") {
        let flags = parse_flags(p.args_for("kubelet"), |_| false);
        let Some(values) = flags.values.get("node-labels") else {
            continue;
        };
        if let Some(v) = values.iter().find_map(|v| {
            node_labels(v)
                .get(NODE_IMAGE_LABEL)
                .map(|s| (*s).to_owned())
        }) {
            return Some((
                v,
                Evidence::file(host::display(&p.proc_path("cmdline")))
                    .with_pid(p.pid)
                    .with_source("flag"),
            ));
        }
    }
    let text = defaults.as_ref().ok()?;
    labels_from_defaults(text)
        .iter()
        .find_map(|l| {
            node_labels(l)
                .get(NODE_IMAGE_LABEL)
                .map(|s| (*s).to_owned())
        })
        .map(|v| (v, Evidence::file(KUBELET_DEFAULTS).with_source("config")))
}

/// [`node_image_label`], reading `/etc/default/kubelet` itself.
pub(crate) fn node_image_record(ctx: &Context<'_>) -> Option<(String, Evidence)> {
    let defaults = ctx
        .host
        .read_string(Path::new(KUBELET_DEFAULTS), SMALL_FILE_LIMIT);
    node_image_label(ctx, &defaults).filter(|(v, _)| !v.is_empty())
}

fn node_image(ctx: &Context<'_>, defaults: &Result<String, HostError>, cf: &mut ComponentFacts) {
    let found = node_image_label(ctx, defaults);
    match found {
        Some((version, evidence)) if !version.is_empty() => {
            let mut image = json!({"version": version, "label": NODE_IMAGE_LABEL});
            if let Some(d) = image_build_date(&version) {
                image["buildDate"] = Value::String(d);
            }
            cf.set(&["nodeImage"], image);
            cf.evidence(&["nodeImage"], evidence);
        }
        _ => {
            let defaults_said = match defaults {
                Ok(_) => format!("{KUBELET_DEFAULTS} has no {NODE_IMAGE_LABEL} label"),
                Err(e) => e.to_string(),
            };
            cf.unknown(
                &["nodeImage"],
                format!(
                    "no node image record: no running kubelet has a {NODE_IMAGE_LABEL} node label and {defaults_said}"
                ),
            );
        }
    }
}

fn markers(ctx: &Context<'_>, defaults: &Result<String, HostError>, cf: &mut ComponentFacts) {
    let host = ctx.host;
    let mut aks: Vec<String> = AKS_MARKER_PATHS
        .iter()
        .filter(|p| host.exists(Path::new(p)))
        .map(|p| (*p).to_owned())
        .collect();
    if defaults.as_ref().is_ok_and(|t| {
        labels_from_defaults(t)
            .iter()
            .any(|l| l.contains("kubernetes.azure.com/"))
    }) {
        aks.push(KUBELET_DEFAULTS.to_owned());
    }
    for p in ctx.procs.find("kubelet") {
        let flags = parse_flags(p.args_for("kubelet"), |_| false);
        if flags
            .values
            .get("node-labels")
            .is_some_and(|v| v.iter().any(|l| l.contains("kubernetes.azure.com/")))
        {
            aks.push(host::display(&p.proc_path("cmdline")));
        }
    }
    let azure: Vec<&str> = AZURE_MARKER_PATHS
        .iter()
        .copied()
        .filter(|p| host.exists(Path::new(p)))
        .collect();
    cf.set(&["aks", "markers"], json!(aks));
    cf.set(&["azure", "markers"], json!(azure));
    // Interactive SSH sessions (sshd session processes joined with wtmp): the support policy
    // discourages logging in to nodes, and file changes are linked to the session that made them.
    let sessions = crate::attrib::sessions::ssh_sessions_in(host, ctx.procs);
    match sessions.proc_error {
        Some(e) => cf.unknown(&["sshSessions"], format!("/proc: {e}")),
        None => cf.set(
            &["sshSessions"],
            serde_json::to_value(&sessions.sessions).unwrap_or(Value::Array(Vec::new())),
        ),
    }
}

#[cfg(test)]
mod tests;
