//! Keys and orgs an operator suspended pending review, as the ledger's spend feed last listed
//! them: refused with 403 before any limit is charged or any provider is called.
//!
//! State outside the snapshot (a reload keeps it). The feed's answer is the whole list, so
//! each answer replaces it; a failed poll keeps the last list (a ledger outage must not lift a
//! suspension). A process starts with none until its first poll (`ledger.spend_poll`).

use crate::config::VirtualKey;
use crate::errors::GatewayError;
use arc_swap::ArcSwap;
use sluice_wire::{SubjectKind, Suspension};
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Listed {
    keys: HashSet<String>,
    orgs: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct Suspensions {
    listed: ArcSwap<Listed>,
}

impl Suspensions {
    /// Takes the feed's list as the whole truth.
    pub fn replace(&self, list: &[Suspension]) {
        let mut next = Listed::default();
        for s in list {
            match s.kind {
                SubjectKind::Key => next.keys.insert(s.subject.clone()),
                SubjectKind::Org => next.orgs.insert(s.subject.clone()),
            };
        }
        let before = self.listed.load();
        if before.keys != next.keys || before.orgs != next.orgs {
            tracing::info!(
                keys = next.keys.len(),
                orgs = next.orgs.len(),
                "suspensions updated from the ledger"
            );
        }
        self.listed.store(Arc::new(next));
    }

    /// Refuses a key that is suspended, or whose org is.
    pub fn check(&self, key: &VirtualKey) -> Result<(), GatewayError> {
        let listed = self.listed.load();
        if listed.orgs.contains(&*key.org) {
            return Err(GatewayError::Suspended(SubjectKind::Org));
        }
        if listed.keys.contains(key.id.as_str()) {
            return Err(GatewayError::Suspended(SubjectKind::Key));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspension(kind: SubjectKind, subject: &str) -> Suspension {
        Suspension {
            kind,
            subject: subject.into(),
            reason: "review".into(),
            since_ms: 1,
        }
    }

    #[test]
    fn a_listed_key_or_org_is_refused_until_a_list_without_it() {
        let text = format!(
            "{}[[orgs]]\nid = \"acme\"\n[[keys]]\ndigest = \"sha256:{}\"\norg = \"acme\"\n",
            sluice_test_support::config::ONE_ROUTE,
            "ab".repeat(32)
        );
        let snap = crate::config::parse(&text, "t.toml", &crate::config::NoEnv).unwrap();
        let key = snap.keys.values().next().unwrap();
        let s = Suspensions::default();
        assert_eq!(s.check(key), Ok(()));
        s.replace(&[suspension(SubjectKind::Key, key.id.as_str())]);
        assert_eq!(s.check(key), Err(GatewayError::Suspended(SubjectKind::Key)));
        s.replace(&[suspension(SubjectKind::Org, "acme")]);
        assert_eq!(s.check(key), Err(GatewayError::Suspended(SubjectKind::Org)));
        s.replace(&[suspension(SubjectKind::Org, "beta")]);
        assert_eq!(s.check(key), Ok(()));
    }
}
