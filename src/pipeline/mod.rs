//! Model pipelines compiled to CloudFormation: the templates of the stack sets that deploy a
//! `kind: Pipeline`, and the source bundle its CodePipeline reads. Pure: no I/O.
//!
//! A pipeline `p` with tools account `T`, source account `S` and stages `E1…En` becomes:
//! - `pipeline-p-Ei` (environment `Ei`, in each target account of `Ei`): the cross-account
//!   role the pipeline assumes there (`estate-p-action`) and the role CloudFormation deploys
//!   the stage template with (`estate-p-deploy`);
//! - `pipeline-p-source` (in `S`): an EventBridge rule forwarding approvals of the model
//!   package group to `T`, and the role that lets the pipeline's build read the registry;
//! - `pipeline-p` (in `T`, after the others: its key, bucket and event bus policies name their
//!   roles, and AWS rejects a policy naming a principal that does not exist): the KMS key,
//!   the artifact bucket, the CodePipeline, its CodeBuild projects and the trigger rule.
//!
//! Trust policies name the tools account's role through `aws:PrincipalArn` (a trust policy
//! may name a role that does not exist yet that way); key and bucket policies name exactly the
//! roles, never a whole account other than the key's own.

mod bundle;
mod cfn;
mod source;
mod stage;
mod tools;

pub use bundle::{Bundle, stage_configuration, test_buildspec_path};
pub use cfn::to_template;
// The naming rules live with the manifest, which validates them; re-exported for callers.
pub use crate::manifest::names::{
    MAX_NAME, MODEL_PACKAGE_PARAMETER, Names, bucket, source_stack_set, stack_set_names,
    stage_stack_set, tools_stack_set,
};
pub use source::source_template;
pub use stage::stage_template;
pub use tools::{Stage, Tools, tools_template};

/// Tag on the pipeline's stack sets naming the pipeline.
pub const TAG_PIPELINE: &str = "estate:pipeline";
/// Where source bundles are kept in the artifact bucket.
pub const SOURCE_PREFIX: &str = "estate/source-";
