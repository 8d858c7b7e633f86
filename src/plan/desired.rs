//! Desired state: the manifest resolved against live ids. Environments' targets become
//! accounts (units recursively; accounts this plan creates included, by name), parameters are
//! merged (stack set, then environment, then overrides) and references are substituted.

use crate::live::read::EMPTY_OVERRIDES;
use crate::live::{AccountState, LiveAutoDeployment, LiveState};
use crate::manifest::model::{
    Approval, EnvironmentSpec, OperationPreferences, PermissionModel, PipelineSpec,
    RegionConcurrency, StackSetSpec,
};
use crate::manifest::outputs::{self, Consumer, Instance};
use crate::manifest::refs::{self, OutputRef, Ref};
use crate::manifest::{Doc, Manifest};
use crate::pipeline::{self, Bundle};
use crate::tags::{TAG_ENVIRONMENT, TAG_MANAGED_BY, TAG_OPERATION, TAG_PIPELINE, TAG_SECRETS};
use crate::template::Template;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Stands for a value that only exists once apply has created what it refers to.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

#[derive(Debug, Error, PartialEq)]
pub enum PlanError {
    #[error("account `{name}` pins id {pinned}, but the live account with email {email} is {live}")]
    PinnedIdMismatch {
        name: String,
        pinned: String,
        email: String,
        live: String,
    },
    #[error(
        "account `{name}` pins id {pinned}, which belongs to the live account {live_email}, not {email}"
    )]
    PinnedIdTaken {
        name: String,
        pinned: String,
        email: String,
        live_email: String,
    },
    #[error("unknown environment `{0}` in --env")]
    UnknownEnvironment(String),
    #[error("stack set `{stack_set}`: {message}")]
    Reference { stack_set: String, message: String },
    #[error("pipeline `{pipeline}`: {message}")]
    Pipeline { pipeline: String, message: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub units: Vec<String>,
    pub accounts: Vec<DesiredAccount>,
    pub stack_sets: Vec<DesiredStackSet>,
    /// Pipelines' source bundles, in the artifact buckets the pipelines' stack sets create.
    pub sources: Vec<DesiredSource>,
    /// Every stack set name the manifest compiles to, in any environment: a live one of these
    /// never left the manifest, even when the environment it now belongs to is not planned.
    pub compiled: BTreeSet<String>,
    /// Every environment of the manifest, planned or not: a managed stack set tagged with
    /// none of them is an orphan no environment's plan would find.
    pub environments: Vec<String>,
}

/// A pipeline's source bundle: uploaded once its artifact bucket exists.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSource {
    pub pipeline: String,
    /// The pipeline's last stage: its tools part is applied with that environment.
    pub environment: String,
    /// The tools account.
    pub account: AccountRef,
    /// The account estate runs as: the upload acts in the tools account from it.
    pub management_account: String,
    pub bucket: String,
    /// The KMS key uploads are encrypted with (the bucket policy refuses any other way).
    pub key_alias: String,
    pub bundle: Bundle,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredAccount {
    pub name: String,
    pub email: String,
    /// The live id, or the pinned one; `None` when apply will create the account.
    pub id: Option<String>,
    pub unit: Option<String>,
    /// The manifest takes the existing account over (`adopt: true`).
    pub adopt: bool,
}

/// An account as a target: its id when known, and its manifest name when it has one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

