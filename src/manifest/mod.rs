//! The manifest: loading `estate.yaml` and its includes into typed documents, with every
//! problem collected as a located diagnostic.

mod doc;
pub mod model;
pub mod names;
pub mod outputs;
pub mod refs;
pub mod schema;
pub mod stage_rights;
mod validate;

use crate::diag::{Code, Diagnostics};
use crate::source::{ManifestSource, SourceError};
use crate::template::{Template, TemplateError};
use crate::yaml::{self, Node};
use model::*;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use doc::{Doc, Parsed};

pub const ROOT_FILE: &str = "estate.yaml";

/// A loaded, valid manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub root: PathBuf,
    pub commit: Option<String>,
    pub dirty: bool,
    pub estate: Doc<EstateSpec>,
    pub organization: Option<Doc<OrganizationSpec>>,
    pub environments: Vec<Doc<EnvironmentSpec>>,
    pub stack_sets: Vec<Doc<StackSetSpec>>,
    pub portfolios: Vec<Doc<PortfolioSpec>>,
    pub pipelines: Vec<Doc<PipelineSpec>>,
    /// Every template the manifest names, by path relative to the manifest root.
    pub templates: BTreeMap<PathBuf, Template>,
    /// Other files the manifest names (pipelines' test buildspecs), by path relative to the
    /// manifest root.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Manifest {
    pub fn name(&self) -> &str {
        &self.estate.name
    }

    pub fn environment(&self, name: &str) -> Option<&Doc<EnvironmentSpec>> {
        self.environments.iter().find(|e| e.name == name)
    }

    pub fn accounts(&self) -> &[Account] {
        self.organization
            .as_ref()
            .map_or(&[], |o| o.spec.accounts.as_slice())
    }

    pub fn units(&self) -> &[Unit] {
        self.organization
            .as_ref()
            .map_or(&[], |o| o.spec.units.as_slice())
    }

    /// Environments in promotion order; those not in `promotion` follow, by name.
    pub fn environments_in_order(&self) -> Vec<&Doc<EnvironmentSpec>> {
        let mut out: Vec<_> = self
            .estate
            .spec
            .promotion
            .iter()
            .filter_map(|n| self.environment(n))
            .collect();
        let mut rest: Vec<_> = self
            .environments
            .iter()
            .filter(|e| !self.estate.spec.promotion.contains(&e.name))
            .collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(rest);
        out
    }

    /// Regions of an environment: its own, or the Estate's.
    pub fn regions_of(&self, env: &Doc<EnvironmentSpec>) -> Vec<String> {
        env.spec
            .regions
            .clone()
            .unwrap_or_else(|| self.estate.spec.regions.clone())
    }
}

/// What loading produced: the manifest when there were no errors, and every diagnostic.
pub struct Loaded {
    pub manifest: Option<Manifest>,
    pub diagnostics: Diagnostics,
}

/// Loads and validates the manifest from `source`. Makes no network calls.
pub fn load(source: &ManifestSource) -> Loaded {
    let mut diags = Diagnostics::default();
    let mut parsed = Parsed::default();
    let root_file = Path::new(ROOT_FILE);
    let root_display = source.display(root_file);

    let Some(root_docs) = read_yaml(source, root_file, &mut diags) else {
        return Loaded {
            manifest: None,
            diagnostics: diags,
        };
    };
    add_root(root_docs, &root_display, &mut parsed, &mut diags);

    // Included files, each loaded once even when several globs match it. An Estate that failed
    // the schema still names its includes, so their mistakes are reported in the same run.
    if let Some(includes) = include_patterns(&parsed) {
        load_includes(source, includes, &root_display, &mut parsed, &mut diags);
    }

    let templates = load_templates(source, &parsed, &mut diags);
    let files = load_buildspecs(source, &parsed, &mut diags);
    validate::check(&parsed, &templates, &mut diags);
    diags.sort();

    let manifest = if diags.has_errors() {
        None
    } else {
        parsed.estate.into_iter().next().map(|estate| Manifest {
            root: source.display_root.clone(),
            commit: source.commit.clone(),
            dirty: source.dirty,
            estate,
            organization: parsed.organization.into_iter().next(),
            environments: parsed.environments,
            stack_sets: parsed.stack_sets,
            portfolios: parsed.portfolios,
            pipelines: parsed.pipelines,
            templates,
            files,
        })
    };
    Loaded {
        manifest,
        diagnostics: diags,
    }
}

