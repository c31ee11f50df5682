//! Building and running the Pingora server around the [`Gateway`](crate::proxy::Gateway).

mod ready;

use crate::clock::SystemClock;
use crate::config::{self, ProcessEnv};
use crate::proxy::Gateway;
use crate::sink::UsageSink;
use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: PathBuf,
    /// Listen addresses overriding the config's (`127.0.0.1:0` picks a free port).
    pub listen: Vec<String>,
}

/// Loads the configuration, starts the usage sink and serves until a shutdown signal.
pub fn run(opts: RunOptions) -> Result<(), String> {
    let snapshot = config::load(&opts.config, &ProcessEnv).map_err(|e| e.to_string())?;
    let listen = if opts.listen.is_empty() {
        snapshot.server.listen.clone()
    } else {
        opts.listen.clone()
    };
    let sink = UsageSink::start(&snapshot.usage.sink, snapshot.usage.queue_capacity)
        .map_err(|e| format!("usage sink: {e}"))?;

    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let conf = ServerConf {
        threads: snapshot.server.threads,
        // Per-process paths, so several instances (tests, side-by-side benchmarks) coexist.
        pid_file: tmp.join(format!("sluice-{pid}.pid")).display().to_string(),
        upgrade_sock: tmp
            .join(format!("sluice-{pid}-upgrade.sock"))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let gateway = Gateway::new(
        Arc::new(ArcSwap::from_pointee(snapshot)),
        sink,
        Arc::new(SystemClock),
    );
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    for addr in &listen {
        service.add_tcp(addr);
    }
    server.add_service(service);
    ready::announce_when_listening(listen.len());
    server.run_forever()
}