impl AccountRef {
    /// The key instances are matched on: the id, or the name for accounts not yet created.
    pub fn key(&self) -> String {
        match (&self.id, &self.name) {
            (Some(id), _) => id.clone(),
            (None, Some(name)) => format!("{name} {KNOWN_AFTER_APPLY}"),
            (None, None) => KNOWN_AFTER_APPLY.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredStackSet {
    /// The AWS name: `<name>-<environment>`, or the one `stackSetNames` gives.
    pub name: String,
    /// The manifest adopts it: a live stack set of this name without estate's tags is this
    /// estate's, not a conflict.
    pub adopt: bool,
    /// The manifest's StackSet name.
    pub stack_set: String,
    pub environment: String,
    pub description: Option<String>,
    pub template: Template,
    pub parameters: BTreeMap<String, String>,
    /// Parameters the template declares NoEcho: never shown, compared through a digest tag.
    pub sensitive: BTreeSet<String>,
    pub capabilities: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// `SELF_MANAGED` or `SERVICE_MANAGED`.
    pub permission_model: String,
    pub administration_role_arn: Option<String>,
    pub execution_role_name: Option<String>,
    pub auto_deployment: Option<LiveAutoDeployment>,
    pub operation: OperationPreferences,
    /// Units targeted (service-managed stack sets deploy to units).
    pub units: Vec<String>,
    /// Their ids, where they exist (service-managed stack sets only): what AWS is given.
    pub unit_ids: Vec<String>,
    pub instances: Vec<DesiredInstance>,
    /// Stack sets (AWS names) whose outputs this one's parameters use: applied before it,
    /// their outputs read once they are.
    pub producers: BTreeSet<String>,
    /// Parameters (and overrides) holding an output not known until apply: the producer is
    /// created or changed by this plan, or not applied yet.
    pub unknown: BTreeSet<String>,
    /// Stack sets of a later wave start once the earlier ones of their environment are done:
    /// a pipeline's tools part names, in its key, bucket and bus policies, roles the other
    /// parts create, and AWS refuses a policy naming a principal that does not exist.
    pub wave: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredInstance {
    pub account: AccountRef,
    pub region: String,
    pub overrides: BTreeMap<String, String>,
}

/// Digest of the overrides a stack set of an environment gets, kept in a tag at apply so a
/// plan can tell, without one call per instance, whether instance overrides changed.
pub fn overrides_digest(spec: &StackSetSpec, environment: &str) -> String {
    if spec.overrides.is_empty() {
        return EMPTY_OVERRIDES.to_string();
    }
    let json = serde_json::json!({"environment": environment, "overrides": spec.overrides});
    digest(&json.to_string())
}

fn digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Resolves the manifest for the environments `envs` (all, in promotion order, when empty).
/// Another stack set's output is its live value, or "(known after apply)" when the producer's
/// instance has none yet; see [`resolve_with`] for a plan's final resolution.
pub fn resolve(m: &Manifest, live: &LiveState, envs: &[String]) -> Result<Desired, PlanError> {
    resolve_with(m, live, envs, None)
}

/// As [`resolve`]; with `pending` (the stack sets, by AWS name, this plan creates or changes),
/// their outputs are "(known after apply)" and any other output must be read live: one that
/// is not fails the resolution, never becomes a silent empty value.
pub fn resolve_with(
    m: &Manifest,
    live: &LiveState,
    envs: &[String],
    pending: Option<&BTreeSet<String>>,
) -> Result<Desired, PlanError> {
    for e in envs {
        if m.environment(e).is_none() {
            return Err(PlanError::UnknownEnvironment(e.clone()));
        }
    }
    let mut accounts = Vec::new();
    for a in m.accounts() {
        let by_email = live.account_by_email(&a.email);
        if let (Some(pinned), Some(l)) = (&a.id, by_email) {
            if pinned != &l.id {
                return Err(PlanError::PinnedIdMismatch {
                    name: a.name.clone(),
                    pinned: pinned.clone(),
                    email: a.email.clone(),
                    live: l.id.clone(),
                });
            }
        }
        if let Some(pinned) = &a.id {
            if let Some(other) = live.accounts.iter().find(|l| &l.id == pinned) {
                if !other.email.eq_ignore_ascii_case(&a.email) {
                    return Err(PlanError::PinnedIdTaken {
                        name: a.name.clone(),
                        pinned: pinned.clone(),
                        email: a.email.clone(),
                        live_email: other.email.clone(),
                    });
                }
            }
        }
        accounts.push(DesiredAccount {
            adopt: a.adopt,
            name: a.name.clone(),
            email: a.email.clone(),
            id: by_email.map(|l| l.id.clone()).or_else(|| a.id.clone()),
            // Without `unit` the account stays where it is: its live unit is its place.
            unit: a.unit.clone().or_else(|| {
                by_email
                    .and_then(|l| live.path_of(&l.parent_id))
                    .map(str::to_string)
            }),
        });
    }
    let selected: Vec<&Doc<EnvironmentSpec>> = m
        .environments_in_order()
        .into_iter()
        .filter(|e| envs.is_empty() || envs.contains(&e.name))
        .collect();

    let outputs = Outputs { pending };
    let mut stack_sets = Vec::new();
    for s in &m.stack_sets {
        let template = &m.templates[&s.resolve_path(&s.spec.template)];
        for env in &selected {
            if s.spec.environments.contains(&env.name) {
                stack_sets.push(resolve_stack_set(
                    m, live, &accounts, s, env, template, &outputs,
                )?);
            }
        }
    }
    // Producers first: a stack set's wave follows those of the stack sets whose outputs it
    // uses (validate refused cycles; one here is a resolution error, not a hang).
    let edges: BTreeMap<String, BTreeSet<String>> = stack_sets
        .iter()
        .map(|d| (d.name.clone(), d.producers.clone()))
        .collect();
    let waves = outputs::waves(&edges).map_err(|cycle| PlanError::Reference {
        stack_set: cycle[0].clone(),
        message: format!("its outputs are used in a cycle: {}", cycle.join(" → ")),
    })?;
    for d in &mut stack_sets {
        d.wave = waves.get(&d.name).copied().unwrap_or(0);
    }
    let mut sources = Vec::new();
    for p in &m.pipelines {
        resolve_pipeline(
            m,
            live,
            &accounts,
            p,
            &selected,
            &mut stack_sets,
            &mut sources,
        )?;
    }
    let mut compiled: BTreeSet<String> = m
        .stack_sets
        .iter()
        .flat_map(|s| {
            s.spec
                .environments
                .iter()
                .map(move |e| s.spec.aws_name(&s.name, e))
        })
        .collect();
    for p in &m.pipelines {
        let stages: Vec<String> = p
            .spec
            .stages
            .iter()
            .map(|s| s.environment.clone())
            .collect();
        compiled.extend(pipeline::stack_set_names(&p.name, &stages));
    }
    Ok(Desired {
        units: m.units().iter().map(|u| u.path.clone()).collect(),
        accounts,
        stack_sets,
        sources,
        compiled,
        environments: m.environments.iter().map(|e| e.name.clone()).collect(),
    })
}

/// How other stack sets' outputs resolve in one resolution.
struct Outputs<'a> {
    /// `None`: provisional (an output not read yet is "(known after apply)"); else the
    /// stack sets this plan changes, whose outputs are not known until apply.
    pending: Option<&'a BTreeSet<String>>,
}

/// Every stack set (AWS name) whose outputs another stack set's parameters use, in any
/// environment: the live read reads their instances' outputs.
pub fn output_producers(m: &Manifest) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in &m.stack_sets {
        let template = m.templates.get(&s.resolve_path(&s.spec.template));
        for env in s.spec.environments.iter().filter_map(|e| m.environment(e)) {
            let values = s
                .spec
                .parameters
                .values()
                .chain(s.spec.overrides.iter().flat_map(|o| o.parameters.values()))
                .chain(
                    env.spec
                        .parameters
                        .iter()
                        .filter(|(k, _)| template.is_some_and(|t| t.parameters.contains_key(*k)))
                        .map(|(_, v)| v),
                );
            for v in values {
                for o in refs::outputs(&v.0) {
                    let Some(p) = m.stack_sets.iter().find(|p| p.name == o.stack_set) else {
                        continue;
                    };
                    if let Ok(e) = outputs::environment(&o, &p.spec.environments, &env.name) {
                        out.insert(p.spec.aws_name(&p.name, e));
                    }
                }
            }
        }
    }
    out
}

struct Resolver<'a> {
    m: &'a Manifest,
    live: &'a LiveState,
    accounts: &'a [DesiredAccount],
    environment: &'a str,
    outputs: Option<&'a Outputs<'a>>,
}

impl Resolver<'_> {
    fn value(&self, s: &str, region: Option<&str>) -> Result<String, String> {
        self.value_in(s, None, region)
    }

