//! `estate apply`: runs one apply (`estate::apply::run`) with a terminal confirmation and
//! progress, and maps its outcome to output and exit codes.

use super::context::{
    Acting, Format, Global, LiveArgs, color_enabled, connect, exit, load_valid, polling, runtime,
    unknown_env,
};
use super::progress::reporter;
use super::signals::{Stop, stop_on_signals};
use anyhow::{Context, Result};
use estate::apply::Report;
use estate::apply::run::{self, Held, Outcome, Pending, Request};
use estate::aws::Aws;
use estate::manifest::Manifest;
use estate::plan::Plan;
use estate::render;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

pub struct Args {
    pub live: LiveArgs,
    pub plan: Option<PathBuf>,
    pub auto_approve: bool,
    pub allow_delete: bool,
    pub skip_promotion_check: bool,
    pub parallelism: usize,
    pub accounts_at_once: usize,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let m = load_valid(g, &args.live.dir)?;
    if let Some(usage) = unknown_env(&m, &args.live.envs) {
        eprintln!("error: {usage}");
        return Ok(exit::USAGE);
    }
    let saved = match &args.plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let plan: Plan = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an estate plan", path.display()))?;
            Some((path.display().to_string(), plan))
        }
        None => None,
    };
    let rt = runtime()?;
    let result = rt.block_on(async { apply(g, args, &m, saved, stop_on_signals()).await });
    // A prompt interrupted by a signal leaves its stdin read running: do not wait for it.
    rt.shutdown_background();
    let (aws, outcome) = result?;
    if let (true, Outcome::Applied { report, .. }) = (args.live.stats, &outcome) {
        let calls = aws.stats().snapshot();
        eprint!(
            "{}",
            estate::live::floor::stats_lines(&calls, &report.read_floor)
        );
    }
    print_outcome(g, outcome)
}

/// One apply of `m` (the CLI's, or a reconcile tick's with `auto_approve`).
pub(crate) async fn apply(
    g: &Global,
    args: &Args,
    m: &Manifest,
    saved: Option<(String, Plan)>,
    stop: Stop,
) -> Result<(Aws, Outcome)> {
    let aws = connect(m, &args.live, Acting::Writing).await?;
    let req = Request {
        saved,
        environments: args.live.envs.clone(),
        allow_delete: args.allow_delete,
        skip_promotion_check: args.skip_promotion_check,
        parallelism: args.parallelism,
        accounts_at_once: args.accounts_at_once,
        polling: polling(),
        holder: format!(
            "{}@{} pid {}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            hostname(),
            std::process::id()
        ),
    };
    let progress = reporter(g);
    let auto_approve = args.auto_approve;
    let outcome = run::run(
        &aws,
        m,
        &req,
        async move |plan: &Plan| confirm(plan, auto_approve).await,
        progress.as_ref(),
        stop,
    )
    .await?;
    Ok((aws, outcome))
}

/// `apply --format json`: one object whatever the outcome, for machines.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Output<'a> {
    format_version: u32,
    outcome: &'static str,
    #[serde(flatten)]
    report: &'a Report,
    /// Changes left at a manual gate, per environment.
    pending: &'a [Pending],
    message: Option<String>,
}

