//! `${stackSet:NAME.outputs.OUTPUT}` references, wherever a stack set's parameters come from
//! (its parameters, its overrides, its environments' parameters): each names a stack set, an
//! output its template declares and exactly one instance of it (`manifest::outputs`); the
//! producer is applied first (the same or an earlier environment in promotion order); no stack
//! set uses its own outputs, even through others; none reaches a pipeline's stage.

use super::lookup::Names;
use crate::diag::{Code, Diagnostics, closest};
use crate::manifest::doc::{Doc, Parsed};
use crate::manifest::model::*;
use crate::manifest::outputs::{self, Consumer, Instance};
use crate::manifest::refs::{self, OutputRef};
use crate::template::Template;
use crate::yaml::{Node, pointer_escape};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

/// A stack set in one environment: a node of the dependency graph.
type SetIn = (String, String);

/// Where one reference is written.
struct Site<'a> {
    file: &'a str,
    span: Range<usize>,
}

pub(super) fn check_outputs(
    p: &Parsed,
    templates: &BTreeMap<PathBuf, Template>,
    names: &Names,
    diags: &mut Diagnostics,
) {
    let mut c = Checker {
        p,
        templates,
        names,
        order: order(p),
        edges: BTreeMap::new(),
        sites: BTreeMap::new(),
        reported: BTreeSet::new(),
    };
    for s in &p.stack_sets {
        let template = templates.get(&s.resolve_path(&s.spec.template));
        for env_name in &s.spec.environments {
            let Some(env) = p.environments.iter().find(|e| &e.name == env_name) else {
                continue;
            };
            let node = (s.name.clone(), env.name.clone());
            c.edges.entry(node.clone()).or_default();
            for (k, v) in &s.spec.parameters {
                let ptr = format!("/spec/parameters/{}", pointer_escape(k));
                c.location(
                    &node,
                    &s.file,
                    &s.node,
                    &ptr,
                    &v.0,
                    &[Consumer::default()],
                    diags,
                );
            }
            let regions = env
                .spec
                .regions
                .clone()
                .or_else(|| p.estate.first().map(|e| e.spec.regions.clone()))
                .unwrap_or_default();
            for (i, o) in s.spec.overrides.iter().enumerate() {
                let regions = o.regions.clone().unwrap_or_else(|| regions.clone());
                let consumers: Vec<Consumer> = o
                    .accounts
                    .iter()
                    .flat_map(|a| {
                        regions.iter().map(move |r| Consumer {
                            account: Some(a),
                            region: Some(r),
                        })
                    })
                    .collect();
                for (k, v) in &o.parameters {
                    let ptr = format!("/spec/overrides/{i}/parameters/{}", pointer_escape(k));
                    c.location(&node, &s.file, &s.node, &ptr, &v.0, &consumers, diags);
                }
            }
            // An environment's parameter reaches the stack sets whose template declares it.
            for (k, v) in &env.spec.parameters {
                if template.is_some_and(|t| t.parameters.contains_key(k)) {
                    let ptr = format!("/spec/parameters/{}", pointer_escape(k));
                    c.location(
                        &node,
                        &env.file,
                        &env.node,
                        &ptr,
                        &v.0,
                        &[Consumer::default()],
                        diags,
                    );
                }
            }
        }
    }
    // A pipeline's stages take environment parameters into their own stack, which is no
    // stack set's: an output cannot reach it.
    for pipe in &p.pipelines {
        let Some(t) = templates.get(&pipe.resolve_path(&pipe.spec.template)) else {
            continue;
        };
        for stage in &pipe.spec.stages {
            let Some(env) = p.environments.iter().find(|e| e.name == stage.environment) else {
                continue;
            };
            for (k, v) in &env.spec.parameters {
                let used = refs::outputs(&v.0);
                if let (true, Some(r)) = (t.parameters.contains_key(k), used.first()) {
                    let ptr = format!("/spec/parameters/{}", pointer_escape(k));
                    let span = reference_span(diags, &env.file, &env.node, &ptr, r);
                    diags
                        .error(
                            Code::Output,
                            &env.file,
                            span,
                            format!(
                                "pipeline `{}` deploys parameter `{k}` in its stage `{}`: a stack set's output cannot be passed to a pipeline stage",
                                pipe.name, env.name
                            ),
                        )
                        .label("cannot be resolved");
                }
            }
        }
    }
    if let Err(cycle) = outputs::waves(&c.edges) {
        let shown: Vec<String> = cycle.iter().map(|(s, e)| format!("{s} ({e})")).collect();
        if let Some(site) = c.sites.get(&(cycle[0].clone(), cycle[1].clone())) {
            diags
                .error(
                    Code::Output,
                    site.file,
                    site.span.clone(),
                    format!(
                        "stack sets use each other's outputs in a cycle: {}",
                        shown.join(" → ")
                    ),
                )
                .label("part of a cycle")
                .help("no stack set can be applied first: break the cycle");
        }
    }
}

/// Environments in apply order: promotion, then the others by name.
fn order(p: &Parsed) -> Vec<String> {
    let promotion = p
        .estate
        .first()
        .map(|e| e.spec.promotion.clone())
        .unwrap_or_default();
    let mut rest: Vec<String> = p
        .environments
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| !promotion.contains(n))
        .collect();
    rest.sort();
    promotion.into_iter().chain(rest).collect()
}

struct Checker<'a> {
    p: &'a Parsed,
    templates: &'a BTreeMap<PathBuf, Template>,
    names: &'a Names<'a>,
    order: Vec<String>,
    /// Consumer → producers.
    edges: BTreeMap<SetIn, BTreeSet<SetIn>>,
    /// The first reference of each edge, to point a cycle at.
    sites: BTreeMap<(SetIn, SetIn), Site<'a>>,
    /// A stack set's own parameter is checked once per environment: reported once.
    reported: BTreeSet<(String, usize, String)>,
}

