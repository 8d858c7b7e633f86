//! Markdown: the pull-request comment a reviewer reads. The summary comes first (counts per
//! scope, a warning when anything is deleted or replaced, findings), details last in
//! collapsible blocks. GitHub refuses comments over 65,536 characters, so the output is held to
//! a budget: details are cut (never the marker, summary or warning) and the cut is stated.

use super::outline::{self, ACTIONS, Detail, DiffLine, Mode, Scope, Section};
use crate::plan::{Action, Change, Plan};
use std::fmt::Write;

/// GitHub's limit on the body of an issue or pull-request comment, in characters.
pub const COMMENT_BUDGET: usize = 65_536;

/// Deleted or replaced resources named in the warning; the rest are counted.
const WARNING_LIST: usize = 10;
/// Template diff lines shown per change: one rewritten template must not starve the rest.
const TEMPLATE_DIFF_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkdownOptions {
    pub mode: Mode,
    /// Maximum length of the output in characters (not bytes).
    pub budget: usize,
}

impl Default for MarkdownOptions {
    fn default() -> Self {
        MarkdownOptions {
            mode: Mode::Plan,
            budget: COMMENT_BUDGET,
        }
    }
}

/// The plan as a pull-request comment, within [`COMMENT_BUDGET`].
pub fn markdown(plan: &Plan) -> String {
    markdown_with(plan, &MarkdownOptions::default())
}

pub fn markdown_with(plan: &Plan, opts: &MarkdownOptions) -> String {
    let mode = opts.mode;
    let sections = outline::sections(plan);
    let mut out = Budgeted::new(opts.budget);
    out.push(&head(plan, &sections, mode));

    // Everything below may be cut. Room for the notice saying so is kept from the start; its
    // longest form (every change and finding unshown) bounds every shorter one.
    let listed = outline::shown(plan).count();
    let reserve = cut_notice(listed, plan.findings.len(), opts)
        .chars()
        .count();
    let mut blocks = Vec::new();
    if !plan.findings.is_empty() {
        blocks.push(Block {
            open: "### Findings\n\n".into(),
            items: plan.findings.iter().map(finding_item).collect(),
            close: "\n".into(),
            findings: true,
        });
    }
    let mut first = true;
    for section in sections.iter().filter(|s| !s.changes.is_empty()) {
        let mut block = details_block(plan, section, mode);
        if first {
            block.open.insert_str(0, &details_heading(plan, mode));
            first = false;
        }
        blocks.push(block);
    }

    let (mut shown_changes, mut shown_findings) = (0, 0);
    for block in &blocks {
        let shown = out.fill(block, reserve);
        if block.findings {
            shown_findings += shown;
        } else {
            shown_changes += shown;
        }
        if shown < block.items.len() {
            break;
        }
    }
    let (hidden_changes, hidden_findings) =
        (listed - shown_changes, plan.findings.len() - shown_findings);
    if hidden_changes + hidden_findings > 0 {
        out.push(&cut_notice(hidden_changes, hidden_findings, opts));
    }
    out.finish()
}

