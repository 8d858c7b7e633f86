//! Waiting on AWS's asynchronous work (stack-set operations, account creation, shares, drift
//! detection): how often to ask, how long to keep asking, what to do when an answer is lost
//! (ask again), and the error when it takes too long.

use super::error::AwsError;
use std::future::Future;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How often and how long to wait on AWS's asynchronous operations.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub initial: Duration,
    pub max: Duration,
    pub timeout: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(20),
            timeout: Duration::from_secs(3 * 3600),
        }
    }
}

#[derive(Debug, Error)]
#[error("timed out after {seconds}s waiting for {what}")]
pub struct Timeout {
    pub what: String,
    pub seconds: u64,
}

/// Transient failures in a row (each after the SDK's own retries) a wait tolerates before it
/// gives up with the last one: its outcome then unknown, never taken for a failure.
pub const TRANSIENT_IN_A_ROW: u32 = 8;

/// Exponential backoff between two polls, up to `max`, giving up after `timeout`.
pub struct Backoff {
    next: Duration,
    polling: Polling,
    started: Instant,
}

impl Backoff {
    pub fn new(polling: Polling) -> Self {
        Backoff {
            next: polling.initial,
            polling,
            started: Instant::now(),
        }
    }

    /// Sleeps before the next poll of `what`, or gives up.
    pub async fn sleep(&mut self, what: &str) -> Result<(), Timeout> {
        if self.started.elapsed() > self.polling.timeout {
            return Err(Timeout {
                what: what.to_string(),
                seconds: self.polling.timeout.as_secs(),
            });
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.polling.max);
        Ok(())
    }

    /// One call of a wait (a poll, or a call whose repeat is harmless: it carries an
    /// idempotency token or its effect is found again), made again after a transient failure
    /// ([`AwsError::is_transient`]), with this backoff, up to [`TRANSIENT_IN_A_ROW`] times in a
    /// row or until the timeout; any other error is returned at once.
    pub async fn call<T, F, Fut>(&mut self, what: &str, mut call: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut failed = 0;
        loop {
            match call().await {
                Err(e) if e.is_transient() && failed < TRANSIENT_IN_A_ROW => {
                    failed += 1;
                    tracing::info!("{what}: {e}; asking again ({failed} in a row)");
                    if self.sleep(what).await.is_err() {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}