    /// A value used in an instance of the account named `account` (overrides), or by the
    /// whole stack set (`None`).
    fn value_in(
        &self,
        s: &str,
        account: Option<&str>,
        region: Option<&str>,
    ) -> Result<String, String> {
        if s.contains("{{resolve:") && !s.contains("${") {
            return Ok(s.to_string());
        }
        let mut failed = None;
        let out = refs::substitute(s, |r| match r {
            Ref::Account(name) => Some(
                self.accounts
                    .iter()
                    .find(|a| &a.name == name)
                    .and_then(|a| a.id.clone())
                    .unwrap_or_else(|| KNOWN_AFTER_APPLY.to_string()),
            ),
            Ref::Unit(path) if path == "/" => Some(self.live.root_id.clone()),
            Ref::Unit(path) => Some(
                self.live
                    .unit_by_path(path)
                    .map_or_else(|| KNOWN_AFTER_APPLY.to_string(), |u| u.id.clone()),
            ),
            Ref::Environment => Some(self.environment.to_string()),
            Ref::Estate => Some(self.m.name().to_string()),
            Ref::Region => region.map(str::to_string),
            Ref::Output(o) => match self.output(o, Consumer { account, region }) {
                Ok(v) => Some(v),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            },
        });
        match failed {
            Some(e) => Err(e),
            None => out,
        }
    }

    /// The producer stack set (AWS name) and instance an output reference names.
    fn producer(
        &self,
        o: &OutputRef,
        consumer: Consumer,
    ) -> Result<(String, AccountRef, String), String> {
        let producer = self
            .m
            .stack_sets
            .iter()
            .find(|s| s.name == o.stack_set)
            .ok_or_else(|| format!("unknown stack set `{}`", o.stack_set))?;
        let env_name = outputs::environment(o, &producer.spec.environments, self.environment)?;
        let env = self
            .m
            .environment(env_name)
            .ok_or_else(|| format!("unknown environment `{env_name}`"))?;
        let self_managed = producer.spec.permission_model == PermissionModel::SelfManaged;
        let placed = placements(self.m, self.live, self.accounts, env, self_managed);
        let instances: Vec<Instance> = placed
            .iter()
            .map(|(a, r)| Instance {
                account: a.name.as_deref(),
                region: r,
            })
            .collect();
        let i = outputs::pick(o, &instances, consumer)?;
        let (account, region) = placed[i].clone();
        Ok((
            producer.spec.aws_name(&producer.name, env_name),
            account,
            region,
        ))
    }

