//! `estate apply`: the refusals a careful operator expects (stale plan, protected deletes,
//! skipped promotion stages, no confirmation, a concurrent apply), then the organization,
//! then stack sets per environment in promotion order, with progress and a final report.

use crate::cli::{Format, Global, LiveArgs, color_enabled, connect, exit, load_valid, runtime};
use anyhow::{Context, Result, bail};
use estate::apply::{self, Event, Progress, lock::Lock};
use estate::manifest::Manifest;
use estate::manifest::model::Approval;
use estate::plan::{self, Action, Plan};
use estate::render;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

pub struct Args {
    pub live: LiveArgs,
    pub plan: Option<PathBuf>,
    pub auto_approve: bool,
    pub allow_delete: bool,
    pub skip_promotion_check: bool,
    pub parallelism: usize,
}

/// A refusal: printed as is, exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refusal(String);

/// What one apply did: no report when there was nothing to change.
pub(crate) struct Applied {
    pub report: Option<apply::Report>,
    /// Set when the apply stopped before an environment with `approval: manual`.
    pub gate: Option<String>,
    /// Set when it stopped at a conflict (a resource of a manifest name that is not
    /// estate's): that environment and the later ones were not applied.
    pub conflict: Option<String>,
}

impl Applied {
    pub fn code(&self) -> i32 {
        match &self.report {
            _ if self.conflict.is_some() => exit::ERROR,
            Some(r) if !r.failures.is_empty() => exit::ERROR,
            _ => exit::OK,
        }
    }
}

/// Set once SIGINT or SIGTERM arrives: long-running work watches it and stops cleanly
/// (locks released, the outcome reported) instead of dying mid-way.
pub(crate) type Stop = tokio::sync::watch::Receiver<bool>;

/// Starts listening for SIGINT and SIGTERM; call inside the runtime.
pub(crate) fn stop_on_signals() -> Stop {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0.. {
            #[cfg(unix)]
            let terminated = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let terminated = std::future::pending::<()>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            if n == 0 {
                let _ = tx.send(true);
            } else {
                // A second signal means now: 128 + SIGINT, as shells report it.
                eprintln!("interrupted again: stopping now");
                std::process::exit(130);
            }
        }
    });
    rx
}

/// Resolves once a stop was asked for.
pub(crate) async fn stopped(mut stop: Stop) {
    if stop.wait_for(|s| *s).await.is_err() {
        // The listener is gone: no signal can arrive any more.
        std::future::pending::<()>().await;
    }
}

/// Changes carried out before an apply failed or was stopped (the error's context).
#[derive(Debug, thiserror::Error)]
#[error("{done} change{} applied before this", if *done == 1 { "" } else { "s" })]
pub(crate) struct PartlyApplied {
    pub done: usize,
}

/// Passes events on and counts the changes done.
struct Counting {
    inner: Box<dyn Progress>,
    done: std::sync::atomic::AtomicUsize,
}

impl Progress for Counting {
    fn event(&self, e: Event) {
        if matches!(e, Event::Done { .. }) {
            self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.event(e);
    }
}

/// The apply was stopped by a signal; when it had started, its AWS operations carry on.
#[derive(Debug, thiserror::Error)]
#[error("{}", if *started {
    "interrupted; AWS operations already started continue; run estate apply again to converge"
} else {
    "interrupted before anything was changed"
})]
pub(crate) struct Interrupted {
    pub started: bool,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let m = load_valid(g, &args.live.dir)?;
    let rt = runtime()?;
    let result = rt.block_on(async { apply(g, args, &m, stop_on_signals()).await });
    // A prompt interrupted by a signal leaves its stdin read running: do not wait for it.
    rt.shutdown_background();
    match result {
        Ok(applied) => {
            print_outcome(g, &applied)?;
            Ok(applied.code())
        }
        Err(e) if e.downcast_ref::<Refusal>().is_some() => {
            eprintln!("refused: {e}");
            Ok(exit::ERROR)
        }
        Err(e) => Err(e),
    }
}

