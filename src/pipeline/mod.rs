//! Model pipelines compiled to CloudFormation: the templates of the stack sets that deploy a
//! `kind: Pipeline`, and the source bundle its CodePipeline reads. Pure: no I/O.
//!
//! A pipeline `p` with tools account `T`, source account `S` and stages `E1…En` becomes:
//! - `pipeline-p-Ei` (environment `Ei`, in each target account of `Ei`): the cross-account
//!   role the pipeline assumes there (`estate-p-action`), the role CloudFormation deploys
//!   the stage template with (`estate-p-deploy`, rights derived from the template's resource
//!   types, scoped to the stage's prefix `estate-p-Ei`), the boundary of every role the stage
//!   creates (`estate-p-Ei-boundary`), the role models run as (`estate-p-Ei-model`) and the
//!   role the stage's test assumes (`estate-p-test`);
//! - `pipeline-p-source` (in `S`, after the last stage's roles, which its policies name): what
//!   starts the pipeline (a model package group estate creates, or an upload bucket) and the
//!   rule forwarding it to `T`, the model artifacts' key and bucket, and the role the
//!   pipeline's build reads the source with;
//! - `pipeline-p` (in `T`, last: its key, bucket and event bus policies name the others'
//!   roles, and AWS rejects a policy naming a principal that does not exist): the KMS key,
//!   the artifact bucket, the CodePipeline, its CodeBuild projects, the trigger rules and the
//!   approvals topic.
//!
//! Trust policies name the tools account's role through `aws:PrincipalArn` (a trust policy
//! may name a role that does not exist yet that way); key and bucket policies name exactly the
//! roles, never a whole account other than the key's own.

mod audit;
mod bundle;
mod cfn;
mod inputs;
mod source;
mod stage;
mod tools;

pub use audit::broad_grants;
pub use bundle::{Bundle, SOURCE_PREFIX, stage_configuration, test_buildspec_path};
pub use cfn::to_template;
// The naming rules live with the manifest, which validates them; re-exported for callers.
pub use crate::manifest::names::{
    MAX_NAME, MODEL_DATA_PARAMETER, MODEL_PACKAGE_PARAMETER, Names, bucket, source_stack_set,
    stack_set_names, stage_stack_set, tools_stack_set,
};
pub use inputs::{MODELS_PREFIX, Source, Stage};
pub use source::source_template;
pub use stage::{StagePart, stage_template};
pub use tools::{Tools, tools_template};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::stage_rights::TABLE;
    use crate::template::Template;

    /// A stage template holding one resource of every type the deploy role has rights for.
    fn every_type() -> Template {
        let resources: serde_json::Map<String, serde_json::Value> = TABLE
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("R{i}"), serde_json::json!({"Type": t.type_name})))
            .collect();
        let body = serde_json::json!({"Resources": resources});
        Template::parse(serde_json::to_string(&body).unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn no_generated_template_grants_everything_a_whole_service_or_any_role() {
        let n = Names::new("abalone");
        let deployed = every_type();
        let stages = tools::tests::stages();
        for source in [
            Source::Registry { group: "abalone" },
            Source::Upload {
                bucket: "models",
                key: "model.tar.gz",
            },
        ] {
            for test in [false, true] {
                let stage = stage_template(&StagePart {
                    names: &n,
                    environment: "staging",
                    tools: "111111111111",
                    bucket: "estate-abalone-111111111111",
                    source_account: "222222222222",
                    source: &source,
                    deployed: &deployed,
                    test,
                    test_rights: None,
                });
                assert_eq!(broad_grants(&stage), Vec::<String>::new(), "{source:?}");
            }
            for account in ["111111111111", "222222222222"] {
                let s = source_template(&n, "111111111111", account, &source, &stages);
                assert_eq!(broad_grants(&s), Vec::<String>::new(), "{source:?}");
                let t = tools::tests::tools_with(account, source);
                assert_eq!(broad_grants(&t), Vec::<String>::new(), "{source:?}");
            }
        }
    }
}
