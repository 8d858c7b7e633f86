//! The `estate` command line: parsing, dispatch, and the context every command shares
//! (loading the manifest, connecting to AWS, rendering); outcomes become output and the
//! contract's exit codes here, and only here.

mod apply;
mod context;
mod import;
mod plan;
mod progress;
mod reconcile;
mod signals;
mod unlock;
mod watch;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use context::{Global, LiveArgs, color_enabled, exit};
use estate::manifest::schema;
use estate::render::Mode;
use plan::{plan, show, validate};
use std::io::Write;
use std::path::PathBuf;

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
        /// Accounts created (or moved) at once; AWS allows 5 creations in progress per
        /// organization, so leave room when other tools create accounts too.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=5))]
        accounts_at_once: u8,
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
    /// Show the apply locks of this estate; remove stale ones, or with --force the one named.
    /// Exit 0: none left in the way; 1: a live lock was left (pass --force if its apply died).
    Unlock {
        #[command(flatten)]
        live: LiveArgs,
        /// The lock's scope: an environment, or `organization`.
        #[arg(long)]
        scope: Option<String>,
        /// Remove the lock of --scope even though its holder still looks alive.
        #[arg(long, requires = "scope")]
        force: bool,
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
        #[arg(long, default_value = "5m", value_parser = reconcile::parse_duration)]
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
        /// Accounts created (or moved) at once; AWS allows 5 creations in progress per
        /// organization, so leave room when other tools create accounts too.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=5))]
        accounts_at_once: u8,
    },
    /// Read the live organization and write a manifest folder for it (estate.yaml, the
    /// organization, environments inferred from the stack instances, stack sets and their
    /// templates as AWS returns them) that plans no change. Exit 0: written; 1: error.
    Import {
        /// The folder to write (created when missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The Estate's name (default: the folder's).
        #[arg(long)]
        name: Option<String>,
        /// Import only this unit and those below it (repeatable); it becomes the Estate's scope.
        #[arg(long = "unit", value_name = "PATH")]
        units: Vec<String>,
        /// Import only stack sets whose names match (repeatable; `*` any characters); the
        /// patterns become the Estate's scope.
        #[arg(long = "stack-set", value_name = "PATTERN")]
        stack_sets: Vec<String>,
        /// Also import the Service Catalog portfolios whose display names match (repeatable;
        /// `*` any characters), with their products, versions (templates as AWS returns
        /// them), tag options, principals, launch roles and shares. None without it.
        #[arg(long = "portfolio", value_name = "PATTERN")]
        portfolios: Vec<String>,
        /// The portfolios' hub: an account id or AWS account name (default: the management
        /// account), entered through the member role as plan does.
        #[arg(
            long = "portfolio-account",
            value_name = "ACCOUNT",
            requires = "portfolios"
        )]
        portfolio_account: Option<String>,
        /// The role to enter member accounts through (portfolio hubs and recipients); a role
        /// other than the default is written as the Estate's `memberRole`.
        #[arg(long, value_name = "ROLE", default_value = import::DEFAULT_MEMBER_ROLE)]
        member_role: String,
        /// AWS profile; it wins over keys in the environment.
        #[arg(long, env = "AWS_PROFILE")]
        profile: Option<String>,
        /// The region stack sets are administered in: the Estate's homeRegion.
        #[arg(long)]
        region: Option<String>,
        /// Write over an existing estate.yaml.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script: `estate completions bash > /etc/bash_completion.d/estate`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `estate man > /usr/local/share/man/man1/estate.1`.
    Man,
    /// Print the JSON Schema of manifest documents (for editors and CI), or with --plan of the
    /// JSON plan.
    Schema {
        /// The schema of the JSON plan (`plan --format json`) instead.
        #[arg(long)]
        plan: bool,
        /// Print the schema generated from this build's model instead of the published one.
        #[arg(long, hide = true)]
        generate: bool,
    },
}

