//! One apply, start to end: read, plan, refuse what a careful operator would (stale plan,
//! conflicts, skipped promotion stages, protected deletes), confirm, lock, check live did not
//! move, then converge in order (organization, prerequisites, portfolios, stack sets per
//! environment). Returns what happened as an [`Outcome`]; the binary only prints it.

use super::error::ApplyError;
use super::lock::{Lock, REFRESH_EVERY};
use super::options::Options;
use super::progress::{Event, Progress};
use super::record;
use super::report::Report;
use crate::aws::wait::Polling;
use crate::aws::{Aws, AwsError};
use crate::live::LiveState;
use crate::live::read::read;
use crate::manifest::Manifest;
use crate::manifest::model::Approval;
use crate::plan::{self, Finding, FindingKind, Hint, Plan, PlanError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use thiserror::Error;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    /// A plan saved by `estate plan --format json`, with the name to call it by.
    pub saved: Option<(String, Plan)>,
    /// Environments named (`--env`); none: every one up to the first manual gate.
    pub environments: Vec<String>,
    pub allow_delete: bool,
    pub skip_promotion_check: bool,
    /// Independent stack sets worked on at once.
    pub parallelism: usize,
    /// Accounts created (or moved) at once (AWS allows 5 creations in progress).
    pub accounts_at_once: usize,
    pub polling: Polling,
    /// Who holds the locks (user, host, process), shown to whoever finds them taken.
    pub holder: String,
}

/// How an apply ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to change. `gate`: it stopped before a manual environment; `conflict`: at a
    /// resource that is not estate's.
    NoChanges {
        gate: Option<Held>,
        conflict: Option<String>,
        /// What the plan found and apply leaves alone (orphans, unmanaged accounts, …): with
        /// any, live does not simply match the manifest.
        findings: usize,
    },
    /// Changes were carried out; the report says which, and which steps failed.
    Applied {
        report: Report,
        gate: Option<Held>,
        conflict: Option<String>,
    },
    /// A safety check refused; nothing was changed.
    Refused(String),
    /// A stop was asked for. `started`: changes had begun (their AWS operations go on).
    Interrupted { started: bool, done: usize },
    /// An error after `done` changes were carried out: live moved, the reader must know.
    PartlyApplied { done: usize, error: RunError },
}

/// Where an apply without `--env` stopped: before an `approval: manual` environment, with
/// the changes it left there and in the environments after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The first manual environment, which this apply did not enter.
    pub environment: String,
    /// Changes left per environment, in promotion order; only environments that have some.
    pub pending: Vec<Pending>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub environment: String,
    pub changes: usize,
}

impl Held {
    /// Changes waiting at the gate (and behind it): live does not match the manifest yet.
    pub fn changes(&self) -> usize {
        self.pending.iter().map(|p| p.changes).sum()
    }

    /// What the operator reads.
    pub fn message(&self) -> String {
        let env = &self.environment;
        if self.pending.is_empty() {
            return format!(
                "stopping before `{env}` (approval: manual), which has no pending changes"
            );
        }
        let n = self.changes();
        let wher: Vec<String> = self
            .pending
            .iter()
            .map(|p| format!("{} in `{}`", p.changes, p.environment))
            .collect();
        format!(
            "stopping before `{env}` (approval: manual): {n} change{} pending approval ({}); apply it with `estate apply --env {env}`",
            if n == 1 { "" } else { "s" },
            wher.join(", ")
        )
    }
}

impl Outcome {
    /// Changes carried out.
    pub fn done(&self) -> usize {
        match self {
            Outcome::Applied { report, .. } => report.done.len(),
            Outcome::Interrupted { done, .. } | Outcome::PartlyApplied { done, .. } => *done,
            _ => 0,
        }
    }
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Set once a stop is asked for (a signal): work stops cleanly, locks released.
pub type Stop = tokio::sync::watch::Receiver<bool>;

/// Resolves once a stop was asked for.
pub async fn stopped(mut stop: Stop) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The sender is gone: no stop can arrive any more.
        std::future::pending::<()>().await;
    }
}

