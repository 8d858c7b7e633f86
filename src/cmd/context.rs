//! What every command shares: exit codes, the global and live-state arguments, loading the
//! manifest, connecting to AWS, rendering a plan.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use estate::manifest::{self, Loaded, Manifest};
use estate::render::{self, Mode};
use estate::source::ManifestSource;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Exit codes of the contract.
pub(crate) mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    /// `plan`: there are changes; `drift`: there is drift.
    pub const CHANGES: i32 = 2;
    pub const USAGE: i32 = 64;
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
    pub(crate) verbose: u8,
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
    /// AWS profile; it wins over keys in the environment (default: the standard credential chain).
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

/// Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
pub(crate) fn color_enabled(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) fn open_source(g: &Global, dir: &Path) -> Result<ManifestSource> {
    Ok(match &g.git_ref {
        Some(r) => ManifestSource::git_ref(dir, r)?,
        None => ManifestSource::work_tree(dir)?,
    })
}

/// How a command acts in member accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acting {
    /// Reads only (`plan`, `drift`, `watch`): through `readRole` when the Estate names one.
    Reading,
    /// Reads and writes (`apply`, `reconcile`, `unlock`): through `memberRole`.
    Writing,
}

/// The AWS edge for a manifest: the given profile and region, or the Estate's home region;
/// member accounts entered through the role `acting` calls for.
pub(crate) async fn connect(
    m: &Manifest,
    args: &LiveArgs,
    acting: Acting,
) -> Result<estate::aws::Aws> {
    let spec = &m.estate.spec;
    let role = match (acting, &spec.read_role) {
        (Acting::Reading, Some(read)) => read,
        _ => &spec.member_role,
    };
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
    let polling = polling();
    Ok(
        estate::aws::Aws::from_env(args.profile.as_deref(), Some(&region), role)
            .await?
            .with_reach_retry(estate::aws::ReachRetry {
                initial: polling.initial,
                max: polling.max,
                budget: estate::aws::DEFAULT_REACH_BUDGET,
            }),
    )
}

/// An `--env` the manifest does not define, said with the closest one: a usage error, found
/// before anything connects to AWS.
pub(crate) fn unknown_env(m: &Manifest, envs: &[String]) -> Option<String> {
    let known: Vec<&str> = m
        .environments_in_order()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let wrong = envs.iter().find(|e| !known.contains(&e.as_str()))?;
    Some(match estate::diag::closest(wrong, known.iter().copied()) {
        Some(near) => format!("unknown environment `{wrong}`; did you mean `{near}`?"),
        None => format!(
            "unknown environment `{wrong}`; the manifest has {}",
            known.join(", ")
        ),
    })
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

/// Poll intervals; `ESTATE_POLL_MS` shortens them (tests, emulators answer at once).
pub(crate) fn polling() -> estate::apply::Polling {
    let mut p = estate::apply::Polling::default();
    if let Some(ms) = std::env::var("ESTATE_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        p.initial = std::time::Duration::from_millis(ms);
        p.max = std::time::Duration::from_millis(ms.max(1) * 8);
    }
    p
}
