//! `estate validate`, `estate plan` and `estate drift`: the manifest checked offline, or
//! planned against live state and printed.

use super::context::{
    Acting, Format, Global, LiveArgs, color_enabled, connect, exit, load_valid, open_source,
    polling, render_plan, runtime, unknown_env,
};
use anyhow::{Context, Result};
use estate::manifest::{self, Loaded};
use estate::render::{self, Mode};
use std::io::Write;
use std::path::Path;

pub(super) fn validate(g: &Global, dir: &Path) -> Result<i32> {
    let source = open_source(g, dir)?;
    let Loaded {
        manifest,
        diagnostics,
    } = manifest::load(&source);
    let mut out = std::io::stdout().lock();
    match g.format {
        Format::Json => {
            let report = serde_json::json!({
                "valid": !diagnostics.has_errors(),
                "path": dir.display().to_string(),
                "commit": source.commit,
                "diagnostics": diagnostics.items,
            });
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text | Format::Markdown => {
            if !diagnostics.items.is_empty() && (!g.quiet || diagnostics.has_errors()) {
                eprint!("{}", diagnostics.render(color_enabled(&std::io::stderr())));
            }
            if let Some(m) = &manifest {
                if !g.quiet {
                    writeln!(
                        out,
                        "{} is valid: estate `{}`, {} unit{}, {} account{}, {} environment{}, {} stack set{}, {} portfolio{}, {} pipeline{}, {} template{} ({})",
                        dir.display(),
                        m.name(),
                        m.units().len(),
                        plural(m.units().len()),
                        m.accounts().len(),
                        plural(m.accounts().len()),
                        m.environments.len(),
                        plural(m.environments.len()),
                        m.stack_sets.len(),
                        plural(m.stack_sets.len()),
                        m.portfolios.len(),
                        plural(m.portfolios.len()),
                        m.pipelines.len(),
                        plural(m.pipelines.len()),
                        m.templates.len(),
                        plural(m.templates.len()),
                        diagnostics.summary()
                    )
                    .context("writing output")?;
                }
            } else {
                eprintln!("{} is invalid: {}", dir.display(), diagnostics.summary());
            }
        }
    }
    Ok(if diagnostics.has_errors() {
        exit::ERROR
    } else {
        exit::OK
    })
}

pub(super) fn plan(g: &Global, args: &LiveArgs, out: Option<&Path>, mode: Mode) -> Result<i32> {
    show(g, args, out, mode, false)
}

/// Reads live state (after resource drift detection on the managed stack sets in scope, when
/// `detect`), plans, and prints the plan or its drift view.
pub(super) fn show(
    g: &Global,
    args: &LiveArgs,
    out: Option<&Path>,
    mode: Mode,
    detect: bool,
) -> Result<i32> {
    let m = load_valid(g, &args.dir)?;
    if let Some(usage) = unknown_env(&m, &args.envs) {
        eprintln!("error: {usage}");
        return Ok(exit::USAGE);
    }
    let rt = runtime()?;
    let mut failed_detections = std::collections::BTreeMap::new();
    let (plan, aws, floor) = rt.block_on(async {
        let aws = connect(&m, args, Acting::Reading).await?;
        let opts = estate::plan::read_options(&m);
        let mut live = estate::live::read::read(&aws, &opts).await?;
        let floor = estate::live::floor::floor(&opts, &live);
        if detect {
            let envs = estate::plan::environments(&m, &args.envs)?;
            let names: Vec<String> = live
                .stack_sets
                .iter()
                .filter(|(_, s)| {
                    s.tags.get(estate::tags::TAG_MANAGED_BY).map(String::as_str) == Some(m.name())
                        && s.tags
                            .get(estate::tags::TAG_ENVIRONMENT)
                            .is_some_and(|e| envs.contains(e))
                })
                .map(|(name, _)| name.clone())
                .collect();
            let region = &m.estate.spec.home_region;
            let detections = estate::live::drift::detect(&aws, region, &names, polling()).await?;
            estate::live::drift::refresh(&aws, region, &mut live, &detections.operations).await?;
            failed_detections = detections.failed;
        }
        let plan = estate::plan::make(&m, &live, &args.envs)?;
        anyhow::Ok((plan, aws, floor))
    })?;
    let mut plan = match mode {
        Mode::Plan => plan,
        Mode::Drift => estate::plan::drift_view(&plan),
    };
    let stats = aws.stats().snapshot();
    // Stats go under `stats` in JSON; terminal and comment readers get them on stderr.
    if args.stats {
        plan.stats = Some(stats.clone());
    }
    if let Some(path) = out {
        std::fs::write(path, render::json(&plan))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if g.format != Format::Json {
        plan.stats = None;
    }
    let rendered = render_plan(g.format, &plan, mode);
    std::io::stdout().write_all(rendered.as_bytes())?;
    if args.stats {
        eprint!("{}", estate::live::floor::stats_lines(&stats, &floor));
    }
    // The report is printed whole; a stack set that could not be checked makes it incomplete.
    for (set, why) in &failed_detections {
        eprintln!("error: resource drift of {set} is unknown: {why}");
    }
    if !failed_detections.is_empty() {
        return Ok(exit::ERROR);
    }
    let drift = mode == Mode::Drift && !plan.findings.is_empty();
    // A conflict is never "no changes": live does not match, and apply will stop there.
    Ok(
        if !plan.changes.is_empty() || drift || !plan.conflicts.is_empty() {
            exit::CHANGES
        } else {
            exit::OK
        },
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
