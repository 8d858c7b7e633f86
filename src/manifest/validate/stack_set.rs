//! Checks of `kind: StackSet`: its environments, the fields its permission model accepts,
//! its overrides, and its parameters against the template's declarations.

use super::environment::static_targets;
use super::lookup::{Names, unknown};
use crate::diag::{Code, Diagnostics, closest};
use crate::manifest::doc::{Doc, Parsed};
use crate::manifest::model::*;
use crate::manifest::refs::{self, Ref};
use crate::template::Template;
use crate::yaml::{Node, pointer_escape};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The defined environments a stack set deploys to, with their index in `spec.environments`.
type Reached<'p> = [(usize, &'p Doc<EnvironmentSpec>)];

pub(super) fn check_stack_set(
    s: &Doc<StackSetSpec>,
    p: &Parsed,
    templates: &BTreeMap<PathBuf, Template>,
    names: &Names,
    diags: &mut Diagnostics,
) {
    let envs = environments(s, p, names, diags);
    check_stack_set_names(s, p, diags);
    check_permission_model(s, &envs, diags);
    check_overrides(s, &envs, names, diags);
    let Some(template) = templates.get(&s.resolve_path(&s.spec.template)) else {
        return;
    };
    check_template(s, template, diags);
    check_missing_parameters(s, template, &envs, diags);
    check_parameter_values(s, template, &envs, names, diags);
}

/// Each listed environment once, defined, and giving a stack set name AWS accepts.
fn environments<'p>(
    s: &Doc<StackSetSpec>,
    p: &'p Parsed,
    names: &Names,
    diags: &mut Diagnostics,
) -> Vec<(usize, &'p Doc<EnvironmentSpec>)> {
    let spec = &s.spec;
    let mut envs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, env) in spec.environments.iter().enumerate() {
        let span = s.span(&format!("/spec/environments/{i}"));
        if !seen.insert(env) {
            diags.error(
                Code::Duplicate,
                &s.file,
                span,
                format!("environment `{env}` is listed twice"),
            );
            continue;
        }
        match p.environments.iter().find(|e| &e.name == env) {
            Some(e) => envs.push((i, e)),
            // Defined but invalid: already reported where it is defined.
            None if names.environments.contains(&env.as_str()) => {}
            None => unknown(
                names,
                diags,
                &s.file,
                span,
                "environment",
                env,
                &names.environments,
            ),
        }
        let aws_name = spec.aws_name(&s.name, env);
        if aws_name.len() > 128 {
            diags.error(
                Code::Name,
                &s.file,
                s.span(&format!("/spec/environments/{i}")),
                format!("stack set name `{aws_name}` is over 128 characters"),
            );
        }
    }
    envs
}

/// `stackSetNames` names environments of the stack set, and every AWS name is in the scope.
fn check_stack_set_names(s: &Doc<StackSetSpec>, p: &Parsed, diags: &mut Diagnostics) {
    let spec = &s.spec;
    for env in spec.stack_set_names.keys() {
        if !spec.environments.contains(env) {
            let candidates: Vec<&str> = spec.environments.iter().map(String::as_str).collect();
            let b = diags
                .error(
                    Code::UnknownName,
                    &s.file,
                    // The key is the unknown name, not the AWS name it maps to.
                    s.node
                        .key_span("/spec/stackSetNames", env)
                        .unwrap_or_else(|| {
                            s.span(&format!("/spec/stackSetNames/{}", pointer_escape(env)))
                        }),
                    format!("`{env}` is not an environment of stack set `{}`", s.name),
                )
                .label("not in spec.environments");
            match closest(env, candidates.iter().copied()) {
                Some(best) => b.help(format!("did you mean `{best}`?")),
                None => b.help(format!("its environments: {}", candidates.join(", "))),
            };
        }
    }
    let Some(scope) = p.estate.first().and_then(|e| e.spec.scope.as_ref()) else {
        return;
    };
    for (i, env) in spec.environments.iter().enumerate() {
        let name = spec.aws_name(&s.name, env);
        if !scope.has_stack_set(&name) {
            let at = if spec.stack_set_names.contains_key(env) {
                format!("/spec/stackSetNames/{}", pointer_escape(env))
            } else {
                format!("/spec/environments/{i}")
            };
            diags
                .error(
                    Code::Name,
                    &s.file,
                    s.span(&at),
                    format!(
                        "stack set `{name}` is outside the Estate's scope (stackSets: {})",
                        scope.stack_sets.join(", ")
                    ),
                )
                .help("add a pattern that matches it to the Estate's spec.scope.stackSets");
        }
    }
}