fn print_outcome(g: &Global, applied: &Applied) -> Result<()> {
    match (&applied.report, g.format) {
        (None, _) if applied.conflict.is_some() => {}
        (None, _) => println!("No changes. Live state matches the manifest."),
        (Some(report), Format::Json) => println!("{}", serde_json::to_string_pretty(report)?),
        (Some(report), _) => {
            for f in &report.failures {
                eprintln!("FAILED {} {}: {}", f.stack_set, f.step, f.message);
                for i in &f.instances {
                    eprintln!("  {} {} {}: {}", i.account, i.region, i.status, i.reason);
                }
            }
            println!("{}", sentence(report));
        }
    }
    if let Some(conflict) = &applied.conflict {
        eprintln!("refused: {conflict}");
    } else if let Some(gate) = &applied.gate {
        eprintln!("note: {gate}");
    }
    Ok(())
}

/// "Apply complete: 3 changes applied." / "Apply failed: 2 changes applied, 1 step failed."
pub(crate) fn sentence(report: &apply::Report) -> String {
    let n = report.done.len();
    let failed = report.failures.len();
    format!(
        "Apply {}: {n} change{} applied{}.",
        if failed == 0 { "complete" } else { "failed" },
        if n == 1 { "" } else { "s" },
        if failed == 0 {
            String::new()
        } else {
            format!(
                ", {failed} step{} failed",
                if failed == 1 { "" } else { "s" }
            )
        }
    )
}

/// Which environments this apply covers, and a note when it stops at a manual gate.
fn scope(m: &Manifest, named: &[String]) -> Result<(Vec<String>, Option<String>)> {
    if !named.is_empty() {
        return Ok((plan::environments(m, named)?, None));
    }
    let mut envs = Vec::new();
    for e in m.environments_in_order() {
        if e.spec.approval == Approval::Manual {
            return Ok((
                envs,
                Some(format!(
                    "stopping before `{}` (approval: manual); apply it with `estate apply --env {}`",
                    e.name, e.name
                )),
            ));
        }
        envs.push(e.name.clone());
    }
    Ok((envs, None))
}

/// What apply is about to do, once read, planned, checked and confirmed.
struct Prepared {
    aws: estate::aws::Aws,
    live: estate::live::LiveState,
    plan: Plan,
    gate: Option<String>,
    conflict: Option<String>,
}

pub(crate) async fn apply(g: &Global, args: &Args, m: &Manifest, stop: Stop) -> Result<Applied> {
    // Until the locks are held nothing has changed: a signal simply stops, prompt included.
    let prepared = tokio::select! {
        r = prepare(args, m) => r?,
        _ = stopped(stop.clone()) => return Err(Interrupted { started: false }.into()),
    };
    let Prepared {
        aws,
        live,
        plan,
        gate,
        conflict,
    } = match prepared {
        Ok(p) => p,
        Err(nothing) => return Ok(nothing),
    };
    let read_opts = plan::read_options(m);

    // Locks: the organization when it changes, and every environment that changes.
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
    let who = format!(
        "{}@{} pid {}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        hostname(),
        std::process::id()
    );
    let mut locks = Vec::new();
    for s in &scopes {
        match Lock::acquire(&aws, &live.root_id, m.name(), s, &who).await {
            Ok(l) => locks.push(l),
            Err(e) => {
                for l in locks {
                    let _ = l.release().await;
                }
                return Err(Refusal(e.to_string()).into());
            }
        }
    }

    // Another apply may have finished between the read and the lock: act only on what was
    // planned from, or stop.
    let stale = match estate::live::read::read(&aws, &read_opts).await {
        Ok(fresh) if fresh.fingerprint() == live.fingerprint() => None,
        Ok(_) => Some(anyhow::Error::from(Refusal(
            "live state changed while this apply was getting ready (another apply?); nothing was changed; run it again".into(),
        ))),
        Err(e) => Some(e.into()),
    };
    if let Some(e) = stale {
        for l in locks {
            let _ = l.release().await;
        }
        return Err(e);
    }

    let progress = Counting {
        inner: reporter(g),
        done: std::sync::atomic::AtomicUsize::new(0),
    };
    // Keep the locks fresh while working, so a long apply is never taken for a dead one.
    let refresh = async {
        loop {
            tokio::time::sleep(estate::apply::lock::REFRESH_EVERY).await;
            for l in &locks {
                if let Err(e) = l.refresh(&who).await {
                    tracing::warn!("could not refresh the apply lock: {e}");
                }
            }
        }
    };
    let result = tokio::select! {
        r = converge(&aws, m, &plan, &live, args, &progress) => r,
        _ = refresh => unreachable!("the refresh loop never ends"),
        _ = stopped(stop.clone()) => Err(Interrupted { started: true }.into()),
    };
    for l in locks {
        if let Err(e) = l.release().await {
            eprintln!("warning: could not release the apply lock: {e}");
        }
    }
    // A failure part-way says how much had been done: the reader must know live moved.
    let report =
        result.map_err(
            |e| match progress.done.load(std::sync::atomic::Ordering::Relaxed) {
                0 => e,
                done => e.context(PartlyApplied { done }),
            },
        )?;
    if args.live.stats {
        let stats = aws.stats().snapshot();
        eprintln!("AWS API calls: {}", stats.values().sum::<u64>());
        for (op, n) in &stats {
            eprintln!("  {op:<48} {n}");
        }
    }
    Ok(Applied {
        report: Some(report),
        gate,
        conflict,
    })
}

