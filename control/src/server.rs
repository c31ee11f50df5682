//! Starting the ledger: open the store, bind, announce the address, serve until a signal, and
//! run retention periodically beside it.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::{redact_url, PurgeReport, Retention, Store};
use crate::http::{router, AppState, TokenDigest};
use crate::telemetry::{self, DbOp};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("creating data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("opening {0}: {1}")]
    Store(String, crate::db::DbError),
    #[error("binding {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("the ingest and admin tokens must differ")]
    SameTokens,
}

/// Runs one retention pass and logs what it did.
pub async fn retention_pass(store: &Store, clock: &dyn Clock, retention: Retention) {
    match store.purge(clock, retention).await {
        Ok(report) if report != PurgeReport::default() => {
            tracing::info!(
                records_deleted = report.records_deleted,
                client_ips_cleared = report.client_ips_cleared,
                audit_deleted = report.audit_deleted,
                "retention pass"
            );
        }
        Ok(_) => {}
        Err(e) => {
            telemetry::count_db_error(DbOp::Retention);
            tracing::error!("retention pass failed: {e}");
        }
    }
}

/// Runs one abuse detection pass and logs what it raised.
pub async fn abuse_pass(store: &Store, clock: &dyn Clock, rules: &crate::abuse::Rules) {
    match crate::abuse::pass(store, clock, rules).await {
        Ok(raised) if !raised.is_empty() => {
            tracing::info!(flags = raised.len(), "abuse pass raised or refreshed flags");
        }
        Ok(_) => {}
        Err(e) => {
            telemetry::count_db_error(DbOp::Review);
            tracing::error!("abuse pass failed: {e}");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs the ledger until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    if config.ingest_token.expose() == config.admin_token.expose() {
        return Err(StartError::SameTokens);
    }
    // Before anything can fail or be counted, so every series is on the page from the start.
    telemetry::install();
    let url = config.database_url();
    if config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
    }
    let store = Store::open(&url, config.max_connections)
        .await
        .map_err(|e| StartError::Store(redact_url(&url), e))?;
    tracing::info!(database = %redact_url(&url), "ledger store ready");

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = Arc::new(AppState {
        store: store.clone(),
        clock: clock.clone(),
        ingest_token: TokenDigest::new(config.ingest_token.expose()),
        admin_token: TokenDigest::new(config.admin_token.expose()),
    });

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Bind(config.listen, e))?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    // Tests and scripts wait for this exact line to learn the port.
    eprintln!("sluice-control listening on http://{addr}");

    let retention = config.retention();
    let interval = Duration::from_secs(config.retention_interval_secs.max(1));
    let purge_store = store.clone();
    let retention_task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            retention_pass(&purge_store, clock.as_ref(), retention).await;
        }
    });

    let rules = crate::abuse::Rules {
        thresholds: config.abuse_thresholds.clone(),
    };
    let abuse_interval = Duration::from_secs(config.abuse_interval_secs.max(1));
    let (abuse_store, abuse_clock) = (store.clone(), state.clock.clone());
    let abuse_task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(abuse_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            abuse_pass(&abuse_store, abuse_clock.as_ref(), &rules).await;
        }
    });

    let app = router(state, config.max_body_bytes);
    // The peer address is the audit log's "from where".
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    retention_task.abort();
    abuse_task.abort();
    store.close().await;
    served.map_err(StartError::Serve)
}