/// Fields that only one permission model accepts.
fn check_permission_model(s: &Doc<StackSetSpec>, envs: &Reached, diags: &mut Diagnostics) {
    let spec = &s.spec;
    let self_managed = spec.permission_model == PermissionModel::SelfManaged;
    let misplaced: &[(&str, bool)] = &[
        (
            "administrationRoleArn",
            spec.administration_role_arn.is_some() && !self_managed,
        ),
        (
            "executionRoleName",
            spec.execution_role_name.is_some() && !self_managed,
        ),
        (
            "autoDeployment",
            spec.auto_deployment.is_some() && self_managed,
        ),
    ];
    for (field, bad) in misplaced {
        if *bad {
            let (need, have) = if self_managed {
                ("service-managed", "self-managed")
            } else {
                ("self-managed", "service-managed")
            };
            diags
                .error(
                    Code::PermissionModel,
                    &s.file,
                    s.node
                        .key_span("/spec", field)
                        .unwrap_or_else(|| s.span("/spec")),
                    format!("`{field}` applies only to {need} stack sets; this one is {have}"),
                )
                .help(format!("remove `{field}` or set `permissionModel: {need}`"));
        }
    }
    if !self_managed {
        for (i, env) in envs {
            if !env.spec.targets.accounts.is_empty() {
                diags
                    .error(
                        Code::PermissionModel,
                        &s.file,
                        s.span(&format!("/spec/environments/{i}")),
                        format!(
                            "service-managed stack sets deploy to units, but environment `{}` targets accounts",
                            env.name
                        ),
                    )
                    .help("target units in that environment, or use `permissionModel: self-managed`");
            }
        }
    }
}

/// Overrides name real accounts that the stack set reaches.
fn check_overrides(s: &Doc<StackSetSpec>, envs: &Reached, names: &Names, diags: &mut Diagnostics) {
    let spec = &s.spec;
    let reached: BTreeSet<&str> = envs
        .iter()
        .flat_map(|(_, e)| static_targets(e, names))
        .collect();
    for (i, o) in spec.overrides.iter().enumerate() {
        for (j, account) in o.accounts.iter().enumerate() {
            let span = s.span(&format!("/spec/overrides/{i}/accounts/{j}"));
            if !names.accounts.contains(&account.as_str()) {
                unknown(
                    names,
                    diags,
                    &s.file,
                    span,
                    "account",
                    account,
                    &names.accounts,
                );
            } else if !reached.contains(account.as_str()) {
                diags.warning(
                    Code::Override,
                    &s.file,
                    span,
                    format!("account `{account}` is not a target of any environment of this stack set; the override has no effect"),
                );
            }
        }
    }
}

/// The template fits CloudFormation, is granted the capabilities it needs, and declares every
/// parameter given.
fn check_template(s: &Doc<StackSetSpec>, template: &Template, diags: &mut Diagnostics) {
    let spec = &s.spec;
    if template.text.len() > crate::template::URL_TEMPLATE_LIMIT {
        diags
            .error(
                Code::TemplateSize,
                &s.file,
                s.span("/spec/template"),
                format!(
                    "template `{}` is {} bytes; CloudFormation takes at most {} from S3",
                    spec.template,
                    template.text.len(),
                    crate::template::URL_TEMPLATE_LIMIT
                ),
            )
            .help("split it into nested stacks, or shorten it (comments and whitespace count)");
    }
    let declared: Vec<&str> = template.parameters.keys().map(String::as_str).collect();

    // Capabilities CloudFormation will demand.
    let given: BTreeSet<&str> = spec.capabilities.iter().map(|c| c.as_str()).collect();
    for needed in template.required_capabilities() {
        let satisfied = given.contains(needed)
            || (needed == "CAPABILITY_IAM" && given.contains("CAPABILITY_NAMED_IAM"));
        if !satisfied {
            diags
                .error(
                    Code::Capabilities,
                    &s.file,
                    s.node
                        .key_span("/spec", "capabilities")
                        .unwrap_or_else(|| s.span("/spec/template")),
                    format!("the template needs {needed}, which `capabilities` does not grant"),
                )
                .help(format!("add {needed} to spec.capabilities"));
        }
    }

    // Every parameter given is declared.
    let check_declared = |ptr: String, params: &Parameters, diags: &mut Diagnostics| {
        for name in params.keys() {
            if !template.parameters.contains_key(name) {
                let span = s.node.key_span(&ptr, name).unwrap_or_else(|| s.span(&ptr));
                let b = diags
                    .error(
                        Code::Parameter,
                        &s.file,
                        span,
                        format!(
                            "parameter `{name}` is not declared by the template {}",
                            spec.template
                        ),
                    )
                    .label("undeclared");
                match closest(name, declared.iter().copied()) {
                    Some(best) => b.help(format!("did you mean `{best}`?")),
                    None if declared.is_empty() => b.help("the template declares no parameters"),
                    None => b.help(format!("declared: {}", declared.join(", "))),
                };
            }
        }
    };
    check_declared("/spec/parameters".into(), &spec.parameters, diags);
    for (i, o) in spec.overrides.iter().enumerate() {
        check_declared(
            format!("/spec/overrides/{i}/parameters"),
            &o.parameters,
            diags,
        );
    }
}

