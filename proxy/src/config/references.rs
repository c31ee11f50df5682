//! Cross-references between configuration entries: every org, provider and model a entry names
//! must exist, and a configuration must be able to serve something.
//!
//! These checks run on every load (start, `check`, reload), so a reload that would empty the
//! configuration or point a key at a missing org is refused and the running snapshot stays.

use super::file::FileConfig;
use super::ConfigError;
use std::collections::HashSet;

/// Checks what serde and the per-entry validation cannot see: the entries' references to each
/// other, and that the file is not empty. Provider references of models and of `provider_keys`
/// are checked where those entries are built.
pub(super) fn check(raw: &FileConfig) -> Result<(), ConfigError> {
    if raw.providers.is_empty() {
        return Err(ConfigError::invalid(
            "no [[providers]]: a configuration must define at least one provider",
        ));
    }
    if raw.models.is_empty() {
        return Err(ConfigError::invalid(
            "no [[models]]: a configuration must route at least one model",
        ));
    }
    if raw.keys.is_empty() && !raw.allow_no_keys {
        return Err(ConfigError::invalid(
            "no [[keys]]: every request would be refused; add a key (`sluice-proxy keys new`), \
             or set `allow_no_keys = true` at the top of the file to revoke every key on purpose",
        ));
    }
    let models = Models::of(raw);
    let orgs: HashSet<&str> = raw.orgs.iter().map(|o| o.id.as_str()).collect();
    for (i, k) in raw.keys.iter().enumerate() {
        if !orgs.contains(k.org.as_str()) {
            return Err(ConfigError::invalid(format!(
                "keys[{i}]: org {:?} is not defined in [[orgs]] (it would run with no limits \
                 and no budget)",
                k.org
            )));
        }
        for pattern in &k.models {
            if !models.covers(pattern.trim()) {
                return Err(ConfigError::invalid(format!(
                    "keys[{i}] (org {:?}): models entry {pattern:?} names no model in [[models]]",
                    k.org
                )));
            }
        }
    }
    for o in &raw.orgs {
        for name in o.model_limits.keys() {
            if !models.covers(name) {
                return Err(ConfigError::invalid(format!(
                    "org {:?}: model_limits {name:?} names no model in [[models]]",
                    o.id
                )));
            }
        }
    }
    Ok(())
}

/// The model names a configuration routes: exact names, and its globs with their literal
/// prefixes.
struct Models<'a> {
    exact: Vec<&'a str>,
    globs: Vec<(&'a str, glob::Pattern)>,
}

/// The text before a glob's first wildcard (`claude-` for `claude-*`).
fn literal_prefix(pattern: &str) -> &str {
    pattern
        .find(['*', '?', '['])
        .map_or(pattern, |at| &pattern[..at])
}

fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

impl<'a> Models<'a> {
    fn of(raw: &'a FileConfig) -> Self {
        let mut exact = Vec::new();
        let mut globs = Vec::new();
        for name in raw.models.iter().map(|m| m.name.as_str()) {
            if !is_glob(name) {
                exact.push(name);
            } else if let Ok(p) = glob::Pattern::new(name) {
                // A malformed model glob is reported when its route is built.
                globs.push((literal_prefix(name), p));
            }
        }
        Self { exact, globs }
    }

    /// Whether `reference` (an exact name or a glob, as keys and `model_limits` write them) can
    /// name a routed model. An exact name must route; a glob must match an exact model or
    /// overlap a model glob (one literal prefix extends the other). Whether one glob's language
    /// lies inside another's is not cheap to decide, so overlap is the test: it refuses typos
    /// such as `gtp-*` without refusing `claude-3-*` under a `claude-*` route.
    fn covers(&self, reference: &str) -> bool {
        if !is_glob(reference) {
            return self.exact.contains(&reference)
                || self.globs.iter().any(|(_, p)| p.matches(reference));
        }
        let Ok(pattern) = glob::Pattern::new(reference) else {
            // Malformed patterns are reported by the entry's own validation, with its reason.
            return true;
        };
        let prefix = literal_prefix(reference);
        self.exact.iter().any(|m| pattern.matches(m))
            || self
                .globs
                .iter()
                .any(|(g, _)| g.starts_with(prefix) || prefix.starts_with(g))
    }
}
