//! Path patterns of the file-integrity watch sets.
//!
//! Semantics (documented in the README, and deliberately not AIDE's half-anchored regular
//! expressions):
//! - a pattern is an absolute host path, matched against whole paths, anchored at both ends;
//! - `*` matches any run of characters inside one path component (never `/`);
//! - `?` matches exactly one character inside a component;
//! - `**` as a whole component matches zero or more components, so `/etc/ssh/**` matches
//!   `/etc/ssh` itself and everything below it;
//! - `\` escapes the next character; every other character matches itself, byte for byte
//!   (names need not be UTF-8).
//!
//! Which set governs a path is decided in `spec.rs` (the last matching set wins, as in
//! `.gitignore`).

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// One component of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// A plain name, compared byte for byte.
    Literal(Vec<u8>),
    /// A name with `*`/`?`: the tokens to match.
    Wild(Vec<Tok>),
    /// `**`: zero or more components.
    AnyDepth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    Star,
    Any,
}

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    segs: Vec<Seg>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.raw)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why a pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0:?}: a watch pattern must be an absolute path")]
    NotAbsolute(String),
    #[error("{0:?}: `.` and `..` are not allowed in a watch pattern")]
    DotComponent(String),
    #[error("{0:?}: `**` must be a whole path component")]
    BadDoubleStar(String),
    #[error("{0:?}: a trailing `\\` escapes nothing")]
    TrailingEscape(String),
}

