//! The AWS names a `kind: Pipeline` compiles to, and the limits on them.
//!
//! They are manifest knowledge: validation checks them (length, clashes between pipelines
//! and with stack sets) before anything is compiled, and the pipeline module builds its
//! templates with the same names.

/// The parameter of a stage template that receives the approved model package's ARN.
pub const MODEL_PACKAGE_PARAMETER: &str = "ModelPackageArn";
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
    pub key_alias: String,
    pub resolve_project: String,
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
            key_alias: format!("alias/{base}"),
            resolve_project: format!("{base}-resolve"),
        }
    }

    /// The stack each stage deploys in its accounts.
    pub fn stage_stack(&self, environment: &str) -> String {
        format!("{}-{environment}", self.pipeline)
    }

    pub fn test_project(&self, environment: &str) -> String {
        format!("{}-test-{environment}", self.pipeline)
    }
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
