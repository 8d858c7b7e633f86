//! What the pipeline's templates are built from, shared by its parts: what starts the
//! pipeline, and its stages as the templates see them.

use crate::manifest::model::PipelineSource;
use crate::manifest::names::{MODEL_DATA_PARAMETER, MODEL_PACKAGE_PARAMETER, Names, models_bucket};
use serde_json::{Value, json};

/// Where an upload source's pinned model versions are kept in its bucket: the stages read
/// these copies, so a later upload never changes what an earlier run deploys.
pub const MODELS_PREFIX: &str = "estate/models/";

/// One stage as the tools template needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub environment: String,
    /// Target account ids (or "(known after apply)" at plan time).
    pub accounts: Vec<String>,
    pub test: bool,
    pub manual_approval: bool,
}

/// What starts a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// An approved version in this model package group.
    Registry { group: &'a str },
    /// An upload of this object.
    Upload { bucket: &'a str, key: &'a str },
}

impl<'a> Source<'a> {
    /// What a Pipeline's `source` says; `None` when it names neither or both (which
    /// `validate` refuses).
    pub fn of(spec: &'a PipelineSource) -> Option<Source<'a>> {
        match (&spec.model_package_group, &spec.s3) {
            (Some(group), None) => Some(Source::Registry { group }),
            (None, Some(s3)) => Some(Source::Upload {
                bucket: &s3.bucket,
                key: &s3.key,
            }),
            _ => None,
        }
    }

    /// The parameter of the stage template the pipeline sets to what it deploys.
    pub fn parameter(&self) -> &'static str {
        match self {
            Source::Registry { .. } => MODEL_PACKAGE_PARAMETER,
            Source::Upload { .. } => MODEL_DATA_PARAMETER,
        }
    }

    /// The bucket of the model artifacts in the source account (named from `account`).
    pub fn bucket(&self, n: &Names, account: &str) -> String {
        match self {
            Source::Registry { .. } => models_bucket(&n.name, account),
            Source::Upload { bucket, .. } => bucket.to_string(),
        }
    }

    /// The events that start the pipeline; `account` limits them to the source account's.
    pub(super) fn pattern(&self, bucket: &Value, account: Option<&str>) -> Value {
        let mut pattern = match self {
            Source::Registry { group } => json!({
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {
                    "ModelPackageGroupName": [group],
                    "ModelApprovalStatus": ["Approved"]
                }
            }),
            Source::Upload { key, .. } => json!({
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [bucket]}, "object": {"key": [key]}}
            }),
        };
        if let Some(a) = account {
            pattern["account"] = json!([a]);
        }
        pattern
    }

    /// What the rules that forward and start on it are called, and say.
    pub(super) fn event(&self) -> (&'static str, String) {
        match self {
            Source::Registry { group } => ("Approvals", format!("Approved versions of {group}")),
            Source::Upload { bucket, key } => {
                ("Uploads", format!("Uploads of s3://{bucket}/{key}"))
            }
        }
    }
}
