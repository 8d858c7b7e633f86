//! The renderer-neutral view of a Plan: changes grouped by scope and counted, each reduced to
//! the lines worth reading (brief attributes of creates and deletes; changed keys and a
//! template diff of updates). Text and markdown differ only in how they lay these out.

use crate::plan::{Action, Change, FindingKind, Hint, Plan, Reach, ResourceType, Summary};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use std::collections::BTreeSet;

/// What the Plan is being shown as: the changes `apply` would make, or the drift `drift` found.
/// The same Plan value serves both; only the wording differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Plan,
    Drift,
}

impl Mode {
    /// The command word, used in titles and the markdown marker.
    pub fn word(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Drift => "drift",
        }
    }
}

/// Actions in the order every renderer lists them.
pub(crate) const ACTIONS: [Action; 4] = [
    Action::Create,
    Action::Update,
    Action::Delete,
    Action::Replace,
];

/// Where a group of changes lives: the organization (units, accounts), the Service Catalog
/// hub (portfolios and everything under them), or one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    Organization,
    Catalog,
    Environment(&'a str),
}

impl<'a> Scope<'a> {
    fn of(change: &'a Change) -> Self {
        match change.environment.as_deref() {
            Some(env) => Scope::Environment(env),
            None if change.resource_type.is_catalog() => Scope::Catalog,
            None => Scope::Organization,
        }
    }

    /// The heading of a section: "Organization", "Service Catalog", "Environment staging".
    pub fn title(self) -> String {
        match self {
            Scope::Organization => "Organization".to_string(),
            Scope::Catalog => "Service Catalog".to_string(),
            Scope::Environment(env) => format!("Environment {env}"),
        }
    }

    /// The short name of a table row or summary: "organization", "service catalog", the env.
    pub fn name(self) -> &'a str {
        match self {
            Scope::Organization => "organization",
            Scope::Catalog => "service catalog",
            Scope::Environment(env) => env,
        }
    }
}

/// The changes of one scope.
pub(crate) struct Section<'a> {
    pub scope: Scope<'a>,
    pub changes: Vec<&'a Change>,
    /// Lines shown under each change after its reason (parallel to `changes`): how far a
    /// stack-set update rolls out, bookkeeping that goes with the change.
    pub notes: Vec<Vec<String>>,
}

impl Section<'_> {
    pub fn counts(&self) -> Summary {
        count(self.changes.iter().copied())
    }
}

/// The organization first, the Service Catalog when it has changes, then every environment in
/// `plan.environments` order (empty ones included, so a reader sees they were covered). A change
/// naming an environment the plan does not list still gets a section, after the others, rather
/// than being dropped. Bookkeeping-only changes are not listed (see [`shown`]).
pub(crate) fn sections(plan: &Plan) -> Vec<Section<'_>> {
    let mut out = vec![Section {
        scope: Scope::Organization,
        changes: Vec::new(),
        notes: Vec::new(),
    }];
    if shown(plan).any(|c| Scope::of(c) == Scope::Catalog) {
        out.push(Section {
            scope: Scope::Catalog,
            changes: Vec::new(),
            notes: Vec::new(),
        });
    }
    for env in &plan.environments {
        let scope = Scope::Environment(env);
        if !out.iter().any(|s| s.scope == scope) {
            out.push(Section {
                scope,
                changes: Vec::new(),
                notes: Vec::new(),
            });
        }
    }
    let mut recorded = BTreeSet::new();
    for change in shown(plan) {
        let scope = Scope::of(change);
        let index = match out.iter().position(|s| s.scope == scope) {
            Some(i) => i,
            None => {
                out.push(Section {
                    scope,
                    changes: Vec::new(),
                    notes: Vec::new(),
                });
                out.len() - 1
            }
        };
        let mut notes = Vec::new();
        if let Some(r) = &change.reach {
            notes.push(reach(r));
        }
        // The folded digest update is told once, under the first instance that carries it.
        let carries = change.address.stack_set().filter(|set| {
            change.resource_type == ResourceType::StackInstance && folded(plan, set).is_some()
        });
        if let Some(set) = carries.filter(|set| recorded.insert(*set)) {
            notes.push(format!(
                "stack set {set} records the new overrides once its instances carry them (tag {})",
                crate::tags::TAG_OVERRIDES
            ));
        }
        out[index].changes.push(change);
        out[index].notes.push(notes);
    }
    out
}