pub fn run() -> i32 {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let cli = match parsed {
        Ok((matches, cli)) => {
            if let Some(why) = misplaced(&matches) {
                eprintln!("error: {why}");
                return exit::USAGE;
            }
            cli
        }
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

/// A flag given to a command it does nothing for: a usage error rather than silently ignored.
/// The global flags are accepted everywhere by the parser; here each says where it acts.
fn misplaced(matches: &clap::ArgMatches) -> Option<String> {
    let (command, sub) = matches.subcommand()?;
    let given = |id: &str| {
        sub.try_get_raw(id).is_ok_and(|v| v.is_some())
            && sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    };
    let unused: &[(&str, &[&str])] = &[
        // watch follows the working tree, reconcile its branch.
        (
            "git_ref",
            &["watch", "reconcile", "completions", "man", "schema"],
        ),
        ("format", &["unlock", "completions", "man", "schema"]),
        ("stats", &["watch", "reconcile", "unlock"]),
    ];
    unused
        .iter()
        .find(|(id, commands)| commands.contains(&command) && given(id))
        .map(|(id, _)| {
            format!(
                "--{} does nothing for `estate {command}`",
                id.replace('_', "-")
            )
        })
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
            accounts_at_once,
        } => apply::run(
            &cli.global,
            &apply::Args {
                live,
                plan,
                auto_approve,
                allow_delete,
                skip_promotion_check,
                parallelism: usize::from(parallelism),
                accounts_at_once: usize::from(accounts_at_once),
            },
        ),
        Command::Watch { live, debounce } => {
            watch::watch(&cli.global, &watch::WatchArgs { live, debounce })
        }
        Command::Reconcile {
            live,
            branch,
            remote,
            interval,
            once,
            allow_delete,
            parallelism,
            accounts_at_once,
        } => reconcile::reconcile(
            &cli.global,
            &reconcile::ReconcileArgs {
                live,
                branch,
                remote,
                interval,
                once,
                allow_delete,
                parallelism: usize::from(parallelism),
                accounts_at_once: usize::from(accounts_at_once),
            },
        ),
        Command::Unlock { live, scope, force } => {
            unlock::run(&cli.global, &unlock::Args { live, scope, force })
        }
        Command::Import {
            dir,
            name,
            units,
            stack_sets,
            portfolios,
            portfolio_account,
            member_role,
            profile,
            region,
            force,
        } => import::run(
            &cli.global,
            &import::Args {
                dir,
                name,
                units,
                stack_sets,
                portfolios,
                portfolio_account,
                member_role,
                profile,
                region,
                force,
            },
        ),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "estate", &mut out);
            std::io::stdout().write_all(&out)?;
            Ok(exit::OK)
        }
        Command::Man => {
            let mut out = Vec::new();
            man_page(&mut out)?;
            std::io::stdout().write_all(&out)?;
            Ok(exit::OK)
        }
        Command::Schema { plan, generate } => {
            let text = match (plan, generate) {
                (false, true) => schema::generate_text(),
                (false, false) => schema::PUBLISHED.to_string(),
                (true, true) => estate::plan::schema::generate_text(),
                (true, false) => estate::plan::schema::PUBLISHED.to_string(),
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(exit::OK)
        }
    }
}

/// estate(1), with a section per subcommand (its options and exit codes as `--help` says
/// them) and the exit codes of the contract.
fn man_page(out: &mut Vec<u8>) -> std::io::Result<()> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        let mut roff = clap_mangen::roff::Roff::new();
        roff.control("SH", [format!("ESTATE {}", name.to_uppercase()).as_str()]);
        out.extend_from_slice(roff.to_roff().as_bytes());
        let sub = sub.clone().bin_name(format!("estate {name}"));
        let man = clap_mangen::Man::new(sub);
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
    }
    let mut roff = clap_mangen::roff::Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([clap_mangen::roff::roman(
        "0 success (plan: no changes; drift: clean; reconcile --once: in sync or applied); \
         1 error, invalid manifest, refusal, conflict or failed instances; \
         2 plan: changes or conflicts, drift: drift, reconcile --once: changes pending approval; \
         64 usage error.",
    )]);
    out.extend_from_slice(roff.to_roff().as_bytes());
    man.render_version_section(out)?;
    Ok(())
}

/// `300ms` or `2s`.
fn parse_millis(text: &str) -> Result<std::time::Duration, String> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms
            .parse()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("`{text}` is not a duration such as 300ms or 2s"));
    }
    reconcile::parse_duration(text)
}
