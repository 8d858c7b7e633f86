//! The GitOps loop: `estate reconcile` follows a Git branch and converges AWS to it on every
//! tick; `estate watch` re-plans whenever a manifest or template file changes.

use crate::apply_cmd::{self, Interrupted, Refusal, Stop, stop_on_signals, stopped};
use crate::cli::{Format, Global, LiveArgs, color_enabled, connect, exit, render_plan, runtime};
use anyhow::{Context, Result, anyhow, bail};
use estate::manifest::{self, Loaded, Manifest};
use estate::render::Mode;
use estate::source::ManifestSource;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct ReconcileArgs {
    pub live: LiveArgs,
    pub branch: String,
    pub remote: Option<String>,
    pub interval: Duration,
    pub once: bool,
    pub allow_delete: bool,
    pub parallelism: usize,
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
}

impl Outcome {
    fn ok(self) -> bool {
        matches!(self, Outcome::InSync | Outcome::Applied)
    }
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Cycle {
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
}

pub fn reconcile(g: &Global, args: &ReconcileArgs) -> Result<i32> {
    if g.git_ref.is_some() {
        bail!("reconcile follows --branch; --git-ref does not apply to it");
    }
    let repo = git2::Repository::discover(&args.live.dir).with_context(|| {
        format!(
            "reconcile needs {} to be inside a Git repository",
            args.live.dir.display()
        )
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
                return Ok(if cycle.outcome.ok() {
                    exit::OK
                } else {
                    exit::ERROR
                });
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
        branch,
        commit: None,
        outcome: Outcome::Error,
        applied: 0,
        message: None,
        fetch_error: None,
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
    };
    match apply_cmd::apply(&at_commit, &apply_args, &m, stop).await {
        Ok(applied) => {
            c.message = applied.conflict.clone().or_else(|| applied.gate.clone());
            let conflict = applied.conflict.is_some();
            match applied.report {
                None if conflict => c.outcome = Outcome::Conflict,
                None => c.outcome = Outcome::InSync,
                Some(report) => {
                    c.applied = report.done.len();
                    if report.failures.is_empty() {
                        c.outcome = if conflict {
                            Outcome::Conflict
                        } else {
                            Outcome::Applied
                        };
                    } else {
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
                }
            }
        }
        Err(e) => {
            c.applied = e
                .downcast_ref::<apply_cmd::PartlyApplied>()
                .map_or(0, |p| p.done);
            c.outcome = if e.downcast_ref::<Refusal>().is_some() {
                Outcome::Refused
            } else if e.downcast_ref::<Interrupted>().is_some() {
                Outcome::Interrupted
            } else {
                Outcome::Error
            };
            c.message = Some(format!("{e:#}"));
        }
    }
    c
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
    let repo = git2::Repository::discover(dir)?;
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

pub struct WatchArgs {
    pub live: LiveArgs,
    pub debounce: Duration,
}

/// Re-plans on every change to the manifest folder or a template it uses, until stopped.
pub fn watch(g: &Global, args: &WatchArgs) -> Result<i32> {
    if g.git_ref.is_some() {
        bail!("watch follows the working tree; --git-ref does not apply to it");
    }
    let dir = std::fs::canonicalize(&args.live.dir)
        .with_context(|| format!("{} is not a directory", args.live.dir.display()))?;
    let rt = runtime()?;
    rt.block_on(async {
        let stop = stop_on_signals();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |e| {
            let _ = tx.send(e);
        })
        .context("starting the file watcher")?;
        use notify::Watcher;
        watcher
            .watch(&dir, notify::RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
        let mut changed: BTreeSet<PathBuf> = BTreeSet::new();
        loop {
            let heading = if changed.is_empty() {
                "planning".to_string()
            } else {
                let files: Vec<String> = changed
                    .iter()
                    .map(|p| {
                        p.strip_prefix(&dir)
                            .unwrap_or(p)
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                format!("changed: {}; re-planning", files.join(", "))
            };
            if g.format != Format::Json {
                eprintln!("── {heading}");
            }
            if let Some(m) = round(g, &args.live).await {
                // Templates outside the folder (`../templates/x.yaml`) are watched too.
                for rel in m.templates.keys() {
                    let Some(parent) = dir.join(rel).parent().map(Path::to_path_buf) else {
                        continue;
                    };
                    let parent = std::fs::canonicalize(&parent).unwrap_or(parent);
                    if parent.starts_with(&dir) || watched.contains(&parent) {
                        continue;
                    }
                    // Recorded only once watched: a folder that cannot be yet is tried again.
                    match watcher.watch(&parent, notify::RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            watched.insert(parent);
                        }
                        Err(e) => tracing::warn!("cannot watch {}: {e}", parent.display()),
                    }
                }
            }
            if g.format != Format::Json {
                eprintln!("── watching {} for changes (Ctrl-C to stop)", dir.display());
            }
            changed.clear();
            // Wait for a relevant change, then let a burst of saves settle.
            loop {
                tokio::select! {
                    e = rx.recv() => match e {
                        Some(Ok(event)) => changed.extend(relevant(&event, &dir)),
                        Some(Err(e)) => tracing::warn!("file watcher: {e}"),
                        None => bail!("the file watcher stopped"),
                    },
                    _ = stopped(stop.clone()) => return Ok(exit::OK),
                }
                if !changed.is_empty() {
                    break;
                }
            }
            // Only relevant events extend the wait: reads and build churn must not hold it off.
            let mut quiet_until = tokio::time::Instant::now() + args.debounce;
            loop {
                tokio::select! {
                    e = rx.recv() => if let Some(Ok(event)) = e {
                        let more = relevant(&event, &dir);
                        if !more.is_empty() {
                            changed.extend(more);
                            quiet_until = tokio::time::Instant::now() + args.debounce;
                        }
                    },
                    _ = tokio::time::sleep_until(quiet_until) => break,
                    _ = stopped(stop.clone()) => return Ok(exit::OK),
                }
            }
        }
    })
}

/// The files an event touched that can change the plan: not reads, not VCS or build output
/// under the manifest folder, not editors' swap, backup and probe files.
fn relevant(event: &notify::Event, dir: &Path) -> Vec<PathBuf> {
    use notify::EventKind;
    if !matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    ) {
        return Vec::new();
    }
    event
        .paths
        .iter()
        .filter(|p| {
            // Folders above the manifest may have any name (`~/target/infra` is fine).
            let inside = p.strip_prefix(dir).unwrap_or(p);
            let generated = inside
                .components()
                .any(|c| matches!(c.as_os_str().to_str(), Some(".git" | "target" | ".venv")));
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            let scratch = name.starts_with('.')
                || name.ends_with('~')
                || name.ends_with(".swp")
                || name.ends_with(".swx")
                || name.ends_with(".tmp")
                || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()));
            !generated && !scratch
        })
        .cloned()
        .collect()
}

/// Validates and plans once, printing what `estate plan` would; `None` when invalid. Errors
/// are printed, never fatal: the next change gets another try.
async fn round(g: &Global, live: &LiveArgs) -> Option<Manifest> {
    let source = match ManifestSource::work_tree(&live.dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    let m = match crate::cli::load_checked(g, &source) {
        Ok(m) => m,
        Err(summary) => {
            eprintln!("{} is invalid: {summary}", live.dir.display());
            return None;
        }
    };
    let planned = async {
        let aws = connect(&m, live).await?;
        let state = estate::live::read::read(&aws, &estate::plan::read_options(&m)).await?;
        anyhow::Ok(estate::plan::make(&m, &state, &live.envs)?)
    }
    .await;
    match planned {
        Ok(plan) => {
            let text = match g.format {
                // One line per plan, so a reader of the stream can split them.
                Format::Json => format!("{}\n", serde_json::to_string(&plan).unwrap_or_default()),
                format => render_plan(format, &plan, Mode::Plan),
            };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        Err(e) => eprintln!("error: {e:#}"),
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, EventKind, ModifyKind};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        let mut e = notify::Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn only_changes_to_real_files_count() {
        let dir = Path::new("/home/me/target/platform");
        let modify = EventKind::Modify(ModifyKind::Any);
        let got = relevant(
            &event(
                modify,
                &[
                    "/home/me/target/platform/stacksets.yaml",
                    "/home/me/target/platform/.stacksets.yaml.swp",
                    "/home/me/target/platform/stacksets.yaml~",
                    "/home/me/target/platform/4913",
                    "/home/me/target/platform/.git/index",
                    "/home/me/target/platform/target/debug/x",
                    "/home/me/templates/role.yaml",
                ],
            ),
            dir,
        );
        assert_eq!(
            got,
            [
                PathBuf::from("/home/me/target/platform/stacksets.yaml"),
                PathBuf::from("/home/me/templates/role.yaml"),
            ]
        );
        let read = event(
            EventKind::Access(AccessKind::Any),
            &["/home/me/target/platform/stacksets.yaml"],
        );
        assert!(relevant(&read, dir).is_empty());
        let created = event(
            EventKind::Create(CreateKind::File),
            &["/home/me/target/platform/new.yaml"],
        );
        assert_eq!(relevant(&created, dir).len(), 1);
    }
}
