//! The apply lock, kept in AWS itself: a tag on the organization root per estate and scope
//! (an environment, or `organization`). Held for the whole apply, refreshed (a heartbeat)
//! while held, released on exit (retried), and taken over once its holder missed a few
//! heartbeats (stale): a killed apply strands its scope for [`STALE_AFTER`], no longer.
//! `estate unlock` lists the locks and removes one whose holder is known to be dead.
//!
//! Organizations tags have no compare-and-swap, so acquiring writes, waits, and reads back:
//! two applies would both proceed only if one wrote more than [`SETTLE`] after the other
//! checked, which a check-then-write a few milliseconds apart never does.

use crate::aws::{Aws, AwsError};
use crate::live::read::root_tags;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// A lock not refreshed for this long (four missed heartbeats) belongs to an apply that died.
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// How often a held lock is refreshed: the heartbeat.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Pause between writing the lock and reading it back.
pub const SETTLE: Duration = Duration::from_millis(1500);

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "another apply of {estate} ({scope}) holds the lock: {holder}, refreshed {age}s ago; wait for it, or if it died, the lock is taken over after {stale}s without a refresh (`estate unlock --scope {scope} --force` removes it now: the tag estate-lock:{estate}:{scope} on the organization root)"
    )]
    Held {
        estate: String,
        scope: String,
        holder: String,
        age: u64,
        stale: u64,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// A held lock; call [`Lock::release`] when done (a lock left behind goes stale).
pub struct Lock {
    aws: Aws,
    root: String,
    key: String,
    token: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn key(estate: &str, scope: &str) -> String {
    crate::tags::lock_key(estate, scope)
}

/// `<token> <unix seconds> <who>`: the token identifies this process's hold.
fn value(token: &str, who: &str) -> String {
    format!("{token} {} {who}", now())
}

fn parse(value: &str) -> (String, u64, String) {
    let mut parts = value.splitn(3, ' ');
    let token = parts.next().unwrap_or_default().to_string();
    let at = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let who = parts.next().unwrap_or_default().to_string();
    (token, at, who)
}

async fn read(aws: &Aws, root: &str, key: &str) -> Result<Option<String>, AwsError> {
    Ok(root_tags(aws, root)
        .await?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

async fn write(aws: &Aws, root: &str, key: &str, value: &str) -> Result<(), AwsError> {
    aws.organizations()
        .tag_resource()
        .resource_id(root)
        .tags(
            aws_sdk_organizations::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .expect("key and value are set"),
        )
        .send()
        .await
        .map_err(|e| AwsError::call("Organizations.TagResource", e))?;
    Ok(())
}

impl Lock {
    /// Takes the lock for `estate`/`scope`, or says who holds it.
    pub async fn acquire(
        aws: &Aws,
        root: &str,
        estate: &str,
        scope: &str,
        who: &str,
    ) -> Result<Lock, LockError> {
        let key = key(estate, scope);
        if let Some(current) = read(aws, root, &key).await? {
            let (_, at, holder) = parse(&current);
            let age = now().saturating_sub(at);
            if age < STALE_AFTER.as_secs() {
                return Err(LockError::Held {
                    estate: estate.into(),
                    scope: scope.into(),
                    holder,
                    age,
                    stale: STALE_AFTER.as_secs(),
                });
            }
            tracing::warn!("taking over the stale lock {key} of {holder} ({age}s old)");
        }
        let token = format!("{:x}", rand_token());
        write(aws, root, &key, &value(&token, who)).await?;
        tokio::time::sleep(SETTLE).await;
        let back = read(aws, root, &key).await?.unwrap_or_default();
        let (owner, at, holder) = parse(&back);
        if owner != token {
            return Err(LockError::Held {
                estate: estate.into(),
                scope: scope.into(),
                holder,
                age: now().saturating_sub(at),
                stale: STALE_AFTER.as_secs(),
            });
        }
        Ok(Lock {
            aws: aws.clone(),
            root: root.to_string(),
            key,
            token,
        })
    }

    /// Renews the timestamp so the lock does not go stale during a long apply.
    pub async fn refresh(&self, who: &str) -> Result<(), AwsError> {
        write(&self.aws, &self.root, &self.key, &value(&self.token, who)).await
    }

    /// Removes the lock if it is still ours; a transient failure is tried again, so one lost
    /// answer does not strand the scope until the lock goes stale.
    pub async fn release(self) -> Result<(), AwsError> {
        let mut last = None;
        for attempt in 0..RELEASE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self.release_once().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn release_once(&self) -> Result<(), AwsError> {
        let current = read(&self.aws, &self.root, &self.key).await?;
        if current.is_some_and(|v| parse(&v).0 == self.token) {
            untag(&self.aws, &self.root, &self.key).await?;
        }
        Ok(())
    }
}

/// Tries of a release before giving up (the lock then goes stale on its own).
const RELEASE_ATTEMPTS: u32 = 3;

async fn untag(aws: &Aws, root: &str, key: &str) -> Result<(), AwsError> {
    aws.organizations()
        .untag_resource()
        .resource_id(root)
        .tag_keys(key)
        .send()
        .await
        .map_err(|e| AwsError::call("Organizations.UntagResource", e))?;
    Ok(())
}

/// A lock as `estate unlock` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub scope: String,
    pub holder: String,
    /// Seconds since its last heartbeat.
    pub age: u64,
}

impl Held {
    pub fn stale(&self) -> bool {
        self.age >= STALE_AFTER.as_secs()
    }
}

/// Every lock of `estate` on the organization root.
pub async fn held(aws: &Aws, root: &str, estate: &str) -> Result<Vec<Held>, AwsError> {
    let prefix = key(estate, "");
    Ok(root_tags(aws, root)
        .await?
        .into_iter()
        .filter_map(|(k, v)| {
            let scope = k.strip_prefix(&prefix)?.to_string();
            let (_, at, holder) = parse(&v);
            Some(Held {
                scope,
                holder,
                age: now().saturating_sub(at),
            })
        })
        .collect())
}

/// Removes the lock of `estate`/`scope`, whoever holds it (`estate unlock`).
pub async fn remove(aws: &Aws, root: &str, estate: &str, scope: &str) -> Result<(), AwsError> {
    untag(aws, root, &key(estate, scope)).await
}

/// A token unique to this hold: time, process and a per-process counter.
pub(super) fn rand_token() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    nanos
        ^ (u128::from(std::process::id()) << 64)
        ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = value("abc", "ci@runner pid 7");
        let (token, at, who) = parse(&v);
        assert_eq!(token, "abc");
        assert!(at > 0);
        assert_eq!(who, "ci@runner pid 7");
    }
}
