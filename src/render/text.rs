//! Terminal text: what `estate plan` and `estate drift` print. Changes grouped by scope, one
//! line per change with its symbol, the reason and what differs indented under it; the last
//! line is always the totals sentence, so scripts and humans can read the outcome at a glance.

use super::outline::{self, Detail, DiffLine, Mode};
use crate::plan::{Action, Change, Plan};
use std::fmt::Write;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// Emit ANSI colours. The caller decides (terminal, `NO_COLOR`); the renderer never looks.
    pub color: bool,
    pub mode: Mode,
}

/// Indent of a change's reason and attributes, under `  + kind name`.
const BODY: &str = "      ";
/// Indent of template diff lines, one level deeper than the attributes.
const DIFF: &str = "        ";

pub fn text(plan: &Plan, opts: &TextOptions) -> String {
    let p = Paint(opts.color);
    let mode = opts.mode;
    let mut out = String::new();

    // Conflicts come first: the one thing a reader must not miss.
    for c in &plan.conflicts {
        let _ = writeln!(out, "{}", p.bold(&format!("conflict: {}", clean(c))));
    }
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!("estate {}: {}", mode.word(), clean(&plan.estate)))
    );
    let _ = writeln!(out, "  source:       {}", source(plan));
    let envs = if plan.environments.is_empty() {
        "(none)".to_string()
    } else {
        clean(&plan.environments.join(", "))
    };
    let _ = writeln!(out, "  environments: {envs}");

    if !plan.changes.is_empty() {
        for section in outline::sections(plan) {
            out.push('\n');
            let title = clean(&section.scope.title());
            let phrase = mode.phrase(&section.counts());
            let phrase = if phrase.is_empty() {
                "no changes".to_string()
            } else {
                phrase
            };
            let _ = writeln!(out, "{} {}", p.bold(&title), p.dim(&format!("({phrase})")));
            for (i, (change, notes)) in section.changes.iter().zip(&section.notes).enumerate() {
                // A blank line between changes: template diffs would otherwise run together.
                if i > 0 {
                    out.push('\n');
                }
                write_change(&mut out, change, notes, p);
            }
        }
    }

    if !plan.findings.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", p.bold("Findings"));
        for f in &plan.findings {
            let env = f
                .environment
                .as_deref()
                .map(|e| format!(" ({})", clean(e)))
                .unwrap_or_default();
            let kind = outline::finding_word(f.kind);
            let _ = writeln!(
                out,
                "  {} {} {}{}",
                p.yellow("!"),
                p.bold(kind),
                clean(&f.address.to_string()),
                env
            );
            for line in outline::clean_lines(&f.message) {
                let _ = writeln!(out, "{BODY}{line}");
            }
        }
    }

    let used = outline::used_actions(plan);
    if !used.is_empty() || !plan.findings.is_empty() {
        out.push('\n');
        let mut entries: Vec<String> = used
            .iter()
            .map(|a| format!("{} {}", paint_symbol(p, *a), mode.legend_word(*a)))
            .collect();
        if !plan.findings.is_empty() {
            entries.push(format!("{} finding", p.yellow("!")));
        }
        let _ = writeln!(out, "Legend: {}", entries.join(", "));
    }

    out.push('\n');
    let _ = writeln!(
        out,
        "{}",
        p.bold(&mode.totals(
            &outline::count(outline::shown(plan)),
            plan.findings.len(),
            plan.conflicts.len()
        ))
    );
    out
}

fn source(plan: &Plan) -> String {
    let mut s = clean(&plan.source.path);
    if let Some(commit) = &plan.source.commit {
        let _ = write!(s, " at {}", clean(outline::short_commit(commit)));
    }
    if plan.source.dirty {
        s.push_str(" (uncommitted changes)");
    }
    s
}

fn write_change(out: &mut String, change: &Change, notes: &[String], p: Paint) {
    // Right-aligned so `-/+` and `+` put the address in the same column.
    let _ = writeln!(
        out,
        "{}{} {}",
        " ".repeat(3 - change.action.symbol().len()),
        paint_symbol(p, change.action),
        p.bold(&clean(&outline::change_label(change)))
    );
    for line in outline::clean_lines(&change.reason) {
        let _ = writeln!(out, "{BODY}{}", p.dim(&line));
    }
    for note in notes {
        let _ = writeln!(out, "{BODY}{}", p.dim(&clean(note)));
    }
    for detail in outline::details(change) {
        match detail {
            Detail::Attr { key, value } => {
                let _ = writeln!(out, "{BODY}{}: {value}", clean(&key));
            }
            Detail::Changed { key, before, after } => {
                let absent = || "(absent)".to_string();
                let _ = writeln!(
                    out,
                    "{BODY}{}: {} → {}",
                    clean(&key),
                    p.red(&before.unwrap_or_else(absent)),
                    p.green(&after.unwrap_or_else(absent))
                );
            }
            Detail::Template(lines) => {
                let _ = writeln!(out, "{BODY}template:");
                for line in lines {
                    let _ = match line {
                        DiffLine::File(s) => writeln!(out, "{DIFF}{}", p.bold(&s)),
                        DiffLine::Hunk(s) => writeln!(out, "{DIFF}{}", p.cyan(&s)),
                        DiffLine::Context(s) => writeln!(out, "{DIFF} {s}"),
                        DiffLine::Removed(s) => writeln!(out, "{DIFF}{}", p.red(&format!("-{s}"))),
                        DiffLine::Added(s) => writeln!(out, "{DIFF}{}", p.green(&format!("+{s}"))),
                    };
                }
            }
        }
    }
}

fn clean(s: &str) -> String {
    outline::clean(s)
}

fn paint_symbol(p: Paint, action: Action) -> String {
    let s = action.symbol();
    match action {
        Action::Create => p.green(s),
        Action::Update => p.yellow(s),
        Action::Delete => p.red(s),
        Action::Replace => p.magenta(s),
    }
}

/// ANSI styling that is the identity when colour is off.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }
    fn magenta(self, s: &str) -> String {
        self.wrap("35", s)
    }
    fn cyan(self, s: &str) -> String {
        self.wrap("36", s)
    }
}
