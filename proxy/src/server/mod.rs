//! Building and running the Pingora server around the [`Gateway`](crate::proxy::Gateway): the
//! proxy and admin listeners, hot reload, the graceful-upgrade settings, and the [`lifecycle`]
//! that starts, drains and stops everything that runs beside Pingora.

mod admin;
pub mod conn;
pub mod http1;
pub mod lifecycle;
mod ready;
pub mod reload;
mod triggers;
pub mod upgrade;

pub use reload::reload;

use crate::clock::SystemClock;
use crate::config::{self, ProcessEnv};
use crate::proxy::Gateway;
use crate::telemetry;
use arc_swap::ArcSwap;
use lifecycle::Lifecycle;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::Opt;
use pingora::server::Server;
use std::path::PathBuf;
use std::sync::Arc;
use upgrade::UpgradePaths;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Listen addresses overriding the config's (`127.0.0.1:0` picks a free port).
    pub listen: Vec<String>,
    /// Admin listener overriding `server.admin_listen`.
    pub admin_listen: Option<String>,
    /// Take the listening sockets over from a running instance (graceful upgrade).
    pub upgrade: bool,
}

/// Loads the configuration, starts the lifecycle (reload triggers, usage sink, background work)
/// and the listeners, and serves until a shutdown signal (SIGTERM/SIGINT, or SIGQUIT once a new
/// process took over); see [`lifecycle`] for the whole sequence.
pub fn run(opts: RunOptions) -> Result<(), String> {
    let snapshot = config::load(&opts.config, &ProcessEnv).map_err(|e| e.to_string())?;
    telemetry::logging::init(&snapshot.log);
    let listen = if opts.listen.is_empty() {
        snapshot.server.listen.clone()
    } else {
        opts.listen.clone()
    };
    let admin = opts
        .admin_listen
        .clone()
        .or_else(|| snapshot.server.admin_listen.clone());
    ready::check_distinct(&listen, admin.as_deref())?;
    let paths = UpgradePaths::resolve(&opts.config, &snapshot.server);
    let conf = upgrade::server_conf(&snapshot.server, &paths);
    let usage = snapshot.usage.clone();
    let usage_capacity = usage.queue_capacity;
    let snapshot_log_access = snapshot.log.access.clone();

    telemetry::install();
    telemetry::record_start(reload::generation());
    let connection_settings = snapshot.server.connections.clone();
    let current = Arc::new(ArcSwap::from_pointee(snapshot));
    // Before bootstrap: SIGHUP is handled from here on, and a spool directory that cannot be
    // written refuses the start.
    let lifecycle = Lifecycle::start(lifecycle::Start {
        reload: triggers::ReloadSetup {
            config: opts.config.clone(),
            env: Box::new(ProcessEnv),
            current: current.clone(),
        },
        usage,
        access_log: snapshot_log_access,
        pid_file: paths.pid_file.clone(),
    })?;

    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    tracing::info!(
        "pid file {}, upgrade socket {}",
        paths.pid_file.display(),
        paths.upgrade_sock.display()
    );
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    if opts.upgrade {
        eprintln!(
            "sluice-proxy upgrade: waiting for the listening sockets on {} \
             (send SIGQUIT to the old process now)",
            paths.upgrade_sock.display()
        );
    }
    // In upgrade mode this blocks until the old process has sent its sockets (or exits the
    // process after Pingora's ~5 s of retries).
    server.bootstrap();

    let gateway = Gateway::new(current, lifecycle.sink().clone(), Arc::new(SystemClock))?;
    let (server_options, connections) = conn::server_options(&connection_settings);
    let open = connections.clone();
    let queue_capacity = usage_capacity as f64;
    telemetry::live::on_scrape(move || {
        metrics::gauge!(telemetry::DOWNSTREAM_CONNECTIONS).set(open.open() as f64);
        metrics::gauge!(telemetry::USAGE_QUEUE_CAPACITY).set(queue_capacity);
    });
    let mut service =
        pingora::proxy::ProxyServiceBuilder::new(&server.configuration, gateway.clone())
            .server_options(server_options)
            .build();
    for addr in &listen {
        service.add_listener(listener(addr));
    }
    server.add_service(service);
    if let Some(addr) = &admin {
        server.add_service(admin::service(addr));
    }
    lifecycle.serve(server, &gateway, connections, listen, admin);
    lifecycle.stop(&gateway);
    Ok(())
}

/// Downstream read buffer of each client connection (Pingora's default is 64 KiB). The listeners
/// are plain TCP, and Pingora reads request headers and bodies into buffers of its own, so an L4
/// read buffer only adds a copy, and 64 KiB of heap for as long as a stream stays open. Measured
/// with the bare pass-through (BENCHMARKS.md): the same syscalls per request without it, 64 KiB
/// less per open stream. (A TLS listener would want one: rustls reads in small records.)
pub const DOWNSTREAM_READ_BUFFER: usize = 0;

fn listener(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::default().read(DOWNSTREAM_READ_BUFFER))
}
