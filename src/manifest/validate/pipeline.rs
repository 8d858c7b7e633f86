//! Checks of `kind: Pipeline`: its name fits the AWS names it compiles to, which clash with
//! no other pipeline's or stack set's; its source is one thing; its accounts and stages
//! exist, in promotion order; its stage template gets every parameter it requires, and holds
//! only what the deploy role may create (known types, named in the stage's prefix, roles
//! bounded by the stage's boundary).

use super::lookup::{Names, unknown};
use crate::diag::{Code, Diagnostics, closest};
use crate::manifest::doc::{Doc, Parsed};
use crate::manifest::model::*;
use crate::manifest::names as aws;
use crate::manifest::stage_rights;
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
    let set_by_pipeline = check_source(pipe, diags);
    if let Some(a) = &spec.approval_notification {
        if !spec.stages.iter().any(|s| s.approval == Approval::Manual) {
            diags.error(
                Code::Pipeline,
                &pipe.file,
                pipe.span("/spec/approvalNotification"),
                format!(
                    "no stage has `approval: manual`: nothing would be sent to {}",
                    a.emails.join(", ")
                ),
            );
        }
    }
    // Every parameter the stage template requires comes from each stage's environment, but
    // the model (package ARN or artifact URL), which the pipeline finds itself.
    if let Some(t) = templates.get(&pipe.resolve_path(&spec.template)) {
        check_stage_resources(pipe, t, diags);
        for stage in &spec.stages {
            let Some(env) = p.environments.iter().find(|e| e.name == stage.environment) else {
                continue;
            };
            for (param, decl) in &t.parameters {
                // A source in error sets one of the two: neither is reported missing.
                let by_pipeline = match set_by_pipeline {
                    Some(set) => param == set,
                    None => aws::PIPELINE_PARAMETERS.contains(&param.as_str()),
                };
                if decl.default.is_none()
                    && !by_pipeline
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

/// The source names exactly one thing that starts the pipeline; returns the stage template
/// parameter the pipeline sets from it.
fn check_source(pipe: &Doc<PipelineSpec>, diags: &mut Diagnostics) -> Option<&'static str> {
    let source = &pipe.spec.source;
    match (&source.model_package_group, &source.s3) {
        (Some(_), None) => {
            if pipe.name.len() > aws::MAX_NAME_WITH_REGISTRY {
                diags.error(
                    Code::Pipeline,
                    &pipe.file,
                    pipe.span("/metadata/name"),
                    format!(
                        "pipeline name `{}` is longer than {} characters: with a model package group, its model bucket's name (`{}`) must fit in S3's 63",
                        pipe.name,
                        aws::MAX_NAME_WITH_REGISTRY,
                        aws::models_bucket(&pipe.name, "<account id>")
                    ),
                );
            }
            Some(aws::MODEL_PACKAGE_PARAMETER)
        }
        (None, Some(s3)) => {
            check_upload_bucket(pipe, &s3.bucket, diags);
            Some(aws::MODEL_DATA_PARAMETER)
        }
        (both, _) => {
            let message = if both.is_some() {
                "the source names both a model package group and an S3 object: name one"
            } else {
                "the source names nothing that starts the pipeline: give `modelPackageGroup` (approved versions) or `s3: {bucket, key}` (uploads)"
            };
            diags
                .error(
                    Code::Pipeline,
                    &pipe.file,
                    pipe.span("/spec/source"),
                    message,
                )
                .label("one of modelPackageGroup, s3");
            None
        }
    }
}

/// An upload bucket's name may refer to accounts (S3's names are global, so
/// `models-${account:tools}` is how a name stays unique); once those are ids, it must be a
/// valid S3 name.
fn check_upload_bucket(pipe: &Doc<PipelineSpec>, bucket: &str, diags: &mut Diagnostics) {
    use crate::manifest::refs::{self, Ref};
    let span = pipe.span("/spec/source/s3/bucket");
    // Any 12 digits: every account id has that many.
    // The schema admits no other reference there; a malformed one is reported by the
    // reference checks.
    let Ok(name) = refs::substitute(bucket, |r| {
        matches!(r, Ref::Account(_)).then(|| "123456789012".to_string())
    }) else {
        return;
    };
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !name.starts_with(['.', '-'])
        && !name.ends_with(['.', '-']);
    if !valid {
        diags
            .error(
                Code::Pipeline,
                &pipe.file,
                span,
                format!(
                    "the source bucket `{bucket}` is not a valid S3 bucket name once its account ids are known (`{name}`): 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
                ),
            )
            .label("source bucket");
    }
}

/// The stage template holds only resource types whose deploy rights estate knows, names each
/// resource in the stage's prefix (the stage stack's name) where the rights are scoped by
/// name, and bounds each role by the stage's boundary: otherwise the deploy role, which may
/// do nothing else, would fail on it in the middle of a deployment.
fn check_stage_resources(pipe: &Doc<PipelineSpec>, t: &Template, diags: &mut Diagnostics) {
    let span = pipe.span("/spec/template");
    let boundary = serde_json::json!({"Fn::Sub": format!(
        "arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/${{AWS::StackName}}-{}",
        aws::BOUNDARY_SUFFIX
    )});
    let reserved = [aws::BOUNDARY_SUFFIX, aws::MODEL_ROLE_SUFFIX]
        .map(|s| serde_json::json!({"Fn::Sub": format!("${{AWS::StackName}}-{s}")}));
    let Some(resources) = t.body["Resources"].as_object() else {
        return;
    };
    for (id, r) in resources {
        let Some(ty) = r.get("Type").and_then(|v| v.as_str()) else {
            continue;
        };
        let props = r.get("Properties").unwrap_or(&serde_json::Value::Null);
        let Some(rights) = stage_rights::rights(ty) else {
            let known = stage_rights::type_names();
            let b = diags
                .error(
                    Code::Pipeline,
                    &pipe.file,
                    span.clone(),
                    format!(
                        "resource `{id}` of the stage template is a `{ty}`, which a pipeline's deploy role has no rights for"
                    ),
                )
                .label("stage template");
            match closest(ty, known.iter().copied()) {
                Some(best) => b.help(format!("did you mean `{best}`?")),
                None => b.help(format!("a stage template may hold: {}", known.join(", "))),
            };
            continue;
        };
        if let Some(property) = rights.name_property {
            let name = props.get(property);
            if !name.is_some_and(stage_rights::in_stage_prefix) {
                diags
                    .error(
                        Code::Pipeline,
                        &pipe.file,
                        span.clone(),
                        format!(
                            "resource `{id}` ({ty}) of the stage template must be named in the stage's prefix: the deploy role may only create names starting with the stage's stack name"
                        ),
                    )
                    .label("stage template")
                    .help(format!("{property}: !Sub ${{AWS::StackName}}-{}", id.to_lowercase()));
            } else if ty.starts_with("AWS::IAM::") && name.is_some_and(|n| reserved.contains(n)) {
                diags.error(
                    Code::Pipeline,
                    &pipe.file,
                    span.clone(),
                    format!(
                        "resource `{id}` of the stage template takes a name the pipeline uses itself (`-{}` and `-{}` are its model role and boundary)",
                        aws::MODEL_ROLE_SUFFIX,
                        aws::BOUNDARY_SUFFIX
                    ),
                );
            }
        }
        if ty == "AWS::IAM::ManagedPolicy"
            && ["Users", "Groups"].iter().any(|k| props.get(k).is_some())
        {
            diags.error(
                Code::Pipeline,
                &pipe.file,
                span.clone(),
                format!(
                    "managed policy `{id}` of the stage template is attached to users or groups: the deploy role may attach policies to the stage's bounded roles only"
                ),
            );
        }
        if ty == "AWS::IAM::Role" && props.get("PermissionsBoundary") != Some(&boundary) {
            diags
                .error(
                    Code::Pipeline,
                    &pipe.file,
                    span.clone(),
                    format!(
                        "role `{id}` of the stage template must carry the stage's permissions boundary: the deploy role may only create bounded roles"
                    ),
                )
                .label("stage template")
                .help("PermissionsBoundary: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/${AWS::StackName}-boundary");
        }
    }
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
