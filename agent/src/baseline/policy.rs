//! The catalogue of support-policy clauses that rules refer to by id (`policy:`), embedded from
//! `policy.yaml`, so that every rule traces back to the sentence of the policy it protects.

use serde::{Deserialize, Serialize};

const CATALOG: &str = include_str!("policy.yaml");

/// One clause of a support policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Clause {
    pub id: String,
    pub summary: String,
    /// The sentence in the policy text it comes from.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalog {
    clauses: Vec<Clause>,
}

/// Every known clause, in catalogue order.
pub fn clauses() -> Vec<Clause> {
    // The catalogue is compiled in and checked by a test; an error here is a build defect.
    serde_norway::from_str::<Catalog>(CATALOG)
        .map(|c| c.clauses)
        .unwrap_or_default()
}

/// The clause with `id`, if known.
pub fn clause(id: &str) -> Option<Clause> {
    clauses().into_iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn catalogue_parses_and_ids_are_unique() {
        let c: super::Catalog = serde_norway::from_str(super::CATALOG).unwrap();
        let mut ids: Vec<_> = c.clauses.iter().map(|c| &c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), c.clauses.len());
        assert!(ids.len() > 10);
    }
}
