//! Diagnostics: located problems in a manifest, collected (never first-only) and rendered.

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// What a diagnostic shows in place of a NoEcho parameter's value: the same text as
/// `plan::SENSITIVE` (manifest may not import plan; a test keeps the two equal).
pub const SENSITIVE: &str = "(sensitive)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of problem a diagnostic reports: a stable identifier users and tests match on,
/// rendered as `estate::<name>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// `estate.yaml` does not hold exactly the Estate document, or another file holds one.
    Root,
    /// A manifest file cannot be read, or is not UTF-8 text.
    Io,
    /// An `include` glob of the Estate is invalid, or matches no file (a warning).
    Include,
    /// A file is not valid YAML.
    Yaml,
    /// A file nests deeper, or expands aliases further, than the loader accepts.
    YamlLimit,
    /// A document, or a value in it, has the wrong YAML type.
    Type,
    /// A required field (`kind` included) is missing.
    MissingField,
    /// A field the kind's schema does not define.
    UnknownField,
    /// A document's `kind` is none estate knows.
    UnknownKind,
    /// A value the schema rejects: not one of the allowed values, not matching its pattern,
    /// exclusive fields given together, too few items.
    Value,
    /// Any other schema violation, or a document that does not deserialize.
    Schema,
    /// A name, value or AWS name that must be unique is used twice.
    Duplicate,
    /// An organizational unit is listed before (or without) its parent.
    UnitParent,
    /// An account is placed in a unit the Organization does not list.
    UnknownUnit,
    /// A reference by name (environment, unit, account) to something not defined.
    UnknownName,
    /// A `${…}` reference that is malformed, names nothing defined, or is not allowed in
    /// that document.
    UnknownReference,
    /// An environment targets no unit and no account.
    Environment,
    /// An environment is not in the Estate's promotion (a warning), or a pipeline's stages
    /// are not in promotion order.
    Promotion,
    /// A stack set's AWS name (`<name>-<environment>`) is over 128 characters.
    Name,
    /// A stack set field or target the stack set's permission model does not accept.
    PermissionModel,
    /// A stack-set override names an account no environment of it reaches (a warning).
    Override,
    /// A path the manifest names (template, buildspec) resolves outside the repository,
    /// through `..`, an absolute path or a symbolic link.
    OutsidePath,
    /// A template the manifest names does not exist or does not parse.
    Template,
    /// A template is larger than CloudFormation takes from S3.
    TemplateSize,
    /// A template needs a capability the stack set does not grant.
    Capabilities,
    /// A parameter the template does not declare, or a required one with no value in an
    /// environment.
    Parameter,
    /// A literal parameter value the template's declaration rejects.
    ParameterValue,
    /// A NoEcho parameter's value is written in the manifest (a warning).
    SecretInManifest,
    /// A stack set, portfolio or product description longer than AWS accepts.
    DescriptionLength,
    /// A tag key or value longer than AWS accepts.
    Tag,
    /// A portfolio is shared with the organization root or with its own account, or asks to
    /// share principals without a unit share.
    Share,
    /// A portfolio principal that is not an IAM ARN or name pattern AWS accepts.
    Principal,
    /// A pipeline's name is too long for the AWS names it compiles to.
    Pipeline,
    /// A pipeline's stage template requires a parameter a stage's environment does not give.
    MissingParameter,
    /// A pipeline stage's test buildspec does not exist.
    Buildspec,
    /// A `${stackSet:….outputs.…}` reference no single instance answers: an output the
    /// producer's template does not declare, an ambiguous or absent instance, a producer
    /// applied after its consumer, a self-reference or a cycle between stack sets.
    Output,
}

