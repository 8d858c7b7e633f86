//! `estate import`: reads the live organization and writes a manifest folder that plans no
//! change against it (the writer is `estate::import`; this file reads and writes files).

use super::context::{Global, exit, runtime};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// AWS's name for the role CreateAccount makes (the manifest's default `memberRole` too).
pub(crate) const DEFAULT_MEMBER_ROLE: &str = "OrganizationAccountAccessRole";

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) dir: PathBuf,
    pub(crate) name: Option<String>,
    pub(crate) units: Vec<String>,
    pub(crate) stack_sets: Vec<String>,
    pub(crate) portfolios: Vec<String>,
    pub(crate) portfolio_account: Option<String>,
    pub(crate) member_role: String,
    pub(crate) profile: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) force: bool,
}

pub(crate) fn run(g: &Global, args: &Args) -> Result<i32> {
    // A manifest is never overwritten by surprise.
    if args.dir.join("estate.yaml").exists() && !args.force {
        eprintln!(
            "error: {} already holds an estate.yaml; pass --force to write over it",
            args.dir.display()
        );
        return Ok(exit::USAGE);
    }
    // What becomes the Estate's scope must pass its schema.
    if let Some(bad) = args.stack_sets.iter().find(|p| {
        p.is_empty()
            || p.len() > 128
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
    }) {
        eprintln!(
            "error: --stack-set `{bad}`: a stack set name pattern is letters, digits, `-` and `*`"
        );
        return Ok(exit::USAGE);
    }
    if let Some(bad) = args.portfolios.iter().find(|p| p.is_empty()) {
        eprintln!("error: --portfolio `{bad}`: give a display name pattern");
        return Ok(exit::USAGE);
    }
    if let Some(bad) = args.units.iter().find(|u| !u.starts_with('/')) {
        eprintln!("error: --unit `{bad}`: a unit is a path from the root, such as /ml/prod");
        return Ok(exit::USAGE);
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => default_name(&args.dir),
    };
    let rt = runtime()?;
    let read = rt.block_on(async {
        let aws = estate::aws::Aws::from_env(
            args.profile.as_deref(),
            args.region.as_deref(),
            &args.member_role,
        )
        .await?;
        let region = aws
            .region()
            .context("no AWS region: pass --region (it becomes the Estate's homeRegion)")?;
        let mut opts = estate::live::read::ReadOptions {
            estate: name.clone(),
            home_region: region.clone(),
            every_instance_of: if args.stack_sets.is_empty() {
                vec!["*".into()]
            } else {
                args.stack_sets.clone()
            },
            ..Default::default()
        };
        let mut live = estate::live::read::read(&aws, &opts).await?;
        let known: Vec<&str> = live.units.iter().map(|u| u.path.as_str()).collect();
        if let Some(bad) = args
            .units
            .iter()
            .find(|u| u.as_str() != "/" && !known.contains(&u.as_str()))
        {
            let hint = estate::diag::closest(bad, known.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default();
            return Ok(Err(format!(
                "--unit `{bad}`: the organization has no such unit{hint}"
            )));
        }
        // The portfolios' hub, by id or AWS name, is known once the accounts are.
        let mut hub = None;
        if !args.portfolios.is_empty() {
            let id = match &args.portfolio_account {
                None => live.management_account.clone(),
                Some(a) => match live.accounts.iter().find(|x| &x.id == a || &x.name == a) {
                    Some(x) => x.id.clone(),
                    None => {
                        let names = live.accounts.iter().map(|x| x.name.as_str());
                        let hint = estate::diag::closest(a, names)
                            .map(|c| format!("; did you mean `{c}`?"))
                            .unwrap_or_default();
                        return Ok(Err(format!(
                            "--portfolio-account `{a}`: the organization has no such account{hint}"
                        )));
                    }
                },
            };
            opts.import_portfolios = Some((id.clone(), args.portfolios.clone()));
            estate::live::read::reread_portfolios(&aws, &opts, &mut live).await?;
            hub = Some(id);
        }
        let mut import_opts = estate::import::ImportOptions {
            estate: name.clone(),
            home_region: region.clone(),
            units: args.units.clone(),
            stack_sets: args.stack_sets.clone(),
            portfolios: args.portfolios.clone(),
            portfolio_hub: hub.clone(),
            member_role: (args.member_role != DEFAULT_MEMBER_ROLE)
                .then(|| args.member_role.clone()),
            version_templates: Default::default(),
        };
        // The versions' templates, read in the hub; one that cannot be read leaves its
        // portfolio out (the writer says so).
        if let Some(hub) = &hub {
            let edge = aws.acting_in(hub, live.caller()).await?;
            for p in estate::import::portfolios_to_import(&live, &import_opts) {
                for product in &p.products {
                    for v in product.versions.iter().filter(|v| v.active) {
                        match estate::live::catalog::version_template(
                            &edge,
                            &region,
                            &product.id,
                            &v.id,
                        )
                        .await
                        {
                            Ok(text) => {
                                import_opts.version_templates.insert(v.id.clone(), text);
                            }
                            // An unanswered call says nothing of the template: no guess.
                            Err(e) if e.is_transient() => return Err(e.into()),
                            Err(e) => eprintln!("note: {e}"),
                        }
                    }
                }
            }
        }
        let imported = estate::import::import(&live, &import_opts);
        anyhow::Ok(Ok((imported, region)))
    })?;
    let (imported, region) = match read {
        Ok(read) => read,
        Err(usage) => {
            eprintln!("error: {usage}");
            return Ok(exit::USAGE);
        }
    };
    for (path, text) in &imported.files {
        let path = args.dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    if !g.quiet {
        println!(
            "Imported into {}: estate `{name}` (home region {region}), {} units, {} accounts, {} environments, {} stack sets, {} portfolios. Run `estate plan {}`: it should show no changes.",
            args.dir.display(),
            imported.units,
            imported.accounts,
            imported.environments,
            imported.stack_sets,
            imported.portfolios,
            args.dir.display()
        );
    }
    Ok(exit::OK)
}

/// The folder's name as an Estate name (`^[a-zA-Z][-a-zA-Z0-9]{0,63}$`), else `estate`.
fn default_name(dir: &std::path::Path) -> String {
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let kept: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = kept.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
    let name: String = name.chars().take(64).collect();
    let name = name.trim_end_matches('-');
    if name.is_empty() {
        "estate".into()
    } else {
        name.into()
    }
}