/// Runs one apply. `confirm` is shown the plan and may refuse it (`Err` says why).
pub async fn run<C>(
    aws: &Aws,
    m: &Manifest,
    req: &Request,
    confirm: C,
    progress: &dyn Progress,
    stop: Stop,
) -> Result<Outcome, RunError>
where
    C: AsyncFnOnce(&Plan) -> Result<(), String>,
{
    // Until the locks are held nothing has changed: a stop simply stops, prompt included.
    let ready = tokio::select! {
        r = prepare(aws, m, req, confirm) => r?,
        _ = stopped(stop.clone()) => return Ok(Outcome::Interrupted { started: false, done: 0 }),
    };
    let Ready {
        live,
        plan,
        gate,
        conflict,
    } = match ready {
        Prepared::Ready(r) => *r,
        Prepared::Done(outcome) => return Ok(outcome),
    };
    let locks = match lock(aws, m, &plan, &live, req).await {
        Ok(locks) => locks,
        Err(outcome) => return outcome,
    };
    let progress = Counting {
        inner: progress,
        done: AtomicUsize::new(0),
    };
    // Keep the locks fresh while working, so a long apply is never taken for a dead one.
    let refresh = async {
        loop {
            tokio::time::sleep(REFRESH_EVERY).await;
            for l in &locks {
                if let Err(e) = l.refresh(&req.holder).await {
                    tracing::warn!("could not refresh the apply lock: {e}");
                }
            }
        }
    };
    let result = tokio::select! {
        r = converge(aws, m, &plan, &live, req, &progress) => Some(r),
        _ = refresh => unreachable!("the refresh loop never ends"),
        _ = stopped(stop) => None,
    };
    // Ended (or stopped): an apply that read live while this one worked must not act on it.
    if let Err(e) = record::next_generation(aws, &live.root_id, m.name()).await {
        tracing::warn!("could not record the end of this apply on the organization root: {e}");
    }
    for l in locks {
        if let Err(e) = l.release().await {
            tracing::warn!("could not release the apply lock: {e}");
        }
    }
    let done = progress.done.load(Ordering::Relaxed);
    Ok(match result {
        None => Outcome::Interrupted {
            started: true,
            done,
        },
        Some(Ok(mut report)) => {
            report.read_floor = crate::live::floor::floor(&plan::read_options(m), &live);
            Outcome::Applied {
                report,
                gate,
                conflict,
            }
        }
        Some(Err(error)) if done == 0 => return Err(error),
        Some(Err(error)) => Outcome::PartlyApplied { done, error },
    })
}

/// Takes the locks (the organization when it changes, and every environment that changes),
/// then checks live did not move since it was read; `Err` is the outcome when refused.
async fn lock(
    aws: &Aws,
    m: &Manifest,
    plan: &Plan,
    live: &LiveState,
    req: &Request,
) -> Result<Vec<Lock>, Result<Outcome, RunError>> {
    let mut scopes: Vec<String> = Vec::new();
    if plan.changes.iter().any(|c| c.environment.is_none()) {
        scopes.push("organization".into());
    }
    for e in &plan.environments {
        if plan
            .changes
            .iter()
            .any(|c| c.environment.as_ref() == Some(e))
        {
            scopes.push(e.clone());
        }
    }
    let mut locks = Vec::new();
    for s in &scopes {
        match Lock::acquire(aws, &live.root_id, m.name(), s, &req.holder).await {
            Ok(l) => locks.push(l),
            Err(e) => {
                release(locks).await;
                return Err(Ok(Outcome::Refused(e.to_string())));
            }
        }
    }
    // Another apply may have run between the read and the locks: act only on what was
    // planned from, or stop. Every apply moves the generation when it starts and when it
    // ends, so one tag tells; a full second read would cost as much as the first.
    let stale = match record::generation_moved(aws, live, m.name()).await {
        Ok(false) => match record::next_generation(aws, &live.root_id, m.name()).await {
            Ok(()) => None,
            Err(e) => Some(Err(e.into())),
        },
        Ok(true) => Some(Ok(Outcome::Refused(
            "another apply ran since live state was read; nothing was changed; run it again".into(),
        ))),
        Err(e) => Some(Err(e.into())),
    };
    match stale {
        Some(outcome) => {
            release(locks).await;
            Err(outcome)
        }
        None => Ok(locks),
    }
}