/// Marker, title, totals, table, warning and source: never cut.
fn head(plan: &Plan, sections: &[Section], mode: Mode) -> String {
    let mut s = String::new();
    // The marker lets a bot find and update its own comment instead of posting a new one.
    let _ = writeln!(
        s,
        "<!-- estate-{}: {} -->",
        mode.word(),
        plan.estate.replace('>', "&gt;")
    );
    // Conflicts come first (after the marker, which bots look for): never to be missed.
    for c in &plan.conflicts {
        let _ = writeln!(s, "> **Conflict:** {}\n", escape(c));
    }
    let _ = writeln!(s, "## estate {}: {}\n", mode.word(), code(&plan.estate));
    let totals = outline::count(outline::shown(plan));
    let _ = writeln!(
        s,
        "**{}**\n",
        escape(&mode.totals(&totals, plan.findings.len(), plan.conflicts.len()))
    );

    if !plan.changes.is_empty() {
        // Replace gets a column only when used: most plans never replace.
        let columns: Vec<Action> = ACTIONS
            .into_iter()
            .filter(|a| *a != Action::Replace || totals.replace > 0)
            .collect();
        let header: Vec<&str> = columns.iter().map(|a| mode.action_word(*a)).collect();
        let _ = writeln!(s, "| scope | {} |", header.join(" | "));
        let _ = writeln!(s, "| :-- |{}", " --: |".repeat(columns.len()));
        for section in sections {
            let mut name = escape(section.scope.name());
            if let Some(marks) = gate_marks(plan, section.scope) {
                let _ = write!(name, " ({marks})");
            }
            let counts = section.counts();
            let cells: Vec<String> = columns
                .iter()
                .map(|a| outline::thousands(outline::get(&counts, *a)))
                .collect();
            let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
        }
        let cells: Vec<String> = columns
            .iter()
            .map(|a| format!("**{}**", outline::thousands(outline::get(&totals, *a))))
            .collect();
        let _ = writeln!(s, "| **total** | {} |", cells.join(" | "));
        s.push('\n');
    }

    let destructive: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .collect();
    if !destructive.is_empty() {
        let (subject, deletes, replaces) = match mode {
            Mode::Plan => ("This plan", "deletes", "replaces"),
            Mode::Drift => ("Applying the manifest", "would delete", "would replace"),
        };
        let mut what = Vec::new();
        if totals.delete > 0 {
            what.push(format!("{deletes} {}", resources(totals.delete)));
        }
        if totals.replace > 0 {
            what.push(format!("{replaces} {}", resources(totals.replace)));
        }
        let _ = writeln!(s, "> [!WARNING]");
        let _ = writeln!(s, "> **{subject} {}.**", what.join(" and "));
        for c in destructive.iter().take(WARNING_LIST) {
            let env = c
                .environment
                .as_deref()
                .map(|e| format!(" ({})", escape(e)))
                .unwrap_or_default();
            let verb = match c.action {
                Action::Replace => "replace",
                _ => "delete",
            };
            let _ = writeln!(s, "> - {verb} {}{env}", code(&c.address.to_string()));
        }
        if destructive.len() > WARNING_LIST {
            let _ = writeln!(
                s,
                "> - … and {} more",
                outline::thousands(destructive.len() - WARNING_LIST)
            );
        }
        s.push('\n');
    }

    s.push_str(&gate_notes(plan, sections, mode));

    let mut source = format!("Source {}", code(&plan.source.path));
    if let Some(commit) = &plan.source.commit {
        let _ = write!(source, " at {}", code(outline::short_commit(commit)));
    }
    if plan.source.dirty {
        source.push_str(" (uncommitted changes)");
    }
    if !plan.environments.is_empty() {
        let envs: Vec<String> = plan.environments.iter().map(|e| escape(e)).collect();
        let _ = write!(source, " · environments: {}", envs.join(", "));
    }
    let _ = writeln!(s, "<sub>{source}</sub>\n");
    s
}

/// How an environment holds apply back, for its table row and section: "manual approval,
/// protected".
fn gate_marks(plan: &Plan, scope: Scope) -> Option<String> {
    let Scope::Environment(env) = scope else {
        return None;
    };
    let gate = plan.gate(env)?;
    let mut marks = Vec::new();
    if gate.manual_approval {
        marks.push("manual approval");
    }
    if gate.protected {
        marks.push("protected");
    }
    Some(marks.join(", "))
}

