//! Validation of the governance parts of the configuration: limits, budgets and prices.

use super::file::{BudgetSection, LimitsSection, PriceSection};
use super::ConfigError;
use crate::governance::budgets::Budget;
use crate::governance::limits::{Limits, Quota};
use crate::metering::pricing::{usd_to_micro, Price};
use std::sync::Arc;

/// Limits of one org on the models matching one `model_limits` entry.
#[derive(Debug)]
pub struct ModelLimits {
    /// The entry's name as written (an exact model name or a glob): it names the shared bucket.
    pub name: Arc<str>,
    pattern: Option<glob::Pattern>,
    pub limits: Limits,
}

impl ModelLimits {
    pub fn matches(&self, model: &str) -> bool {
        match &self.pattern {
            Some(p) => p.matches(model),
            None => *self.name == *model,
        }
    }
}

/// Reads one scope's limits; `what` names the scope in errors (`org "acme"`).
pub(super) fn limits(section: &LimitsSection, what: &str) -> Result<Limits, ConfigError> {
    let quota = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(Quota::parse)
            .transpose()
            .map_err(|e| ConfigError::invalid(format!("{what}: limits.{field}: {e}")))
    };
    if section.concurrent == Some(0) {
        return Err(ConfigError::invalid(format!(
            "{what}: limits.concurrent must be at least 1"
        )));
    }
    Ok(Limits {
        requests: quota("requests", &section.requests)?,
        tokens: quota("tokens", &section.tokens)?,
        concurrent: section.concurrent,
    })
}

/// Reads an org's `model_limits` table: exact names first, then globs, each in name order.
pub(super) fn model_limits(
    table: &std::collections::BTreeMap<String, LimitsSection>,
    org: &str,
) -> Result<Vec<ModelLimits>, ConfigError> {
    let mut out = Vec::with_capacity(table.len());
    for (name, section) in table {
        let what = format!("org {org:?} model_limits {name:?}");
        let pattern = if name.contains(['*', '?', '[']) {
            Some(
                glob::Pattern::new(name)
                    .map_err(|e| ConfigError::invalid(format!("{what}: {e}")))?,
            )
        } else {
            None
        };
        out.push(ModelLimits {
            name: name.as_str().into(),
            pattern,
            limits: limits(section, &what)?,
        });
    }
    out.sort_by_key(|m| m.pattern.is_some());
    Ok(out)
}

pub(super) fn budget(section: Option<&BudgetSection>, org: &str) -> Result<Budget, ConfigError> {
    let Some(b) = section else {
        return Ok(Budget::default());
    };
    let cap = |usd: Option<f64>, field: &str| {
        usd.map(|v| usd_to_micro(v, field))
            .transpose()
            .map_err(|e| ConfigError::invalid(format!("org {org:?}: budget.{e}")))
    };
    Ok(Budget {
        daily: cap(b.daily_usd, "daily_usd")?,
        monthly: cap(b.monthly_usd, "monthly_usd")?,
    })
}

pub(super) fn price(
    section: Option<&PriceSection>,
    model: &str,
) -> Result<Option<Price>, ConfigError> {
    section
        .map(|p| Price::from_usd(p.input, p.output, p.cached_input, p.cache_write))
        .transpose()
        .map_err(|e| ConfigError::invalid(format!("model {model:?}: {e}")))
}