/// Reads live state, plans, runs the refusals and asks for confirmation; `Err` carries the
/// outcome when there is nothing to do.
async fn prepare(args: &Args, m: &Manifest) -> Result<Result<Prepared, Applied>> {
    let aws = connect(m, &args.live).await?;
    let live = estate::live::read::read(&aws, &plan::read_options(m)).await?;
    let (envs, gate) = match &args.plan {
        Some(_) => (Vec::new(), None),
        None => scope(m, &args.live.envs)?,
    };

    let plan: Plan = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let saved: Plan = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an estate plan", path.display()))?;
            if saved.estate != m.name() {
                return Err(Refusal(format!(
                    "{} is a plan of estate `{}`, not `{}`",
                    path.display(),
                    saved.estate,
                    m.name()
                ))
                .into());
            }
            if saved.fingerprint != live.fingerprint() {
                return Err(Refusal(
                    "stale plan: live state changed since it was made; run estate plan again"
                        .into(),
                )
                .into());
            }
            // The saved plan must still be what the manifest asks for.
            let now = plan::make(m, &live, &saved.environments)?;
            if now.changes != saved.changes {
                return Err(Refusal(format!(
                    "{} no longer matches the manifest (it changed since the plan was made); run estate plan again",
                    path.display()
                ))
                .into());
            }
            saved
        }
        None => plan::make(m, &live, &envs)?,
    };

    // A conflict stops the apply at its environment (promotion goes no further); one that
    // belongs to no environment (a portfolio) stops it all. Nothing is ever taken over.
    let (plan, conflict) = stop_at_conflict(m, &live, plan, args.plan.is_some())?;
    if let Some(c) = conflict.as_ref().filter(|_| plan.changes.is_empty()) {
        return Ok(Err(Applied {
            report: None,
            gate,
            conflict: Some(c.clone()),
        }));
    }

    // A saved plan names its environments itself: one made with `--env production` skips
    // staging just as `apply --env production` would.
    let limited = !args.live.envs.is_empty() || args.plan.is_some();
    if !args.skip_promotion_check && limited {
        promotion_check(m, &live, &plan.environments)?;
    }
    protected_check(m, &plan, args.allow_delete)?;

    if plan.changes.is_empty() {
        return Ok(Err(Applied {
            report: None,
            gate,
            conflict,
        }));
    }
    confirm(&plan, args.auto_approve).await?;
    Ok(Ok(Prepared {
        aws,
        live,
        plan,
        gate,
        conflict,
    }))
}