/// Every parameter without a Default has a value in every environment.
fn check_missing_parameters(
    s: &Doc<StackSetSpec>,
    template: &Template,
    envs: &Reached,
    diags: &mut Diagnostics,
) {
    let spec = &s.spec;
    for (i, env) in envs {
        let missing: Vec<&str> = template
            .parameters
            .iter()
            .filter(|(name, d)| {
                d.default.is_none()
                    && !spec.parameters.contains_key(*name)
                    && !env.spec.parameters.contains_key(*name)
            })
            .map(|(n, _)| n.as_str())
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            diags
                .error(
                    Code::Parameter,
                    &s.file,
                    s.span(&format!("/spec/environments/{i}")),
                    format!(
                        "template parameter{} {list} without Default get{} no value in environment `{}`",
                        if missing.len() == 1 { "" } else { "s" },
                        if missing.len() == 1 { "s" } else { "" },
                        env.name
                    ),
                )
                .help("set it in spec.parameters, or in that environment's parameters");
        }
    }
}

/// Literal values hold against the declaration.
fn check_parameter_values(
    s: &Doc<StackSetSpec>,
    template: &Template,
    envs: &Reached,
    names: &Names,
    diags: &mut Diagnostics,
) {
    let spec = &s.spec;
    let env_names: Vec<&str> = if envs.is_empty() {
        vec![]
    } else {
        envs.iter().map(|(_, e)| e.name.as_str()).collect()
    };
    let mut warned: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut check_values = |doc_file: &str,
                            node: &Node,
                            ptr: String,
                            params: &Parameters,
                            envs: &[&str],
                            who: &str,
                            diags: &mut Diagnostics| {
        for (name, value) in params {
            let Some(decl) = template.parameters.get(name) else {
                continue;
            };
            let key = (doc_file.to_string(), ptr.clone(), name.clone());
            if decl.no_echo && !value.0.contains("{{resolve:") && warned.insert(key) {
                diags
                    .warning(
                        Code::SecretInManifest,
                        doc_file,
                        node.key_span(&ptr, name).unwrap_or_else(|| node.span_for(&ptr)),
                        format!("parameter `{name}` is NoEcho but its value is written in the manifest"),
                    )
                    .help("anyone who can read the repository can read it: use a dynamic reference such as {{resolve:secretsmanager:NAME}}")
                    .sensitive();
            }
            for env in envs
                .iter()
                .copied()
                .map(Some)
                .chain(envs.is_empty().then_some(None))
            {
                let Some(literal) = literal_value(&value.0, env, names) else {
                    continue;
                };
                if let Some(problem) = decl.check(&literal) {
                    let shown = if decl.no_echo {
                        crate::diag::SENSITIVE.to_string()
                    } else {
                        format!("`{literal}`")
                    };
                    let b = diags
                        .error(
                            Code::ParameterValue,
                            doc_file,
                            node.span_for(&format!("{ptr}/{}", pointer_escape(name))),
                            format!("{who}parameter `{name}` = {shown} {problem}"),
                        )
                        .label("rejected by the template");
                    if decl.no_echo {
                        b.sensitive();
                    }
                    break;
                }
            }
        }
    };
    check_values(
        &s.file,
        &s.node,
        "/spec/parameters".into(),
        &spec.parameters,
        &env_names,
        "",
        diags,
    );
    for (i, o) in spec.overrides.iter().enumerate() {
        check_values(
            &s.file,
            &s.node,
            format!("/spec/overrides/{i}/parameters"),
            &o.parameters,
            &env_names,
            "",
            diags,
        );
    }
    for (_, env) in envs {
        let who = format!("for stack set `{}`, ", s.name);
        check_values(
            &env.file,
            &env.node,
            "/spec/parameters".into(),
            &env.spec.parameters,
            &[env.name.as_str()],
            &who,
            diags,
        );
    }
}

/// The value as CloudFormation would receive it, when the manifest alone determines it.
fn literal_value(value: &str, env: Option<&str>, names: &Names) -> Option<String> {
    if value.contains("{{resolve:") {
        return None;
    }
    refs::substitute(value, |r| match r {
        Ref::Environment => env.map(str::to_string),
        Ref::Estate => names.estate.map(str::to_string),
        Ref::Account(a) => names.pinned.get(a.as_str()).map(|s| s.to_string()),
        Ref::Unit(_) | Ref::Region | Ref::Output(_) => None,
    })
    .ok()
}
