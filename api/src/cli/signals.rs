//! SIGINT (Ctrl-C) and SIGTERM for the long-running subcommands (`serve`,
//! `agent`): both mean "stop cleanly".
//!
//! Owns catching the signals only; what stopping means is each
//! subcommand's business. It must be installed before a subcommand says it
//! is ready, so a signal sent as soon as it does is never met by the default
//! action (killing the process).

use super::error::{Error, Result};

/// Both signals, caught from the moment this exists.
#[derive(Debug)]
pub struct Stop {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Stop {
    /// Catches the signals; must be called inside a tokio runtime.
    pub fn install() -> Result<Stop> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let catch = |kind: SignalKind, name: &str| {
                signal(kind).map_err(|e| Error::setup(format!("cannot catch {name}"), e))
            };
            Ok(Stop {
                interrupt: catch(SignalKind::interrupt(), "SIGINT")?,
                terminate: catch(SignalKind::terminate(), "SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Stop {})
    }

    /// Completes when either signal arrives.
    pub async fn received(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
