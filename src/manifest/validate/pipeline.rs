//! Checks of `kind: Pipeline`: its name fits the AWS names it compiles to, which clash with
//! no other pipeline's or stack set's; its accounts and stages exist, in promotion order; its
//! stage template gets every parameter it requires.

use super::lookup::{Names, unknown};
use crate::diag::{Code, Diagnostics};
use crate::manifest::doc::{Doc, Parsed};
use crate::manifest::model::*;
use crate::manifest::names as aws;
use crate::template::Template;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Stack sets a pipeline compiles to must not take the name of another stack set.
pub(super) fn check_generated_names(p: &Parsed, diags: &mut Diagnostics) {
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    // Names given in `stackSetNames` last, so a clash is reported where a name was given.
    for named in [false, true] {
        for s in &p.stack_sets {
            for (i, env) in s.spec.environments.iter().enumerate() {
                if s.spec.stack_set_names.contains_key(env) != named {
                    continue;
                }
                let name = s.spec.aws_name(&s.name, env);
                let owner = format!("stack set `{}` in {env}", s.name);
                // Two stack sets of one AWS name would each plan the other's.
                if let Some(other) = taken.insert(name.clone(), owner.clone()) {
                    let at = if named {
                        format!("/spec/stackSetNames/{}", crate::yaml::pointer_escape(env))
                    } else {
                        format!("/spec/environments/{i}")
                    };
                    diags.error(
                        Code::Duplicate,
                        &s.file,
                        s.span(&at),
                        format!("{owner} is the AWS stack set `{name}`, which {other} already is"),
                    );
                }
            }
        }
    }
    // AWS names of different pipelines, compared as AWS does (IAM and S3 ignore case).
    let mut aws_names: BTreeMap<(&str, String), String> = BTreeMap::new();
    for pipe in &p.pipelines {
        let n = aws::Names::new(&pipe.name);
        // Role and bucket names (the prefix) ignore case; stack and project names do not.
        let mut mine = vec![("resource prefix", n.pipeline.to_lowercase())];
        for stage in &pipe.spec.stages {
            mine.push(("stack", n.stage_stack(&stage.environment)));
            mine.push(("CodeBuild project", n.test_project(&stage.environment)));
        }
        let mut clash = None;
        for (kind, name) in mine {
            if let Some(other) = aws_names.insert((kind, name.clone()), pipe.name.clone()) {
                if other != pipe.name && clash.is_none() {
                    clash = Some((other, kind, name));
                }
            }
        }
        if let Some((other, kind, name)) = clash {
            diags.error(
                Code::Duplicate,
                &pipe.file,
                pipe.span("/metadata/name"),
                format!(
                    "pipelines `{other}` and `{}` would both use the {kind} name `{name}` in AWS",
                    pipe.name
                ),
            );
        }
    }
    for pipe in &p.pipelines {
        let stages: Vec<String> = pipe
            .spec
            .stages
            .iter()
            .map(|s| s.environment.clone())
            .collect();
        for name in aws::stack_set_names(&pipe.name, &stages) {
            if let Some(owner) = taken.insert(name.clone(), format!("pipeline `{}`", pipe.name)) {
                diags.error(
                    Code::Duplicate,
                    &pipe.file,
                    pipe.span("/metadata/name"),
                    format!(
                        "pipeline `{}` compiles to the stack set `{name}`, which {owner} already uses",
                        pipe.name
                    ),
                );
            }
        }
    }
}

pub(super) fn check_pipeline(
    pipe: &Doc<PipelineSpec>,
    p: &Parsed,
    templates: &BTreeMap<PathBuf, Template>,
    names: &Names,
    diags: &mut Diagnostics,
) {
    let spec = &pipe.spec;
    if pipe.name.len() > aws::MAX_NAME {
        diags.error(
            Code::Pipeline,
            &pipe.file,
            pipe.span("/metadata/name"),
            format!(
                "pipeline name `{}` is longer than {} characters: its artifact bucket's name must fit in S3's 63",
                pipe.name,
                aws::MAX_NAME
            ),
        );
    }
    // Every parameter the stage template requires comes from each stage's environment, but
    // the approved model package's ARN, which the pipeline finds itself.
    if let Some(t) = templates.get(&pipe.resolve_path(&spec.template)) {
        for stage in &spec.stages {
            let Some(env) = p.environments.iter().find(|e| e.name == stage.environment) else {
                continue;
            };
            for (param, decl) in &t.parameters {
                if decl.default.is_none()
                    && param != aws::MODEL_PACKAGE_PARAMETER
                    && !env.spec.parameters.contains_key(param)
                {
                    diags.error(
                        Code::MissingParameter,
                        &pipe.file,
                        pipe.span("/spec/template"),
                        format!(
                            "parameter `{param}` of the stage template has no default and environment `{}` does not give it",
                            env.name
                        ),
                    );
                }
            }
        }
    }
    for (ptr, account) in [
        ("/spec/account", &spec.account),
        ("/spec/source/account", &spec.source.account),
    ] {
        if !names.accounts.contains(&account.as_str()) {
            unknown(
                names,
                diags,
                &pipe.file,
                pipe.span(ptr),
                "account",
                account,
                &names.accounts,
            );
        }
    }
    check_stages(pipe, p, names, diags);
}

/// Each stage is a defined environment, once, in the order of the Estate's promotion.
fn check_stages(pipe: &Doc<PipelineSpec>, p: &Parsed, names: &Names, diags: &mut Diagnostics) {
    let spec = &pipe.spec;
    let promotion: Vec<&str> = p
        .estate
        .first()
        .map(|e| e.spec.promotion.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut last_index = None;
    let mut seen = BTreeSet::new();
    for (i, stage) in spec.stages.iter().enumerate() {
        let span = pipe.span(&format!("/spec/stages/{i}/environment"));
        if !seen.insert(&stage.environment) {
            diags.error(
                Code::Duplicate,
                &pipe.file,
                span,
                format!("environment `{}` is a stage twice", stage.environment),
            );
            continue;
        }
        if !names.environments.contains(&stage.environment.as_str()) {
            unknown(
                names,
                diags,
                &pipe.file,
                span,
                "environment",
                &stage.environment,
                &names.environments,
            );
            continue;
        }
        // The pipeline's tools part is applied with its last stage, after every other
        // stage's roles (which its policies name): stages must follow the promotion.
        match promotion.iter().position(|e| *e == stage.environment) {
            Some(pos) => {
                if last_index.is_some_and(|l| pos < l) {
                    diags.error(
                        Code::Promotion,
                        &pipe.file,
                        span,
                        format!(
                            "stage `{}` comes before an earlier stage in the Estate's promotion: list stages in promotion order",
                            stage.environment
                        ),
                    );
                }
                last_index = Some(pos);
            }
            None => {
                diags.error(
                    Code::Promotion,
                    &pipe.file,
                    span,
                    format!(
                        "stage `{}` is not in the Estate's promotion: a pipeline's stages must be",
                        stage.environment
                    ),
                );
            }
        }
    }
}