/// The changes a reader is shown: all but a stack set's update of nothing but its overrides
/// digest (`Hint::OverridesTagOnly`), bookkeeping that is told under the instance changes it
/// follows. One without such an instance change in the plan is shown as it is.
pub(crate) fn shown(plan: &Plan) -> impl Iterator<Item = &Change> {
    plan.changes.iter().filter(move |c| {
        c.hint != Some(Hint::OverridesTagOnly)
            || c.address
                .stack_set()
                .is_none_or(|set| folded(plan, set).is_none())
    })
}

/// The bookkeeping-only update of stack set `set`, when instance changes of it carry it.
fn folded<'p>(plan: &'p Plan, set: &str) -> Option<&'p Change> {
    let tag_only = plan.changes.iter().find(|c| {
        c.resource_type == ResourceType::StackSet
            && c.hint == Some(Hint::OverridesTagOnly)
            && c.address.stack_set() == Some(set)
    })?;
    plan.changes
        .iter()
        .any(|c| {
            c.resource_type == ResourceType::StackInstance && c.address.stack_set() == Some(set)
        })
        .then_some(tag_only)
}

/// "rolls out to 6 stack instances (3 accounts × 2 regions)".
pub(crate) fn reach(r: &Reach) -> String {
    let noun = |n: usize, one: &str, many: &str| {
        format!("{} {}", thousands(n), if n == 1 { one } else { many })
    };
    let instances = noun(r.instances, "stack instance", "stack instances");
    let accounts = noun(r.accounts, "account", "accounts");
    let regions = noun(r.regions, "region", "regions");
    if r.instances == r.accounts * r.regions {
        format!("rolls out to {instances} ({accounts} × {regions})")
    } else {
        format!("rolls out to {instances} (in {accounts} and {regions})")
    }
}

pub(crate) fn count<'a>(changes: impl Iterator<Item = &'a Change>) -> Summary {
    let mut s = Summary::default();
    for c in changes {
        *slot(&mut s, c.action) += 1;
    }
    s
}

fn slot(s: &mut Summary, action: Action) -> &mut usize {
    match action {
        Action::Create => &mut s.create,
        Action::Update => &mut s.update,
        Action::Delete => &mut s.delete,
        Action::Replace => &mut s.replace,
    }
}

pub(crate) fn get(s: &Summary, action: Action) -> usize {
    match action {
        Action::Create => s.create,
        Action::Update => s.update,
        Action::Delete => s.delete,
        Action::Replace => s.replace,
    }
}

impl Mode {
    /// Short count phrase: "3 to create" / "3 missing from live".
    pub(crate) fn counted(self, action: Action, n: usize) -> String {
        let n = thousands(n);
        match (self, action) {
            (Mode::Plan, Action::Create) => format!("{n} to create"),
            (Mode::Plan, Action::Update) => format!("{n} to update"),
            (Mode::Plan, Action::Delete) => format!("{n} to delete"),
            (Mode::Plan, Action::Replace) => format!("{n} to replace"),
            (Mode::Drift, Action::Create) => format!("{n} missing from live"),
            (Mode::Drift, Action::Update) => format!("{n} modified"),
            (Mode::Drift, Action::Delete) => format!("{n} not in the manifest"),
            (Mode::Drift, Action::Replace) => format!("{n} to replace"),
        }
    }