impl Pattern {
    pub fn new(raw: &str) -> Result<Self, PatternError> {
        if !raw.starts_with('/') {
            return Err(PatternError::NotAbsolute(raw.into()));
        }
        let mut segs = Vec::new();
        for comp in split_escaped(raw.as_bytes()) {
            if comp.is_empty() {
                continue; // `//` and a trailing `/`
            }
            if comp == b"." || comp == b".." {
                return Err(PatternError::DotComponent(raw.into()));
            }
            if comp == b"**" {
                if segs.last() != Some(&Seg::AnyDepth) {
                    segs.push(Seg::AnyDepth);
                }
                continue;
            }
            let mut toks = Vec::with_capacity(comp.len());
            let mut wild = false;
            let mut i = 0;
            while i < comp.len() {
                match comp[i] {
                    b'\\' => {
                        let Some(&b) = comp.get(i + 1) else {
                            return Err(PatternError::TrailingEscape(raw.into()));
                        };
                        toks.push(Tok::Byte(b));
                        i += 2;
                        continue;
                    }
                    b'*' => {
                        if comp.get(i + 1) == Some(&b'*') {
                            return Err(PatternError::BadDoubleStar(raw.into()));
                        }
                        wild = true;
                        toks.push(Tok::Star);
                    }
                    b'?' => {
                        wild = true;
                        toks.push(Tok::Any);
                    }
                    b => toks.push(Tok::Byte(b)),
                }
                i += 1;
            }
            if wild {
                segs.push(Seg::Wild(toks));
            } else {
                let lit = toks
                    .into_iter()
                    .filter_map(|t| match t {
                        Tok::Byte(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                segs.push(Seg::Literal(lit));
            }
        }
        Ok(Self {
            raw: raw.to_owned(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The longest leading run of literal components: where a walk for this pattern starts.
    pub fn root(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        for s in &self.segs {
            match s {
                Seg::Literal(l) => p.push(std::ffi::OsStr::from_bytes(l)),
                _ => break,
            }
        }
        p
    }

    /// Whether the pattern matches `path` (an absolute host path) exactly.
    pub fn matches(&self, path: &Path) -> bool {
        let comps = components(path);
        match_segs(&self.segs, &comps, false)
    }

    /// Whether some path strictly below the directory `dir` could match.
    pub fn may_match_below(&self, dir: &Path) -> bool {
        let comps = components(dir);
        match_segs(&self.segs, &comps, true)
    }

    /// Whether the pattern ends in `/**`: it then covers the whole subtree of what its prefix
    /// matches, which lets an `ignore` set prune a walk.
    pub fn covers_subtree_of(&self, dir: &Path) -> bool {
        match self.segs.split_last() {
            Some((Seg::AnyDepth, head)) => match_segs(head, &components(dir), false),
            _ => false,
        }
    }
}

/// Splits at unescaped `/`, keeping escapes in the parts.
fn split_escaped(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'/' => {
                out.push(&b[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push(&b[start.min(b.len())..]);
    out
}

/// The normal components of an absolute path, as bytes.
pub fn components(path: &Path) -> Vec<&[u8]> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            _ => None,
        })
        .collect()
}

/// Matches segments against components. With `prefix`, succeeds when `comps` is a proper
/// prefix of some matching path (the pattern still has something left to match below it).
fn match_segs(segs: &[Seg], comps: &[&[u8]], prefix: bool) -> bool {
    match segs.split_first() {
        None => !prefix && comps.is_empty(),
        Some((Seg::AnyDepth, rest)) => {
            if prefix {
                return true; // `**` can match anything below
            }
            (0..=comps.len()).any(|k| match_segs(rest, &comps[k..], false))
        }
        Some((seg, rest)) => match comps.split_first() {
            None => prefix,
            Some((c, more)) => {
                let ok = match seg {
                    Seg::Literal(l) => l.as_slice() == *c,
                    Seg::Wild(t) => match_component(t, c),
                    Seg::AnyDepth => false,
                };
                ok && match_segs(rest, more, prefix)
            }
        },
    }
}

/// `*`/`?` matching of one component, iterative with single backtracking point (linear for
/// the patterns written in practice, never exponential).
fn match_component(toks: &[Tok], name: &[u8]) -> bool {
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match toks.get(t) {
            Some(Tok::Byte(b)) if *b == name[n] => {
                t += 1;
                n += 1;
            }
            Some(Tok::Any) => {
                t += 1;
                n += 1;
            }
            Some(Tok::Star) => {
                star = Some((t, n));
                t += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    t = st + 1;
                    n = sn + 1;
                    star = Some((st, sn + 1));
                }
                None => return false,
            },
        }
    }
    toks[t.min(toks.len())..].iter().all(|x| *x == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        Pattern::new(p).unwrap().matches(Path::new(path))
    }

    #[test]
    fn anchored_and_component_bound() {
        assert!(m("/etc/ssh/sshd_config", "/etc/ssh/sshd_config"));
        assert!(!m("/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d"));
        assert!(!m("/etc/ssh", "/etc/ssh/sshd_config"));
        assert!(m("/etc/*.conf", "/etc/sysctl.conf"));
        assert!(!m("/etc/*.conf", "/etc/sysctl.d/a.conf"));
        assert!(m("/etc/sysctl.d/??-*.conf", "/etc/sysctl.d/99-x.conf"));
        assert!(!m("/etc/sysctl.d/??-*.conf", "/etc/sysctl.d/9-x.conf"));
        assert!(m(
            "/home/*/.ssh/authorized_keys",
            "/home/alice/.ssh/authorized_keys"
        ));
        assert!(!m(
            "/home/*/.ssh/authorized_keys",
            "/home/a/b/.ssh/authorized_keys"
        ));
    }

    #[test]
    fn double_star_matches_zero_or_more_components() {
        assert!(m("/etc/ssh/**", "/etc/ssh"));
        assert!(m("/etc/ssh/**", "/etc/ssh/a/b/c"));
        assert!(!m("/etc/ssh/**", "/etc/sshx"));
        assert!(m("/var/**/*.pem", "/var/a.pem"));
        assert!(m("/var/**/*.pem", "/var/x/y/a.pem"));
        assert!(!m("/var/**/*.pem", "/var/x/y/a.pem.bak"));
    }

    #[test]
    fn escapes_and_bytes() {
        assert!(m(r"/etc/a\*b", "/etc/a*b"));
        assert!(!m(r"/etc/a\*b", "/etc/aXb"));
        let p = Pattern::new("/etc/*").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"/etc/\xff\xfe");
        assert!(p.matches(Path::new(odd)));
    }

    #[test]
    fn roots_and_pruning() {
        let p = Pattern::new("/var/lib/kubelet/pki/**").unwrap();
        assert_eq!(p.root(), PathBuf::from("/var/lib/kubelet/pki"));
        assert!(p.may_match_below(Path::new("/var/lib/kubelet")));
        assert!(p.may_match_below(Path::new("/var/lib/kubelet/pki/x")));
        assert!(!p.may_match_below(Path::new("/var/lib/kubelet/pods")));
        let q = Pattern::new("/etc/*.conf").unwrap();
        assert_eq!(q.root(), PathBuf::from("/etc"));
        assert!(q.may_match_below(Path::new("/etc")));
        assert!(!q.may_match_below(Path::new("/etc/ssh")));
        let i = Pattern::new("/var/lib/kubelet/pods/**").unwrap();
        assert!(i.covers_subtree_of(Path::new("/var/lib/kubelet/pods")));
        assert!(!i.covers_subtree_of(Path::new("/var/lib/kubelet")));
    }

    #[test]
    fn invalid_patterns() {
        assert!(matches!(
            Pattern::new("etc/x"),
            Err(PatternError::NotAbsolute(_))
        ));
        assert!(matches!(
            Pattern::new("/etc/../x"),
            Err(PatternError::DotComponent(_))
        ));
        assert!(matches!(
            Pattern::new("/etc/a**"),
            Err(PatternError::BadDoubleStar(_))
        ));
        assert!(matches!(
            Pattern::new("/etc/a\\"),
            Err(PatternError::TrailingEscape(_))
        ));
    }

    #[test]
    fn star_backtracking_is_linear_enough() {
        let long = format!("/x/{}", "a".repeat(4000));
        assert!(!m("/x/*a*a*a*a*b", &long));
        assert!(m("/x/*a*a*a*a*", &long));
    }
}
