//! How every lnswarm process learns it should stop: SIGTERM (systemd, the agent
//! stopping a child, `kill`) or Ctrl-C.

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        // Without a SIGTERM handler, Ctrl-C still stops us.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
