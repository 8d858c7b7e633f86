//! Documents as the loader reads them: each with the file, folder and YAML it came from, and
//! all of them before the cross-document checks.

use super::model::*;
use crate::source::normalize;
use crate::yaml::Node;
use std::ops::Range;
use std::path::PathBuf;

/// One document with where it came from.
#[derive(Debug, Clone)]
pub struct Doc<S> {
    pub name: String,
    pub spec: S,
    /// Display path of the file holding it (for diagnostics).
    pub file: String,
    /// The file's folder, relative to the manifest root (templates resolve against it).
    pub dir: PathBuf,
    /// The parsed YAML, kept for locating later diagnostics.
    pub node: Node,
}

impl<S> Doc<S> {
    /// The span to underline for a JSON pointer into this document.
    pub fn span(&self, pointer: &str) -> Range<usize> {
        self.node.span_for(pointer)
    }

    /// A path written in this document (a template), relative to the manifest root.
    pub fn resolve_path(&self, rel: &str) -> PathBuf {
        let joined = self.dir.join(rel);
        normalize(&joined).unwrap_or(joined)
    }
}

/// Documents as parsed, before cross-document checks.
#[derive(Default)]
pub struct Parsed {
    pub(crate) estate: Vec<Doc<EstateSpec>>,
    pub(crate) organization: Vec<Doc<OrganizationSpec>>,
    pub(crate) environments: Vec<Doc<EnvironmentSpec>>,
    pub(crate) stack_sets: Vec<Doc<StackSetSpec>>,
    pub(crate) portfolios: Vec<Doc<PortfolioSpec>>,
    pub(crate) pipelines: Vec<Doc<PipelineSpec>>,
    /// Documents that failed the schema: their names still count as defined, so one typo
    /// does not cascade into "unknown environment" errors everywhere it is referenced.
    pub(crate) invalid: Vec<(Kind, String, Node)>,
    /// A file did not parse: names it defines are unknown, so "unknown name" is not reported.
    pub(crate) incomplete: bool,
}
