//! Waiting on AWS's asynchronous work (stack-set operations, account creation, shares, drift
//! detection): how often to ask, how long to keep asking, and the error when it takes too long.

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
}