    /// Legend entry and table column for an action.
    pub(crate) fn action_word(self, action: Action) -> &'static str {
        match (self, action) {
            (Mode::Plan, Action::Create) => "create",
            (Mode::Plan, Action::Update) => "update",
            (Mode::Plan, Action::Delete) => "delete",
            (Mode::Plan, Action::Replace) => "replace",
            (Mode::Drift, Action::Create) => "missing",
            (Mode::Drift, Action::Update) => "modified",
            (Mode::Drift, Action::Delete) => "extra",
            (Mode::Drift, Action::Replace) => "replace",
        }
    }

    pub(crate) fn legend_word(self, action: Action) -> &'static str {
        match (self, action) {
            (Mode::Drift, Action::Create) => "missing from live",
            (Mode::Drift, Action::Update) => "differs from the manifest",
            (Mode::Drift, Action::Delete) => "not in the manifest",
            (Mode::Drift, Action::Replace) => "must be replaced",
            (Mode::Plan, a) => Mode::Plan.action_word(a),
        }
    }

    /// The closing sentence: the last line of the text output, the headline of the comment.
    /// It counts findings too: "matches the manifest" is said only when nothing was found, so
    /// a conflict or an orphan never hides behind it. A plan's sentence keeps its two shapes
    /// scripts grep for ("No changes…", "Plan: …"), findings after them.
    pub(crate) fn totals(self, s: &Summary, findings: usize, conflicts: usize) -> String {
        let n = s.create + s.update + s.delete + s.replace;
        let found = format!(
            "{} finding{}",
            thousands(findings),
            if findings == 1 { "" } else { "s" }
        );
        match self {
            // Never "matches" while a resource of the manifest's name is not estate's.
            Mode::Plan if n == 0 && conflicts > 0 => format!(
                "No changes, but {} conflict{}: live does not match the manifest, and estate will not touch {} ({found}).",
                thousands(conflicts),
                if conflicts == 1 { "" } else { "s" },
                if conflicts == 1 { "it" } else { "them" }
            ),
            Mode::Plan if n == 0 && findings > 0 => format!(
                "No changes, but {found}: estate leaves what {} as it is.",
                if findings == 1 {
                    "it reports"
                } else {
                    "they report"
                }
            ),
            Mode::Plan if n == 0 => "No changes. Live state matches the manifest.".to_string(),
            Mode::Drift if n == 0 && findings == 0 => {
                "No drift. Live state matches the manifest.".to_string()
            }
            Mode::Plan => {
                // The three main counts always, so the sentence has a fixed shape to grep.
                let mut line = format!(
                    "Plan: {}, {}, {}",
                    self.counted(Action::Create, s.create),
                    self.counted(Action::Update, s.update),
                    self.counted(Action::Delete, s.delete)
                );
                if s.replace > 0 {
                    line.push_str(&format!(", {}", self.counted(Action::Replace, s.replace)));
                }
                if findings > 0 {
                    line.push_str(&format!("; {found}"));
                }
                line.push('.');
                line
            }
            Mode::Drift => {
                let noun = if n == 1 { "difference" } else { "differences" };
                match (n, findings) {
                    (_, 0) => format!("Drift: {} {noun}.", thousands(n)),
                    (0, _) => format!("Drift: {found}."),
                    _ => format!("Drift: {} {noun}, {found}.", thousands(n)),
                }
            }
        }
    }

    /// The non-zero counts, for section headings: "1 to create, 2 to update".
    pub(crate) fn phrase(self, s: &Summary) -> String {
        ACTIONS
            .iter()
            .filter(|a| get(s, **a) > 0)
            .map(|a| self.counted(*a, get(s, *a)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(crate) fn finding_word(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Orphan => "orphan",
        FindingKind::Conflict => "conflict",
        FindingKind::Unmanaged => "unmanaged",
        FindingKind::Unhealthy => "unhealthy",
        FindingKind::Drifted => "drifted",
        FindingKind::Inactive => "inactive",
        FindingKind::Prerequisite => "prerequisite",
    }
}

/// Actions present in the plan, in legend order.
pub(crate) fn used_actions(plan: &Plan) -> Vec<Action> {
    ACTIONS
        .into_iter()
        .filter(|a| plan.changes.iter().any(|c| c.action == *a))
        .collect()
}

/// `stackSet:name` → `stackSet name`: the type reads as a word, the name stays whole.
/// A change's heading: its label, with what apply does beyond the action when a reader must
/// know it (an adoption takes over a resource estate did not make).
pub(crate) fn change_label(change: &crate::plan::Change) -> String {
    let label = label(&change.address);
    match change.hint {
        Some(crate::plan::Hint::Adopt) => format!("{label} (adopt)"),
        _ => label,
    }
}

pub(crate) fn label(address: &crate::plan::Address) -> String {
    let address = address.to_string();
    match address.split_once(':') {
        Some((kind, name)) => format!("{kind} {name}"),
        None => address,
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The source line: `path at 9f2c1ab (uncommitted changes)`.
pub(crate) fn short_commit(commit: &str) -> &str {
    match commit.char_indices().nth(7) {
        Some((i, _)) => &commit[..i],
        None => commit,
    }
}

/// Free text from the plan as display lines: split on newlines, control characters escaped
/// (a stray ESC in a reason must not drive the reader's terminal).
pub(crate) fn clean_lines(s: &str) -> Vec<String> {
    s.lines().map(clean).collect()
}

/// One line of free text with control characters (newlines included) escaped.
pub(crate) fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A value as a reader wants it: plain strings bare, everything else as compact JSON. Strings
/// that would read ambiguously bare (empty, padded, holding control characters) are quoted.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) if is_plain(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.trim() == s && !s.chars().any(char::is_control)
}

/// What to show under a change's heading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Detail {
    /// An attribute of a created or deleted resource.
    Attr { key: String, value: String },
    /// An attribute that differs between live (`before`) and the manifest (`after`); `None`
    /// when the key is absent on that side.
    Changed {
        key: String,
        before: Option<String>,
        after: Option<String>,
    },
    /// Unified diff of the template, live → manifest.
    Template(Vec<DiffLine>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DiffLine {
    /// `--- live` / `+++ manifest`.
    File(String),
    /// `@@ -a,b +c,d @@`.
    Hunk(String),
    Context(String),
    Removed(String),
    Added(String),
}

pub(crate) fn details(change: &Change) -> Vec<Detail> {
    let rt = change.resource_type;
    match (change.action, &change.before, &change.after) {
        (Action::Update | Action::Replace, Some(before), Some(after)) => {
            changed(&without_bookkeeping(before), &without_bookkeeping(after))
        }
        (Action::Delete, Some(before), _) => brief(rt, &before.to_value()),
        (_, _, Some(after)) => brief(rt, &after.to_value()),
        (_, Some(before), None) => brief(rt, &before.to_value()),
        (_, None, None) => Vec::new(),
    }
}

/// A side without estate's bookkeeping tags: what they stand for is shown instead (the
/// `operation` field, the reason naming a sensitive parameter or instance overrides).
fn without_bookkeeping(side: &crate::plan::Side) -> Value {
    let mut v = side.to_value();
    // Its parameters already say "(known after apply)".
    if let Value::Object(o) = &mut v {
        o.remove("knownAfterApply");
    }
    if let Some(Value::Object(tags)) = v.get_mut("tags") {
        for key in crate::tags::BOOKKEEPING {
            tags.remove(key);
        }
    }
    v
}

/// The attributes a reviewer checks on a create or delete; the rest (role names, operation
/// preferences, the template body) would bury them. Unknown types show every attribute.
fn brief_keys(rt: ResourceType) -> Option<&'static [&'static str]> {
    match rt {
        ResourceType::Unit => Some(&["parent"]),
        ResourceType::Account => Some(&["email", "unit"]),
        ResourceType::StackSet => Some(&[
            "description",
            "permissionModel",
            "capabilities",
            "parameters",
            "template",
        ]),
        ResourceType::StackInstance => Some(&["parameterOverrides"]),
        _ => None,
    }
}

fn brief(rt: ResourceType, value: &Value) -> Vec<Detail> {
    let Value::Object(obj) = value else {
        return vec![Detail::Attr {
            key: "value".into(),
            value: show(value),
        }];
    };
    let selected: Vec<(&String, &Value)> = match brief_keys(rt) {
        Some(keys) => keys.iter().filter_map(|k| obj.get_key_value(*k)).collect(),
        // The name is already in the address.
        None => obj.iter().filter(|(k, _)| k.as_str() != "name").collect(),
    };
    let mut out = Vec::new();
    for (key, v) in selected {
        if key == "template" {
            if let Value::String(t) = v {
                let n = t.lines().count();
                let unit = if n == 1 { "line" } else { "lines" };
                out.push(Detail::Attr {
                    key: key.clone(),
                    value: format!("{} {unit}", thousands(n)),
                });
            }
            continue;
        }
        leaves(&path(None, key), v, &mut out);
    }
    out
}

/// Flattens objects into dotted keys (`parameters.EnvType`); arrays and scalars are leaves.
/// Nulls and empty containers say nothing on a create and are skipped.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<Detail>) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, child) in m {
                leaves(&path(Some(prefix), k), child, out);
            }
        }
        Value::Array(a) if a.is_empty() => {}
        other => out.push(Detail::Attr {
            key: prefix.to_string(),
            value: show(other),
        }),
    }
}

