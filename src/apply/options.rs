//! How apply works: its options, and the deterministic ids of the operations it starts.

use crate::aws::wait::Polling;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Options {
    /// Independent stack sets worked on at once.
    pub parallelism: usize,
    pub polling: Polling,
    /// The Estate's `templateBucket`, if set.
    pub template_bucket: Option<String>,
    pub home_region: String,
}

/// A deterministic operation id: the same plan and step always give the same id, so a re-run
/// of an interrupted apply finds the operation it already started instead of starting another.
pub fn operation_id(fingerprint: &str, step: &str) -> String {
    let digest = Sha256::digest(format!("{fingerprint}\n{step}").as_bytes());
    format!("estate-{}", hex::encode(&digest[..16]))
}
