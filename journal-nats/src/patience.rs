//! Opening a journal while a NATS cluster is electing leaders: for a few
//! seconds after one of its servers died, a stream or bucket whose leader
//! it was answers nothing, and a request to it times out. Each step of
//! opening is tried again until the opening's deadline.
//!
//! Owns only that waiting. It must never be used for a step that is not
//! safe to run twice, nor once the journal is open (appends have their own
//! rule: see `writer`).

use std::future::Future;
use std::time::Duration;

use retrace_journal::Result;
use tokio::time::Instant;

/// How long to wait before trying a step again.
const AGAIN: Duration = Duration::from_millis(100);

/// Runs `step` until it succeeds or `deadline` passes (then its last
/// error).
pub(crate) async fn patiently<T, F, Fut>(deadline: Instant, mut step: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(e) if Instant::now() + AGAIN < deadline => {
                tracing::debug!(error = %e, "NATS JetStream not ready yet; trying again");
                tokio::time::sleep(AGAIN).await;
            }
            Err(e) => return Err(e),
        }
    }
}