    /// An output's value: live, or "(known after apply)" when this plan creates or changes
    /// its producer; an output that neither is nor will be there is an error.
    fn output(&self, o: &OutputRef, consumer: Consumer) -> Result<String, String> {
        let Some(mode) = self.outputs else {
            return Err(format!(
                "`{}` is a stack set's output: only stack-set parameters may use one",
                o.output
            ));
        };
        let (name, account, region) = self.producer(o, consumer)?;
        if mode.pending.is_some_and(|p| p.contains(&name)) {
            return Ok(KNOWN_AFTER_APPLY.into());
        }
        let Some(id) = &account.id else {
            // The account is created by this plan: the instance comes after it.
            return Ok(KNOWN_AFTER_APPLY.into());
        };
        if let Some(values) = self
            .live
            .stack_outputs
            .get(&crate::live::output_key(&name, id, &region))
        {
            return values.get(&o.output).cloned().ok_or_else(|| {
                format!(
                    "the stack of `{name}` in {id}/{region} has no output `{}` (it has: {})",
                    o.output,
                    values.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            });
        }
        let exists = self
            .live
            .stack_sets
            .get(&name)
            .and_then(|s| s.instances.as_ref())
            .is_some_and(|is| is.iter().any(|i| &i.account == id && i.region == region));
        if exists && mode.pending.is_some() {
            return Err(format!(
                "the outputs of `{name}` in {id}/{region} could not be read: its instance has no stack in a completed state"
            ));
        }
        // Not there yet: this plan creates it, or applying the producer's environment will
        // (apply refuses a stage before earlier ones converged, and never deploys an unknown
        // value).
        Ok(KNOWN_AFTER_APPLY.into())
    }

    /// The producers (AWS names) the output references of `s` name, in any context.
    fn producers_of(&self, s: &str, consumer: Consumer) -> BTreeSet<String> {
        refs::outputs(s)
            .iter()
            .filter_map(|o| self.producer(o, consumer).ok().map(|p| p.0))
            .collect()
    }
}

/// Where a stack set of an environment has its instances: every target account (not the
/// management account for a service-managed one) in every region.
fn placements(
    m: &Manifest,
    live: &LiveState,
    accounts: &[DesiredAccount],
    env: &Doc<EnvironmentSpec>,
    self_managed: bool,
) -> Vec<(AccountRef, String)> {
    let regions = m.regions_of(env);
    targets(env, accounts, live)
        .into_iter()
        // Service-managed stack sets never deploy to the management account, even in a
        // targeted unit; wanting an instance there would plan it forever.
        .filter(|a| self_managed || a.id.as_deref() != Some(live.management_account.as_str()))
        .flat_map(|a| regions.iter().map(move |r| (a.clone(), r.clone())))
        .collect()
}

/// Accounts an environment targets: named accounts, and every account (by its desired unit,
/// or live unit for accounts the manifest does not know) in a targeted unit or below it.
fn targets(
    env: &Doc<EnvironmentSpec>,
    accounts: &[DesiredAccount],
    live: &LiveState,
) -> Vec<AccountRef> {
    let inside = |path: &str| env.spec.targets.reach_unit(path);
    let mut out: BTreeSet<AccountRef> = BTreeSet::new();
    // By id, once: looked up per account, a scan would make resolving quadratic.
    let by_id: std::collections::HashMap<&str, &crate::live::LiveAccount> =
        live.accounts.iter().map(|l| (l.id.as_str(), l)).collect();
    let desired_ids: std::collections::HashSet<&str> =
        accounts.iter().filter_map(|a| a.id.as_deref()).collect();
    // Only an ACTIVE account takes instances: a closing one cannot be reached (its instances
    // are removed), one pending activation not yet (its instances are left as they are).
    let active = |id: &Option<String>| {
        id.as_ref().is_none_or(|id| {
            by_id
                .get(id.as_str())
                .is_none_or(|l| l.state == AccountState::Active)
        })
    };
    for a in accounts {
        let named = env.spec.targets.accounts.contains(&a.name);
        if (named || a.unit.as_deref().is_some_and(inside)) && active(&a.id) {
            out.insert(AccountRef {
                id: a.id.clone(),
                name: Some(a.name.clone()),
            });
        }
    }
    for l in &live.accounts {
        let known = desired_ids.contains(l.id.as_str());
        if !known
            && l.state == AccountState::Active
            && live.path_of(&l.parent_id).is_some_and(inside)
        {
            out.insert(AccountRef {
                id: Some(l.id.clone()),
                name: None,
            });
        }
    }
    out.into_iter().collect()
}

fn resolve_stack_set(
    m: &Manifest,
    live: &LiveState,
    accounts: &[DesiredAccount],
    s: &Doc<StackSetSpec>,
    env: &Doc<EnvironmentSpec>,
    template: &Template,
    outputs: &Outputs,
) -> Result<DesiredStackSet, PlanError> {
    let r = Resolver {
        m,
        live,
        accounts,
        environment: &env.name,
        outputs: Some(outputs),
    };
    let name = s.spec.aws_name(&s.name, &env.name);
    let err = |message: String| PlanError::Reference {
        stack_set: name.clone(),
        message,
    };
    let spec = &s.spec;

    let parameters = merged_parameters(&r, spec, env, template).map_err(&err)?;
    let (producers, mut unknown) = output_uses(&r, spec, env, template, &parameters);
    let sensitive: BTreeSet<String> = template
        .parameters
        .iter()
        .filter(|(_, d)| d.no_echo)
        .map(|(n, _)| n.clone())
        .collect();
    let operation = spec.operation.clone().unwrap_or_default();
    let tags = stack_set_tags(m, spec, &env.name, &sensitive, &parameters, &operation);

    let self_managed = spec.permission_model == PermissionModel::SelfManaged;
    let instances = stack_set_instances(&r, spec, env, self_managed).map_err(&err)?;
    for i in &instances {
        for (k, v) in &i.overrides {
            if v.contains(KNOWN_AFTER_APPLY)
                && spec.overrides.iter().any(|o| {
                    o.parameters
                        .get(k)
                        .is_some_and(|raw| !refs::outputs(&raw.0).is_empty())
                })
            {
                unknown.insert(k.clone());
            }
        }
    }
    let mut capabilities: Vec<String> = spec
        .capabilities
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    capabilities.sort();
    capabilities.dedup();
    Ok(DesiredStackSet {
        adopt: spec.adopt,
        name: name.clone(),
        stack_set: s.name.clone(),
        environment: env.name.clone(),
        description: spec
            .description
            .as_ref()
            .map(|d| r.value(d, None))
            .transpose()
            .map_err(&err)?,
        template: template.clone(),
        parameters,
        sensitive,
        capabilities,
        tags,
        permission_model: if self_managed {
            "SELF_MANAGED"
        } else {
            "SERVICE_MANAGED"
        }
        .into(),
        administration_role_arn: if self_managed {
            Some(match &spec.administration_role_arn {
                Some(arn) => r.value(arn, None).map_err(&err)?,
                None => admin_role_arn(live),
            })
        } else {
            None
        },
        execution_role_name: self_managed.then(|| {
            spec.execution_role_name
                .clone()
                .unwrap_or_else(|| "AWSCloudFormationStackSetExecutionRole".into())
        }),
        auto_deployment: (!self_managed).then(|| auto_deployment(spec)),
        operation,
        units: env.spec.targets.units.clone(),
        unit_ids: if self_managed {
            Vec::new()
        } else {
            unit_ids(env, live)
        },
        instances,
        producers,
        unknown,
        wave: 0,
    })
}

/// The stack sets whose outputs a stack set's parameters and overrides use, and which of its
/// resolved parameters hold an output not known until apply.
fn output_uses(
    r: &Resolver,
    spec: &StackSetSpec,
    env: &Doc<EnvironmentSpec>,
    template: &Template,
    parameters: &BTreeMap<String, String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut producers = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let raw = spec.parameters.iter().chain(
        env.spec
            .parameters
            .iter()
            .filter(|(k, _)| template.parameters.contains_key(*k)),
    );
    for (k, v) in raw {
        let used = r.producers_of(&v.0, Consumer::default());
        if !used.is_empty()
            && parameters
                .get(k)
                .is_some_and(|p| p.contains(KNOWN_AFTER_APPLY))
        {
            unknown.insert(k.clone());
        }
        producers.extend(used);
    }
    for o in &spec.overrides {
        for a in &o.accounts {
            for region in o.regions.clone().unwrap_or_else(|| r.m.regions_of(env)) {
                for v in o.parameters.values() {
                    producers.extend(r.producers_of(
                        &v.0,
                        Consumer {
                            account: Some(a),
                            region: Some(&region),
                        },
                    ));
                }
            }
        }
    }
    (producers, unknown)
}

/// A stack set's parameters in an environment, references substituted.
fn merged_parameters(
    r: &Resolver,
    spec: &StackSetSpec,
    env: &Doc<EnvironmentSpec>,
    template: &Template,
) -> Result<BTreeMap<String, String>, String> {
    // Stack set, then environment (only parameters the template declares); later wins.
    let mut parameters = BTreeMap::new();
    for (k, v) in &spec.parameters {
        parameters.insert(k.clone(), r.value(&v.0, None)?);
    }
    for (k, v) in &env.spec.parameters {
        if template.parameters.contains_key(k) {
            parameters.insert(k.clone(), r.value(&v.0, None)?);
        }
    }
    Ok(parameters)
}

/// A stack set's tags: the manifest's, and estate's own (owner, environment, digests, operation).
fn stack_set_tags(
    m: &Manifest,
    spec: &StackSetSpec,
    environment: &str,
    sensitive: &BTreeSet<String>,
    parameters: &BTreeMap<String, String>,
    operation: &OperationPreferences,
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = spec.tags.clone();
    tags.insert(TAG_MANAGED_BY.into(), m.name().to_string());
    tags.insert(TAG_ENVIRONMENT.into(), environment.to_string());
    tags.insert(
        crate::tags::TAG_OVERRIDES.into(),
        overrides_digest(spec, environment),
    );
    if !sensitive.is_empty() {
        let secrets: Vec<String> = sensitive
            .iter()
            .filter_map(|k| parameters.get(k).map(|v| format!("{k}={v}")))
            .collect();
        tags.insert(TAG_SECRETS.into(), digest(&secrets.join("\n")));
    }
    if let Some(text) = operation_tag(operation) {
        tags.insert(TAG_OPERATION.into(), text);
    }
    tags
}

/// A stack set's instances in an environment: every target account in every region, with the
/// overrides that apply there.
fn stack_set_instances(
    r: &Resolver,
    spec: &StackSetSpec,
    env: &Doc<EnvironmentSpec>,
    self_managed: bool,
) -> Result<Vec<DesiredInstance>, String> {
    let mut instances = Vec::new();
    for (account, region) in placements(r.m, r.live, r.accounts, env, self_managed) {
        let mut overrides = BTreeMap::new();
        for o in &spec.overrides {
            let applies = account
                .name
                .as_ref()
                .is_some_and(|n| o.accounts.contains(n))
                && o.regions.as_ref().is_none_or(|rs| rs.contains(&region));
            if applies {
                for (k, v) in &o.parameters {
                    overrides.insert(
                        k.clone(),
                        r.value_in(&v.0, account.name.as_deref(), Some(&region))?,
                    );
                }
            }
        }
        instances.push(DesiredInstance {
            account,
            region,
            overrides,
        });
    }
    Ok(instances)
}

/// A service-managed stack set's auto-deployment: the manifest's, or on without retaining stacks.
fn auto_deployment(spec: &StackSetSpec) -> LiveAutoDeployment {
    let a = spec
        .auto_deployment
        .clone()
        .unwrap_or(crate::manifest::model::AutoDeployment {
            enabled: true,
            retain_stacks_on_account_removal: false,
        });
    LiveAutoDeployment {
        enabled: a.enabled,
        retain_stacks_on_account_removal: a.retain_stacks_on_account_removal,
    }
}

/// The live ids of the units an environment targets, the root's included.
fn unit_ids(env: &Doc<EnvironmentSpec>, live: &LiveState) -> Vec<String> {
    env.spec
        .targets
        .units
        .iter()
        .filter_map(|u| {
            if u == "/" {
                Some(live.root_id.clone())
            } else {
                live.unit_by_path(u).map(|l| l.id.clone())
            }
        })
        .collect()
}

/// A pipeline's stack sets (those of the selected environments) and its source bundle; see
/// `crate::pipeline` for what each part holds.
fn resolve_pipeline(
    m: &Manifest,
    live: &LiveState,
    accounts: &[DesiredAccount],
    p: &Doc<PipelineSpec>,
    selected: &[&Doc<EnvironmentSpec>],
    stack_sets: &mut Vec<DesiredStackSet>,
    sources: &mut Vec<DesiredSource>,
) -> Result<(), PlanError> {
    let spec = &p.spec;
    let account = |name: &str| AccountRef {
        id: accounts
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.id.clone()),
        name: Some(name.to_string()),
    };
    let tools = account(&spec.account);
    let source = account(&spec.source.account);
    let (tools_id, source_id) = (tools.key(), source.key());
    let mut what = pipeline::Source::of(&spec.source).ok_or_else(|| PlanError::Pipeline {
        pipeline: p.name.clone(),
        message: "its source names neither a model package group nor an S3 object".into(),
    })?;
    // An upload bucket's name may carry account ids (`${account:tools}`), as S3's names are
    // global: resolved like any manifest value, the pipeline's environment aside (`validate`
    // refuses `${environment}` there).
    let upload_bucket;
    if let pipeline::Source::Upload { bucket, key } = what {
        let r = Resolver {
            m,
            live,
            accounts,
            environment: "",
            outputs: None,
        };
        upload_bucket = r
            .value(bucket, None)
            .map_err(|message| PlanError::Pipeline {
                pipeline: p.name.clone(),
                message: format!("its source bucket: {message}"),
            })?;
        what = pipeline::Source::Upload {
            bucket: &upload_bucket,
            key,
        };
    }
    let deployed = &m.templates[&p.resolve_path(&spec.template)];
    let part = PipelineParts {
        m,
        live,
        accounts,
        p,
        n: pipeline::Names::new(&p.name),
        bucket: pipeline::bucket(&p.name, &tools_id),
        tools_id,
        region: &m.estate.spec.home_region,
        deployed,
    };
    let is_selected = |env: &str| selected.iter().any(|e| e.name == env);