/// Joins a key path: identifier-like keys with a dot, others bracketed and quoted (tag keys such
/// as `aws:cloudformation:stack-name` must stay one readable segment).
fn path(prefix: Option<&str>, key: &str) -> String {
    let simple = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (prefix, simple) {
        (None, true) => key.to_string(),
        (Some(p), true) => format!("{p}.{key}"),
        (p, false) => format!("{}[{}]", p.unwrap_or(""), Value::from(key)),
    }
}

fn changed(before: &Value, after: &Value) -> Vec<Detail> {
    let mut out = Vec::new();
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for key in union_keys(b, a) {
                if key == "template" {
                    continue;
                }
                diff_values(&path(None, key), b.get(key), a.get(key), &mut out);
            }
            let (old, new) = (template_text(b), template_text(a));
            if old != new {
                out.push(Detail::Template(template_diff(old, new)));
            }
        }
        _ => diff_values("value", Some(before), Some(after), &mut out),
    }
    out
}

fn template_text(m: &serde_json::Map<String, Value>) -> &str {
    m.get("template").and_then(Value::as_str).unwrap_or("")
}

/// The manifest's key order first (what the author wrote), then keys only live has.
fn union_keys<'a>(
    before: &'a serde_json::Map<String, Value>,
    after: &'a serde_json::Map<String, Value>,
) -> Vec<&'a str> {
    let mut keys: Vec<&str> = after.keys().map(String::as_str).collect();
    keys.extend(
        before
            .keys()
            .map(String::as_str)
            .filter(|k| !after.contains_key(*k)),
    );
    keys
}

