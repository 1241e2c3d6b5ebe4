//! Ctrl-C and SIGTERM (a CI job's timeout): the signals after which a run removes what it
//! created before it exits.

/// Resolves on Ctrl-C or SIGTERM with the signal's name. While one of these futures is
/// alive the signals no longer kill the process, so whoever awaits it must clean up.
pub async fn interrupted() -> &'static str {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => "SIGTERM",
    }
}
