//! `sluice-passthrough`: a bare Pingora HTTP/1.1 pass-through proxy (no auth, limits or
//! metering) used by the benchmark harness to measure the framework's own cost separately
//! from sluice's governance.
//!
//! It is built from the same Pingora version, features and vendored `pingora-proxy` patch as
//! `sluice-proxy` (they are workspace dependencies), runs the same number of worker threads
//! by default as `conf/sluice.toml`, and configures its upstream peer the way sluice does
//! (connect timeout, pooled idle connections for 60 s), so the only difference between the
//! two is what sluice does per request. For the same reason it uses sluice's global allocator.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::listeners::ListenerConfig;
use pingora::prelude::{HttpPeer, Opt, ProxyHttp, Result, Server, Session};
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;

/// Bare Pingora pass-through to one plain-HTTP upstream; for benchmarks only.
/// The same global allocator as `sluice-proxy` (see proxy/src/main.rs for why).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same idle upstream pool as sluice (`UPSTREAM_KEEPALIVE_POOL` in its server module), so
/// the comparison measures governance, not pool sizes.
const KEEPALIVE_POOL: usize = 2048;

/// The same downstream read buffer as sluice (`DOWNSTREAM_READ_BUFFER` in its server module: none).
const DOWNSTREAM_READ_BUFFER: usize = 0;

#[derive(Debug, Parser)]
#[command(name = "sluice-passthrough", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Upstream `host:port` (plain HTTP), e.g. the mock provider.
    #[arg(long)]
    upstream: String,
    /// Pingora worker threads (sluice's default configuration uses 2).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Read buffer of each downstream connection in bytes (default: none, as sluice; Pingora's
    /// own default is 64 KiB). For tuning experiments (memory per open stream).
    #[arg(long)]
    read_buffer: Option<usize>,
    /// Run each worker thread as its own single-threaded runtime (Pingora's `work_stealing =
    /// false`) instead of one work-stealing runtime. For tuning experiments.
    #[arg(long)]
    no_work_stealing: bool,
    /// Idle upstream connections Pingora keeps for reuse (its `upstream_keepalive_pool_size`,
    /// default here: the same as sluice). For tuning experiments.
    #[arg(long)]
    keepalive_pool: Option<usize>,
}

/// Forwards every request unchanged to one upstream address.
struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // A fresh peer per request, as sluice builds one per request from its resolved
        // address; its options mirror sluice's so the keep-alive pool behaves the same.
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(10));
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Resolved once here: `HttpPeer::new` with a host name would resolve on every request.
    let upstream = match args.upstream.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) | Err(_) => {
            eprintln!(
                "sluice-passthrough: cannot resolve upstream {}",
                args.upstream
            );
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: args.threads.max(1),
        work_stealing: !args.no_work_stealing,
        upstream_keepalive_pool_size: args.keepalive_pool.unwrap_or(KEEPALIVE_POOL),
        // Distinct from sluice's defaults so both can run side by side.
        pid_file: std::env::temp_dir()
            .join(format!("sluice-passthrough-{}.pid", std::process::id()))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("sluice-passthrough-{}.sock", std::process::id()))
            .display()
            .to_string(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut service =
        pingora::proxy::http_proxy_service(&server.configuration, Passthrough { upstream });
    let read = args.read_buffer.unwrap_or(DOWNSTREAM_READ_BUFFER);
    let listener =
        ListenerConfig::tcp(args.listen.as_str()).l4_buffer(L4BufferSettings::default().read(read));
    service.add_listener(listener);
    server.add_service(service);
    eprintln!("sluice-passthrough listening on http://{}", args.listen);
    server.run(RunArgs::default());
    ExitCode::SUCCESS
}