    let mut files = BTreeMap::new();
    files.insert(
        "template.json".to_string(),
        // Compact: CodePipeline passes the template inline, within CloudFormation's limit.
        serde_json::to_vec(&deployed.body).expect("a JSON value serializes"),
    );
    let mut stages = Vec::new();
    for stage in &spec.stages {
        let (env, targets) = part.stage_targets(stage, &stages)?;
        part.stage_files(stage, env, &mut files)?;
        stages.push(pipeline::Stage {
            environment: env.name.clone(),
            accounts: targets.iter().map(AccountRef::key).collect(),
            test: stage.test.is_some(),
            manual_approval: stage.approval == Approval::Manual,
        });
        if is_selected(&env.name) {
            stack_sets.push(
                part.generated(
                    pipeline::stage_stack_set(&p.name, &env.name),
                    &env.name,
                    pipeline::stage_template(&pipeline::StagePart {
                        names: &part.n,
                        environment: &env.name,
                        tools: &part.tools_id,
                        bucket: &part.bucket,
                        source_account: &source_id,
                        source: &what,
                        deployed,
                        test: stage.test.is_some(),
                        test_rights: stage.test.as_ref().and_then(|t| t.rights.as_deref()),
                    }),
                    targets
                        .into_iter()
                        .map(|a| part.in_home_region(a))
                        .collect(),
                    0,
                ),
            );
        }
    }
    let last = &spec
        .stages
        .last()
        .expect("a pipeline has stages")
        .environment;
    if !is_selected(last) {
        return Ok(());
    }
    let bundle = Bundle { files };
    let key = bundle.key();
    let tools_body = part.tools_template(&source_id, what, &stages, &key);
    // The source part's policies name the last stage's roles (same environment, wave 0); the
    // tools part's name the source part's roles.
    stack_sets.push(part.generated(
        pipeline::source_stack_set(&p.name),
        last,
        pipeline::source_template(&part.n, &part.tools_id, &source_id, &what, &stages),
        vec![part.in_home_region(source)],
        1,
    ));
    stack_sets.push(part.generated(
        pipeline::tools_stack_set(&p.name),
        last,
        tools_body,
        vec![part.in_home_region(tools.clone())],
        2,
    ));
    sources.push(DesiredSource {
        pipeline: p.name.clone(),
        environment: last.clone(),
        account: tools,
        management_account: live.caller().to_string(),
        bucket: part.bucket,
        key_alias: part.n.key_alias.clone(),
        bundle,
    });
    Ok(())
}

