//! Command-line parsing and dispatch; maps outcomes to the contract's exit codes.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use estate::manifest::{self, Loaded, Manifest, schema};
use estate::render::{self, Mode};
use estate::source::ManifestSource;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Exit codes of the contract.
pub(crate) mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    /// `plan`: there are changes; `drift`: there is drift.
    pub const CHANGES: i32 = 2;
    pub const USAGE: i32 = 64;
}

#[derive(Debug, Parser)]
#[command(
    name = "estate",
    version,
    about = "Declarative GitOps reconciler for multi-account AWS machine-learning platforms",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Read the manifest from this commit of the enclosing Git repository instead of the working tree.
    #[arg(long, global = true, value_name = "REF")]
    pub(crate) git_ref: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// More logging (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

/// Arguments of commands that read live AWS state.
#[derive(Debug, Clone, Args)]
pub(crate) struct LiveArgs {
    /// The manifest folder (holding estate.yaml).
    #[arg(default_value = ".")]
    pub(crate) dir: PathBuf,
    /// Limit to these environments (repeatable); organization changes are always included.
    #[arg(long = "env", value_name = "ENV")]
    pub(crate) envs: Vec<String>,
    /// AWS API calls by operation, on stderr at the end (and under `stats` in JSON).
    #[arg(long)]
    pub(crate) stats: bool,
    /// AWS profile (default: the standard credential chain).
    #[arg(long, env = "AWS_PROFILE")]
    pub(crate) profile: Option<String>,
    /// Region for the AWS clients (default: the Estate's homeRegion).
    #[arg(long)]
    pub(crate) region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the manifest offline: YAML, schema, references, templates. No AWS calls.
    Validate {
        /// The manifest folder (holding estate.yaml).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Read live AWS state, diff it with the manifest and show the plan.
    /// Exit 0: no changes; 2: changes or conflicts; 1: error.
    Plan {
        #[command(flatten)]
        live: LiveArgs,
        /// Also write the plan as JSON to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Converge AWS to the manifest, environments in promotion order.
    /// Exit 0: done; 1: error, refusal or failed instances.
    Apply {
        #[command(flatten)]
        live: LiveArgs,
        /// Apply exactly this saved plan (`plan --out`), refusing if live changed since.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Do not ask for confirmation (required without a terminal).
        #[arg(long)]
        auto_approve: bool,
        /// Allow deletes in protected environments.
        #[arg(long)]
        allow_delete: bool,
        /// Apply an environment even though an earlier promotion stage has pending changes.
        #[arg(long)]
        skip_promotion_check: bool,
        /// Stack sets worked on at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
    /// Compare live AWS state with the manifest: out-of-band changes, orphans, conflicts.
    /// Exit 0: clean; 2: drift; 1: error.
    Drift {
        #[command(flatten)]
        live: LiveArgs,
        /// Skip resource drift detection (DetectStackSetDrift); report only what the last
        /// detection found.
        #[arg(long)]
        no_detect: bool,
    },
    /// Re-plan whenever a manifest or template file changes, until Ctrl-C.
    Watch {
        #[command(flatten)]
        live: LiveArgs,
        /// Quiet time after a change before re-planning, so a burst of saves plans once.
        #[arg(long, default_value = "300ms", value_parser = parse_millis)]
        debounce: std::time::Duration,
    },
    /// The GitOps loop: follow a branch and converge AWS to it on every tick (environments in
    /// promotion order, stopping before `approval: manual` ones unless named with --env).
    /// With --once, exit 0: in sync or applied; 1: failed, refused, invalid or error.
    Reconcile {
        #[command(flatten)]
        live: LiveArgs,
        /// The branch to follow.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Fetch the branch from this remote on every tick (without it, the local branch is
        /// followed: something else updates it).
        #[arg(long, value_name = "REMOTE")]
        remote: Option<String>,
        /// Time between ticks: 30s, 5m, 1h.
        #[arg(long, default_value = "5m", value_parser = crate::gitops::parse_duration)]
        interval: std::time::Duration,
        /// One tick, then exit (for cron or CI).
        #[arg(long)]
        once: bool,
        /// Allow deletes in protected environments.
        #[arg(long)]
        allow_delete: bool,
        /// Stack sets worked on at once.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallelism: u16,
    },
    /// Print the JSON Schema of manifest documents (for editors and CI).
    Schema {
        /// Print the schema generated from this build's model instead of the published one.
        #[arg(long, hide = true)]
        generate: bool,
    },
}

pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    init_logging(&cli.global);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ERROR
        }
    }
}

fn init_logging(g: &Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ESTATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("estate={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color_enabled(&std::io::stderr()))
        .try_init();
}

/// Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
pub(crate) fn color_enabled(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Validate { dir } => validate(&cli.global, &dir),
        Command::Plan { live, out } => plan(&cli.global, &live, out.as_deref(), Mode::Plan),
        // Drift runs resource drift detection first, unless told not to.
        Command::Drift { live, no_detect } => {
            show(&cli.global, &live, None, Mode::Drift, !no_detect)
        }
        Command::Apply {
            live,
            plan,
            auto_approve,
            allow_delete,
            skip_promotion_check,
            parallelism,
        } => crate::apply_cmd::run(
            &cli.global,
            &crate::apply_cmd::Args {
                live,
                plan,
                auto_approve,
                allow_delete,
                skip_promotion_check,
                parallelism: usize::from(parallelism),
            },
        ),
        Command::Watch { live, debounce } => {
            crate::gitops::watch(&cli.global, &crate::gitops::WatchArgs { live, debounce })
        }
        Command::Reconcile {
            live,
            branch,
            remote,
            interval,
            once,
            allow_delete,
            parallelism,
        } => crate::gitops::reconcile(
            &cli.global,
            &crate::gitops::ReconcileArgs {
                live,
                branch,
                remote,
                interval,
                once,
                allow_delete,
                parallelism: usize::from(parallelism),
            },
        ),
        Command::Schema { generate } => {
            let text = if generate {
                schema::generate_text()
            } else {
                schema::PUBLISHED.to_string()
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(exit::OK)
        }
    }
}

/// `300ms` or `2s`.
fn parse_millis(text: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("`{text}` is not a duration such as 300ms or 2s"));
    }
    crate::gitops::parse_duration(text)
}