/// The plan cut before the first environment holding a conflict, and what to tell the
/// operator. A conflict of no environment, or any in a saved plan, leaves nothing to apply.
fn stop_at_conflict(
    m: &Manifest,
    live: &estate::live::LiveState,
    plan: Plan,
    saved: bool,
) -> Result<(Plan, Option<String>)> {
    let conflicts: Vec<estate::plan::Finding> = plan
        .findings
        .iter()
        .filter(|f| f.kind == estate::plan::FindingKind::Conflict)
        .cloned()
        .collect();
    let Some(first) = conflicts.first() else {
        return Ok((plan, None));
    };
    let how = "rename it in the manifest, or remove or tag the resource in AWS, and apply again";
    let at = plan
        .environments
        .iter()
        .position(|e| conflicts.iter().any(|f| f.environment.as_ref() == Some(e)));
    match at {
        Some(i) if !saved && conflicts.iter().all(|f| f.environment.is_some()) => {
            let env = plan.environments[i].clone();
            let f = conflicts
                .iter()
                .find(|f| f.environment.as_ref() == Some(&env))
                .expect("found above");
            let before = plan.environments[..i].to_vec();
            let cut = plan::make_for(m, live, before)?;
            Ok((
                cut,
                Some(format!(
                    "environment `{env}` holds a conflict ({}: {}); apply stopped before it: {how}",
                    f.address, f.message
                )),
            ))
        }
        _ => {
            let mut nothing = plan;
            nothing.changes.clear();
            nothing.summary = Plan::summarize(&nothing.changes);
            Ok((
                nothing,
                Some(format!(
                    "conflict ({}: {}); nothing was applied: {how}",
                    first.address, first.message
                )),
            ))
        }
    }
}

/// Organization first; then, with the ids it created now known, the stack sets.
async fn converge(
    aws: &estate::aws::Aws,
    m: &Manifest,
    plan: &Plan,
    live: &estate::live::LiveState,
    args: &Args,
    progress: &dyn Progress,
) -> Result<apply::Report> {
    let polling = polling();
    let mut done = apply::organization(aws, plan, live, m.name(), polling, progress).await?;
    let (plan, live) = if done.is_empty() {
        (plan.clone(), live.clone())
    } else {
        // Accounts and units created just now resolve the "(known after apply)" values.
        let live = estate::live::read::read(aws, &plan::read_options(m)).await?;
        (plan::make_for(m, &live, plan.environments.clone())?, live)
    };
    // What stack sets need (trusted access, their roles), before any stack set.
    let prerequisites = apply::prerequisites::prerequisites(
        aws,
        &plan,
        &live,
        m.name(),
        &m.estate.spec.home_region,
        polling,
        progress,
    )
    .await?;
    done.extend(prerequisites.done);
    // Portfolios, which need their hub and recipient accounts, before any stack set.
    done.extend(
        apply::catalog::portfolios(
            aws,
            &plan,
            &plan::catalog::resolve(m, &live),
            &live,
            &m.estate.spec.home_region,
            polling,
            progress,
        )
        .await?,
    );
    let desired = plan::desired::resolve(m, &live, &plan.environments)?;
    let opts = apply::Options {
        parallelism: args.parallelism,
        polling,
        template_bucket: m.estate.spec.template_bucket.clone(),
        home_region: m.estate.spec.home_region.clone(),
    };
    let mut report = apply::stack_sets(aws, &plan, &desired, &opts, progress).await;
    done.append(&mut report.done);
    report.done = done;
    report.failures.splice(0..0, prerequisites.failures);
    Ok(report)
}

/// Poll intervals; `ESTATE_POLL_MS` shortens them (tests, emulators answer at once).
pub(crate) fn polling() -> apply::Polling {
    let mut p = apply::Polling::default();
    if let Some(ms) = std::env::var("ESTATE_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        p.initial = std::time::Duration::from_millis(ms);
        p.max = std::time::Duration::from_millis(ms.max(1) * 8);
    }
    p
}