/// What every part of one pipeline is resolved with.
struct PipelineParts<'a> {
    m: &'a Manifest,
    live: &'a LiveState,
    accounts: &'a [DesiredAccount],
    p: &'a Doc<PipelineSpec>,
    n: pipeline::Names,
    tools_id: String,
    bucket: String,
    region: &'a String,
    deployed: &'a Template,
}

impl<'a> PipelineParts<'a> {
    /// An error of this pipeline.
    fn err(&self, message: String) -> PlanError {
        PlanError::Pipeline {
            pipeline: self.p.name.clone(),
            message,
        }
    }

    /// An instance in the home region.
    fn in_home_region(&self, account: AccountRef) -> DesiredInstance {
        DesiredInstance {
            account,
            region: self.region.clone(),
            overrides: BTreeMap::new(),
        }
    }

    /// One of the pipeline's generated stack sets, self-managed with the default roles.
    fn generated(
        &self,
        name: String,
        env: &str,
        body: serde_json::Value,
        targets: Vec<DesiredInstance>,
        wave: u8,
    ) -> DesiredStackSet {
        let p = self.p;
        let mut tags = BTreeMap::new();
        tags.insert(TAG_MANAGED_BY.to_string(), self.m.name().to_string());
        tags.insert(TAG_ENVIRONMENT.to_string(), env.to_string());
        tags.insert(
            crate::tags::TAG_OVERRIDES.to_string(),
            EMPTY_OVERRIDES.to_string(),
        );
        tags.insert(TAG_PIPELINE.to_string(), p.name.clone());
        DesiredStackSet {
            adopt: false,
            name,
            stack_set: p.name.clone(),
            environment: env.to_string(),
            description: Some(format!("estate: part of the model pipeline {}", p.name)),
            template: pipeline::to_template(&body),
            parameters: BTreeMap::new(),
            sensitive: BTreeSet::new(),
            capabilities: vec!["CAPABILITY_NAMED_IAM".to_string()],
            tags,
            permission_model: "SELF_MANAGED".into(),
            administration_role_arn: Some(admin_role_arn(self.live)),
            // The defaults of a self-managed stack set: its usual prerequisites.
            execution_role_name: Some("AWSCloudFormationStackSetExecutionRole".into()),
            auto_deployment: None,
            operation: OperationPreferences::default(),
            units: Vec::new(),
            unit_ids: Vec::new(),
            instances: targets,
            producers: BTreeSet::new(),
            unknown: BTreeSet::new(),
            wave,
        }
    }

