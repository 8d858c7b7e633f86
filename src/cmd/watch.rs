//! `estate watch`: re-plans whenever a manifest or template file changes.

use super::context::{
    Acting, Format, Global, LiveArgs, connect, exit, load_checked, render_plan, runtime,
};
use super::signals::{stop_on_signals, stopped};
use anyhow::{Context, Result, bail};
use estate::manifest::Manifest;
use estate::render::Mode;
use estate::source::ManifestSource;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct WatchArgs {
    pub live: LiveArgs,
    pub debounce: Duration,
}

/// Re-plans on every change to the manifest folder or a template it uses, until stopped.
pub fn watch(g: &Global, args: &WatchArgs) -> Result<i32> {
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
    let m = match load_checked(g, &source) {
        Ok(m) => m,
        Err(summary) => {
            eprintln!("{} is invalid: {summary}", live.dir.display());
            return None;
        }
    };
    let planned = async {
        let aws = connect(&m, live, Acting::Reading).await?;
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