async fn release(locks: Vec<Lock>) {
    for l in locks {
        let _ = l.release().await;
    }
}

/// What apply is about to do, once read, planned, checked and confirmed.
struct Ready {
    live: LiveState,
    plan: Plan,
    gate: Option<Held>,
    conflict: Option<String>,
}

enum Prepared {
    Ready(Box<Ready>),
    /// Nothing to do, or refused.
    Done(Outcome),
}

/// Reads live state, plans, runs the refusals and asks for confirmation.
async fn prepare<C>(
    aws: &Aws,
    m: &Manifest,
    req: &Request,
    confirm: C,
) -> Result<Prepared, RunError>
where
    C: AsyncFnOnce(&Plan) -> Result<(), String>,
{
    let refused = |why: String| Ok(Prepared::Done(Outcome::Refused(why)));
    let live = read(aws, &plan::read_options(m)).await?;
    let (envs, gate) = match &req.saved {
        Some(_) => (Vec::new(), None),
        None => scope(m, &req.environments)?,
    };
    let gate = match gate {
        Some(env) => Some(held(m, &live, env)?),
        None => None,
    };
    let plan = match &req.saved {
        Some((name, saved)) => {
            if saved.estate != m.name() {
                return refused(format!(
                    "{name} is a plan of estate `{}`, not `{}`",
                    saved.estate,
                    m.name()
                ));
            }
            if saved.fingerprint != live.fingerprint() {
                return refused(
                    "stale plan: live state changed since it was made; run estate plan again"
                        .into(),
                );
            }
            // The saved plan must still be what the manifest asks for.
            let now = plan::make(m, &live, &saved.environments)?;
            if now.changes != saved.changes {
                return refused(format!(
                    "{name} no longer matches the manifest (it changed since the plan was made); run estate plan again"
                ));
            }
            saved.clone()
        }
        None => plan::make(m, &live, &envs)?,
    };

    // A conflict stops the apply at its environment (promotion goes no further); one that
    // belongs to no environment (a portfolio) stops it all. Nothing is ever taken over.
    let (plan, conflict) = stop_at_conflict(m, &live, plan, req.saved.is_some())?;
    if conflict.is_some() && plan.changes.is_empty() {
        let findings = plan.findings.len();
        return Ok(Prepared::Done(Outcome::NoChanges {
            gate,
            conflict,
            findings,
        }));
    }
    // A saved plan names its environments itself: one made with `--env production` skips
    // staging just as `apply --env production` would.
    let limited = !req.environments.is_empty() || req.saved.is_some();
    if !req.skip_promotion_check && limited {
        if let Some(why) = promotion_check(m, &live, &plan.environments)? {
            return refused(why);
        }
    }
    if let Some(why) = protected_check(m, &plan, req.allow_delete) {
        return refused(why);
    }
    if plan.changes.is_empty() {
        // Nothing to change; but hubs holding portfolios since before estate kept its record
        // are recorded now, so their portfolios are still found once the manifest drops them.
        let portfolios = plan::catalog::resolve(m, &live);
        super::record::record_hubs(aws, &live, m.name(), &portfolios).await?;
        let findings = plan.findings.len();
        return Ok(Prepared::Done(Outcome::NoChanges {
            gate,
            conflict,
            findings,
        }));
    }
    if let Err(why) = confirm(&plan).await {
        return refused(why);
    }
    Ok(Prepared::Ready(Box::new(Ready {
        live,
        plan,
        gate,
        conflict,
    })))
}