fn open_source(g: &Global, dir: &Path) -> Result<ManifestSource> {
    Ok(match &g.git_ref {
        Some(r) => ManifestSource::git_ref(dir, r)?,
        None => ManifestSource::work_tree(dir)?,
    })
}

fn validate(g: &Global, dir: &Path) -> Result<i32> {
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

/// The AWS edge for a manifest: the given profile and region, or the Estate's home region.
pub(crate) async fn connect(m: &Manifest, args: &LiveArgs) -> Result<estate::aws::Aws> {
    let region = args
        .region
        .clone()
        .unwrap_or_else(|| m.estate.spec.home_region.clone());
    tracing::info!(
        "AWS region {region}{}",
        std::env::var("AWS_ENDPOINT_URL")
            .map(|e| format!(", endpoint {e}"))
            .unwrap_or_default()
    );
    let polling = crate::apply_cmd::polling();
    Ok(estate::aws::Aws::from_env(
        args.profile.as_deref(),
        Some(&region),
        &m.estate.spec.member_role,
    )
    .await?
    .with_reach_retry(estate::aws::ReachRetry {
        initial: polling.initial,
        max: polling.max,
        budget: estate::aws::DEFAULT_REACH_BUDGET,
    }))
}

/// Loads the manifest, or prints its diagnostics and fails.
pub(crate) fn load_valid(g: &Global, dir: &Path) -> Result<Manifest> {
    load_checked(g, &open_source(g, dir)?).map_err(|summary| {
        anyhow::anyhow!(
            "{} is invalid ({summary}); run `estate validate`",
            dir.display()
        )
    })
}

/// Loads the manifest from `source`, printing its diagnostics (warnings too, unless quiet);
/// the diagnostics' summary when it does not validate.
pub(crate) fn load_checked(g: &Global, source: &ManifestSource) -> Result<Manifest, String> {
    let Loaded {
        manifest,
        diagnostics,
    } = manifest::load(source);
    if !diagnostics.items.is_empty() && (!g.quiet || diagnostics.has_errors()) {
        eprint!("{}", diagnostics.render(color_enabled(&std::io::stderr())));
    }
    manifest
        .filter(|_| !diagnostics.has_errors())
        .ok_or_else(|| diagnostics.summary())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn plan(g: &Global, args: &LiveArgs, out: Option<&Path>, mode: Mode) -> Result<i32> {
    show(g, args, out, mode, false)
}

/// Reads live state (after resource drift detection on the managed stack sets in scope, when
/// `detect`), plans, and prints the plan or its drift view.
fn show(g: &Global, args: &LiveArgs, out: Option<&Path>, mode: Mode, detect: bool) -> Result<i32> {
    let m = load_valid(g, &args.dir)?;
    let rt = runtime()?;
    let mut failed_detections = std::collections::BTreeMap::new();
    let (plan, aws) = rt.block_on(async {
        let aws = connect(&m, args).await?;
        let opts = estate::plan::read_options(&m);
        let mut live = estate::live::read::read(&aws, &opts).await?;
        if detect {
            let envs = estate::plan::environments(&m, &args.envs)?;
            let names: Vec<String> = live
                .stack_sets
                .iter()
                .filter(|(_, s)| {
                    s.tags.get(estate::live::TAG_MANAGED_BY).map(String::as_str) == Some(m.name())
                        && s.tags
                            .get(estate::live::TAG_ENVIRONMENT)
                            .is_some_and(|e| envs.contains(e))
                })
                .map(|(name, _)| name.clone())
                .collect();
            let region = &m.estate.spec.home_region;
            let detections =
                estate::live::drift::detect(&aws, region, &names, crate::apply_cmd::polling())
                    .await?;
            estate::live::drift::refresh(&aws, region, &mut live, &detections.operations).await?;
            failed_detections = detections.failed;
        }
        let plan = estate::plan::make(&m, &live, &args.envs)?;
        anyhow::Ok((plan, aws))
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
        let total: u64 = stats.values().sum();
        eprintln!("AWS API calls: {total}");
        for (op, n) in &stats {
            eprintln!("  {op:<48} {n}");
        }
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

/// A plan (or its drift view) in the chosen format, coloured only on a terminal.
pub(crate) fn render_plan(format: Format, plan: &estate::plan::Plan, mode: Mode) -> String {
    match format {
        Format::Text => render::text(
            plan,
            &render::TextOptions {
                color: color_enabled(&std::io::stdout()),
                mode,
            },
        ),
        Format::Markdown => render::markdown_with(
            plan,
            &render::MarkdownOptions {
                mode,
                ..Default::default()
            },
        ),
        Format::Json => render::json(plan),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
