//! Why an apply step could not be carried out.

use crate::aws::AwsError;
use crate::aws::wait::Timeout;
use crate::plan::ShapeError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("account {name}: creation failed: {reason}")]
    AccountFailed { name: String, reason: String },
    /// Several independent steps failed (accounts created at once): each one's error.
    #[error("{}", .0.join("; "))]
    Several(Vec<String>),
    #[error("{0}")]
    Inconsistent(String),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("{what} failed: {reason}")]
    ShareFailed { what: String, reason: String },
    #[error("{what} failed: {reason} ({hint})")]
    Prerequisite {
        what: String,
        reason: String,
        hint: String,
    },
    #[error(transparent)]
    Timeout(#[from] Timeout),
}