/// Which environments this apply covers, and the manual one it stops before, if any.
fn scope(m: &Manifest, named: &[String]) -> Result<(Vec<String>, Option<String>), PlanError> {
    if !named.is_empty() {
        return Ok((plan::environments(m, named)?, None));
    }
    let mut envs = Vec::new();
    for e in m.environments_in_order() {
        if e.spec.approval == Approval::Manual {
            return Ok((envs, Some(e.name.clone())));
        }
        envs.push(e.name.clone());
    }
    Ok((envs, None))
}

/// The changes left at the gate before `env` and behind it: planned (purely) from the same
/// live state, so "nothing to apply" is never said while they wait.
fn held(m: &Manifest, live: &LiveState, env: String) -> Result<Held, PlanError> {
    let order: Vec<String> = m
        .environments_in_order()
        .into_iter()
        .map(|e| e.name.clone())
        .collect();
    let rest: Vec<String> = order.iter().skip_while(|e| **e != env).cloned().collect();
    let plan = plan::make_for(m, live, rest.clone())?;
    let pending = rest
        .into_iter()
        .filter_map(|e| {
            let changes = plan
                .changes
                .iter()
                .filter(|c| c.environment.as_deref() == Some(e.as_str()))
                .count();
            (changes > 0).then_some(Pending {
                environment: e,
                changes,
            })
        })
        .collect();
    Ok(Held {
        environment: env,
        pending,
    })
}

/// The plan cut before the first environment holding a conflict, and what to tell the
/// operator. A conflict of no environment, or any in a saved plan, leaves nothing to apply.
fn stop_at_conflict(
    m: &Manifest,
    live: &LiveState,
    plan: Plan,
    saved: bool,
) -> Result<(Plan, Option<String>), PlanError> {
    let conflicts: Vec<&Finding> = plan
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Conflict)
        .collect();
    let Some(first) = conflicts.first() else {
        return Ok((plan, None));
    };
    let how = "rename it in the manifest, or remove or tag the resource in AWS, and apply again";
    let at = plan
        .environments
        .iter()
        .position(|e| conflicts.iter().any(|f| f.environment.as_ref() == Some(e)));
    let (cut, why) = match at {
        Some(i) if !saved && conflicts.iter().all(|f| f.environment.is_some()) => {
            let env = &plan.environments[i];
            let f = conflicts
                .iter()
                .find(|f| f.environment.as_ref() == Some(env))
                .expect("found above");
            let why = format!(
                "environment `{env}` holds a conflict ({}: {}); apply stopped before it: {how}",
                f.address, f.message
            );
            (
                plan::make_for(m, live, plan.environments[..i].to_vec())?,
                why,
            )
        }
        _ => {
            let why = format!(
                "conflict ({}: {}); nothing was applied: {how}",
                first.address, first.message
            );
            let mut nothing = plan.clone();
            nothing.changes.clear();
            nothing.summary = Plan::summarize(&nothing.changes);
            (nothing, why)
        }
    };
    Ok((cut, Some(why)))
}

/// `apply --env E` refuses while an earlier promotion stage has pending changes.
fn promotion_check(
    m: &Manifest,
    live: &LiveState,
    envs: &[String],
) -> Result<Option<String>, PlanError> {
    let order: Vec<&str> = m.estate.spec.promotion.iter().map(String::as_str).collect();
    let Some(first) = envs
        .iter()
        .filter_map(|e| order.iter().position(|o| o == e))
        .min()
    else {
        return Ok(None);
    };
    let earlier: Vec<String> = order[..first]
        .iter()
        .filter(|e| !envs.iter().any(|n| n == *e))
        .map(|e| e.to_string())
        .collect();
    if earlier.is_empty() {
        return Ok(None);
    }
    let before = plan::make(m, live, &earlier)?;
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    // Removing instances of accounts AWS says are closing never holds back a later stage.
    for c in before
        .changes
        .iter()
        .filter(|c| c.hint != Some(Hint::RetainStacks))
    {
        if let Some(e) = &c.environment {
            *pending.entry(e.clone()).or_default() += 1;
        }
    }
    Ok(pending.into_iter().next().map(|(env, n)| {
        format!(
            "environment `{env}` comes earlier in promotion ({}) and has {n} pending change{}; apply it first, or pass --skip-promotion-check",
            order.join(" → "),
            if n == 1 { "" } else { "s" }
        )
    }))
}

