//! Validation of model routes with several targets, endpoints, regions and failover policy.

use super::{parse, NoEnv, Snapshot};
use crate::routing::Balance;

const PROVIDERS: &str = r#"
allow_no_keys = true

[[providers]]
name = "us"
kind = "openai"
endpoints = ["http://127.0.0.1:9/v1", "http://127.0.0.2:9/v1"]
region = "us"
auth = "none"
health = { eject_after = 2, backoff = "2s", max_backoff = "10s" }

[[providers]]
name = "eu"
kind = "openai"
base_url = "http://127.0.0.3:9/v1"
region = "eu"
auth = "none"

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://127.0.0.4:9/v1"
auth = "none"

[[orgs]]
id = "eu-org"
region = "eu"

[[orgs]]
id = "anywhere"
"#;

fn load(models: &str) -> Result<Snapshot, String> {
    parse(&format!("{PROVIDERS}\n{models}"), "test.toml", &NoEnv).map_err(|e| e.to_string())
}

#[test]
fn targets_become_one_destination_per_endpoint_sorted_by_priority() {
    let snap = load(
        r#"
[[models]]
name = "gpt"
balance = "least_tokens"
max_attempts = 2
retry_on = [503]
targets = [
  { provider = "eu", priority = 1, model = "gpt-eu" },
  { provider = "us", weight = 3 },
]
"#,
    )
    .unwrap();
    let pool = &snap.route("gpt").unwrap().pool;
    let ids: Vec<&str> = pool.targets.iter().map(|t| &*t.endpoint().id).collect();
    assert_eq!(
        ids,
        [
            "http://127.0.0.1:9/v1",
            "http://127.0.0.2:9/v1",
            "http://127.0.0.3:9/v1"
        ]
    );
    assert_eq!(pool.targets[0].weight, 3);
    assert_eq!(pool.targets[2].upstream_model.as_deref(), Some("gpt-eu"));
    assert_eq!(pool.common_model, None, "the targets disagree on the name");
    assert_eq!(pool.policy.balance, Balance::LeastTokens);
    assert_eq!(pool.policy.max_attempts, 2);
    assert_eq!(pool.policy.retry_on, [503]);
    assert_eq!(pool.targets[0].provider.health.eject_after, 2);
}

#[test]
fn an_org_reaches_only_its_region() {
    let snap = load(
        r#"
[[models]]
name = "gpt"
targets = [{ provider = "us" }, { provider = "eu" }]

[[models]]
name = "us-only"
provider = "us"
"#,
    )
    .unwrap();
    let gpt = snap.route("gpt").unwrap();
    assert_eq!(snap.reach("eu-org", gpt).mask, 0b100);
    assert_eq!(snap.reach("anywhere", gpt).mask, 0b111);
    let us_only = snap.reach("eu-org", snap.route("us-only").unwrap());
    assert_eq!(us_only.mask, 0);
    assert!(us_only.out_of_region);
    let explained = snap.explain();
    assert!(
        explained.contains("reachable by: anywhere (3 targets), eu-org (1 targets)"),
        "{explained}"
    );
    assert!(
        explained.contains("not reachable by: eu-org (no target in its region)"),
        "{explained}"
    );
    assert!(
        explained.contains("priority 0 weight 1: eu http://127.0.0.3:9/v1 (region eu"),
        "{explained}"
    );
}

#[test]
fn bad_routes_are_refused_with_their_reason() {
    let cases = [
        (
            "[[models]]\nname = \"x\"\n",
            "set exactly one of provider and targets",
        ),
        (
            "[[models]]\nname = \"x\"\nprovider = \"us\"\ntargets = [{ provider = \"eu\" }]\n",
            "set exactly one of provider and targets",
        ),
        (
            "[[models]]\nname = \"x\"\ntargets = [{ provider = \"us\" }, { provider = \"claude\" }]\n",
            "speaks another API",
        ),
        (
            "[[models]]\nname = \"x\"\ntargets = [{ provider = \"nope\" }]\n",
            "unknown provider \"nope\"",
        ),
        (
            "[[models]]\nname = \"x\"\ntargets = [{ provider = \"us\", weight = 0 }]\n",
            "weight 0",
        ),
        (
            "[[models]]\nname = \"x\"\nprovider = \"us\"\nbalance = \"random\"\n",
            "balance \"random\"",
        ),
        (
            "[[models]]\nname = \"x\"\nprovider = \"us\"\nretry_on = [200]\n",
            "retry_on 200",
        ),
        (
            "[[models]]\nname = \"x\"\nprovider = \"us\"\nmax_attempts = 0\n",
            "max_attempts",
        ),
    ];
    for (model, expected) in cases {
        let err = load(model).map(|_| ()).unwrap_err();
        assert!(err.contains(expected), "{model}: {err}");
    }
}

#[test]
fn a_provider_needs_exactly_one_of_base_url_and_endpoints() {
    let text =
        "allow_no_keys = true\n[[providers]]\nname = \"p\"\nkind = \"openai\"\nauth = \"none\"\n\
                [[models]]\nname = \"m\"\nprovider = \"p\"\n";
    let err = parse(text, "t.toml", &NoEnv)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("exactly one of base_url and endpoints"),
        "{err}"
    );
    let twice = text.replace(
        "auth = \"none\"\n",
        "auth = \"none\"\nendpoints = [\"http://127.0.0.1:9/v1\", \"http://127.0.0.1:9/v1/\"]\n",
    );
    let err = parse(&twice, "t.toml", &NoEnv)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("listed twice"), "{err}");
}