    /// A stage's environment and target accounts, refused when it has none or shares one
    /// with an earlier stage.
    fn stage_targets(
        &self,
        stage: &crate::manifest::model::Stage,
        stages: &[pipeline::Stage],
    ) -> Result<(&'a Doc<EnvironmentSpec>, Vec<AccountRef>), PlanError> {
        let env = self
            .m
            .environment(&stage.environment)
            .ok_or_else(|| self.err(format!("unknown environment `{}`", stage.environment)))?;
        let targets = targets(env, self.accounts, self.live);
        for a in &targets {
            if let Some(other) = stages.iter().find(|s| s.accounts.contains(&a.key())) {
                return Err(self.err(format!(
                    "{} is a target of both stage `{}` and stage `{}`: each stage's roles would be created twice in it",
                    a.key(),
                    other.environment,
                    env.name
                )));
            }
        }
        if targets.is_empty() {
            return Err(self.err(format!(
                "stage `{}` has no account to deploy to: its environment targets none",
                env.name
            )));
        }
        Ok((env, targets))
    }

    /// A stage's files in the source bundle: its configuration, and its test buildspec if any.
    fn stage_files(
        &self,
        stage: &crate::manifest::model::Stage,
        env: &Doc<EnvironmentSpec>,
        files: &mut BTreeMap<String, Vec<u8>>,
    ) -> Result<(), PlanError> {
        let r = Resolver {
            m: self.m,
            live: self.live,
            accounts: self.accounts,
            environment: &env.name,
            outputs: None,
        };
        let mut parameters = BTreeMap::new();
        for (k, v) in &env.spec.parameters {
            if self.deployed.parameters.contains_key(k)
                && !crate::manifest::names::PIPELINE_PARAMETERS.contains(&k.as_str())
            {
                parameters.insert(k.clone(), r.value(&v.0, None).map_err(|m| self.err(m))?);
            }
        }
        files.insert(
            format!("stages/{}.json", env.name),
            pipeline::stage_configuration(&parameters, self.m.name(), &env.name),
        );
        if let Some(test) = &stage.test {
            let bytes = self
                .m
                .files
                .get(&self.p.resolve_path(&test.buildspec))
                .ok_or_else(|| {
                    self.err(format!("buildspec `{}` was not loaded", test.buildspec))
                })?;
            files.insert(pipeline::test_buildspec_path(&env.name), bytes.clone());
        }
        Ok(())
    }

    /// The tools part's template: the pipeline itself, over every stage.
    fn tools_template(
        &self,
        source_id: &str,
        source: pipeline::Source,
        stages: &[pipeline::Stage],
        key: &str,
    ) -> serde_json::Value {
        let spec = &self.p.spec;
        let capabilities: Vec<String> = self
            .deployed
            .required_capabilities()
            .into_iter()
            .map(str::to_string)
            .collect();
        pipeline::tools_template(&pipeline::Tools {
            names: &self.n,
            tools: &self.tools_id,
            source_account: source_id,
            source,
            region: self.region,
            stages,
            capabilities: &capabilities,
            takes_model: self.deployed.parameters.contains_key(source.parameter()),
            source_key: key,
            approval_emails: spec
                .approval_notification
                .as_ref()
                .map_or(&[], |a| a.emails.as_slice()),
        })
    }
}

/// The default administration role of self-managed stack sets, in the account that
/// administers them (the one estate runs as), in its partition.
fn admin_role_arn(live: &LiveState) -> String {
    format!(
        "arn:{}:iam::{}:role/AWSCloudFormationStackSetAdministrationRole",
        live.partition,
        live.caller()
    )
}

