//! Validated model routes: a model entry's targets (each provider endpoint a destination),
//! balancing and failover policy.

use super::file::{ModelSection, TargetSection};
use super::providers::Provider;
use super::ConfigError;
use crate::routing::{Balance, Policy, Pool, Target, MAX_TARGETS};
use std::collections::HashMap;
use std::sync::Arc;

/// Builds the pool of one `[[models]]` entry.
pub(super) fn pool(
    m: &ModelSection,
    providers: &HashMap<String, Arc<Provider>>,
) -> Result<Pool, ConfigError> {
    let ctx = format!("model {:?}", m.name);
    let entries: Vec<TargetSection> = match (&m.provider, &m.targets) {
        (Some(p), None) => vec![TargetSection {
            provider: p.clone(),
            model: None,
            weight: None,
            priority: None,
        }],
        (None, Some(t)) if !t.is_empty() => t.clone(),
        _ => {
            return Err(ConfigError::invalid(format!(
                "{ctx}: set exactly one of provider and targets (a non-empty list)"
            )))
        }
    };
    let mut targets = Vec::new();
    for t in &entries {
        let provider = providers.get(&t.provider).ok_or_else(|| {
            ConfigError::invalid(format!("{ctx}: unknown provider {:?}", t.provider))
        })?;
        let weight = t.weight.unwrap_or(1);
        if weight == 0 {
            return Err(ConfigError::invalid(format!(
                "{ctx}: target {:?} has weight 0 (remove it instead)",
                t.provider
            )));
        }
        let model = t.model.as_deref().or(m.upstream_model.as_deref());
        for e in 0..provider.endpoints.len() {
            targets.push(Target::new(
                provider.clone(),
                e,
                model.map(Arc::from),
                weight,
                t.priority.unwrap_or(0),
            ));
        }
    }
    if targets.len() > MAX_TARGETS {
        return Err(ConfigError::invalid(format!(
            "{ctx}: {} endpoints in all; a route may have at most {MAX_TARGETS}",
            targets.len()
        )));
    }
    let family = targets[0].provider.kind;
    if let Some(other) = targets.iter().find(|t| t.provider.kind != family) {
        return Err(ConfigError::invalid(format!(
            "{ctx}: target {:?} speaks another API than {:?} (sluice never translates)",
            other.provider.name, targets[0].provider.name
        )));
    }
    Ok(Pool::new(targets, policy(m, &ctx)?, family))
}

fn policy(m: &ModelSection, ctx: &str) -> Result<Policy, ConfigError> {
    let d = Policy::default();
    let balance = match m.balance.as_deref() {
        None => d.balance,
        Some(b) => Balance::parse(b).ok_or_else(|| {
            ConfigError::invalid(format!(
                "{ctx}: balance {b:?} is not one of least_outstanding, weighted, least_tokens"
            ))
        })?,
    };
    let max_attempts = m.max_attempts.unwrap_or(d.max_attempts);
    if !(1..=MAX_TARGETS as u32).contains(&max_attempts) {
        return Err(ConfigError::invalid(format!(
            "{ctx}: max_attempts must be between 1 and {MAX_TARGETS}"
        )));
    }
    let retry_on = m.retry_on.clone().unwrap_or(d.retry_on);
    if let Some(bad) = retry_on.iter().find(|s| !(400..=599).contains(*s)) {
        return Err(ConfigError::invalid(format!(
            "{ctx}: retry_on {bad} is not an error status (400 to 599)"
        )));
    }
    let retry_ratio = m.retry_budget.unwrap_or(d.retry_ratio);
    if !(0.0..=10.0).contains(&retry_ratio) {
        return Err(ConfigError::invalid(format!(
            "{ctx}: retry_budget must be between 0 and 10 (a fraction of requests)"
        )));
    }
    Ok(Policy {
        balance,
        max_attempts,
        retry_on,
        retry_ratio,
        affinity: m.affinity.unwrap_or(false),
    })
}