/// Adds estate.yaml's one document, the Estate; anything else there is an error.
fn add_root(
    root_docs: Vec<Node>,
    root_display: &str,
    parsed: &mut Parsed,
    diags: &mut Diagnostics,
) {
    let mut root_count = 0;
    for node in root_docs {
        root_count += 1;
        let kind = document_kind(&node, root_display, diags);
        if root_count > 1 {
            diags
                .error(
                    Code::Root,
                    root_display,
                    node.span.clone(),
                    "estate.yaml holds exactly one document, the Estate",
                )
                .help("move other documents into files named by `include`");
            continue;
        }
        match kind {
            Some(Kind::Estate) => add_document(
                Kind::Estate,
                node,
                root_display,
                Path::new(""),
                parsed,
                diags,
            ),
            Some(other) => {
                let span = node.span_for("/kind");
                diags
                    .error(
                        Code::Root,
                        root_display,
                        span,
                        format!(
                            "estate.yaml must hold the Estate document, found {}",
                            other.as_str()
                        ),
                    )
                    .help("start estate.yaml with `kind: Estate`");
            }
            None => {}
        }
    }
    if root_count == 0 {
        diags.error(
            Code::Root,
            root_display,
            0..0,
            "estate.yaml is empty: it must hold the Estate document",
        );
    }
}

/// The Estate's include globs with their spans, from the Estate even when it failed the schema.
fn include_patterns(parsed: &Parsed) -> Option<Vec<(String, Range<usize>)>> {
    match parsed.estate.first() {
        Some(estate) => Some(
            estate
                .spec
                .include
                .iter()
                .enumerate()
                .map(|(i, p)| (p.clone(), estate.span(&format!("/spec/include/{i}"))))
                .collect(),
        ),
        None => parsed
            .invalid
            .iter()
            .find(|(k, _, _)| *k == Kind::Estate)
            .and_then(|(_, _, node)| {
                let items = node.pointer("/spec/include")?;
                match &items.value {
                    yaml::Value::Seq(items) => Some(
                        items
                            .iter()
                            .filter_map(|n| Some((n.as_str()?.to_string(), n.span.clone())))
                            .collect(),
                    ),
                    _ => None,
                }
            }),
    }
}

/// Loads the files the include globs match, each once; a bad glob is an error, one matching
/// nothing a warning.
fn load_includes(
    source: &ManifestSource,
    includes: Vec<(String, Range<usize>)>,
    root_display: &str,
    parsed: &mut Parsed,
    diags: &mut Diagnostics,
) {
    let root_file = Path::new(ROOT_FILE);
    let files = match source.list_files() {
        Ok(f) => f,
        Err(e) => {
            diags.error(Code::Io, root_display, 0..0, e.to_string());
            Vec::new()
        }
    };
    let mut seen = BTreeSet::new();
    for (pattern, span) in includes {
        let span = span.clone();
        let glob = match globset::GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
        {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                diags.error(
                    Code::Include,
                    root_display,
                    span,
                    format!("invalid include glob `{pattern}`: {}", e.kind()),
                );
                continue;
            }
        };
        let matched: Vec<&PathBuf> = files
            .iter()
            .filter(|f| glob.is_match(f) && f.as_path() != root_file)
            .collect();
        if matched.is_empty() {
            diags
                .warning(
                    Code::Include,
                    root_display,
                    span,
                    format!("include `{pattern}` matches no file"),
                )
                .label("matches nothing");
        }
        for file in matched {
            if seen.insert(file.clone()) {
                load_file(source, file, parsed, diags);
            }
        }
    }
}

/// Reads and parses a YAML file; registers its text for diagnostics.
fn read_yaml(source: &ManifestSource, rel: &Path, diags: &mut Diagnostics) -> Option<Vec<Node>> {
    let display = source.display(rel);
    let bytes = match source.read(rel) {
        Ok(b) => b,
        Err(e) => {
            diags.error(Code::Io, &display, 0..0, e.to_string());
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Register the text with the bad bytes replaced, so the error points at the first
            // of them; offsets before it are the same in both.
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            diags.sources.add(&display, &lossy);
            diags
                .error(Code::Io, &display, at..at, "file is not UTF-8 text")
                .label("not UTF-8")
                .help("save the file as UTF-8");
            return None;
        }
    };
    diags.sources.add(&display, &text);
    match yaml::parse_documents(&text) {
        Ok((docs, duplicates)) => {
            for d in duplicates {
                diags.error(Code::Yaml, &display, d.span, d.message);
            }
            // `---` at the end of a file yields an empty document; it holds nothing.
            Some(
                docs.into_iter()
                    .filter(|d| d.value != yaml::Value::Null)
                    .collect(),
            )
        }
        Err(e) if e.limit => {
            diags
                .error(Code::YamlLimit, &display, e.span, e.message)
                .label("loading stops here")
                .help("manifests need neither deep nesting nor aliases that expand this far");
            None
        }
        Err(e) => {
            let secret = near_parameters(&text, e.span.start);
            let b = diags
                .error(
                    Code::Yaml,
                    &display,
                    e.span,
                    format!("YAML syntax error: {}", e.message),
                )
                .label("here");
            if secret {
                b.sensitive();
            }
            None
        }
    }
}