/// Operation preferences as a tag value (AWS does not keep them on the stack set).
pub fn operation_tag(op: &OperationPreferences) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(v) = op.max_concurrent_percentage {
        parts.push(format!("maxConcurrentPercentage={v}"));
    }
    if let Some(v) = op.max_concurrent_count {
        parts.push(format!("maxConcurrentCount={v}"));
    }
    if let Some(v) = op.failure_tolerance_percentage {
        parts.push(format!("failureTolerancePercentage={v}"));
    }
    if let Some(v) = op.failure_tolerance_count {
        parts.push(format!("failureToleranceCount={v}"));
    }
    if let Some(v) = op.region_concurrency {
        parts.push(format!(
            "regionConcurrency={}",
            match v {
                RegionConcurrency::Sequential => "sequential",
                RegionConcurrency::Parallel => "parallel",
            }
        ));
    }
    if let Some(order) = &op.region_order {
        parts.push(format!("regionOrder={}", order.join("+")));
    }
    if let Some(mode) = op.concurrency_mode {
        parts.push(format!("concurrencyMode={}", mode.as_str()));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{LiveAccount, LiveUnit};
    use crate::source::ManifestSource;

    const ROOT: &str = "r-root";

    fn unit(id: &str, path: &str, parent: &str) -> LiveUnit {
        LiveUnit {
            id: id.into(),
            path: path.into(),
            parent_id: parent.into(),
        }
    }

    fn account(id: &str, name: &str, parent: &str, state: &str) -> LiveAccount {
        LiveAccount {
            id: id.into(),
            name: name.into(),
            email: format!("{name}@example.com"),
            state: serde_json::from_value(serde_json::json!(state)).unwrap(),
            parent_id: parent.into(),
            tags: None,
        }
    }

    /// A manifest from files written to a fresh folder (outside any Git repository).
    fn manifest(files: &[(&str, &str)]) -> Manifest {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let loaded = crate::manifest::load(&ManifestSource::work_tree(dir.path()).unwrap());
        loaded
            .manifest
            .unwrap_or_else(|| panic!("{}", loaded.diagnostics.render(false)))
    }

    const ESTATE: &str = "apiVersion: estate/v1
kind: Estate
metadata: {name: acme}
spec:
  homeRegion: us-east-1
  regions: [us-east-1]
  promotion: [staging]
  include: [docs.yaml]
";

    const TEMPLATE: &str = "Parameters:
  EnvType: {Type: String}
  Tier: {Type: String, Default: small}
  Residency: {Type: String, Default: any}
  Pipeline: {Type: String, Default: none}
  Pending: {Type: String, Default: none}
Resources:
  Topic: {Type: AWS::SNS::Topic}
";

    /// Units nest (`/ml/staging/eu`), and `/ml/staging-old` shares a prefix with `/ml/staging`
    /// without being inside it. `mover` and `elsewhere` sit where the manifest does not want
    /// them; `new-stage` does not exist yet.
    const DOCS: &str = "apiVersion: estate/v1
kind: Organization
metadata: {name: org}
spec:
  units:
    - path: /ml
    - path: /ml/staging
    - path: /ml/staging/eu
    - path: /ml/staging-old
    - path: /other
  accounts:
    - {name: tools, email: tools@example.com, unit: /ml}
    - {name: stage-a, email: stage-a@example.com, unit: /ml/staging}
    - {name: stage-eu, email: stage-eu@example.com, unit: /ml/staging/eu}
    - {name: new-stage, email: new-stage@example.com, unit: /ml/staging}
    - {name: mover, email: mover@example.com, unit: /ml/staging}
    - {name: elsewhere, email: elsewhere@example.com, unit: /other}
---
apiVersion: estate/v1
kind: Environment
metadata: {name: staging}
spec:
  targets: {units: [/ml/staging], accounts: [tools]}
  regions: [us-east-1, eu-west-1]
  parameters: {EnvType: staging, Tier: env-tier, Undeclared: ignored}
---
apiVersion: estate/v1
kind: StackSet
metadata: {name: topic}
spec:
  template: topic.yaml
  environments: [staging]
  parameters:
    Tier: set-tier
    Pipeline: ${account:tools}
    Pending: ${account:new-stage}-${environment}
  overrides:
    - accounts: [stage-a]
      parameters: {Tier: override-tier}
    - accounts: [stage-a]
      regions: [eu-west-1]
      parameters: {Residency: '${region}'}
";

    fn live() -> LiveState {
        LiveState {
            management_account: "111111111111".into(),
            root_id: ROOT.into(),
            units: vec![
                unit("ou-ml", "/ml", ROOT),
                unit("ou-stg", "/ml/staging", "ou-ml"),
                unit("ou-eu", "/ml/staging/eu", "ou-stg"),
                unit("ou-old", "/ml/staging-old", "ou-ml"),
                unit("ou-other", "/other", ROOT),
            ],
            accounts: vec![
                account("111111111111", "management", ROOT, "ACTIVE"),
                account("222222222222", "tools", "ou-ml", "ACTIVE"),
                account("333333333333", "stage-a", "ou-stg", "ACTIVE"),
                account("333333333334", "stage-eu", "ou-eu", "ACTIVE"),
                account("444444444444", "mover", "ou-other", "ACTIVE"),
                account("444444444445", "elsewhere", "ou-stg", "ACTIVE"),
                // Not in the manifest: in a targeted unit's descendant, suspended, and in the
                // unit that only shares a prefix.
                account("555555555555", "joined", "ou-eu", "ACTIVE"),
                account("666666666666", "suspended", "ou-stg", "SUSPENDED"),
                account("777777777777", "old", "ou-old", "ACTIVE"),
            ],
            ..LiveState::default()
        }
    }

    fn resolved() -> DesiredStackSet {
        let m = manifest(&[
            ("estate.yaml", ESTATE),
            ("docs.yaml", DOCS),
            ("topic.yaml", TEMPLATE),
        ]);
        let mut d = resolve(&m, &live(), &[]).unwrap();
        assert_eq!(d.stack_sets.len(), 1);
        d.stack_sets.remove(0)
    }

    #[test]
    fn targets_are_units_with_their_descendants_and_named_accounts() {
        let d = resolved();
        let mut keys: Vec<String> = d
            .instances
            .iter()
            .filter(|i| i.region == "us-east-1")
            .map(|i| i.account.key())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "222222222222",                  // tools: named
                "333333333333",                  // stage-a: in /ml/staging
                "333333333334",                  // stage-eu: in a descendant
                "444444444444",                  // mover: where the manifest puts it
                "555555555555",                  // not in the manifest, but in a descendant
                "new-stage (known after apply)", // created by this plan, shown by name
            ]
        );
        // Every target in every region of the environment.
        assert_eq!(d.instances.len(), 12);
        let new = d.instances.iter().find(|i| i.account.id.is_none()).unwrap();
        assert_eq!(new.account.name.as_deref(), Some("new-stage"));
    }

    #[test]
    fn parameters_merge_stack_set_then_declared_environment_values() {
        let d = resolved();
        let want: BTreeMap<String, String> = [
            ("EnvType", "staging"),
            // The environment's value wins over the stack set's.
            ("Tier", "env-tier"),
            ("Pipeline", "222222222222"),
            ("Pending", "(known after apply)-staging"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // `Undeclared` is not a parameter of the template: it is not passed.
        assert_eq!(d.parameters, want);
    }

    #[test]
    fn overrides_apply_per_account_and_region_with_the_region_resolved() {
        let d = resolved();
        let overrides = |id: &str, region: &str| {
            d.instances
                .iter()
                .find(|i| i.account.id.as_deref() == Some(id) && i.region == region)
                .unwrap()
                .overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            overrides("333333333333", "us-east-1"),
            ["Tier=override-tier"]
        );
        assert_eq!(
            overrides("333333333333", "eu-west-1"),
            ["Residency=eu-west-1", "Tier=override-tier"]
        );
        assert!(overrides("333333333334", "eu-west-1").is_empty());
        assert!(overrides("222222222222", "us-east-1").is_empty());
        assert_ne!(d.tags[crate::tags::TAG_OVERRIDES], EMPTY_OVERRIDES);
    }
}
