//! A small PromQL scanner for the observability test: the metric names an expression selects
//! (to check each is exported), and what an alert rule's comparison compares (to evaluate on its
//! own); plus the metric families a Prometheus text page exports. It scans, it does not parse:
//! enough for the expressions in `deploy/`, which its unit tests and the test's use cover.

use std::collections::BTreeSet;

/// Grouping clauses whose parenthesised list holds label names, not series.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` selects: identifiers of the form `(sluice|gen_ai)_[a-z_]+`, with the
/// histogram suffixes `_bucket`/`_sum`/`_count` stripped. Label names are not metric names,
/// and the GenAI convention's labels share the `gen_ai_` prefix (`gen_ai_request_model`), so
/// label matchers (`{...}`), grouping lists (`by (...)`) and string literals are skipped.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            if LABEL_LISTS.contains(&ident.as_str()) && chars.get(next) == Some(&'(') {
                i = skip_group(&chars, next, '(', ')');
            } else if is_series_name(&ident) {
                names.insert(strip_histogram_suffix(&ident).to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

fn is_series_name(ident: &str) -> bool {
    ["sluice_", "gen_ai_"].iter().any(|p| {
        ident.strip_prefix(p).is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    })
}

fn strip_histogram_suffix(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// The index after the string literal opening at `i` (backslash escapes honoured).
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if chars[j] == '\\' { 2 } else { 1 };
    }
    j + 1
}

/// The index after the group opening at `i` with `open`, nested groups and strings included.
fn skip_group(chars: &[char], i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// What an alert rule measures, to be evaluated on its own: the expression split at its
/// top-level set operators (`and`, `or`, `unless`), each part cut at its top-level comparison
/// (`sluice_ledger_up == 0` gives `sluice_ledger_up`).
///
/// Why not the whole expression: an alert's expression is empty whenever the alert does not
/// fire, which is the healthy state the test's load produces, so "empty" would prove nothing. The
/// signal is non-empty exactly when every series it needs exists and its arithmetic matches
/// (the depth/capacity division, say, needs equal label sets); that Prometheus evaluates each
/// whole expression without error is checked separately, through the rules' health.
pub fn signals(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    // Top-level spans between set operators, each cut at its first top-level comparison.
    let mut parts = Vec::new();
    let (mut start, mut cut, mut i) = (0, None, 0);
    let push = |from: usize, to: usize, parts: &mut Vec<String>| {
        parts.push(
            chars[from..to]
                .iter()
                .collect::<String>()
                .trim()
                .to_string(),
        );
    };
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '(' => i = skip_group(&chars, i, '(', ')'),
            '[' => i = skip_group(&chars, i, '[', ']'),
            '{' => i = skip_group(&chars, i, '{', '}'),
            '=' | '!' | '>' | '<' if chars.get(i + 1) != Some(&'~') => {
                cut.get_or_insert(i);
                i += 1;
            }
            c if c.is_ascii_alphabetic() => {
                let word_start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[word_start..i].iter().collect();
                if ["and", "or", "unless"].contains(&word.as_str()) {
                    push(start, cut.unwrap_or(word_start), &mut parts);
                    start = after_matching(&chars, i);
                    cut = None;
                    i = start;
                }
            }
            _ => i += 1,
        }
    }
    push(start, cut.unwrap_or(chars.len()), &mut parts);
    parts
}

/// The index after the vector-matching clause (`on(...)`, `ignoring(...)`) that may follow a
/// binary operator ending before `i`, or `i` when there is none.
fn after_matching(chars: &[char], i: usize) -> usize {
    let mut j = i;
    while j < chars.len() && chars[j].is_whitespace() {
        j += 1;
    }
    let word_start = j;
    while j < chars.len() && chars[j].is_ascii_alphabetic() {
        j += 1;
    }
    let word: String = chars[word_start..j].iter().collect();
    while j < chars.len() && chars[j].is_whitespace() {
        j += 1;
    }
    if ["on", "ignoring"].contains(&word.as_str()) && chars.get(j) == Some(&'(') {
        skip_group(chars, j, '(', ')')
    } else {
        i
    }
}

/// The metric families a `/metrics` page exports (histograms under their base name).
pub fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            names.insert(name.to_string());
            names.insert(strip_histogram_suffix(name).to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_series_not_labels() {
        let names = metric_names(
            r#"histogram_quantile(0.99, sum by (le, gen_ai_request_model) (rate(gen_ai_server_time_to_first_token_seconds_bucket{gen_ai_request_model=~"sluice_x"}[30s]))) / on() group_left() sum(sluice_requests_total)"#,
        );
        let want: BTreeSet<String> = [
            "gen_ai_server_time_to_first_token_seconds",
            "sluice_requests_total",
        ]
        .map(String::from)
        .into();
        assert_eq!(names, want);
    }

    #[test]
    fn a_signal_is_what_the_comparison_compares() {
        assert_eq!(signals("sluice_ledger_up == 0"), ["sluice_ledger_up"]);
        assert_eq!(
            signals(r#"sum(rate(x{outcome!~"ok"}[5m])) / sum(rate(x[5m])) > 0.05"#),
            [r#"sum(rate(x{outcome!~"ok"}[5m])) / sum(rate(x[5m]))"#]
        );
        assert_eq!(
            signals(r#"a{k!="v"} > 1 and on(instance) b < 2"#),
            [r#"a{k!="v"}"#, "b"]
        );
        assert_eq!(signals("rate(x[5m])"), ["rate(x[5m])"]);
    }

    #[test]
    fn a_ledger_rule_signal_keeps_its_grouping() {
        let expr = r#"sum by (instance, op) (increase(sluice_control_db_errors_total{op!="health"}[10m])) > 0"#;
        assert_eq!(
            signals(expr),
            [
                r#"sum by (instance, op) (increase(sluice_control_db_errors_total{op!="health"}[10m]))"#
            ]
        );
        assert_eq!(
            metric_names(expr),
            BTreeSet::from(["sluice_control_db_errors_total".to_string()])
        );
    }

    #[test]
    fn exported_names_include_histogram_base_names() {
        let page = "# HELP sluice_control_batch_duration_seconds One batch.\n\
                    # TYPE sluice_control_batch_duration_seconds histogram\n\
                    sluice_control_batch_duration_seconds_bucket{le=\"0.001\"} 3\n\
                    sluice_control_batch_duration_seconds_count 3\n\
                    sluice_control_records_total{result=\"stored\"} 30\n";
        let names = exported_names(page);
        for name in [
            "sluice_control_batch_duration_seconds",
            "sluice_control_batch_duration_seconds_bucket",
            "sluice_control_records_total",
        ] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
        assert!(!names.contains("HELP"), "{names:?}");
    }
}
