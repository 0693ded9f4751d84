//! What the file-integrity monitor watches: watch sets from the baseline (`files:`), their
//! presets and attributes, and which set governs a path.
//!
//! A path is governed by the **last** set, in layer and document order, one of whose patterns
//! matches it — the rule `.gitignore` uses, so a user layer can always narrow or widen what a
//! profile watches. A path governed by an `ignore` set is not tracked; a directory governed by
//! an `ignore` pattern ending in `/**` is not even descended into (`/var/lib/kubelet/pods/**`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::glob::{Pattern, PatternError};
use crate::baseline::Severity;

/// One tracked attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attr {
    /// File type (regular, directory, symlink, FIFO, socket, device).
    Type,
    /// Permission bits including setuid/setgid/sticky.
    Mode,
    Uid,
    Gid,
    Size,
    /// SHA-256 of the content (regular files).
    Sha256,
    /// Symlink target.
    Target,
    /// Extended attributes, including `security.capability` and SELinux labels.
    Xattrs,
    Mtime,
    Ctime,
    Inode,
}

impl Attr {
    pub const ALL: [Attr; 11] = [
        Attr::Type,
        Attr::Mode,
        Attr::Uid,
        Attr::Gid,
        Attr::Size,
        Attr::Sha256,
        Attr::Target,
        Attr::Xattrs,
        Attr::Mtime,
        Attr::Ctime,
        Attr::Inode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Attr::Type => "type",
            Attr::Mode => "mode",
            Attr::Uid => "uid",
            Attr::Gid => "gid",
            Attr::Size => "size",
            Attr::Sha256 => "sha256",
            Attr::Target => "target",
            Attr::Xattrs => "xattrs",
            Attr::Mtime => "mtime",
            Attr::Ctime => "ctime",
            Attr::Inode => "inode",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Attr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Attr::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown attribute {s:?} (known: {})",
                    Attr::ALL.map(Attr::as_str).join(", ")
                )
            })
    }
}

/// A set of attributes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AttrSet(u16);

impl AttrSet {
    pub fn of(attrs: &[Attr]) -> Self {
        Self(attrs.iter().fold(0, |m, a| m | a.bit()))
    }
    pub fn has(self, a: Attr) -> bool {
        self.0 & a.bit() != 0
    }
    pub fn iter(self) -> impl Iterator<Item = Attr> {
        Attr::ALL.into_iter().filter(move |a| self.has(*a))
    }
    pub fn bits(self) -> u16 {
        self.0
    }
    /// Parses a comma-separated list (`sha256,mode,uid`).
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let attrs = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(Attr::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if attrs.is_empty() {
            return Err("the attribute list is empty".into());
        }
        Ok(Self::of(&attrs))
    }
}

impl fmt::Debug for AttrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// AIDE-like groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Everything that matters for configuration: type, mode, owner, size, content, symlink
    /// target, extended attributes. Timestamps and inode numbers only decide when to re-hash
    /// (a `touch` is not a change; a replaced file with the same bytes is not either).
    Config,
    /// Growing files: type, mode and owner are tracked, growth is allowed, and shrinking or
    /// replacement (a new inode) is a change.
    Log,
    /// Not tracked.
    Ignore,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Config => "config",
            Preset::Log => "log",
            Preset::Ignore => "ignore",
        }
    }

    /// The attributes a preset compares.
    pub fn attributes(self) -> AttrSet {
        match self {
            Preset::Config => AttrSet::of(&[
                Attr::Type,
                Attr::Mode,
                Attr::Uid,
                Attr::Gid,
                Attr::Size,
                Attr::Sha256,
                Attr::Target,
                Attr::Xattrs,
            ]),
            Preset::Log => {
                AttrSet::of(&[Attr::Type, Attr::Mode, Attr::Uid, Attr::Gid, Attr::Inode])
            }
            Preset::Ignore => AttrSet::default(),
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "config" => Ok(Preset::Config),
            "log" => Ok(Preset::Log),
            "ignore" => Ok(Preset::Ignore),
            _ => Err(format!("unknown preset {s:?} (known: config, log, ignore)")),
        }
    }
}

/// One effective watch set.
#[derive(Debug, Clone)]
pub struct WatchSet {
    pub id: String,
    pub title: String,
    pub patterns: Vec<Pattern>,
    pub preset: Preset,
    /// The attributes compared (the preset's unless the set lists its own).
    pub attributes: AttrSet,
    pub severity: Severity,
    pub policy: String,
    pub remediation: Option<String>,
    /// Layers that defined and patched the set.
    pub sources: Vec<String>,
}

impl WatchSet {
    /// The rule id findings of this set carry.
    pub fn rule_id(&self) -> String {
        format!("files.{}", self.id)
    }

    /// An ad-hoc set over `paths` (the `--watch` option): each path and everything below it.
    pub fn ad_hoc(paths: &[PathBuf], attributes: Option<AttrSet>) -> Result<Self, PatternError> {
        let patterns = paths
            .iter()
            .map(|p| {
                let s = p.to_string_lossy();
                let s = s.trim_end_matches('/');
                Pattern::new(&format!("{}/**", escape(if s.is_empty() { "" } else { s })))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            id: "watch".into(),
            title: "Files under --watch are unchanged since the baseline capture".into(),
            patterns,
            preset: Preset::Config,
            attributes: attributes.unwrap_or(Preset::Config.attributes()),
            severity: Severity::High,
            policy: "aks/out-of-band-changes".into(),
            remediation: None,
            sources: vec!["--watch".into()],
        })
    }
}