/// Lines of context a rendered diagnostic shows around its own (miette's default is one).
const CONTEXT_LINES: usize = 2;

/// Whether a syntax error at `offset`, or the lines shown around it, may sit in a `parameters`
/// mapping, whose values may be NoEcho secrets. The file did not parse, so this reads the
/// indentation: an ancestor line (or the line itself) names `parameters:`.
fn near_parameters(text: &str, offset: usize) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    let at = text[..offset.min(text.len())].matches('\n').count();
    let first = at.saturating_sub(CONTEXT_LINES);
    let last = (at + CONTEXT_LINES).min(lines.len().saturating_sub(1));
    (first..=last).any(|line| in_parameters_block(&lines, line))
}

fn in_parameters_block(lines: &[&str], line: usize) -> bool {
    let names_parameters = |l: &str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        t.starts_with("parameters:") || l.contains(" parameters:") || l.contains("{parameters:")
    };
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    if names_parameters(lines[line]) {
        return true;
    }
    let mut current = if is_blank(lines[line]) {
        usize::MAX
    } else {
        indent(lines[line])
    };
    for l in lines[..line].iter().rev() {
        if is_blank(l) || indent(l) >= current {
            continue;
        }
        if names_parameters(l) {
            return true;
        }
        current = indent(l);
        if current == 0 {
            break;
        }
    }
    false
}

fn load_file(source: &ManifestSource, rel: &Path, parsed: &mut Parsed, diags: &mut Diagnostics) {
    let display = source.display(rel);
    let Some(docs) = read_yaml(source, rel, diags) else {
        parsed.incomplete = true;
        return;
    };
    let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    for node in docs {
        match document_kind(&node, &display, diags) {
            Some(Kind::Estate) => {
                diags
                    .error(
                        Code::Root,
                        &display,
                        node.span_for("/kind"),
                        "only estate.yaml may hold the Estate document",
                    )
                    .help("there is exactly one Estate, in the manifest's estate.yaml");
            }
            Some(kind) => add_document(kind, node, &display, &dir, parsed, diags),
            None => {}
        }
    }
}

/// Reads `kind`, reporting a missing or unknown one.
fn document_kind(node: &Node, file: &str, diags: &mut Diagnostics) -> Option<Kind> {
    if node.as_map().is_none() {
        diags.error(
            Code::Type,
            file,
            node.span.clone(),
            "a manifest document must be a mapping with apiVersion, kind, metadata and spec",
        );
        return None;
    }
    let Some(kind_node) = node.get("kind") else {
        diags
            .error(
                Code::MissingField,
                file,
                node.span.start..node.span.start,
                "document has no `kind`",
            )
            .help(format!(
                "one of: {}",
                Kind::ALL.map(Kind::as_str).join(", ")
            ));
        return None;
    };
    let text = kind_node.as_str().unwrap_or_default();
    match Kind::parse(text) {
        Some(k) => Some(k),
        None => {
            let names = Kind::ALL.map(Kind::as_str);
            let b = diags
                .error(
                    Code::UnknownKind,
                    file,
                    kind_node.span.clone(),
                    format!("unknown kind `{text}`"),
                )
                .label("not a kind");
            match crate::diag::closest(text, names) {
                Some(best) => b.help(format!("did you mean `{best}`?")),
                None => b.help(format!("one of: {}", names.join(", "))),
            };
            None
        }
    }
}

fn add_document(
    kind: Kind,
    node: Node,
    file: &str,
    dir: &Path,
    parsed: &mut Parsed,
    diags: &mut Diagnostics,
) {
    if !schema::check(kind, &node, file, diags) {
        parsed.invalid.push((kind, file.to_string(), node));
        return;
    }
    fn typed<S: DeserializeOwned>(
        node: Node,
        file: &str,
        dir: &Path,
        diags: &mut Diagnostics,
    ) -> Option<Doc<S>> {
        match serde_json::from_value::<Document<S>>(node.to_json()) {
            Ok(doc) => Some(Doc {
                name: doc.metadata.name,
                spec: doc.spec,
                file: file.to_string(),
                dir: dir.to_path_buf(),
                node,
            }),
            Err(e) => {
                // The schema is generated from these types, so this means they disagree: a bug.
                diags.error(Code::Schema, file, node.span.clone(), e.to_string());
                None
            }
        }
    }
    match kind {
        Kind::Estate => parsed.estate.extend(typed(node, file, dir, diags)),
        Kind::Organization => parsed.organization.extend(typed(node, file, dir, diags)),
        Kind::Environment => parsed.environments.extend(typed(node, file, dir, diags)),
        Kind::StackSet => parsed.stack_sets.extend(typed(node, file, dir, diags)),
        Kind::Portfolio => parsed.portfolios.extend(typed(node, file, dir, diags)),
        Kind::Pipeline => parsed.pipelines.extend(typed(node, file, dir, diags)),
    }
}

