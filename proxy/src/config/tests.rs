//! Configuration validation: the shipped default, and the governance sections.

use super::{parse, ConfigError, Env};
use std::time::Duration;

/// An environment with nothing in it: no master key, no provider keys.
struct Empty;

impl Env for Empty {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

const BASE: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
auth = "none"

[[models]]
name = "m"
provider = "p"
"#;

fn load(extra: &str) -> Result<super::Snapshot, ConfigError> {
    parse(&format!("{BASE}\n{extra}"), "test.toml", &Empty)
}

fn error(extra: &str) -> String {
    load(extra).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn the_shipped_default_configuration_is_valid() {
    let text = include_str!("../../../conf/sluice.toml");
    let snap = parse(text, "conf/sluice.toml", &Empty).unwrap();
    let demo = snap.org("demo").expect("the quick start's org");
    assert_eq!(demo.limits.concurrent, Some(64));
    assert!(demo.budget.daily.is_some());
    let route = snap.route("mock-gpt").unwrap();
    assert_eq!(route.price.unwrap().input, 150_000);
}

#[test]
fn limits_budgets_and_prices_are_read() {
    let snap = load(
        r#"
[[models]]
name = "priced"
provider = "p"
max_output_tokens = 100
price = { input = 3, output = 15.5 }

[[orgs]]
id = "acme"
limits = { requests = "600/min", tokens = "2_000_000/day", concurrent = 5 }
model_limits = { "m" = { requests = "1/s" }, "m*" = { tokens = "10/s" } }
budget = { daily_usd = 12.5, monthly_usd = 100 }
"#,
    )
    .unwrap();
    let org = snap.org("acme").unwrap();
    let requests = org.limits.requests.unwrap();
    assert_eq!(
        (requests.amount, requests.period),
        (600, Duration::from_secs(60))
    );
    assert_eq!(org.limits.tokens.unwrap().amount, 2_000_000);
    assert_eq!(org.budget.daily, Some(12_500_000));
    assert_eq!(org.budget.monthly, Some(100_000_000));
    // Exact names win over globs, whatever the table order.
    assert_eq!(&*org.limits_for_model("m").unwrap().name, "m");
    assert_eq!(&*org.limits_for_model("mx").unwrap().name, "m*");
    assert!(org.limits_for_model("other").is_none());
    let route = snap.route("priced").unwrap();
    assert_eq!(route.max_output_tokens, 100);
    assert_eq!(route.price.unwrap().output, 15_500_000);
    assert_eq!(snap.route("m").unwrap().max_output_tokens, 4096);
}

#[test]
fn bad_governance_settings_name_the_entry() {
    let e = error("[[orgs]]\nid = \"acme\"\nlimits = { requests = \"ten/min\" }");
    assert!(
        e.contains("org \"acme\"") && e.contains("limits.requests"),
        "{e}"
    );
    let e = error("[[orgs]]\nid = \"acme\"\nlimits = { concurrent = 0 }");
    assert!(e.contains("concurrent"), "{e}");
    let e = error("[[orgs]]\nid = \"acme\"\nlimits = { request = \"1/s\" }");
    assert!(e.contains("unknown field"), "typos fail the load: {e}");
    let e = error("[[orgs]]\nid = \"acme\"\nbudget = { daily_usd = -1 }");
    assert!(e.contains("daily_usd"), "{e}");
    let e = error("[[models]]\nname = \"x\"\nprovider = \"p\"\nprice = { input = -2, output = 1 }");
    assert!(
        e.contains("model \"x\"") && e.contains("price.input"),
        "{e}"
    );
    let e = error("[[orgs]]\nid = \"acme\"\nmodel_limits = { \"[\" = { requests = \"1/s\" } }");
    assert!(e.contains("model_limits"), "{e}");
}
