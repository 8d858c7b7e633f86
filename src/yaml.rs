//! Located YAML: a parse tree whose every node knows its byte span, so diagnostics can point at it.
//!
//! serde_yaml gives values without positions; manifests need `file:line:col` for every error,
//! so they are parsed from saphyr's event stream (which carries spans) into [`Node`]s, then
//! turned into JSON for schema checks and typed deserialization.

use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;
use std::ops::Range;

/// A YAML node with the byte range it covers in its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Range<usize>,
    /// True for a plain (unquoted) scalar: used to suggest quoting when a string was expected.
    pub plain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax problem, with the byte offset where the parser stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Range<usize>,
    /// The text is YAML, but over one of the loader's limits ([`MAX_DEPTH`],
    /// [`MAX_ALIAS_NODES`]) rather than malformed.
    pub limit: bool,
}

/// Deepest nesting of sequences and mappings accepted. Manifests nest a dozen levels at most;
/// the tree is walked recursively (JSON conversion, schema checks, drop), so an unbounded
/// depth would overflow the stack. 128 is also serde_json's own recursion limit.
pub const MAX_DEPTH: usize = 128;

/// Most nodes all alias uses of one stream may copy in. Real manifests alias a few small
/// mappings (shared tags, parameters); a "billion laughs" of nested aliases would otherwise
/// expand exponentially and exhaust memory.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Parses every document of a YAML stream. Duplicate keys are reported as errors, but parsing
/// goes on, so one file can report several of them.
pub fn parse_documents(src: &str) -> Result<(Vec<Node>, Vec<SyntaxError>), SyntaxError> {
    let offsets = CharOffsets::new(src);
    let mut builder = Builder::default();
    for item in Parser::new_from_str(src) {
        match item {
            Ok((event, span)) => {
                let range = offsets.byte(span.start.index())..offsets.byte(span.end.index());
                builder.event(event, range)?;
            }
            Err(e) => {
                let at = offsets.byte(e.marker().index());
                // saphyr has its own, lower, limit on nested flow collections.
                let limit = e.info().contains("recursion limit");
                return Err(SyntaxError {
                    message: if limit {
                        "nesting is deeper than the YAML parser accepts".into()
                    } else {
                        e.info().to_string()
                    },
                    span: at..at,
                    limit,
                });
            }
        }
    }
    Ok((builder.documents, builder.duplicates))
}

/// saphyr reports positions in characters; miette and slicing need bytes.
struct CharOffsets {
    bytes: Vec<usize>,
    len: usize,
}

impl CharOffsets {
    fn new(src: &str) -> Self {
        CharOffsets {
            bytes: src.char_indices().map(|(b, _)| b).collect(),
            len: src.len(),
        }
    }
    fn byte(&self, char_index: usize) -> usize {
        self.bytes.get(char_index).copied().unwrap_or(self.len)
    }
}

enum Frame {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    documents: Vec<Node>,
    /// Anchored nodes with how many nodes they hold, so an alias use is charged its size.
    anchors: HashMap<usize, (Node, usize)>,
    /// Nodes copied in by alias uses so far.
    alias_nodes: usize,
    duplicates: Vec<SyntaxError>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Range<usize>) -> Result<(), SyntaxError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.to_string());
                let node = Node {
                    value: resolve_scalar(&text, style, tag.as_deref()),
                    span,
                    plain: style == ScalarStyle::Plain,
                };
                self.remember(anchor, &node);
                self.push(node);
            }
            Event::Alias(id) => {
                let size = self.anchors.get(&id).map_or(1, |(_, n)| *n);
                self.alias_nodes = self.alias_nodes.saturating_add(size);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(SyntaxError {
                        message: format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)"
                        ),
                        span,
                        limit: true,
                    });
                }
                let mut node = self
                    .anchors
                    .get(&id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or(Node {
                        value: Value::Null,
                        span: span.clone(),
                        plain: true,
                    });
                node.span = span;
                self.push(node);
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(&span)?;
                self.stack.push(Frame::Seq {
                    start: span.start,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                self.enter(&span)?;
                self.stack.push(Frame::Map {
                    start: span.start,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(());
                };
                let (node, anchor) = match frame {
                    Frame::Seq {
                        start,
                        anchor,
                        items,
                    } => {
                        let end = items
                            .last()
                            .map_or(span.end, |n| n.span.end.max(span.start));
                        (
                            Node {
                                value: Value::Seq(items),
                                span: start..end.max(start),
                                plain: false,
                            },
                            anchor,
                        )
                    }
                    Frame::Map {
                        start,
                        anchor,
                        entries,
                        ..
                    } => {
                        let end = entries
                            .last()
                            .map_or(span.end, |(_, v)| v.span.end.max(span.start));
                        (
                            Node {
                                value: Value::Map(entries),
                                span: start..end.max(start),
                                plain: false,
                            },
                            anchor,
                        )
                    }
                };
                self.remember(anchor, &node);
                self.push(node);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    /// Refuses a collection nested deeper than [`MAX_DEPTH`].
    fn enter(&self, span: &Range<usize>) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                message: format!("nesting is deeper than {MAX_DEPTH} levels"),
                span: span.start..span.start,
                limit: true,
            });
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), node.count()));
        }
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.value == key.value) {
                        self.duplicates.push(SyntaxError {
                            message: format!(
                                "duplicate key `{}` (first defined at byte {})",
                                key.as_key(),
                                first.span.start
                            ),
                            span: key.span.clone(),
                            limit: false,
                        });
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

/// YAML 1.2 core schema resolution for plain scalars; quoted scalars are always strings.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    if let Some(tag) = tag {
        // Only the core `!!str` tag changes how a manifest scalar reads; others are kept as text.
        if tag.ends_with(":str") || tag == "!!str" {
            return Value::String(text.to_string());
        }
    }
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if is_int(text) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    if is_float(text) {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(text.to_string())
}

