//! Feature-gate stages: the embedded table (`feature_gates.tsv`, built from upstream's
//! versioned feature specs) and the lookup of a gate's stage in a given Kubernetes minor.
//!
//! A gate the table does not know is `unknown`: nodedrift never guesses a stage from a name.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The table, compiled in.
const TABLE: &str = include_str!("feature_gates.tsv");

/// The Kubernetes minors (1.x) the table is maintained for; the newest is used when the
/// kubelet's version is unknown.
pub(crate) const OLDEST_MINOR: u32 = 27;
pub(crate) const NEWEST_MINOR: u32 = 35;

/// A gate's maturity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Alpha,
    Beta,
    Ga,
    Deprecated,
    Removed,
}

impl Stage {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "alpha" => Self::Alpha,
            "beta" => Self::Beta,
            "ga" => Self::Ga,
            "deprecated" => Self::Deprecated,
            "removed" => Self::Removed,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Alpha => "alpha",
            Self::Beta => "beta",
            Self::Ga => "ga",
            Self::Deprecated => "deprecated",
            Self::Removed => "removed",
        }
    }
}

/// One row: from Kubernetes 1.`since_minor` on, the gate has this stage and default.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    since_major: u32,
    since_minor: u32,
    stage: Stage,
    default: Option<bool>,
    locked: bool,
}

/// What the table says about a gate in one Kubernetes minor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GateInfo {
    Known {
        stage: Stage,
        default: bool,
        locked: bool,
    },
    /// The gate was introduced after this minor.
    NotYet { introduced: String },
    /// The gate is no longer registered in this minor.
    Removed { removed: String },
    /// Not in the table at all.
    Unknown,
}

fn table() -> &'static BTreeMap<&'static str, Vec<Spec>> {
    static T: OnceLock<BTreeMap<&'static str, Vec<Spec>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: BTreeMap<&'static str, Vec<Spec>> = BTreeMap::new();
        for (n, line) in TABLE.lines().enumerate() {
            match parse_line(line) {
                Ok(Some((gate, spec))) => t.entry(gate).or_default().push(spec),
                Ok(None) => {}
                Err(e) => tracing::warn!(line = n + 1, error = %e, "skipping a malformed feature-gate table row"),
            }
        }
        for specs in t.values_mut() {
            specs.sort_by_key(|s| (s.since_major, s.since_minor));
        }
        t
    })
}

fn parse_line(line: &str) -> Result<Option<(&str, Spec)>, String> {
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let cols: Vec<&str> = line.split('\t').collect();
    let [gate, since, stage, default, locked, _source] = cols.as_slice() else {
        return Err(format!(
            "expected 6 tab-separated columns, found {}",
            cols.len()
        ));
    };
    let (maj, min) = since
        .split_once('.')
        .ok_or_else(|| format!("bad version {since:?}"))?;
    let stage = Stage::parse(stage).ok_or_else(|| format!("bad stage {stage:?}"))?;
    let parse_bool = |s: &str| match s {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        "-" if stage == Stage::Removed => Ok(None),
        other => Err(format!("bad boolean {other:?}")),
    };
    Ok(Some((
        gate,
        Spec {
            since_major: maj.parse().map_err(|_| format!("bad version {since:?}"))?,
            since_minor: min.parse().map_err(|_| format!("bad version {since:?}"))?,
            stage,
            default: parse_bool(default)?,
            locked: parse_bool(locked)?.unwrap_or(false),
        },
    )))
}

/// The stage of `gate` in Kubernetes 1.`minor`.
pub(crate) fn lookup(gate: &str, minor: u32) -> GateInfo {
    let Some(specs) = table().get(gate) else {
        return GateInfo::Unknown;
    };
    let current = specs
        .iter()
        .rev()
        .find(|s| s.since_major < 1 || (s.since_major == 1 && s.since_minor <= minor));
    match current {
        None => GateInfo::NotYet {
            introduced: specs
                .first()
                .map(|s| format!("{}.{}", s.since_major, s.since_minor))
                .unwrap_or_default(),
        },
        Some(s) if s.stage == Stage::Removed => GateInfo::Removed {
            removed: format!("{}.{}", s.since_major, s.since_minor),
        },
        Some(s) => GateInfo::Known {
            stage: s.stage,
            default: s.default.unwrap_or(false),
            locked: s.locked,
        },
    }
}

/// Number of gates in the table.
pub(crate) fn gate_count() -> usize {
    table().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_completely() {
        for (n, line) in TABLE.lines().enumerate() {
            assert!(
                parse_line(line).is_ok(),
                "line {}: {line:?}: {:?}",
                n + 1,
                parse_line(line)
            );
        }
        assert!(gate_count() > 200, "{}", gate_count());
    }

    #[test]
    fn rows_are_in_version_order_and_removal_is_last() {
        let mut rows: BTreeMap<&str, Vec<(u32, u32, Stage)>> = BTreeMap::new();
        for line in TABLE.lines() {
            if let Ok(Some((g, s))) = parse_line(line) {
                rows.entry(g)
                    .or_default()
                    .push((s.since_major, s.since_minor, s.stage));
            }
        }
        for (g, r) in rows {
            let mut sorted = r.clone();
            sorted.sort_by_key(|(a, b, _)| (*a, *b));
            assert_eq!(r, sorted, "{g}: rows out of order");
            let removed = r.iter().filter(|x| x.2 == Stage::Removed).count();
            assert!(
                removed == 0 || (removed == 1 && r.last().is_some_and(|x| x.2 == Stage::Removed)),
                "{g}"
            );
        }
    }

    #[test]
    fn stages_per_minor() {
        assert_eq!(
            lookup("EventedPLEG", 30),
            GateInfo::Known {
                stage: Stage::Alpha,
                default: false,
                locked: false
            }
        );
        assert!(matches!(
            lookup("KubeletPSI", 33),
            GateInfo::Known {
                stage: Stage::Alpha,
                ..
            }
        ));
        assert!(matches!(
            lookup("KubeletPSI", 34),
            GateInfo::Known {
                stage: Stage::Beta,
                default: true,
                ..
            }
        ));
        assert!(
            matches!(lookup("KubeletPSI", 32), GateInfo::NotYet { ref introduced } if introduced == "1.33")
        );
        assert!(matches!(
            lookup("AppArmor", 32),
            GateInfo::Known {
                stage: Stage::Ga,
                ..
            }
        ));
        assert!(
            matches!(lookup("AppArmor", 33), GateInfo::Removed { ref removed } if removed == "1.33")
        );
        assert_eq!(lookup("NoSuchGate", 30), GateInfo::Unknown);
        // Every kubelet-facing gate of every supported minor resolves to something.
        for minor in OLDEST_MINOR..=NEWEST_MINOR {
            assert!(matches!(
                lookup("GracefulNodeShutdown", minor),
                GateInfo::Known {
                    stage: Stage::Beta,
                    ..
                }
            ));
        }
    }
}
