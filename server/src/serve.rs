//! Running a node until it is told to stop.

use crate::app;
use crate::conn::{self, ConnLimits};
use crate::startup::Node;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long shutdown waits for live message sessions to write acknowledgements and close.
const SESSIONS_CLOSE: Duration = Duration::from_secs(5);

/// Serve `node` on `listener` until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(
    node: Node,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::metrics::install();
    let limiters = app::Limiters::new(&node.config);
    let app = app::router(&node, &limiters);
    let housekeeping = tokio::spawn(housekeeping(node.clone(), limiters));
    let outbox = tokio::spawn(node.messaging.clone().run_outbox());
    let logouts = tokio::spawn(node.oidc.clone().run_logouts());
    let listener_task = tokio::spawn(sichat_messaging::live::listen(node.db.clone(), node.messaging.hub()));
    let limits = ConnLimits::from_config(&node.config);
    conn::serve_connections(listener, app, limits, node.config.trusted_proxies(), shutdown).await;
    // Live pickup sessions outlive their upgrade requests: close them too, so devices hear
    // "going away" and what they acknowledged is written before the database closes.
    if tokio::time::timeout(SESSIONS_CLOSE, node.messaging.hub().close_sessions()).await.is_err() {
        tracing::warn!("live message sessions did not close within {} s", SESSIONS_CLOSE.as_secs());
    }
    housekeeping.abort();
    outbox.abort();
    logouts.abort();
    listener_task.abort();
    node.db.close().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

async fn housekeeping(node: Node, limiters: app::Limiters) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        limiters.retain_recent();
        match node.accounts.purge_expired().await {
            Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired challenges and sessions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
        if let Err(e) = node.issuer.purge_expired().await {
            tracing::warn!(error = %e, "housekeeping failed");
        }
        if let Err(e) = node.presentations.purge_expired().await {
            tracing::warn!(error = %e, "housekeeping failed");
        }
        if let Err(e) = node.oidc.purge_expired().await {
            tracing::warn!(error = %e, "housekeeping failed");
        }
        match node.messaging.housekeeping().await {
            Ok(n) if n > 0 => tracing::debug!(rows = n, "expired and pruned messaging rows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "messaging housekeeping failed"),
        }
        if let Err(e) = node.oidc.maintain_keys().await {
            tracing::warn!(error = %e, "signing key maintenance failed");
        }
    }
}