/// Escapes glob characters in a literal path.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Resource caps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Hashing threads.
    pub threads: usize,
    /// Larger regular files are tracked by metadata only, and listed as such in every report.
    pub max_hash_bytes: u64,
    /// Entries tracked at most; beyond it the walk stops and says so.
    pub max_entries: usize,
    /// Directory depth below a watch root.
    pub max_depth: usize,
    /// Full re-hash of every file, whatever its timestamps say (catches timestamp forgery).
    pub rehash_interval: Duration,
    /// Largest text file whose content is kept for diffs.
    pub max_diff_bytes: u64,
    /// Read throughput cap for background re-hashing (bytes per second; 0 = none).
    pub rehash_bytes_per_sec: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
            max_hash_bytes: 256 << 20,
            max_entries: 1_000_000,
            max_depth: 64,
            rehash_interval: Duration::from_secs(24 * 3600),
            max_diff_bytes: 64 << 10,
            rehash_bytes_per_sec: 64 << 20,
        }
    }
}

/// The watch sets in force and the caps.
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    pub sets: Vec<WatchSet>,
    pub limits: Limits,
}

impl WatchSpec {
    pub fn new(sets: Vec<WatchSet>) -> Self {
        Self {
            sets,
            limits: Limits::default(),
        }
    }

    /// Whether anything is watched.
    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(|s| s.preset == Preset::Ignore)
    }

    /// The index of the set governing `path`, `None` when no set matches or an `ignore` set
    /// has the last word.
    pub fn govern(&self, path: &Path) -> Option<usize> {
        let i = self
            .sets
            .iter()
            .rposition(|s| s.patterns.iter().any(|p| p.matches(path)))?;
        (self.sets[i].preset != Preset::Ignore).then_some(i)
    }

    /// Whether a walk must descend into `dir`: some tracked set may match below it, and no
    /// later `ignore` pattern covers its whole subtree.
    pub fn descend(&self, dir: &Path) -> bool {
        for s in self.sets.iter().rev() {
            if s.preset == Preset::Ignore {
                if s.patterns.iter().any(|p| p.covers_subtree_of(dir)) {
                    return false;
                }
            } else if s.patterns.iter().any(|p| p.may_match_below(dir)) {
                return true;
            }
        }
        false
    }

    /// Where walks start: the literal prefix of every tracked pattern, with roots below
    /// another root dropped.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self
            .sets
            .iter()
            .filter(|s| s.preset != Preset::Ignore)
            .flat_map(|s| s.patterns.iter().map(Pattern::root))
            .collect();
        roots.sort();
        roots.dedup();
        let mut out: Vec<PathBuf> = Vec::new();
        for r in roots {
            if !out.iter().any(|o| r.starts_with(o)) {
                out.push(r);
            }
        }
        out
    }

    /// A fingerprint of what is tracked (patterns, presets, attributes): a capture records it
    /// so that a changed watch set is told apart from changed files.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for set in &self.sets {
            s.push_str(&set.id);
            s.push('\0');
            s.push_str(set.preset.as_str());
            s.push_str(&set.attributes.bits().to_string());
            for p in &set.patterns {
                s.push('\0');
                s.push_str(p.as_str());
            }
            s.push('\n');
        }
        crate::report::cloudevents::stable_id(&[&s])[..16].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(id: &str, preset: Preset, pats: &[&str]) -> WatchSet {
        WatchSet {
            id: id.into(),
            title: id.into(),
            patterns: pats.iter().map(|p| Pattern::new(p).unwrap()).collect(),
            preset,
            attributes: preset.attributes(),
            severity: Severity::High,
            policy: "x".into(),
            remediation: None,
            sources: vec![],
        }
    }

    #[test]
    fn last_match_wins_and_ignore_prunes() {
        let spec = WatchSpec::new(vec![
            set("kubelet", Preset::Config, &["/var/lib/kubelet/**"]),
            set("pods", Preset::Ignore, &["/var/lib/kubelet/pods/**"]),
            set("one-pod", Preset::Config, &["/var/lib/kubelet/pods/keep"]),
        ]);
        assert_eq!(
            spec.govern(Path::new("/var/lib/kubelet/config.yaml")),
            Some(0)
        );
        assert_eq!(spec.govern(Path::new("/var/lib/kubelet/pods/x")), None);
        assert_eq!(
            spec.govern(Path::new("/var/lib/kubelet/pods/keep")),
            Some(2)
        );
        assert!(spec.descend(Path::new("/var/lib/kubelet")));
        // `one-pod` comes later and may match below, so the walk still enters pods/.
        assert!(spec.descend(Path::new("/var/lib/kubelet/pods")));
        let spec2 = WatchSpec::new(spec.sets[..2].to_vec());
        assert!(!spec2.descend(Path::new("/var/lib/kubelet/pods")));
        assert_eq!(spec2.roots(), vec![PathBuf::from("/var/lib/kubelet")]);
    }

    #[test]
    fn attribute_lists_parse() {
        let a = AttrSet::parse_list("sha256,mode,uid,gid,size,mtime").unwrap();
        assert!(a.has(Attr::Mtime) && !a.has(Attr::Xattrs));
        assert!(AttrSet::parse_list("sha1").is_err());
        assert!(AttrSet::parse_list("").is_err());
    }

    #[test]
    fn ad_hoc_sets_escape_glob_characters() {
        let s = WatchSet::ad_hoc(&[PathBuf::from("/tmp/a*b/")], None).unwrap();
        assert!(s.patterns[0].matches(Path::new("/tmp/a*b/x")));
        assert!(!s.patterns[0].matches(Path::new("/tmp/aXb/x")));
    }
}
