//! Plan renderers: snapshots of text, markdown and JSON for fixture plans (what reviewers and
//! on-call read), the comment budget, escaping, and that masked secrets stay masked.

use crate::support::builders;
use estate::plan::{
    Action, Change, Finding, FindingKind, InstanceSide, Plan, PlanSource, ResourceType, SENSITIVE,
    StackSetSide,
};
use estate::render::{self, COMMENT_BUDGET, MarkdownOptions, Mode, TextOptions};
use std::path::Path;

fn fixture_text(name: &str) -> String {
    let path = Path::new("tests/fixtures/plans").join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> Plan {
    serde_json::from_str(&fixture_text(name)).expect("fixture is a Plan")
}

fn plain(plan: &Plan) -> String {
    render::text(plan, &TextOptions::default())
}

fn drift_text(plan: &Plan) -> String {
    render::text(
        plan,
        &TextOptions {
            color: false,
            mode: Mode::Drift,
        },
    )
}

fn drift_markdown(plan: &Plan) -> String {
    render::markdown_with(
        plan,
        &MarkdownOptions {
            mode: Mode::Drift,
            ..MarkdownOptions::default()
        },
    )
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default()
}

fn change(address: &str, rt: ResourceType, action: Action, env: Option<&str>) -> Change {
    builders::change(address, rt, action, env, "why")
}

/// A stack set side with only a name: tests set what they show.
fn stack_set(name: &str) -> StackSetSide {
    StackSetSide {
        name: name.into(),
        description: None,
        parameters: Default::default(),
        capabilities: Vec::new(),
        tags: Default::default(),
        permission_model: String::new(),
        administration_role_arn: None,
        execution_role_name: None,
        auto_deployment: None,
        operation: None,
        template: String::new(),
        known_after_apply: Default::default(),
    }
}

fn strings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plan_of(changes: Vec<Change>, findings: Vec<Finding>) -> Plan {
    Plan {
        estate: "ml-platform".into(),
        source: PlanSource {
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            path: "examples/environments/ml-platform".into(),
            dirty: false,
        },
        fingerprint: "sha256:00".into(),
        findings,
        ..builders::plan_of(&["dev", "staging", "production"], changes)
    }
}

/// Every fence that opens closes, and every `<details>` has its `</details>`: a cut must never
/// leave the rest of the comment inside a code block.
fn assert_well_formed(md: &str) {
    let mut fence: Option<String> = None;
    let (mut open, mut close) = (0, 0);
    for line in md.lines() {
        let ticks: String = line.chars().take_while(|c| *c == '`').collect();
        match &fence {
            None if ticks.len() >= 3 => fence = Some(ticks),
            Some(f) if ticks.len() >= f.len() && line.trim_end() == ticks => fence = None,
            Some(_) => continue,
            None => {}
        }
        open += line.matches("<details>").count();
        close += line.matches("</details>").count();
    }
    assert!(fence.is_none(), "a code fence is left open");
    assert_eq!(open, close, "<details> and </details> do not pair");
}

#[test]
fn fixture_plans_render_in_every_format() {
    for name in ["reference", "update", "empty"] {
        let plan = fixture(name);
        let md = render::markdown(&plan);
        assert_well_formed(&md);
        insta::assert_snapshot!(format!("{name}-text"), plain(&plan));
        insta::assert_snapshot!(format!("{name}-markdown"), md);
        insta::assert_snapshot!(format!("{name}-json"), render::json(&plan));
    }
}

#[test]
fn drift_uses_its_own_wording() {
    let plan = fixture("update");
    let text = drift_text(&plan);
    // Findings are drift too: the sentence counts them, as the exit code does.
    assert_eq!(last_line(&text), "Drift: 4 differences, 2 findings.");
    let md = drift_markdown(&plan);
    assert!(md.starts_with("<!-- estate-drift: ml-platform -->\n"));
    assert_well_formed(&md);
    insta::assert_snapshot!("update-drift-text", text);
    insta::assert_snapshot!("update-drift-markdown", md);

    let empty = fixture("empty");
    assert_eq!(
        last_line(&drift_text(&empty)),
        "No drift. Live state matches the manifest."
    );
    assert!(drift_markdown(&empty).contains("No drift. Live state matches the manifest."));
}

#[test]
fn json_is_the_plan_exactly_and_stable() {
    for name in ["reference", "update", "empty"] {
        let plan = fixture(name);
        let out = render::json(&plan);
        // The fixtures are written in serde's own layout, so a round trip is byte-identical.
        assert_eq!(out, fixture_text(name), "{name} does not round-trip");
        let back: Plan = serde_json::from_str(&out).unwrap();
        assert_eq!(back, plan);
        assert_eq!(render::json(&back), out);
    }
}

#[test]
fn text_ends_with_the_totals_sentence() {
    assert_eq!(
        last_line(&plain(&fixture("reference"))),
        "Plan: 12 to create, 0 to update, 0 to delete."
    );
    assert_eq!(
        last_line(&plain(&fixture("update"))),
        "Plan: 1 to create, 2 to update, 1 to delete; 2 findings."
    );
    assert_eq!(
        last_line(&plain(&fixture("empty"))),
        "No changes. Live state matches the manifest."
    );
    let replaced = plan_of(
        vec![change(
            "unit:/ml",
            ResourceType::Unit,
            Action::Replace,
            None,
        )],
        vec![],
    );
    assert_eq!(
        last_line(&plain(&replaced)),
        "Plan: 0 to create, 0 to update, 0 to delete, 1 to replace."
    );
}

/// A plan with findings and no change never says live matches the manifest (issue 14): an
/// orphan alone is counted in the closing line of text and comment.
#[test]
fn no_changes_with_findings_is_never_a_match() {
    let orphan = plan_of(
        vec![],
        vec![Finding {
            kind: FindingKind::Orphan,
            address: "stackSet:old-dev".parse().unwrap(),
            environment: Some("dev".into()),
            message: "stack set old-dev is managed by this estate but no longer in the manifest"
                .into(),
        }],
    );
    let text = plain(&orphan);
    assert!(!text.contains("Live state matches"), "{text}");
    assert_eq!(
        last_line(&text),
        "No changes, but 1 finding: estate leaves what it reports as it is."
    );
    let md = render::markdown(&orphan);
    assert!(!md.contains("Live state matches"), "{md}");
    assert!(md.contains("No changes, but 1 finding"), "{md}");
}

#[test]
fn legend_lists_only_the_symbols_used() {
    let reference = plain(&fixture("reference"));
    assert!(reference.contains("Legend: + create\n"), "{reference}");
    let update = plain(&fixture("update"));
    assert!(
        update.contains("Legend: + create, ~ update, - delete, ! finding\n"),
        "{update}"
    );
    assert!(!plain(&fixture("empty")).contains("Legend"));
}

#[test]
fn colour_only_when_asked() {
    let plan = fixture("update");
    let plain_text = plain(&plan);
    assert!(!plain_text.contains('\x1b'));
    let coloured = render::text(
        &plan,
        &TextOptions {
            color: true,
            mode: Mode::Plan,
        },
    );
    assert!(coloured.contains("\x1b[32m+\x1b[0m"));
    // Colour adds escapes and nothing else.
    let stripped = regex::Regex::new("\x1b\\[[0-9;]*m")
        .unwrap()
        .replace_all(&coloured, "");
    assert_eq!(stripped, plain_text);
}

/// A plan with everything that could go wrong on screen: a replace, markdown and HTML in
/// reasons and values, a multi-line reason, non-ASCII, a terminal escape, a NoEcho parameter.
fn awkward_plan() -> Plan {
    let mut replace = change(
        "stackSet:notebook-kms-staging",
        ResourceType::StackSet,
        Action::Replace,
        Some("staging"),
    );
    replace.reason = "permissionModel changed: `self-managed` → `service-managed`\nCloudFormation cannot convert a stack set in place".into();
    replace.before = Some(
        StackSetSide {
            permission_model: "self-managed".into(),
            parameters: strings(&[
                ("ApiToken", SENSITIVE),
                ("Owner", "Zoë <data-science@example.com>"),
            ]),
            ..stack_set("notebook-kms-staging")
        }
        .into(),
    );
    replace.after = Some(
        StackSetSide {
            permission_model: "service-managed".into(),
            parameters: strings(&[
                ("ApiToken", SENSITIVE),
                ("Owner", "Zoë <data-science@example.com>"),
                ("Count", "3"),
            ]),
            ..stack_set("notebook-kms-staging")
        }
        .into(),
    );
    let mut create = change(
        "stackSet:token-staging",
        ResourceType::StackSet,
        Action::Create,
        Some("staging"),
    );
    create.reason = "stack set **token-staging** does not exist <!-- sneaky -->\u{1b}[2J".into();
    create.after = Some(
        StackSetSide {
            parameters: strings(&[("ApiToken", SENSITIVE), ("EnvType", "staging")]),
            permission_model: "self-managed".into(),
            // The body of a created template is summarized, never printed.
            template: "Description: body-of-a-created-template\nParameters:\n  ApiToken:\n    NoEcho: true\n    Type: String\n".into(),
            ..stack_set("token-staging")
        }
        .into(),
    );
    let mut tagged = change(
        "stackSet:tagged```-staging",
        ResourceType::StackSet,
        Action::Update,
        Some("staging"),
    );
    tagged.before = Some(
        StackSetSide {
            tags: strings(&[("aws:team", "ml"), ("cost.centre", "8457")]),
            ..stack_set("tagged```-staging")
        }
        .into(),
    );
    tagged.after = Some(
        StackSetSide {
            tags: strings(&[("aws:team", "ml | ops")]),
            ..stack_set("tagged```-staging")
        }
        .into(),
    );
    plan_of(
        vec![replace, create, tagged],
        vec![Finding {
            kind: FindingKind::Conflict,
            address: "stackSet:<b>shadow</b>".parse().unwrap(),
            environment: Some("staging".into()),
            message: "exists without the estate tag; [click](http://example.com) `x`".into(),
        }],
    )
}

#[test]
fn awkward_content_is_escaped() {
    let plan = awkward_plan();
    let text = plain(&plan);
    let md = render::markdown(&plan);
    assert_well_formed(&md);
    assert!(!text.contains('\x1b'), "a reason drove the terminal");
    // In a code span HTML is shown, not interpreted; anywhere else it must be escaped.
    assert_eq!(
        md.matches("<b>shadow").count(),
        md.matches("`stackSet:<b>shadow</b>`").count(),
        "HTML from a finding reached the comment"
    );
    assert!(
        !md.contains("[click](http"),
        "a link from a finding reached the comment"
    );
    assert!(
        md.contains("| replace |"),
        "the table gains a replace column"
    );
    insta::assert_snapshot!("awkward-text", text);
    insta::assert_snapshot!("awkward-markdown", md);
}

#[test]
fn masked_values_stay_masked_and_created_templates_are_not_printed() {
    let plan = awkward_plan();
    let outputs = [
        plain(&plan),
        drift_text(&plan),
        render::markdown(&plan),
        drift_markdown(&plan),
    ];
    for out in &outputs {
        assert!(out.contains("parameters.ApiToken: (sensitive)"), "{out}");
        assert!(!out.contains("body-of-a-created-template"), "{out}");
    }
    // JSON is the plan itself: masked exactly as the planner masked it.
    let json = render::json(&plan);
    assert!(json.contains("\"ApiToken\": \"(sensitive)\""));
}

fn many_instances(n: usize, reason: &str) -> Plan {
    let changes = (0..n)
        .map(|i| {
            let (action, env) = if i % 100 == 99 {
                (Action::Delete, "production")
            } else {
                (Action::Create, "staging")
            };
            let account = format!("{:012}", 100_000_000_000u64 + i as u64);
            let mut c = change(
                &format!("stackInstance:model-execution-role-{env}/{account}/us-east-1"),
                ResourceType::StackInstance,
                action,
                Some(env),
            );
            c.reason = reason.to_string();
            let body = InstanceSide {
                stack_set: format!("model-execution-role-{env}"),
                account: Some(account),
                account_name: Some(format!("team-{i}")),
                region: "us-east-1".into(),
                parameter_overrides: strings(&[("EnvType", env)]),
                status: None,
                organizational_unit_id: None,
                last_operation: None,
            }
            .into();
            if action == Action::Delete {
                c.before = Some(body);
            } else {
                c.after = Some(body);
            }
            c
        })
        .collect();
    plan_of(changes, vec![])
}

#[test]
fn a_huge_plan_is_cut_to_the_comment_budget_keeping_the_summary() {
    let plan = many_instances(5_000, "account joined /ml/staging, a target of staging");
    let md = render::markdown(&plan);
    let chars = md.chars().count();
    assert!(chars <= COMMENT_BUDGET, "{chars} characters");
    assert!(md.starts_with("<!-- estate-plan: ml-platform -->\n"));
    assert!(md.contains("| organization | 0 | 0 | 0 |"));
    assert!(md.contains("| staging | 4,950 | 0 | 0 |"));
    assert!(md.contains("| production | 0 | 0 | 50 |"));
    assert!(md.contains("| **total** | **4,950** | **0** | **50** |"));
    assert!(md.contains("> [!WARNING]"));
    assert!(md.contains("> - … and 40 more"));
    let shown = md
        .lines()
        .filter(|l| l.starts_with("+ stackInstance"))
        .count()
        + md.lines()
            .filter(|l| l.starts_with("- stackInstance"))
            .count();
    assert!(shown > 100, "only {shown} changes shown");
    let notice = format!(
        "… {} more changes not shown",
        estate_thousands(5_000 - shown)
    );
    assert!(
        md.contains(&notice),
        "no `{notice}` in the tail:\n{}",
        tail(&md)
    );
    assert!(md.contains("Run `estate plan` for the full plan."));
    assert_well_formed(&md);
}

#[test]
fn the_budget_counts_characters_not_bytes() {
    // Three bytes per character: counting bytes would stop near a third of the budget.
    let plan = many_instances(
        5_000,
        "Konto trat /ml/staging bei — 検証済み — ünd ïs ëin Zíel",
    );
    let md = render::markdown(&plan);
    let chars = md.chars().count();
    assert!(chars <= COMMENT_BUDGET, "{chars} characters");
    assert!(
        md.len() > COMMENT_BUDGET,
        "the test needs multi-byte output"
    );
    assert!(
        chars > COMMENT_BUDGET - 1_000,
        "only {chars} characters used"
    );
    assert_well_formed(&md);
}

#[test]
fn a_small_budget_cuts_cleanly_between_changes() {
    let plan = fixture("update");
    for budget in [1_200, 1_800, 2_500, 3_500, 5_000] {
        let md = render::markdown_with(
            &plan,
            &MarkdownOptions {
                mode: Mode::Plan,
                budget,
            },
        );
        assert!(md.chars().count() <= budget, "{budget}: {md}");
        assert!(md.starts_with("<!-- estate-plan: ml-platform -->"));
        assert!(
            md.contains("| **total** | **1** | **2** | **1** |"),
            "{budget}: {md}"
        );
        assert!(md.contains("> [!WARNING]"), "{budget}: {md}");
        assert_well_formed(&md);
    }
    let cut = render::markdown_with(
        &plan,
        &MarkdownOptions {
            mode: Mode::Plan,
            budget: 2_500,
        },
    );
    insta::assert_snapshot!("update-markdown-cut", cut);
    assert!(!render::markdown(&plan).contains("not shown"));
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

fn estate_thousands(n: usize) -> String {
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

#[test]
fn a_rewritten_template_is_capped_in_the_comment_but_whole_in_the_terminal() {
    let lines = |tag: &str| {
        (0..1_000)
            .map(|i| format!("  Param{i}: {tag}\n"))
            .collect::<String>()
    };
    let mut c = change(
        "stackSet:big-staging",
        ResourceType::StackSet,
        Action::Update,
        Some("staging"),
    );
    c.before = Some(
        StackSetSide {
            template: lines("old"),
            ..stack_set("big-staging")
        }
        .into(),
    );
    c.after = Some(
        StackSetSide {
            template: lines("new"),
            ..stack_set("big-staging")
        }
        .into(),
    );
    let plan = plan_of(vec![c], vec![]);
    let md = render::markdown(&plan);
    assert!(
        md.contains("… 1,801 more template diff lines not shown"),
        "{}",
        tail(&md)
    );
    assert_well_formed(&md);
    let text = plain(&plan);
    assert!(text.contains("+  Param999: new"));
}

#[test]
fn a_budget_smaller_than_the_summary_still_holds() {
    let plan = fixture("update");
    let md = render::markdown_with(
        &plan,
        &MarkdownOptions {
            mode: Mode::Plan,
            budget: 300,
        },
    );
    assert!(md.chars().count() <= 300, "{md}");
    assert!(md.starts_with("<!-- estate-plan: ml-platform -->\n"));
}

/// A stack-set update whose operation preferences and digests moved: what the reader sees is
/// the operation preference and how far the update rolls out, never estate's bookkeeping tags.
#[test]
fn bookkeeping_tags_are_not_shown_and_an_update_says_how_far_it_rolls_out() {
    let tags = |op: &str, digest: &str| {
        strings(&[
            ("estate:managed-by", "ml-platform"),
            ("estate:operation", op),
            ("estate:overrides-sha256", digest),
            ("estate:secrets-sha256", digest),
            ("team", if op == "a" { "ml" } else { "platform" }),
        ])
    };
    let mut before = stack_set("roles-staging");
    before.tags = tags("a", "d1");
    before.operation = Some("a".into());
    let mut after = stack_set("roles-staging");
    after.tags = tags("b", "d2");
    after.operation = Some("b".into());
    let update = Change {
        before: Some(before.into()),
        after: Some(after.into()),
        reach: Some(estate::plan::Reach {
            instances: 6,
            accounts: 3,
            regions: 2,
        }),
        ..change(
            "stackSet:roles-staging",
            ResourceType::StackSet,
            Action::Update,
            Some("staging"),
        )
    };
    let plan = plan_of(vec![update], Vec::new());
    for out in [plain(&plan), render::markdown(&plan)] {
        assert!(!out.contains("estate:operation"), "{out}");
        assert!(!out.contains("estate:overrides-sha256"), "{out}");
        assert!(!out.contains("estate:secrets-sha256"), "{out}");
        assert!(out.contains("operation: a"), "{out}");
        assert!(
            out.contains("tags.team"),
            "a user's tag is still shown: {out}"
        );
        assert!(
            out.contains("rolls out to 6 stack instances (3 accounts × 2 regions)"),
            "{out}"
        );
    }
}

/// An update of nothing but the overrides digest is not a change of its own: the instance
/// changes it follows say it, and the totals do not count it.
#[test]
fn a_digest_only_stack_set_update_is_told_under_its_instances() {
    let mut before = stack_set("data-dev");
    before.tags = strings(&[("estate:overrides-sha256", "d1")]);
    let mut after = stack_set("data-dev");
    after.tags = strings(&[("estate:overrides-sha256", "d2")]);
    let digest = Change {
        before: Some(before.into()),
        after: Some(after.into()),
        hint: Some(estate::plan::Hint::OverridesTagOnly),
        ..change(
            "stackSet:data-dev",
            ResourceType::StackSet,
            Action::Update,
            Some("dev"),
        )
    };
    let instance = change(
        "stackInstance:data-dev/111111111111/eu-west-1",
        ResourceType::StackInstance,
        Action::Update,
        Some("dev"),
    );
    let plan = plan_of(vec![digest.clone(), instance], Vec::new());
    let text = plain(&plan);
    assert_eq!(
        last_line(&text),
        "Plan: 0 to create, 1 to update, 0 to delete.",
        "{text}"
    );
    assert!(!text.contains("~ stackSet data-dev"), "{text}");
    assert!(
        text.contains("stack set data-dev records the new overrides once its instances carry them"),
        "{text}"
    );
    // Alone (no instance change carries it), it is shown as it is rather than lost.
    let alone = plain(&plan_of(vec![digest], Vec::new()));
    assert!(alone.contains("~ stackSet data-dev"), "{alone}");
}

/// The comment marks gated and protected environments, and says when apply will need
/// `--allow-delete`: only for deletes in a protected environment.
#[test]
fn the_comment_marks_gates_and_says_when_apply_needs_allow_delete() {
    let gates = vec![estate::plan::Gate {
        environment: "production".into(),
        manual_approval: true,
        protected: true,
    }];
    let delete = |env: &str| {
        change(
            &format!("stackInstance:roles-{env}/111111111111/eu-west-1"),
            ResourceType::StackInstance,
            Action::Delete,
            Some(env),
        )
    };
    let plan = Plan {
        gates: gates.clone(),
        ..plan_of(vec![delete("production")], Vec::new())
    };
    let md = render::markdown(&plan);
    assert!(
        md.contains("| production (manual approval, protected) | 0 | 0 | 1 |"),
        "{md}"
    );
    assert!(md.contains("`production` needs manual approval"), "{md}");
    assert!(md.contains("Apply will need `--allow-delete`"), "{md}");
    let unprotected = Plan {
        gates,
        ..plan_of(vec![delete("staging")], Vec::new())
    };
    let md = render::markdown(&unprotected);
    assert!(!md.contains("--allow-delete"), "{md}");
    assert!(
        !md.contains("needs manual approval"),
        "production has no change: {md}"
    );
}