/// Every template path the documents name, with the document and pointer that names it.
fn template_uses(parsed: &Parsed) -> Vec<(PathBuf, &str, Range<usize>)> {
    let mut uses = Vec::new();
    for s in &parsed.stack_sets {
        uses.push((
            s.resolve_path(&s.spec.template),
            s.file.as_str(),
            s.span("/spec/template"),
        ));
    }
    for p in &parsed.portfolios {
        for (i, product) in p.spec.products.iter().enumerate() {
            for (j, v) in product.versions.iter().enumerate() {
                uses.push((
                    p.resolve_path(&v.template),
                    p.file.as_str(),
                    p.span(&format!("/spec/products/{i}/versions/{j}/template")),
                ));
            }
        }
    }
    for p in &parsed.pipelines {
        uses.push((
            p.resolve_path(&p.spec.template),
            p.file.as_str(),
            p.span("/spec/template"),
        ));
    }
    uses
}

/// Reads the test buildspecs pipelines name; a missing one is an error at its reference.
fn load_buildspecs(
    source: &ManifestSource,
    parsed: &Parsed,
    diags: &mut Diagnostics,
) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for p in &parsed.pipelines {
        for (i, stage) in p.spec.stages.iter().enumerate() {
            let Some(test) = &stage.test else { continue };
            let path = p.resolve_path(&test.buildspec);
            if files.contains_key(&path) {
                continue;
            }
            match source.read(&path) {
                Ok(bytes) => {
                    files.insert(path, bytes);
                }
                Err(SourceError::OutsideRepository(_)) => outside(
                    diags,
                    &p.file,
                    p.span(&format!("/spec/stages/{i}/test/buildspec")),
                    "buildspec",
                    &test.buildspec,
                ),
                Err(_) => {
                    diags
                        .error(
                            Code::Buildspec,
                            &p.file,
                            p.span(&format!("/spec/stages/{i}/test/buildspec")),
                            format!("buildspec `{}` does not exist", source.display(&path)),
                        )
                        .label("no such file");
                }
            }
        }
    }
    files
}

fn load_templates(
    source: &ManifestSource,
    parsed: &Parsed,
    diags: &mut Diagnostics,
) -> BTreeMap<PathBuf, Template> {
    let mut templates = BTreeMap::new();
    let mut failed = BTreeSet::new();
    for (path, file, span) in template_uses(parsed) {
        if templates.contains_key(&path) || failed.contains(&path) {
            continue;
        }
        let display = source.display(&path);
        let bytes = match source.read(&path) {
            Ok(b) => b,
            Err(SourceError::OutsideRepository(_)) => {
                outside(diags, file, span, "template", &path.to_string_lossy());
                failed.insert(path);
                continue;
            }
            Err(_) => {
                diags
                    .error(
                        Code::Template,
                        file,
                        span,
                        format!("template `{display}` does not exist"),
                    )
                    .label("no such file");
                failed.insert(path);
                continue;
            }
        };
        match Template::parse(&bytes) {
            Ok(t) => {
                templates.insert(path, t);
            }
            Err(e) => {
                // Point into the template itself when the parser knows the line.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                match &e {
                    TemplateError::Syntax {
                        line: Some(line), ..
                    } => {
                        diags.sources.add(&display, &text);
                        let at = line_start(&text, *line);
                        diags.error(Code::Template, &display, at..at, e.to_string());
                        diags
                            .error(
                                Code::Template,
                                file,
                                span,
                                format!("template `{display}` does not parse"),
                            )
                            .label("named here");
                    }
                    _ => {
                        diags.error(Code::Template, file, span, format!("`{display}`: {e}"));
                    }
                }
                failed.insert(path);
            }
        }
    }
    templates
}

/// A named file outside the repository: refused without reading it, so none of its bytes can
/// reach any output.
fn outside(diags: &mut Diagnostics, file: &str, span: Range<usize>, what: &str, written: &str) {
    diags
        .error(
            Code::OutsidePath,
            file,
            span,
            format!("{what} `{written}` resolves outside the repository"),
        )
        .label("outside the repository")
        .help("name files inside the manifest's repository; `..`, absolute paths and symbolic links may not leave it");
}

fn line_start(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}
