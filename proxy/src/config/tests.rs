//! Configuration validation: the shipped default, and the governance sections.

use super::{parse, ConfigError, NoEnv};
use sluice_test_support::config::ONE_ROUTE;
use std::time::Duration;

/// One provider and one model; `allow_no_keys` lets the governance tests below leave keys out.
fn base() -> String {
    format!("allow_no_keys = true\n{ONE_ROUTE}")
}

fn load(extra: &str) -> Result<super::Snapshot, ConfigError> {
    parse(&format!("{}\n{extra}", base()), "test.toml", &NoEnv)
}

fn error(extra: &str) -> String {
    load(extra).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn the_shipped_default_configuration_is_valid() {
    // The shipped file has no key (run.sh appends the quick start's own); with one it is valid.
    let text = format!(
        "{}\n[[keys]]\ndigest = \"sha256:{}\"\norg = \"demo\"\n",
        include_str!("../../../conf/sluice.toml"),
        "ab".repeat(32)
    );
    let snap = parse(&text, "conf/sluice.toml", &NoEnv).unwrap();
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
    // (the entry, what its error must name)
    let cases: [(&str, &[&str]); 6] = [
        (
            "[[orgs]]\nid = \"acme\"\nlimits = { requests = \"ten/min\" }",
            &["org \"acme\"", "limits.requests"],
        ),
        (
            "[[orgs]]\nid = \"acme\"\nlimits = { concurrent = 0 }",
            &["concurrent"],
        ),
        // Typos fail the load.
        (
            "[[orgs]]\nid = \"acme\"\nlimits = { request = \"1/s\" }",
            &["unknown field"],
        ),
        (
            "[[orgs]]\nid = \"acme\"\nbudget = { daily_usd = -1 }",
            &["daily_usd"],
        ),
        (
            "[[models]]\nname = \"x\"\nprovider = \"p\"\nprice = { input = -2, output = 1 }",
            &["model \"x\"", "price.input"],
        ),
        (
            "[[orgs]]\nid = \"acme\"\nmodel_limits = { \"[\" = { requests = \"1/s\" } }",
            &["model_limits"],
        ),
    ];
    for (entry, names) in cases {
        let e = error(entry);
        for name in names {
            assert!(e.contains(name), "{entry}: {e}");
        }
    }
}

const KEY: &str =
    "digest = \"sha256:abababababababababababababababababababababababababababababababab\"";

/// A config with every table as given, and nothing else.
fn bare(text: &str) -> String {
    parse(text, "test.toml", &NoEnv)
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn an_empty_or_keyless_configuration_is_refused() {
    let e = bare("");
    assert!(e.contains("no [[providers]]"), "{e}");
    let e = bare(
        "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    );
    assert!(e.contains("no [[models]]"), "{e}");
    let no_keys = base().replace("allow_no_keys = true", "");
    let e = bare(&no_keys);
    assert!(
        e.contains("no [[keys]]") && e.contains("allow_no_keys"),
        "{e}"
    );
    // Said on purpose, it loads (and serves nobody).
    let snap = load("").unwrap();
    assert!(snap.keys.is_empty());
}

#[test]
fn references_to_undefined_orgs_and_models_are_refused() {
    let e = error(&format!("[[keys]]\n{KEY}\norg = \"ghost\"\n"));
    assert!(e.contains("\"ghost\"") && e.contains("[[orgs]]"), "{e}");
    let org = "[[orgs]]\nid = \"acme\"\n";
    let e = error(&format!(
        "{org}[[keys]]\n{KEY}\norg = \"acme\"\nmodels = [\"m\", \"gtp-*\"]\n"
    ));
    assert!(e.contains("gtp-*"), "{e}");
    let e = error(&format!(
        "{org}[[keys]]\n{KEY}\norg = \"acme\"\nmodels = [\"nope\"]\n"
    ));
    assert!(e.contains("\"nope\""), "{e}");
    let e = error("[[orgs]]\nid = \"acme\"\nmodel_limits = { \"mm\" = { requests = \"1/s\" } }\n");
    assert!(e.contains("model_limits \"mm\""), "{e}");
    let e = error("[[models]]\nname = \"x\"\nprovider = \"nowhere\"\n");
    assert!(e.contains("unknown provider"), "{e}");
    // Globs that can reach a routed model are fine: an exact match, or an overlapping glob route.
    load(&format!(
        "[[models]]\nname = \"claude-*\"\nprovider = \"p\"\n\n{org}\
         model_limits = {{ \"claude-3-*\" = {{ requests = \"1/s\" }}, \"claude-x\" = {{ requests = \"1/s\" }} }}\n\
         [[keys]]\n{KEY}\norg = \"acme\"\nmodels = [\"m*\", \"*\", \"claude-*\", \"claude-3-opus\"]\n"
    ))
    .unwrap();
}

#[test]
fn zero_deadlines_are_refused() {
    for field in ["connect", "first_byte", "idle", "total"] {
        let e = error(&format!("[timeouts]\n{field} = \"0s\"\n"));
        assert!(e.contains(field) && e.contains("above 0"), "{field}: {e}");
    }
    let e = error(
        "[[providers]]\nname = \"q\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         auth = \"none\"\ntimeouts = { idle = \"0ms\" }\n",
    );
    assert!(e.contains("provider \"q\"") && e.contains("idle"), "{e}");
}