fn is_int(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (!a.is_empty() || !b.is_empty())
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(is_int);
    mantissa_ok && exponent_ok
}

impl Node {
    /// How many nodes this one holds, itself included (keys count as nodes).
    fn count(&self) -> usize {
        match &self.value {
            Value::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Value::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.count() + v.count())
                    .sum::<usize>()
            }
            _ => 1,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node under `key` in a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_key() == key)
            .map(|(k, v)| (k, v))
    }

    /// A mapping key as text, whatever scalar type it resolved to.
    pub fn as_key(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Seq(_) | Value::Map(_) => "<complex key>".into(),
        }
    }

    /// Follows a JSON pointer (`/spec/units/0/path`); `None` when any step is missing.
    pub fn pointer(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for token in pointer_tokens(pointer) {
            node = match &node.value {
                Value::Map(_) => node.get(&token)?,
                Value::Seq(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The span to underline for a JSON pointer: the deepest node that exists on the way, and
    /// for a mapping entry its key, since that is what a reader looks for.
    pub fn span_for(&self, pointer: &str) -> Range<usize> {
        let mut node = self;
        let mut span = self.span.clone();
        for token in pointer_tokens(pointer) {
            match &node.value {
                Value::Map(_) => match node.entry(&token) {
                    Some((k, v)) => {
                        span = if matches!(v.value, Value::Map(_) | Value::Seq(_)) {
                            k.span.clone()
                        } else {
                            v.span.clone()
                        };
                        node = v;
                    }
                    None => return span,
                },
                Value::Seq(items) => match token.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(item) => {
                        span = item.span.clone();
                        node = item;
                    }
                    None => return span,
                },
                _ => return span,
            }
        }
        span
    }

    /// The span of the key `name` inside the mapping at `pointer` (for unknown-field errors).
    pub fn key_span(&self, pointer: &str, name: &str) -> Option<Range<usize>> {
        let (k, _) = self.pointer(pointer)?.entry(name)?;
        Some(k.span.clone())
    }

    /// The node as JSON, for the schema and for typed deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_key(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn pointer_tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .filter(|t| !t.is_empty())
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// Escapes one JSON-pointer token.
pub fn pointer_escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(src: &str) -> Node {
        let (mut docs, dups) = parse_documents(src).unwrap();
        assert!(dups.is_empty());
        docs.remove(0)
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        let n = doc("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: yes\ng: 012345678901\n");
        assert_eq!(n.get("a").unwrap().value, Value::Int(1));
        assert_eq!(n.get("b").unwrap().value, Value::String("1".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("d").unwrap().value, Value::Null);
        assert_eq!(n.get("e").unwrap().value, Value::Float(1.5));
        // YAML 1.1 booleans are plain strings in 1.2.
        assert_eq!(n.get("f").unwrap().value, Value::String("yes".into()));
        assert_eq!(n.get("g").unwrap().value, Value::Int(12_345_678_901));
    }

    #[test]
    fn spans_are_bytes_even_after_non_ascii() {
        let src = "é: x\nkey: value\n";
        let n = doc(src);
        let span = n.span_for("/key");
        assert_eq!(&src[span], "value");
    }

    #[test]
    fn pointer_follows_maps_and_sequences() {
        let src = "spec:\n  units:\n    - path: /ml\n    - path: /ml/a\n";
        let n = doc(src);
        assert_eq!(
            n.pointer("/spec/units/1/path").unwrap().as_str(),
            Some("/ml/a")
        );
        assert_eq!(&src[n.span_for("/spec/units/1/path")], "/ml/a");
        assert_eq!(&src[n.span_for("/spec/units/7")], "units");
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let (_, dups) = parse_documents("a: 1\na: 2\n").unwrap();
        assert_eq!(dups.len(), 1);
        assert_eq!(dups[0].span, 5..6);
    }

    #[test]
    fn multi_document_streams_and_aliases() {
        let (docs, _) = parse_documents("a: &x [1, 2]\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        let (docs, _) = parse_documents("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(
            docs[0].get("b").unwrap().to_json(),
            serde_json::json!([1, 2])
        );
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.span.start > 0, "{err:?}");
    }

    /// ~1 KB of nested anchors that would expand to 10^9 nodes.
    fn alias_bomb() -> String {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        src
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias() {
        let src = alias_bomb();
        assert!(src.len() < 1100, "{}", src.len());
        let err = parse_documents(&src).unwrap_err();
        assert!(err.limit, "{err:?}");
        assert!(err.message.contains("alias"), "{err:?}");
        assert!(src[err.span.clone()].starts_with("*a"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for src in [
            "[".repeat(20_000) + &"]".repeat(20_000),
            "{a: ".repeat(20_000) + &"}".repeat(20_000),
            // Block nesting needs indentation growing with depth: 2,000 levels is 4 MB.
            (0..2_000)
                .map(|i| format!("{}- x:\n", " ".repeat(i * 2)))
                .collect::<String>(),
        ] {
            let err = parse_documents(&src).unwrap_err();
            assert!(err.message.contains("deeper than"), "{err:?}");
            assert!(err.limit, "{err:?}");
            assert!(err.span.start > 0, "{err:?}");
        }
        // Nesting within the limit is fine.
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse_documents(&ok).is_ok());
    }
}
