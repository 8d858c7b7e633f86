//! `estate unlock`: the apply locks of this estate, who holds each and since when; stale ones
//! removed, a live one only with --force (its apply is known to be dead).

use super::context::{Acting, Global, LiveArgs, connect, exit, load_valid, runtime};
use anyhow::Result;
use estate::apply::lock;

pub struct Args {
    pub live: LiveArgs,
    pub scope: Option<String>,
    pub force: bool,
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let m = load_valid(g, &args.live.dir)?;
    runtime()?.block_on(async {
        let aws = connect(&m, &args.live, Acting::Writing).await?;
        let root = estate::live::read::root_id(&aws).await?;
        let held = lock::held(&aws, &root, m.name()).await?;
        let mut code = exit::OK;
        for l in &held {
            if args.scope.as_ref().is_some_and(|s| *s != l.scope) {
                continue;
            }
            let seen = format!(
                "{} ({}), heartbeat {}s ago",
                l.scope, l.holder, l.age
            );
            if l.stale() || args.force {
                lock::remove(&aws, &root, m.name(), &l.scope).await?;
                println!("removed the lock {seen}");
            } else {
                eprintln!(
                    "refused: the lock {seen} is alive (stale after {}s); if its apply is dead, `estate unlock --scope {} --force`",
                    lock::STALE_AFTER.as_secs(),
                    l.scope
                );
                code = exit::ERROR;
            }
        }
        if held.is_empty() {
            println!("No apply lock of {} is held.", m.name());
        } else if let Some(scope) = args.scope.as_ref().filter(|s| !held.iter().any(|l| &l.scope == *s)) {
            println!("No apply lock of {} ({scope}) is held.", m.name());
        }
        Ok(code)
    })
}
