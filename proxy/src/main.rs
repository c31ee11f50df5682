//! `sluice-proxy`: run the gateway, or manage its keys (`keys new`, `seal`, `master-key new`,
//! `check`). Serving reloads its config on SIGHUP or file change and supports graceful binary
//! upgrade (`--upgrade`); see README.md, "Operating it".

use clap::{Args, Parser, Subcommand};
use sluice_proxy::config::{self, ProcessEnv};
use sluice_proxy::credentials::crypto::MasterKeys;
use sluice_proxy::credentials::keys;
use sluice_proxy::server::{self, RunOptions};
use sluice_proxy::telemetry;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: under load tokio frees buffers on another worker thread than
/// the one that allocated them, and glibc's arena locks then made up most of the proxy's futex
/// calls and ~10 % of its CPU (profile in BENCHMARKS.md). mimalloc's per-thread heaps free
/// cross-thread without a lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "sluice-proxy", version, about = "LLM API gateway data plane")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Configuration file.
    #[arg(long, short, default_value = "conf/sluice.toml", global = true)]
    config: PathBuf,
    /// Listen address, overriding the config (repeatable; port 0 picks a free port).
    #[arg(long)]
    listen: Vec<String>,
    /// Admin listener (`GET /metrics`, `GET /healthz`), overriding `server.admin_listen` (port 0
    /// picks a free port).
    #[arg(long)]
    admin_listen: Option<String>,
    /// Take over the listening sockets of the running instance of this config (graceful binary
    /// upgrade): start this, then send SIGQUIT to the old process within 5 seconds.
    #[arg(long)]
    upgrade: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve (the default).
    Run,
    /// Validate a configuration file offline; exits non-zero with the reason.
    Check,
    /// Virtual keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Seal a provider credential read from stdin for one org and provider.
    Seal {
        #[arg(long)]
        org: String,
        #[arg(long)]
        provider: String,
        /// Master key file, when SLUICE_MASTER_KEY is not set.
        #[arg(long)]
        master_key_file: Option<PathBuf>,
    },
    /// Master keys.
    MasterKey {
        #[command(subcommand)]
        command: MasterKeyCommand,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a virtual key: prints it once, with the config entry (its digest) to paste.
    New {
        #[arg(long)]
        org: String,
        /// Models the key may use: exact names or globs (comma separated). Default: all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Expiry: an RFC 3339 time or a duration from now (`30d`).
        #[arg(long)]
        expires: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum MasterKeyCommand {
    /// Print a new master key entry `<version>:<base64>` to add to SLUICE_MASTER_KEY.
    New {
        #[arg(long, default_value_t = 1)]
        version: u8,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    // Serving sets the log up from its config's `[log]` once loaded; the rest log as text.
    if !matches!(command, Command::Run) {
        telemetry::logging::init(&config::LogSettings::default());
    }
    let result = match command {
        Command::Run => server::run(RunOptions {
            config: cli.run.config,
            listen: cli.run.listen,
            admin_listen: cli.run.admin_listen,
            upgrade: cli.run.upgrade,
        }),
        Command::Check => config::load(&cli.run.config, &ProcessEnv)
            .map(|snap| {
                println!("{}: ok", cli.run.config.display());
                print!("{}", snap.explain());
            })
            .map_err(|e| e.to_string()),
        Command::Keys {
            command:
                KeysCommand::New {
                    org,
                    models,
                    expires,
                },
        } => new_key(&org, &models, expires.as_deref()),
        Command::Seal {
            org,
            provider,
            master_key_file,
        } => seal(&org, &provider, master_key_file),
        Command::MasterKey {
            command: MasterKeyCommand::New { version },
        } => MasterKeys::generate_entry(version)
            .map(|e| println!("{e}"))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn new_key(org: &str, models: &[String], expires: Option<&str>) -> Result<(), String> {
    keys::ModelScope::parse(models).map_err(|e| e.to_string())?;
    let expires = expires
        .map(|t| keys::parse_expiry(t, std::time::SystemTime::now()))
        .transpose()
        .map_err(|e| e.to_string())?;
    let key = keys::generate().map_err(|e| e.to_string())?;
    print!("{}", keys::new_key_text(&key, org, models, expires));
    Ok(())
}

fn seal(org: &str, provider: &str, file: Option<PathBuf>) -> Result<(), String> {
    let env = std::env::var("SLUICE_MASTER_KEY").ok();
    let master = MasterKeys::load(env.as_deref(), file.as_deref()).map_err(|e| e.to_string())?;
    let mut secret = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut secret)
        .map_err(|e| format!("reading the secret from stdin: {e}"))?;
    // A trailing newline from `echo` or a terminal is not part of the credential.
    while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
        secret.pop();
    }
    if secret.is_empty() {
        return Err("no secret on stdin".into());
    }
    let sealed = master
        .seal(org, provider, &secret)
        .map_err(|e| e.to_string())?;
    println!("{sealed}");
    Ok(())
}
