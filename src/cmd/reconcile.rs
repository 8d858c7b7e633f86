//! The GitOps loop: `estate reconcile` follows a Git branch and converges AWS to it on every
//! tick.

use super::apply::{self as apply_cmd, failure};
use super::context::{Format, Global, LiveArgs, color_enabled, exit, runtime};
use super::signals::{Stop, stop_on_signals, stopped};
use anyhow::{Context, Result, anyhow, bail};
use estate::apply::run::{Held, Outcome as Applied, Pending};
use estate::manifest::{self, Loaded, Manifest};
use estate::source::ManifestSource;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub struct ReconcileArgs {
    pub live: LiveArgs,
    pub branch: String,
    pub remote: Option<String>,
    pub interval: Duration,
    pub once: bool,
    pub allow_delete: bool,
    pub parallelism: usize,
    pub accounts_at_once: usize,
}

/// `30s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{text}`: the unit must be s, m or h")),
    };
    if seconds == 0 {
        return Err("the interval must be at least 1s".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// What one reconcile cycle came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    /// Live state already matched the branch.
    InSync,
    /// Changes were applied and all succeeded.
    Applied,
    /// Some step failed; the rest was left consistent.
    Failed,
    /// A safety check refused (protected delete, a concurrent apply holding the lock, ...).
    Refused,
    /// The manifest at the branch head does not validate: nothing was touched.
    Invalid,
    /// Git, AWS or something else failed before or during the apply.
    Error,
    /// A signal stopped the cycle mid-way.
    Interrupted,
    /// A resource of a manifest name is not estate's: the apply stopped at its environment.
    Conflict,
    /// Everything before the first `approval: manual` environment converged (changes may
    /// have been applied); changes wait there, applied only when named with `--env`.
    PendingApproval,
}

impl Outcome {
    /// `--once`'s exit code: 0 in sync or applied; 2 when changes wait at a manual gate (live
    /// does not match the branch, but nothing failed: as `plan`'s 2); 1 otherwise.
    fn exit_code(self) -> i32 {
        match self {
            Outcome::InSync | Outcome::Applied => exit::OK,
            Outcome::PendingApproval => exit::CHANGES,
            _ => exit::ERROR,
        }
    }
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Cycle {
    format_version: u32,
    branch: String,
    commit: Option<String>,
    outcome: Outcome,
    /// Changes carried out.
    applied: usize,
    /// What a reader should know: the failure, the refusal, a manual gate.
    message: Option<String>,
    /// Set when the fetch failed and the tick converged to the last fetched commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch_error: Option<String>,
    /// Changes left at a manual gate, per environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending: Vec<Pending>,
}

pub fn reconcile(g: &Global, args: &ReconcileArgs) -> Result<i32> {
    let repo = estate::source::open_repository(&args.live.dir).map_err(|e| match e {
        estate::source::SourceError::NoRepository { .. } => anyhow!(
            "reconcile needs {} to be inside a Git repository",
            args.live.dir.display()
        ),
        other => other.into(),
    })?;
    if let Some(remote) = &args.remote {
        repo.find_remote(remote)
            .with_context(|| format!("the repository has no remote `{remote}`"))?;
    }
    let workdir = repo
        .workdir()
        .ok_or_else(|| anyhow!("reconcile needs a repository with a working directory"))?
        .to_path_buf();
    drop(repo);
    let rt = runtime()?;
    rt.block_on(async {
        let stop = stop_on_signals();
        let mut first = true;
        loop {
            let cycle = cycle(g, args, &workdir, stop.clone()).await;
            report(g, &cycle)?;
            // A branch that cannot be found at all on the first tick is a mistake in how the
            // loop was started (a typo in --branch): say so now rather than every tick.
            if first && cycle.commit.is_none() && cycle.outcome == Outcome::Error {
                return Ok(exit::ERROR);
            }
            first = false;
            if args.once {
                return Ok(cycle.outcome.exit_code());
            }
            if cycle.outcome == Outcome::Interrupted || *stop.borrow() {
                return Ok(exit::OK);
            }
            tokio::select! {
                _ = tokio::time::sleep(args.interval) => {}
                _ = stopped(stop.clone()) => return Ok(exit::OK),
            }
        }
    })
}

fn report(g: &Global, c: &Cycle) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match g.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(c)?)?,
        _ => {
            let commit = c.commit.as_deref().map_or("-", |s| &s[..s.len().min(7)]);
            let what = match c.outcome {
                Outcome::InSync => "in sync".to_string(),
                Outcome::Applied => format!(
                    "applied {} change{}",
                    c.applied,
                    if c.applied == 1 { "" } else { "s" }
                ),
                Outcome::Failed => "apply failed".into(),
                Outcome::Refused => "refused".into(),
                Outcome::Invalid => "invalid manifest; nothing applied".into(),
                Outcome::Error => "error".into(),
                Outcome::Interrupted => "interrupted".into(),
                Outcome::Conflict => format!(
                    "stopped at a conflict; {} change{} applied before it",
                    c.applied,
                    if c.applied == 1 { "" } else { "s" }
                ),
                Outcome::PendingApproval => format!(
                    "pending approval; {} change{} applied before the gate",
                    c.applied,
                    if c.applied == 1 { "" } else { "s" }
                ),
            };
            let message = c
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            let fetch = c
                .fetch_error
                .as_deref()
                .map(|f| format!(" ({f}; the last fetched commit was used)"))
                .unwrap_or_default();
            writeln!(
                out,
                "reconcile {} {commit}: {what}{message}{fetch}",
                c.branch
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One tick: fetch, read the manifest at the branch head, converge.
async fn cycle(g: &Global, args: &ReconcileArgs, workdir: &Path, stop: Stop) -> Cycle {
    let branch = match &args.remote {
        Some(r) => format!("{r}/{}", args.branch),
        None => args.branch.clone(),
    };
    let mut c = Cycle {
        format_version: estate::apply::REPORT_FORMAT_VERSION,
        branch,
        commit: None,
        outcome: Outcome::Error,
        applied: 0,
        message: None,
        fetch_error: None,
        pending: Vec::new(),
    };
    // A fetch that fails (the remote is down) does not stop convergence: the last fetched
    // commit is still what was merged, so drift is still healed; the reader is told.
    let mut fetch_failed = None;
    if let Some(remote) = &args.remote {
        let fetched = tokio::select! {
            r = fetch(workdir, remote, &args.branch) => r,
            _ = stopped(stop.clone()) => {
                c.outcome = Outcome::Interrupted;
                return c;
            }
        };
        if let Err(e) = fetched {
            fetch_failed = Some(format!("{e:#}"));
            c.fetch_error = fetch_failed.clone();
        }
    }
    let commit = match head_of(&args.live.dir, &args.branch, args.remote.as_deref()) {
        Ok(commit) => commit,
        Err(e) => {
            c.message = Some(match fetch_failed {
                Some(f) => format!("{f}; {e:#}"),
                None => format!("{e:#}"),
            });
            return c;
        }
    };
    c.commit = Some(commit.clone());
    let m = match load_at(&args.live.dir, &commit) {
        Ok(Some(m)) => m,
        Ok(None) => {
            c.outcome = Outcome::Invalid;
            return c;
        }
        Err(e) => {
            c.message = Some(format!("{e:#}"));
            return c;
        }
    };
    let mut at_commit = g.clone();
    at_commit.git_ref = Some(commit);
    let apply_args = apply_cmd::Args {
        live: args.live.clone(),
        plan: None,
        // Unattended by nature: the review happened on the pull request that moved the branch.
        auto_approve: true,
        allow_delete: args.allow_delete,
        skip_promotion_check: false,
        parallelism: args.parallelism,
        accounts_at_once: args.accounts_at_once,
    };
    match apply_cmd::apply(&at_commit, &apply_args, &m, None, stop).await {
        Ok((_, applied)) => {
            c.applied = applied.done();
            match applied {
                Applied::NoChanges { gate, conflict, .. } => {
                    c.outcome = gated(&conflict, &gate, Outcome::InSync);
                    c.message = conflict.or(gate.as_ref().map(Held::message));
                    c.pending = gate.map(|h| h.pending).unwrap_or_default();
                }
                Applied::Applied {
                    report,
                    gate,
                    conflict,
                } if report.failures.is_empty() => {
                    c.outcome = gated(&conflict, &gate, Outcome::Applied);
                    c.message = conflict.or(gate.as_ref().map(Held::message));
                    c.pending = gate.map(|h| h.pending).unwrap_or_default();
                }
                Applied::Applied { report, .. } => {
                    c.outcome = Outcome::Failed;
                    let failures: Vec<String> = report
                        .failures
                        .iter()
                        .map(|f| {
                            let instances: Vec<String> = f
                                .instances
                                .iter()
                                .map(|i| format!("{} {}: {}", i.account, i.region, i.reason))
                                .collect();
                            let mut line = format!("{} {}: {}", f.stack_set, f.step, f.message);
                            if !instances.is_empty() {
                                line.push_str(&format!(" ({})", instances.join("; ")));
                            }
                            line
                        })
                        .collect();
                    c.message = Some(failures.join("; "));
                }
                Applied::Refused(why) => {
                    c.outcome = Outcome::Refused;
                    c.message = Some(why);
                }
                other => {
                    c.outcome = if matches!(other, Applied::Interrupted { .. }) {
                        Outcome::Interrupted
                    } else {
                        Outcome::Error
                    };
                    c.message = Some(failure(&other));
                }
            }
        }
        Err(e) => {
            c.outcome = Outcome::Error;
            c.message = Some(format!("{e:#}"));
        }
    }
    c
}

/// A tick that met no failure: a conflict, changes left at a manual gate, or `otherwise`.
fn gated(conflict: &Option<String>, gate: &Option<Held>, otherwise: Outcome) -> Outcome {
    if conflict.is_some() {
        Outcome::Conflict
    } else if gate.as_ref().is_some_and(|h| h.changes() > 0) {
        Outcome::PendingApproval
    } else {
        otherwise
    }
}

/// `git fetch` of one branch. The git command line, not libgit2: it brings the user's
/// credential helpers, SSH agent and proxy settings, which a server-side loop depends on.
async fn fetch(workdir: &Path, remote: &str, branch: &str) -> Result<()> {
    let refspec = format!("+refs/heads/{branch}:refs/remotes/{remote}/{branch}");
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(workdir)
        .args(["fetch", "--quiet", "--no-tags", remote, &refspec])
        .env("GIT_TERMINAL_PROMPT", "0")
        // Stopping the loop must not leave a hung fetch behind.
        .kill_on_drop(true)
        .output()
        .await
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "git fetch {remote} {branch}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The commit the followed branch points at now.
fn head_of(dir: &Path, branch: &str, remote: Option<&str>) -> Result<String> {
    let repo = estate::source::open_repository(dir)?;
    let name = match remote {
        Some(r) => format!("refs/remotes/{r}/{branch}"),
        None => format!("refs/heads/{branch}"),
    };
    let commit = repo
        .find_reference(&name)
        .and_then(|r| r.peel_to_commit())
        .with_context(|| format!("no branch {name}"))?;
    Ok(commit.id().to_string())
}

/// The manifest at `commit`; its diagnostics printed; `None` when it does not validate.
fn load_at(dir: &Path, commit: &str) -> Result<Option<Manifest>> {
    let source = ManifestSource::git_ref(dir, commit)?;
    let Loaded {
        manifest,
        diagnostics,
    } = manifest::load(&source);
    if diagnostics.has_errors() {
        eprint!("{}", diagnostics.render(color_enabled(&std::io::stderr())));
        return Ok(None);
    }
    Ok(manifest)
}