impl Code {
    /// The identifier as rendered (`estate::unknown-reference`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Root => "estate::root",
            Code::Io => "estate::io",
            Code::Include => "estate::include",
            Code::Yaml => "estate::yaml",
            Code::YamlLimit => "estate::yaml-limit",
            Code::Type => "estate::type",
            Code::MissingField => "estate::missing-field",
            Code::UnknownField => "estate::unknown-field",
            Code::UnknownKind => "estate::unknown-kind",
            Code::Value => "estate::value",
            Code::Schema => "estate::schema",
            Code::Duplicate => "estate::duplicate",
            Code::UnitParent => "estate::unit-parent",
            Code::UnknownUnit => "estate::unknown-unit",
            Code::UnknownName => "estate::unknown-name",
            Code::UnknownReference => "estate::unknown-reference",
            Code::Environment => "estate::environment",
            Code::Promotion => "estate::promotion",
            Code::Name => "estate::name",
            Code::PermissionModel => "estate::permission-model",
            Code::Override => "estate::override",
            Code::OutsidePath => "estate::outside-path",
            Code::Template => "estate::template",
            Code::TemplateSize => "estate::template-size",
            Code::Capabilities => "estate::capabilities",
            Code::Parameter => "estate::parameter",
            Code::ParameterValue => "estate::parameter-value",
            Code::SecretInManifest => "estate::secret-in-manifest",
            Code::DescriptionLength => "estate::description-length",
            Code::Tag => "estate::tag",
            Code::Share => "estate::share",
            Code::Principal => "estate::principal",
            Code::Pipeline => "estate::pipeline",
            Code::MissingParameter => "estate::missing-parameter",
            Code::Buildspec => "estate::buildspec",
            Code::Output => "estate::output",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Debug and serialization show the identifier, as when codes were plain strings.
impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for Code {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One problem, pointing at a byte span of a file the [`Sources`] registry holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What kind of problem, as a stable identifier (see [`Code`]).
    pub code: Code,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub span: Range<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The span holds a secret (a NoEcho parameter's value): never show the source line.
    #[serde(skip)]
    pub sensitive: bool,
}

/// The text of every file diagnostics may point into, by display path.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: BTreeMap<String, (Arc<str>, LineIndex)>,
}

impl Sources {
    pub fn add(&mut self, path: &str, text: &str) {
        self.files
            .insert(path.to_string(), (Arc::from(text), LineIndex::new(text)));
    }
    pub fn get(&self, path: &str) -> Option<&Arc<str>> {
        self.files.get(path).map(|(text, _)| text)
    }
    /// 1-based line and column of a byte offset in a registered file, without rescanning it.
    fn line_col(&self, path: &str, offset: usize) -> Option<(usize, usize)> {
        let (text, index) = self.files.get(path)?;
        Some(index.line_col(text, offset))
    }
}

/// Where each line of a file starts, so locating a diagnostic costs a binary search rather than
/// a scan of the file: thousands of diagnostics on one file used to take quadratic time.
#[derive(Debug, Clone)]
struct LineIndex(Arc<[usize]>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex(starts)
    }
    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let line = self.0.partition_point(|&start| start <= offset);
        let start = self.0[line - 1];
        (line, text[start..offset].chars().count() + 1)
    }
}

/// Most diagnostics the text rendering shows: past a few hundred nobody reads them, and each
/// costs a render of its source lines. JSON output keeps them all.
pub const MAX_RENDERED: usize = 200;

/// Builds diagnostics against the files of one load.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub sources: Sources,
    pub items: Vec<Diagnostic>,
}

/// A diagnostic under construction: `diags.error(file, span, msg).help(..)`.
pub struct Builder<'a> {
    diags: &'a mut Diagnostics,
    index: usize,
}

impl Builder<'_> {
    pub fn help(self, help: impl Into<String>) -> Self {
        self.diags.items[self.index].help = Some(help.into());
        self
    }
    pub fn label(self, label: impl Into<String>) -> Self {
        self.diags.items[self.index].label = Some(label.into());
        self
    }
    /// Marks the span as secret: the rendering names the location but never shows the line.
    pub fn sensitive(self) -> Self {
        self.diags.items[self.index].sensitive = true;
        self
    }
    /// Adds "did you mean `x`?" when a candidate is close enough.
    pub fn suggest<'s>(self, wrong: &str, candidates: impl IntoIterator<Item = &'s str>) -> Self {
        match closest(wrong, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }
}

impl Diagnostics {
    pub fn push(
        &mut self,
        severity: Severity,
        code: Code,
        file: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Builder<'_> {
        let (line, column) = self.sources.line_col(file, span.start).unwrap_or((1, 1));
        self.items.push(Diagnostic {
            severity,
            code,
            message: message.into(),
            file: file.to_string(),
            line,
            column,
            span,
            label: None,
            help: None,
            sensitive: false,
        });
        let index = self.items.len() - 1;
        Builder { diags: self, index }
    }

    pub fn error(
        &mut self,
        code: Code,
        file: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Builder<'_> {
        self.push(Severity::Error, code, file, span, message)
    }