impl<'a> Checker<'a> {
    /// Checks the output references of one value, used by `consumer` in every context of
    /// `contexts`.
    #[allow(clippy::too_many_arguments)]
    fn location(
        &mut self,
        consumer: &SetIn,
        file: &'a str,
        doc: &Node,
        ptr: &str,
        value: &str,
        contexts: &[Consumer],
        diags: &mut Diagnostics,
    ) {
        for r in refs::outputs(value) {
            let span = reference_span(diags, file, doc, ptr, &r);
            let problem = match self.producer(consumer, &r, contexts) {
                Ok(producer) => {
                    self.sites
                        .entry((consumer.clone(), producer.clone()))
                        .or_insert(Site {
                            file,
                            span: span.clone(),
                        });
                    self.edges
                        .entry(consumer.clone())
                        .or_default()
                        .insert(producer);
                    continue;
                }
                Err(problem) => problem,
            };
            let (code, message, help) = problem;
            if self
                .reported
                .insert((file.to_string(), span.start, message.clone()))
            {
                let b = diags
                    .error(code, file, span, message)
                    .label("cannot be resolved");
                if let Some(help) = help {
                    b.help(help);
                }
            }
        }
    }

    /// The producer node a reference names, or what is wrong with it.
    fn producer(
        &self,
        consumer: &SetIn,
        r: &OutputRef,
        contexts: &[Consumer],
    ) -> Result<SetIn, (Code, String, Option<String>)> {
        let Some(producer) = self.p.stack_sets.iter().find(|s| s.name == r.stack_set) else {
            let known: Vec<&str> = self.p.stack_sets.iter().map(|s| s.name.as_str()).collect();
            return Err((
                Code::UnknownReference,
                format!("unknown stack set `{}`", r.stack_set),
                closest(&r.stack_set, known.iter().copied())
                    .map(|b| format!("did you mean `{b}`?")),
            ));
        };
        let env = outputs::environment(r, &producer.spec.environments, &consumer.1)
            .map_err(|m| (Code::Output, m, None))?
            .to_string();
        let node = (producer.name.clone(), env.clone());
        if &node == consumer {
            return Err((
                Code::Output,
                format!("stack set `{}` cannot use its own output", r.stack_set),
                Some("an output exists only once the stack set is applied".into()),
            ));
        }
        let at = |e: &str| self.order.iter().position(|o| o == e);
        if at(&env) > at(&consumer.1) {
            return Err((
                Code::Output,
                format!(
                    "stack set `{}` in `{env}` is applied after `{}` in `{}`",
                    r.stack_set, consumer.0, consumer.1
                ),
                Some("a producer's environment must come first in promotion".into()),
            ));
        }
        if let Some(t) = self
            .templates
            .get(&producer.resolve_path(&producer.spec.template))
        {
            let declared = t.outputs();
            if !declared.contains(&r.output.as_str()) {
                return Err((
                    Code::Output,
                    format!(
                        "the template of stack set `{}` declares no output `{}`",
                        r.stack_set, r.output
                    ),
                    match closest(&r.output, declared.iter().copied()) {
                        Some(b) => Some(format!("did you mean `{b}`?")),
                        None if declared.is_empty() => Some("it has no Outputs section".into()),
                        None => Some(format!("its outputs: {}", declared.join(", "))),
                    },
                ));
            }
        }
        if !self.names.incomplete {
            if let Some(env_doc) = self.p.environments.iter().find(|e| e.name == env) {
                let instances = self.instances(env_doc);
                let instances: Vec<Instance> = instances
                    .iter()
                    .map(|(a, r)| Instance {
                        account: Some(a),
                        region: r,
                    })
                    .collect();
                for ctx in contexts {
                    outputs::pick(r, &instances, *ctx).map_err(|m| (Code::Output, m, None))?;
                }
            }
        }
        Ok(node)
    }

    /// The producer's instances in an environment, as the manifest alone tells them: its
    /// named accounts and the manifest accounts in its units, in its regions.
    fn instances(&self, env: &Doc<EnvironmentSpec>) -> Vec<(&'a str, String)> {
        let inside = |path: &str| env.spec.targets.reach_unit(path);
        let accounts: BTreeSet<&str> = self
            .names
            .accounts
            .iter()
            .copied()
            .filter(|a| {
                env.spec.targets.accounts.iter().any(|t| t == a)
                    || self.names.account_units.get(a).is_some_and(|u| inside(u))
            })
            .collect();
        let regions = env
            .spec
            .regions
            .clone()
            .or_else(|| self.p.estate.first().map(|e| e.spec.regions.clone()))
            .unwrap_or_default();
        accounts
            .into_iter()
            .flat_map(|a| regions.iter().map(move |r| (a, r.clone())))
            .collect()
    }
}

/// The reference's own text in the source when it is there verbatim, else the value's span.
fn reference_span(
    diags: &Diagnostics,
    file: &str,
    doc: &Node,
    ptr: &str,
    r: &OutputRef,
) -> Range<usize> {
    let span = doc.span_for(ptr);
    let Some(text) = diags.sources.get(file) else {
        return span;
    };
    let needle = format!("stackSet:{}", r.stack_set);
    text.get(span.clone())
        .and_then(|src| {
            let at = src.find(&format!("${{{needle}"))?;
            let len = src[at..].find('}')? + 1;
            Some(span.start + at..span.start + at + len)
        })
        .unwrap_or(span)
}