fn diff_values(key: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<Detail>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            for k in union_keys(b, a) {
                diff_values(&path(Some(key), k), b.get(k), a.get(k), out);
            }
        }
        // An object added or removed whole reads best as its leaves, one per line.
        (Some(Value::Object(b)), None) => {
            for (k, v) in b {
                diff_values(&path(Some(key), k), Some(v), None, out);
            }
        }
        (None, Some(Value::Object(a))) => {
            for (k, v) in a {
                diff_values(&path(Some(key), k), None, Some(v), out);
            }
        }
        _ => {
            let (mut b, mut a) = (before.map(show), after.map(show));
            // "1" and 1 both show as 1: fall back to JSON so the difference is visible.
            if b == a {
                b = before.map(Value::to_string);
                a = after.map(Value::to_string);
            }
            out.push(Detail::Changed {
                key: key.to_string(),
                before: b,
                after: a,
            });
        }
    }
}

/// Unified diff with 3 lines of context. Both sides are newline-terminated first, so a missing
/// final newline does not show as a changed last line.
pub(crate) fn template_diff(before: &str, after: &str) -> Vec<DiffLine> {
    let terminated = |s: &str| {
        if s.is_empty() || s.ends_with('\n') {
            s.to_string()
        } else {
            format!("{s}\n")
        }
    };
    let (old, new) = (terminated(before), terminated(after));
    let diff = TextDiff::from_lines(old.as_str(), new.as_str());
    let mut unified = diff.unified_diff();
    unified.context_radius(3);
    let mut out = vec![
        DiffLine::File("--- live".into()),
        DiffLine::File("+++ manifest".into()),
    ];
    for hunk in unified.iter_hunks() {
        out.push(DiffLine::Hunk(hunk.header().to_string()));
        for change in hunk.iter_changes() {
            let line = clean(change.value().trim_end_matches(['\n', '\r']));
            out.push(match change.tag() {
                ChangeTag::Equal => DiffLine::Context(line),
                ChangeTag::Delete => DiffLine::Removed(line),
                ChangeTag::Insert => DiffLine::Added(line),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4812), "4,812");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn nested_changes_become_dotted_keys() {
        let before = json!({"parameters": {"EnvType": "stage", "Old": "x"}, "tags": {}});
        let after = json!({"parameters": {"EnvType": "staging"}, "tags": {"a:b": "1"}});
        let got = changed(&before, &after);
        let keys: Vec<_> = got
            .iter()
            .map(|d| match d {
                Detail::Changed { key, .. } => key.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(
            keys,
            ["parameters.EnvType", "parameters.Old", "tags[\"a:b\"]"]
        );
    }

    #[test]
    fn a_string_and_a_number_that_look_alike_are_told_apart() {
        let got = changed(&json!({"n": "1"}), &json!({"n": 1}));
        assert_eq!(
            got,
            [Detail::Changed {
                key: "n".into(),
                before: Some("\"1\"".into()),
                after: Some("1".into()),
            }]
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("a\u{1b}[31mb"), "a\\u{1b}[31mb");
    }
}
