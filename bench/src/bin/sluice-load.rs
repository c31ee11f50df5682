//! `sluice-load`: command-line front end of [`sluice_bench::load`]: builds a plan from
//! flags, runs it, writes the JSON report and prints a short table on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, ValueEnum};
use sluice_bench::load::{self, Api, Auth, AuthScheme, Mode, Plan, Secret, Target};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApiArg {
    /// OpenAI chat completions (`/v1/chat/completions`).
    Openai,
    /// Anthropic messages (`/v1/messages`).
    Anthropic,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthArg {
    /// `Authorization: Bearer KEY`.
    Bearer,
    /// `x-api-key: KEY`.
    XApiKey,
}

/// Open- or closed-loop load generator for LLM API gateways; loopback targets only.
///
/// Open loop (`--rate`) sends on a fixed schedule and measures latency from each request's
/// intended send time; closed loop (`--clients`) runs N clients back to back. Every run is
/// bounded by `--duration` and/or `--requests`. The JSON report goes to `--json` (default
/// stdout), a summary table to stderr.
#[derive(Debug, Parser)]
#[command(name = "sluice-load", version)]
#[command(group(ArgGroup::new("mode").required(true).args(["rate", "clients"])))]
#[command(group(ArgGroup::new("bound").required(true).multiple(true).args(["duration", "requests"])))]
struct Args {
    /// Target base URL, e.g. http://127.0.0.1:8080 (loopback only; the API path is appended).
    #[arg(long, env = "SLUICE_LOAD_URL")]
    url: String,
    /// Request kind.
    #[arg(long, value_enum, default_value = "openai")]
    api: ApiArg,
    /// Ask for an SSE stream and measure time to first event and inter-event gaps.
    #[arg(long)]
    stream: bool,
    /// Model name in the body (default gpt-4o-mini / claude-3-5-haiku-latest).
    #[arg(long)]
    model: Option<String>,
    /// Size of the user message in bytes.
    #[arg(long, default_value_t = 64)]
    prompt_bytes: usize,
    /// `max_tokens` in the body (Anthropic defaults to 4096, OpenAI sends none).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Open loop: constant arrival rate in requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: concurrent clients, one connection each.
    #[arg(long)]
    clients: Option<usize>,
    /// How long to send, e.g. 10s or 1m (at most 10 minutes).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// How many requests to send (at most 10 000 000).
    #[arg(long)]
    requests: Option<u64>,
    /// Open loop: most requests in flight; further arrivals are dropped and counted.
    #[arg(long, default_value_t = 1024)]
    max_outstanding: usize,
    /// Per-request timeout, from send to end of body.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
    /// How to send the key (default bearer for openai, x-api-key for anthropic).
    #[arg(long, value_enum)]
    auth: Option<AuthArg>,
    /// Environment variable holding the key (never printed).
    #[arg(long, conflicts_with = "key_file")]
    key_env: Option<String>,
    /// File holding the key; surrounding whitespace is trimmed (never printed).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Extra request header `name: value`; repeatable (e.g. -H 'x-mock-chunks: 64').
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Runtime worker threads; 1 runs everything on one current-thread runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where to write the JSON report; `-` is stdout.
    #[arg(long, default_value = "-")]
    json: String,
    /// Do not print the summary table.
    #[arg(long)]
    quiet: bool,
}

/// Reads the key from its source. Errors name the source, never the value.
fn key(args: &Args) -> Result<Option<Secret>, String> {
    if let Some(var) = &args.key_env {
        let value = std::env::var(var)
            .map_err(|_| format!("environment variable {var} is not set or not UTF-8"))?;
        return Ok(Some(Secret::new(value.trim())));
    }
    if let Some(path) = &args.key_file {
        let value = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        return Ok(Some(Secret::new(value.trim())));
    }
    Ok(None)
}

fn plan(args: &Args) -> Result<Plan, String> {
    let target = Target::parse(&args.url).map_err(|e| e.to_string())?;
    let api = match args.api {
        ApiArg::Openai => Api::Openai,
        ApiArg::Anthropic => Api::Anthropic,
    };
    let mode = match (args.rate, args.clients) {
        (Some(rate), _) => Mode::Open { rate },
        (None, Some(clients)) => Mode::Closed { clients },
        (None, None) => return Err("give --rate or --clients".to_owned()),
    };
    let mut plan = Plan::new(target, api, mode);
    plan.stream = args.stream;
    if let Some(model) = &args.model {
        plan.model.clone_from(model);
    }
    plan.prompt_bytes = args.prompt_bytes;
    plan.max_tokens = args.max_tokens;
    plan.duration = args.duration;
    plan.requests = args.requests;
    plan.max_outstanding = args.max_outstanding;
    plan.timeout = args.timeout;
    if let Some(value) = key(args)? {
        let scheme = match (args.auth, api) {
            (Some(AuthArg::Bearer), _) | (None, Api::Openai) => AuthScheme::Bearer,
            (Some(AuthArg::XApiKey), _) | (None, Api::Anthropic) => AuthScheme::XApiKey,
        };
        plan.auth = Some(Auth { scheme, value });
    }
    for line in &args.headers {
        plan.header(line).map_err(|e| e.to_string())?;
    }
    plan.validate().map_err(|e| e.to_string())?;
    Ok(plan)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluice-load: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let report = match runtime
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(load::run(&plan)).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !args.quiet {
        eprint!("{}", report.table());
    }
    let json = report.to_json();
    let written = if args.json == "-" {
        println!("{json}");
        Ok(())
    } else {
        std::fs::write(&args.json, json + "\n")
    };
    if let Err(e) = written {
        eprintln!("sluice-load: cannot write {}: {e}", args.json);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