/// What the gates mean for this plan: environments with changes that wait for a reviewer, and
/// deletes in protected ones, which apply refuses without `--allow-delete`.
fn gate_notes(plan: &Plan, sections: &[Section], mode: Mode) -> String {
    let mut lines = Vec::new();
    for section in sections.iter().filter(|s| !s.changes.is_empty()) {
        if let Scope::Environment(env) = section.scope {
            if plan.gate(env).is_some_and(|g| g.manual_approval) {
                lines.push(format!(
                    "{} needs manual approval (`approval: manual`): an apply without `--env` stops before it; it is applied when named: `estate apply --env {}`.",
                    code(env),
                    env.replace(['`', '\n', '\r'], "")
                ));
            }
        }
    }
    let protected = plan.protected_deletes(|e| plan.gate(e).is_some_and(|g| g.protected));
    if !protected.is_empty() {
        let mut envs: Vec<String> = protected
            .iter()
            .filter_map(|c| c.environment.as_deref())
            .map(code)
            .collect();
        envs.dedup();
        let what = match mode {
            Mode::Plan => "this plan deletes or replaces",
            Mode::Drift => "applying the manifest would delete or replace",
        };
        lines.push(format!(
            "Apply will need `--allow-delete`: {what} {} in protected {} {}.",
            resources(protected.len()),
            if envs.len() == 1 {
                "environment"
            } else {
                "environments"
            },
            envs.join(", ")
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("> [!IMPORTANT]\n");
    for line in lines {
        let _ = writeln!(s, "> {line}");
    }
    s.push('\n');
    s
}

/// The heading of the details, with a legend of the symbols they use.
fn details_heading(plan: &Plan, mode: Mode) -> String {
    let legend: Vec<String> = outline::used_actions(plan)
        .into_iter()
        .map(|a| format!("{} {}", code(a.symbol()), mode.legend_word(a)))
        .collect();
    format!("### Details\n\n{}\n\n", legend.join(" · "))
}

fn resources(n: usize) -> String {
    let noun = if n == 1 { "resource" } else { "resources" };
    format!("{} {noun}", outline::thousands(n))
}

fn finding_item(f: &crate::plan::Finding) -> String {
    let env = f
        .environment
        .as_deref()
        .map(|e| format!(" ({})", escape(e)))
        .unwrap_or_default();
    format!(
        "- **{}** {}{env}: {}\n",
        outline::finding_word(f.kind),
        code(&f.address.to_string()),
        // One list item: a multi-line message (drifted resources) reads as `; `-separated.
        escape(
            &f.message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        )
    )
}

/// One `<details>` block per scope, holding a `diff` fence so GitHub colours `+`/`-` lines.
fn details_block(plan: &Plan, section: &Section, mode: Mode) -> Block {
    let items: Vec<String> = section
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let body = change_lines(c, &section.notes[i]);
            // A blank line between changes; the first directly under the fence.
            if i == 0 { body } else { format!("\n{body}") }
        })
        .collect();
    // A fence longer than any backtick run inside cannot be closed by the content.
    let longest = items.iter().map(|i| longest_run(i, '`')).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let mut name = section.scope.name().to_string();
    if let Some(marks) = gate_marks(plan, section.scope) {
        name = format!("{name} ({marks})");
    }
    let summary = format!(
        "<b>{}</b> · {}",
        html(&name),
        html(&mode.phrase(&section.counts()))
    );
    Block {
        // The blank line ends the HTML block, so the fence is read as markdown.
        open: format!("<details><summary>{summary}</summary>\n\n{fence}diff\n"),
        items,
        close: format!("{fence}\n\n</details>\n\n"),
        findings: false,
    }
}

/// A change as diff-fence lines: the symbol (or a space) in column 0, so GitHub colours
/// creates, deletes and the two sides of every changed value.
fn change_lines(change: &Change, notes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {}",
        change.action.symbol(),
        outline::clean(&outline::change_label(change))
    );
    for line in outline::clean_lines(&change.reason) {
        let _ = writeln!(s, "    {line}");
    }
    for note in notes {
        let _ = writeln!(s, "    {}", outline::clean(note));
    }
    let marker = match change.action {
        Action::Delete => '-',
        _ => '+',
    };
    for detail in outline::details(change) {
        match detail {
            Detail::Attr { key, value } => {
                let _ = writeln!(s, "{marker}   {}: {value}", outline::clean(&key));
            }
            Detail::Changed { key, before, after } => {
                let key = outline::clean(&key);
                if let Some(b) = before {
                    let _ = writeln!(s, "-   {key}: {b}");
                }
                if let Some(a) = after {
                    let _ = writeln!(s, "+   {key}: {a}");
                }
            }
            Detail::Template(lines) => {
                let _ = writeln!(s, "    template:");
                let mut body = 0;
                let total = lines
                    .iter()
                    .filter(|l| !matches!(l, DiffLine::File(_)))
                    .count();
                for line in lines {
                    if !matches!(line, DiffLine::File(_)) {
                        body += 1;
                        if body > TEMPLATE_DIFF_LINES {
                            let _ = writeln!(
                                s,
                                "      … {} more template diff lines not shown",
                                outline::thousands(total - TEMPLATE_DIFF_LINES)
                            );
                            break;
                        }
                    }
                    let _ = match line {
                        DiffLine::File(l) | DiffLine::Hunk(l) => writeln!(s, "      {l}"),
                        DiffLine::Context(l) => writeln!(s, "      {l}"),
                        DiffLine::Removed(l) => writeln!(s, "-     {l}"),
                        DiffLine::Added(l) => writeln!(s, "+     {l}"),
                    };
                }
            }
        }
    }
    s
}

