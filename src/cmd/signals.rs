//! SIGINT and SIGTERM: the first asks running work to stop cleanly (locks released, the
//! outcome reported); a second stops at once.

pub(crate) use estate::apply::run::{Stop, stopped};

/// Starts listening for SIGINT and SIGTERM; call inside the runtime.
pub(crate) fn stop_on_signals() -> Stop {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0.. {
            #[cfg(unix)]
            let terminated = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let terminated = std::future::pending::<()>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            if n == 0 {
                let _ = tx.send(true);
            } else {
                // A second signal means now: 128 + SIGINT, as shells report it.
                eprintln!("interrupted again: stopping now");
                std::process::exit(130);
            }
        }
    });
    rx
}
