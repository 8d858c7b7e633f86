//! The AWS names a `kind: Pipeline` compiles to, and the limits on them.
//!
//! They are manifest knowledge: validation checks them (length, clashes between pipelines
//! and with stack sets) before anything is compiled, and the pipeline module builds its
//! templates with the same names.

/// The parameter of a stage template that receives the approved model package's ARN.
pub const MODEL_PACKAGE_PARAMETER: &str = "ModelPackageArn";
/// The parameter of a stage template that receives the uploaded model artifact's S3 URL (an
/// `s3` source).
pub const MODEL_DATA_PARAMETER: &str = "ModelDataUrl";
/// The parameters the pipeline sets itself: no environment needs to give them.
pub const PIPELINE_PARAMETERS: [&str; 2] = [MODEL_PACKAGE_PARAMETER, MODEL_DATA_PARAMETER];
/// Longest pipeline name: the artifact bucket's name (`estate-<name>-<account id>`) must
/// stay within S3's 63 characters.
pub const MAX_NAME: usize = 40;

/// The AWS names a pipeline's parts get.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    /// The manifest's name.
    pub name: String,
    /// The CodePipeline's name, prefix of every other.
    pub pipeline: String,
    pub action_role: String,
    pub deploy_role: String,
    pub pipeline_role: String,
    pub build_role: String,
    pub events_role: String,
    pub forward_role: String,
    pub registry_role: String,
    /// The role a stage's test assumes in each of its accounts.
    pub test_role: String,
    pub key_alias: String,
    /// The key of the model artifacts' bucket in the source account.
    pub models_key_alias: String,
    pub resolve_project: String,
    /// The SNS topic manual approvals are announced on.
    pub approvals_topic: String,
}

impl Names {
    pub fn new(pipeline: &str) -> Names {
        let base = format!("estate-{pipeline}");
        Names {
            name: pipeline.to_string(),
            pipeline: base.clone(),
            action_role: format!("{base}-action"),
            deploy_role: format!("{base}-deploy"),
            pipeline_role: format!("{base}-pipeline"),
            build_role: format!("{base}-build"),
            events_role: format!("{base}-events"),
            forward_role: format!("{base}-forward"),
            registry_role: format!("{base}-registry"),
            test_role: format!("{base}-test"),
            key_alias: format!("alias/{base}"),
            models_key_alias: format!("alias/{base}-models"),
            resolve_project: format!("{base}-resolve"),
            approvals_topic: format!("{base}-approvals"),
        }
    }

    /// The stack each stage deploys in its accounts.
    pub fn stage_stack(&self, environment: &str) -> String {
        format!("{}-{environment}", self.pipeline)
    }

    /// The managed policy that bounds every role a stage's stack creates; its name is in the
    /// stage's prefix, so a template names it `${AWS::StackName}-boundary`.
    pub fn stage_boundary(&self, environment: &str) -> String {
        format!("{}-{BOUNDARY_SUFFIX}", self.stage_stack(environment))
    }

    /// The role a stage's models run as (`${AWS::StackName}-model` in the stage template).
    pub fn stage_model_role(&self, environment: &str) -> String {
        format!("{}-{MODEL_ROLE_SUFFIX}", self.stage_stack(environment))
    }

    pub fn test_project(&self, environment: &str) -> String {
        format!("{}-test-{environment}", self.pipeline)
    }
}

/// Suffixes of the names the pipeline itself takes in a stage's prefix: a stage template
/// refers to them, and may not create resources of these names.
pub const BOUNDARY_SUFFIX: &str = "boundary";
pub const MODEL_ROLE_SUFFIX: &str = "model";

/// Longest pipeline name with a model registry source: the model bucket's name
/// (`estate-<name>-<account id>-models`) must stay within S3's 63 characters.
pub const MAX_NAME_WITH_REGISTRY: usize = 36;

/// The bucket of a registry source's model artifacts, in the source account.
pub fn models_bucket(pipeline: &str, account: &str) -> String {
    format!("estate-{}-{account}-models", pipeline.to_ascii_lowercase())
}

/// The artifact bucket of a pipeline in its tools account.
pub fn bucket(pipeline: &str, account: &str) -> String {
    format!("estate-{}-{account}", pipeline.to_ascii_lowercase())
}

/// Stack set names a pipeline compiles to: its stages', its source's, its own.
pub fn stack_set_names(pipeline: &str, stages: &[String]) -> Vec<String> {
    let mut names: Vec<String> = stages
        .iter()
        .map(|e| stage_stack_set(pipeline, e))
        .collect();
    names.push(source_stack_set(pipeline));
    names.push(tools_stack_set(pipeline));
    names
}

pub fn stage_stack_set(pipeline: &str, environment: &str) -> String {
    format!("pipeline-{pipeline}-{environment}")
}

pub fn source_stack_set(pipeline: &str) -> String {
    format!("pipeline-{pipeline}-source")
}

pub fn tools_stack_set(pipeline: &str) -> String {
    format!("pipeline-{pipeline}")
}