/// What the operator reads, and the exit code. A gate with changes behind it is
/// `pending-approval`: apply did all it may without `--env`, so it exits 0, but never says
/// live matches the manifest.
fn print_outcome(g: &Global, outcome: Outcome) -> Result<i32> {
    let empty = Report::default();
    let (word, code, report, gate, message) = match &outcome {
        Outcome::NoChanges { gate, conflict } => {
            let (word, code) = match (conflict, gate) {
                (Some(_), _) => ("conflict", exit::ERROR),
                (None, Some(h)) if h.changes() > 0 => ("pending-approval", exit::OK),
                (None, _) => ("no-changes", exit::OK),
            };
            (word, code, &empty, gate.as_ref(), conflict.clone())
        }
        Outcome::Applied {
            report,
            gate,
            conflict,
        } => {
            let (word, code) = match (conflict, gate) {
                _ if !report.failures.is_empty() => ("failed", exit::ERROR),
                (Some(_), _) => ("conflict", exit::ERROR),
                (None, Some(h)) if h.changes() > 0 => ("pending-approval", exit::OK),
                (None, _) => ("applied", exit::OK),
            };
            (word, code, report, gate.as_ref(), conflict.clone())
        }
        Outcome::Refused(why) => ("refused", exit::ERROR, &empty, None, Some(why.clone())),
        Outcome::Interrupted { .. } => (
            "interrupted",
            exit::ERROR,
            &empty,
            None,
            Some(failure(&outcome)),
        ),
        Outcome::PartlyApplied { .. } => {
            ("error", exit::ERROR, &empty, None, Some(failure(&outcome)))
        }
    };
    if g.format == Format::Json {
        let out = Output {
            format_version: estate::apply::REPORT_FORMAT_VERSION,
            outcome: word,
            report,
            pending: gate.map_or(&[], |h| h.pending.as_slice()),
            message: message.or_else(|| gate.map(Held::message)),
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(code);
    }
    match &outcome {
        Outcome::NoChanges { gate, conflict } => {
            match gate.as_ref().filter(|h| h.changes() > 0) {
                Some(h) => println!(
                    "Nothing to apply before `{}`; {} change{} pending approval.",
                    h.environment,
                    h.changes(),
                    if h.changes() == 1 { "" } else { "s" }
                ),
                None if conflict.is_none() => {
                    println!("No changes. Live state matches the manifest.")
                }
                None => {}
            }
            notes(gate.as_ref(), conflict.clone());
        }
        Outcome::Applied {
            report,
            gate,
            conflict,
        } => {
            for f in &report.failures {
                eprintln!("FAILED {} {}: {}", f.stack_set, f.step, f.message);
                for i in &f.instances {
                    eprintln!("  {} {} {}: {}", i.account, i.region, i.status, i.reason);
                }
            }
            println!("{}", sentence(report));
            notes(gate.as_ref(), conflict.clone());
        }
        Outcome::Refused(why) => eprintln!("refused: {why}"),
        other => eprintln!("error: {}", failure(other)),
    }
    Ok(code)
}

/// Prints the conflict (a refusal) or the manual gate.
fn notes(gate: Option<&Held>, conflict: Option<String>) {
    if let Some(conflict) = conflict {
        eprintln!("refused: {conflict}");
        return;
    }
    if let Some(gate) = gate {
        eprintln!("note: {}", gate.message());
    }
}

/// An interrupted or partly applied outcome, said with how much had been done: the reader
/// must know live moved.
pub(crate) fn failure(outcome: &Outcome) -> String {
    let what = match outcome {
        Outcome::Interrupted { started: true, .. } => {
            "interrupted; AWS operations already started continue; run estate apply again to converge".to_string()
        }
        Outcome::Interrupted { started: false, .. } => {
            "interrupted before anything was changed".into()
        }
        Outcome::PartlyApplied { error, .. } => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
        _ => return String::new(),
    };
    match outcome.done() {
        0 => what,
        done => format!(
            "{done} change{} applied before this: {what}",
            if done == 1 { "" } else { "s" }
        ),
    }
}

/// "Apply complete: 3 changes applied." / "Apply failed: 2 changes applied, 1 step failed."
pub(crate) fn sentence(report: &Report) -> String {
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

/// Shows the plan and asks, at a terminal; without one, only --auto-approve proceeds.
/// `Err` says why not.
async fn confirm(plan: &Plan, auto_approve: bool) -> Result<(), String> {
    if auto_approve {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(
            "no terminal to confirm the plan on; review it with `estate plan` and pass --auto-approve".into(),
        );
    }
    let text = render::text(
        plan,
        &render::TextOptions {
            color: color_enabled(&std::io::stderr()),
            mode: render::Mode::Plan,
        },
    );
    eprint!("{text}\nApply these changes? Only `yes` is accepted: ");
    let _ = std::io::stderr().flush();
    // Read off the async threads, so a signal can stop apply while it waits for an answer.
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer).map(|_| answer)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("could not read the answer: {e}"))?;
    if answer.trim() != "yes" {
        return Err("not confirmed; nothing was changed".into());
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