/// Deletes in a protected environment need --allow-delete.
fn protected_check(m: &Manifest, plan: &Plan, allow: bool) -> Option<String> {
    if allow {
        return None;
    }
    // From the manifest, not the plan's gates: a saved plan is checked by today's rules.
    let blocked: Vec<String> = plan
        .protected_deletes(|e| m.environment(e).is_some_and(|e| e.spec.protected))
        .iter()
        .map(|c| c.address.to_string())
        .collect();
    (!blocked.is_empty()).then(|| {
        format!(
            "the plan deletes in a protected environment ({}); pass --allow-delete to allow it",
            blocked.join(", ")
        )
    })
}

/// Organization first; then, with the ids it created now known, prerequisites, portfolios
/// and the stack sets.
async fn converge(
    aws: &Aws,
    m: &Manifest,
    plan: &Plan,
    live: &LiveState,
    req: &Request,
    progress: &dyn Progress,
) -> Result<Report, RunError> {
    let polling = req.polling;
    let region = &m.estate.spec.home_region;
    let mut done = super::organization::organization(
        aws,
        plan,
        live,
        m.name(),
        super::organization::AtOnce(req.accounts_at_once),
        polling,
        progress,
    )
    .await?;
    let (plan, live) = if done.is_empty() {
        (plan.clone(), live.clone())
    } else {
        // Accounts and units created just now resolve the "(known after apply)" values; only
        // what depends on them is read again.
        let live =
            crate::live::read::reread_organization(aws, &plan::read_options(m), live.clone())
                .await?;
        (plan::make_for(m, &live, plan.environments.clone())?, live)
    };
    // What stack sets need (trusted access, their roles), before any stack set.
    let prerequisites =
        super::prerequisites::prerequisites(aws, &plan, &live, m.name(), region, polling, progress)
            .await?;
    done.extend(prerequisites.done);
    // Portfolios, which need their hub and recipient accounts, before any stack set; their
    // hubs recorded first, so every later plan reads them there.
    let portfolios = plan::catalog::resolve(m, &live);
    super::record::record_hubs(aws, &live, m.name(), &portfolios).await?;
    done.extend(
        super::catalog::portfolios(aws, &plan, &portfolios, &live, region, polling, progress)
            .await?,
    );
    super::record::retire_hubs(aws, &live, m.name(), &portfolios).await?;
    let desired = plan::desired::resolve(m, &live, &plan.environments)?;
    let opts = Options {
        parallelism: req.parallelism,
        polling,
        template_bucket: m.estate.spec.template_bucket.clone(),
        home_region: region.clone(),
    };
    let sources = super::stack_sets::Sources {
        manifest: m,
        live: &live,
    };
    let mut report =
        super::stack_sets::stack_sets_with(aws, &plan, &desired, Some(sources), &opts, progress)
            .await;
    done.append(&mut report.done);
    report.done = done;
    report.failures.splice(0..0, prerequisites.failures);
    Ok(report)
}

/// Passes events on and counts the changes done.
struct Counting<'a> {
    inner: &'a dyn Progress,
    done: AtomicUsize,
}

impl Progress for Counting<'_> {
    fn event(&self, e: Event) {
        if matches!(e, Event::Done { .. }) {
            self.done.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.event(e);
    }
}