fn cut_notice(changes: usize, findings: usize, opts: &MarkdownOptions) -> String {
    let mode = opts.mode;
    let mut parts = Vec::new();
    if changes > 0 {
        let noun = if changes == 1 { "change" } else { "changes" };
        parts.push(format!("{} more {noun}", outline::thousands(changes)));
    }
    if findings > 0 {
        let noun = if findings == 1 { "finding" } else { "findings" };
        parts.push(format!("{} more {noun}", outline::thousands(findings)));
    }
    let full = match mode {
        Mode::Plan => "the full plan",
        Mode::Drift => "the full report",
    };
    format!(
        "> [!NOTE]\n> … {} not shown: this comment is limited to {} characters. Run `estate {}` for {full}.\n",
        parts.join(" and "),
        outline::thousands(opts.budget),
        mode.word()
    )
}

/// A run of items under an opening and a closing string that must both be present when any
/// item is (a heading, or `<details>` and a fence).
struct Block {
    open: String,
    items: Vec<String>,
    close: String,
    findings: bool,
}

/// Output with a running character count, so the budget is checked without rescanning.
struct Budgeted {
    text: String,
    used: usize,
    limit: usize,
}

impl Budgeted {
    fn new(limit: usize) -> Self {
        Budgeted {
            text: String::new(),
            used: 0,
            limit,
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.used += s.chars().count();
    }

    /// Adds as many items of the block, in order, as fit with its closing string and `reserve`
    /// left over; returns how many. The first item that does not fit ends the block, so what is
    /// shown is always a prefix and "N more" is exact.
    fn fill(&mut self, block: &Block, reserve: usize) -> usize {
        let open = block.open.chars().count();
        let close = block.close.chars().count();
        let mut shown = 0;
        for item in &block.items {
            let len = item.chars().count();
            let need = len + close + reserve + if shown == 0 { open } else { 0 };
            if self.used + need > self.limit {
                break;
            }
            if shown == 0 {
                self.push(&block.open);
            }
            self.push(item);
            shown += 1;
        }
        if shown > 0 {
            self.push(&block.close);
        }
        shown
    }

    /// Only a head longer than the whole budget (thousands of environments) can overflow here;
    /// GitHub would reject the comment, so it is cut hard at a line end instead.
    fn finish(self) -> String {
        if self.used <= self.limit {
            return self.text;
        }
        let note = "\n… cut: too long for a comment.\n";
        let keep = self.limit.saturating_sub(note.chars().count());
        let mut text: String = self.text.chars().take(keep).collect();
        if let Some(end) = text.rfind('\n') {
            text.truncate(end);
        }
        text.push_str(note);
        text.chars().take(self.limit).collect()
    }
}

/// Inline code that survives backticks in the content: the delimiter is one longer than the
/// longest run inside, padded when the content starts or ends with a backtick.
fn code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    let ticks = "`".repeat(longest_run(&s, '`') + 1);
    if s.starts_with('`') || s.ends_with('`') {
        format!("{ticks} {s} {ticks}")
    } else {
        format!("{ticks}{s}{ticks}")
    }
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == ch { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// Plain text in markdown: characters that would start emphasis, links, HTML, code or table
/// cells are escaped, newlines folded, so a reason cannot restyle or break the comment.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in outline::clean(&s.replace(['\n', '\r'], " ")).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside HTML tags (`<summary>`), where markdown is not read but `<` and `&` are.
fn html(s: &str) -> String {
    outline::clean(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_code_outlasts_backticks() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
    }

    #[test]
    fn escape_neutralizes_markup() {
        assert_eq!(
            escape("<b>*x*</b> | `y`"),
            "&lt;b&gt;\\*x\\*&lt;/b&gt; \\| \\`y\\`"
        );
    }
}
