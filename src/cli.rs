//! Command-line parsing and dispatch; maps outcomes to the contract's exit codes.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use estate::manifest::{self, Loaded, schema};
use estate::source::ManifestSource;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Exit codes of the contract.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
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

#[derive(Debug, Args)]
struct Global {
    /// Read the manifest from this commit of the enclosing Git repository instead of the working tree.
    #[arg(long, global = true, value_name = "REF")]
    git_ref: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// More logging (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
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
fn color_enabled(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Validate { dir } => validate(&cli.global, &dir),
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
