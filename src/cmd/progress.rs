//! Apply's progress as the operator sees it: a bar per running step on a terminal, a log
//! line per event otherwise.

use super::context::{Format, Global};
use estate::apply::{Event, Progress};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;

/// A progress bar per running stack-set operation on a terminal; a log line per state
/// change otherwise.
pub(crate) fn reporter(g: &Global) -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() && g.format != Format::Json && !g.quiet {
        Box::new(Bars::default())
    } else {
        Box::new(Lines { quiet: g.quiet })
    }
}

struct Lines {
    quiet: bool,
}

impl Progress for Lines {
    fn event(&self, e: Event) {
        if self.quiet {
            return;
        }
        match e {
            Event::Started { address, what } => eprintln!("{address}: {what}"),
            Event::Operation {
                stack_set,
                operation_id,
                status,
            } => eprintln!("stackSet:{stack_set}: operation {operation_id} {status}"),
            Event::Done { address } => eprintln!("{address}: done"),
            Event::Failed { address, message } => eprintln!("{address}: FAILED {message}"),
        }
    }
}

#[derive(Default)]
struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, key: &str) -> indicatif::ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(key.to_string())
            .or_insert_with(|| {
                let b = self.multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {prefix:.bold} {msg} ({elapsed})",
                    )
                    .expect("valid template"),
                );
                b.set_prefix(key.to_string());
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            })
            .clone()
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        for bar in self
            .bars
            .get_mut()
            .map(|b| b.values())
            .into_iter()
            .flatten()
        {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

impl Progress for Bars {
    fn event(&self, e: Event) {
        match e {
            Event::Started { address, what } => self.bar(&address).set_message(what),
            Event::Operation {
                stack_set,
                operation_id,
                status,
            } => self
                .bar(&format!("stackSet:{stack_set}"))
                .set_message(format!("{operation_id} {status}")),
            // A stack set's bar lives through all its steps: its instances and the set
            // itself only say "done" on it; it is finished when apply ends.
            Event::Done { address } if address.starts_with("stackInstance:") => {}
            Event::Done { address } if address.starts_with("stackSet:") => {
                self.bar(&address).set_message("done")
            }
            Event::Done { address } => self.bar(&address).finish_with_message("done"),
            Event::Failed { address, message } => self
                .bar(&address)
                .abandon_with_message(format!("FAILED {message}")),
        }
    }
}