    pub fn warning(
        &mut self,
        code: Code,
        file: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Builder<'_> {
        self.push(Severity::Warning, code, file, span, message)
    }

    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// Orders by file and position so output is stable whatever order checks ran in.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            (&a.file, a.span.start, a.severity, &a.message).cmp(&(
                &b.file,
                b.span.start,
                b.severity,
                &b.message,
            ))
        });
        self.items.dedup();
    }

    /// Renders every diagnostic with its source line and a caret under the span.
    pub fn render(&self, color: bool) -> String {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .with_links(false);
        let mut out = String::new();
        for d in self.items.iter().take(MAX_RENDERED) {
            let source = self.sources.get(&d.file).filter(|_| !d.sensitive);
            if d.sensitive {
                out.push_str(&format!(
                    "[{}:{}:{}] (source line not shown: it holds a secret)\n",
                    d.file, d.line, d.column
                ));
            } else if source.is_none() {
                // Without a source miette prints no location: name the file here.
                out.push_str(&format!("[{}:{}:{}]\n", d.file, d.line, d.column));
            }
            let report = Report {
                diag: d,
                source: source.map(|text| {
                    NamedSource::new(d.file.clone(), Arc::clone(text)).with_language("yaml")
                }),
            };
            let _ = handler.render_report(&mut out, &report);
            out.push('\n');
        }
        if self.items.len() > MAX_RENDERED {
            out.push_str(&format!(
                "... {} more not shown ({} in all: {}); `--format json` lists every one\n",
                self.items.len() - MAX_RENDERED,
                self.items.len(),
                self.summary()
            ));
        }
        out
    }

    pub fn summary(&self) -> String {
        let errors = self.error_count();
        let warnings = self.items.len() - errors;
        format!(
            "{} error{}, {} warning{}",
            errors,
            if errors == 1 { "" } else { "s" },
            warnings,
            if warnings == 1 { "" } else { "s" }
        )
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The candidate nearest to `wrong`, if it is near enough to be a plausible typo.
pub fn closest<'s>(wrong: &str, candidates: impl IntoIterator<Item = &'s str>) -> Option<&'s str> {
    let wrong_lower = wrong.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != wrong)
        .map(|c| {
            let lower = c.to_lowercase();
            // An abbreviation (`prod` for `production`) is as likely as a typo.
            let d = if wrong_lower.chars().count() >= 3 && lower.starts_with(&wrong_lower) {
                1
            } else {
                strsim::damerau_levenshtein(&wrong_lower, &lower)
            };
            (d, c)
        })
        .filter(|(d, c)| *d <= (c.chars().count().max(wrong.chars().count()) / 3).max(2))
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

struct Report<'a> {
    diag: &'a Diagnostic,
    source: Option<NamedSource<Arc<str>>>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}
impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}
impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diag.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.source.as_ref()?;
        let span = &self.diag.span;
        let span = SourceSpan::new(span.start.into(), span.end.saturating_sub(span.start));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(self.diag.label.clone().unwrap_or_else(|| "here".into())),
            span,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_but_not_strangers() {
        let names = ["staging", "production", "dev"];
        assert_eq!(closest("stagin", names), Some("staging"));
        assert_eq!(closest("prod", names), Some("production"));
        assert_eq!(closest("pr", names), None);
        assert_eq!(closest("Production", names), Some("production"));
        assert_eq!(closest("zzzzzz", names), None);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
        assert_eq!(line_col("x", 0), (1, 1));
    }

    #[test]
    fn sensitive_text_is_the_plans() {
        assert_eq!(SENSITIVE, crate::plan::SENSITIVE);
    }

    #[test]
    fn line_index_agrees_with_line_col() {
        let text = "a: 1\nbé: 2\n\nc: [x, y]\n";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                index.line_col(text, offset),
                line_col(text, offset),
                "{offset}"
            );
        }
    }

    /// Thousands of diagnostics on one large file: locating and rendering them stays linear,
    /// and text output shows the first [`MAX_RENDERED`] then says how many are left.
    #[test]
    fn many_diagnostics_render_quickly_and_capped() {
        let count = 20_000;
        let text: String = (0..count).map(|i| format!("key{i}: value\n")).collect();
        let started = std::time::Instant::now();
        let mut diags = Diagnostics::default();
        diags.sources.add("big.yaml", &text);
        let mut at = 0;
        for i in 0..count {
            diags.error(Code::Value, "big.yaml", at..at + 3, format!("bad {i}"));
            at += format!("key{i}: value\n").len();
        }
        diags.sort();
        let out = diags.render(false);
        let elapsed = started.elapsed();
        assert_eq!(diags.items.len(), count);
        assert_eq!(diags.items[count - 1].line, count);
        assert_eq!(out.matches("estate::value").count(), MAX_RENDERED);
        assert!(
            out.contains("19800 more not shown (20000 in all: 20000 errors, 0 warnings)"),
            "{}",
            &out[out.len() - 300..]
        );
        assert!(out.contains("--format json"));
        assert!(elapsed.as_secs() < 20, "took {elapsed:?}");
    }

    #[test]
    fn a_diagnostic_without_source_still_names_its_file() {
        let mut diags = Diagnostics::default();
        diags.error(Code::Io, "m/x.yaml", 0..0, "cannot read");
        assert!(diags.render(false).contains("[m/x.yaml:1:1]"));
    }
}