/// `apply --env E` refuses while an earlier promotion stage has pending changes.
fn promotion_check(m: &Manifest, live: &estate::live::LiveState, envs: &[String]) -> Result<()> {
    let order: Vec<&str> = m.estate.spec.promotion.iter().map(String::as_str).collect();
    let Some(first) = envs
        .iter()
        .filter_map(|e| order.iter().position(|o| o == e))
        .min()
    else {
        return Ok(());
    };
    let earlier: Vec<String> = order[..first]
        .iter()
        .filter(|e| !envs.iter().any(|n| n == *e))
        .map(|e| e.to_string())
        .collect();
    if earlier.is_empty() {
        return Ok(());
    }
    let before = plan::make(m, live, &earlier)?;
    let mut pending: BTreeMap<String, usize> = BTreeMap::new();
    // Removing instances of accounts AWS says are closing never holds back a later stage.
    for c in before
        .changes
        .iter()
        .filter(|c| c.hint != Some(plan::Hint::RetainStacks))
    {
        if let Some(e) = &c.environment {
            *pending.entry(e.clone()).or_default() += 1;
        }
    }
    if let Some((env, n)) = pending.into_iter().next() {
        return Err(Refusal(format!(
            "environment `{env}` comes earlier in promotion ({}) and has {n} pending change{}; apply it first, or pass --skip-promotion-check",
            order.join(" → "),
            if n == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(())
}

/// Deletes in a protected environment need --allow-delete.
fn protected_check(m: &Manifest, plan: &Plan, allow: bool) -> Result<()> {
    if allow {
        return Ok(());
    }
    let blocked: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        // An instance of a closing account is removed with its stack kept: nothing is lost.
        .filter(|c| c.hint != Some(plan::Hint::RetainStacks))
        .filter(|c| {
            c.environment
                .as_ref()
                .and_then(|e| m.environment(e))
                .is_some_and(|e| e.spec.protected)
        })
        .map(|c| c.address.to_string())
        .collect();
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Refusal(format!(
        "the plan deletes in a protected environment ({}); pass --allow-delete to allow it",
        blocked.join(", ")
    ))
    .into())
}

/// Shows the plan and asks, at a terminal; without one, only --auto-approve proceeds.
async fn confirm(plan: &Plan, auto_approve: bool) -> Result<()> {
    if auto_approve {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Refusal(
            "no terminal to confirm the plan on; review it with `estate plan` and pass --auto-approve".into(),
        )
        .into());
    }
    let text = render::text(
        plan,
        &render::TextOptions {
            color: color_enabled(&std::io::stderr()),
            mode: render::Mode::Plan,
        },
    );
    eprint!("{text}\nApply these changes? Only `yes` is accepted: ");
    std::io::stderr().flush()?;
    // Read off the async threads, so a signal can stop apply while it waits for an answer.
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer).map(|_| answer)
    })
    .await??;
    if answer.trim() != "yes" {
        bail!(Refusal("not confirmed; nothing was changed".into()));
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A progress bar per running stack-set operation on a terminal; a log line per state
/// change otherwise.
fn reporter(g: &Global) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() && g.format != Format::Json && !g.quiet {
        Box::new(Bars::default())
    } else {
        Box::new(Lines { quiet: g.quiet })
    }
}

struct Lines {
    quiet: bool,
}

impl Progress for Lines {
    fn event(&self, e: Event) {
        if self.quiet {
            return;
        }
        match e {
            Event::Started { address, what } => eprintln!("{address}: {what}"),
            Event::Operation {
                stack_set,
                operation_id,
                status,
            } => eprintln!("stackSet:{stack_set}: operation {operation_id} {status}"),
            Event::Done { address } => eprintln!("{address}: done"),
            Event::Failed { address, message } => eprintln!("{address}: FAILED {message}"),
        }
    }
}

#[derive(Default)]
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, key: &str) -> indicatif::ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(key.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix:.bold} {msg} ({elapsed})",
                    )
                    .expect("valid template"),
                );
                b.set_prefix(key.to_string());
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            })
            .clone()
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        for bar in self
            .bars
            .get_mut()
            .map(|b| b.values())
            .into_iter()
            .flatten()
        {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

impl Progress for Bars {
    fn event(&self, e: Event) {
        match e {
            Event::Started { address, what } => self.bar(&address).set_message(what),
            Event::Operation {
                stack_set,
                operation_id,
                status,
            } => self
                .bar(&format!("stackSet:{stack_set}"))
                .set_message(format!("{operation_id} {status}")),
            // A stack set's bar lives through all its steps: its instances and the set
            // itself only say "done" on it; it is finished when apply ends.
            Event::Done { address } if address.starts_with("stackInstance:") => {}
            Event::Done { address } if address.starts_with("stackSet:") => {
                self.bar(&address).set_message("done")
            }
            Event::Done { address } => self.bar(&address).finish_with_message("done"),
            Event::Failed { address, message } => self
                .bar(&address)
                .abandon_with_message(format!("FAILED {message}")),
        }
    }
}
