//! A YAML document as a small tree whose every node knows where it starts in the file.
//!
//! Built from `saphyr_parser` events rather than a serde deserializer so that validation
//! can point at the exact line and column of any value, keep duplicate keys visible, and
//! report every problem instead of the first.

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span};

use super::Diagnostic;

/// Deeper nesting than any config needs; the limit keeps hostile input from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// A position in the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Offset in characters from the start of the text (saphyr counts characters).
    pub index: usize,
}

impl Pos {
    fn from_marker(marker: &Marker) -> Pos {
        Pos { line: marker.line(), column: marker.col() + 1, index: marker.index() }
    }
}

/// A YAML node with its source extent.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    /// Where the node starts (for block scalars: the first content character).
    pub pos: Pos,
    /// Character offset just past the node.
    pub end: usize,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// A scalar as written; `style` tells `null` apart from `"null"`.
    Scalar {
        text: String,
        style: ScalarStyle,
    },
    Seq(Vec<Node>),
    /// Entries in file order; duplicates are kept so validation can report them.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar's text, unless the node is a null or a collection.
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } if !self.is_null() => Some(text),
            _ => None,
        }
    }

    /// `~`, `null` or nothing at all, written without quotes (YAML 1.2 core schema).
    pub fn is_null(&self) -> bool {
        match &self.kind {
            Kind::Scalar { text, style: ScalarStyle::Plain } => {
                matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// How the node reads in a message: `"abc"`, `null`, `a map`, `a list`.
    pub fn describe(&self) -> String {
        match &self.kind {
            _ if self.is_null() => "null".to_string(),
            Kind::Scalar { text, .. } => format!("{text:?}"),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a map".to_string(),
        }
    }
}

/// Parses one YAML document; `Ok(None)` for a file with no document (empty or comments only).
///
/// Syntax errors, anchors/aliases and extra documents are fatal: the tree would not be
/// the one the author meant, so no validation is attempted on it.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, Diagnostic> {
    let mut reader = Reader { parser: Parser::new_from_str(text), path: Vec::new() };
    let mut root = None;
    loop {
        let (event, span) = reader.next()?;
        match event {
            Event::StreamEnd => return Ok(root),
            Event::DocumentStart(_) if root.is_some() => {
                return Err(reader.error(span, "only one YAML document is allowed here"));
            }
            Event::DocumentStart(_) => {
                let (first, span) = reader.next()?;
                root = Some(reader.node(first, span, 0)?);
            }
            // StreamStart, DocumentEnd and anything else carry no content.
            _ => {}
        }
    }
}

/// Pulls events and remembers the key path being built, for messages.
struct Reader<'t> {
    parser: Parser<'t, saphyr_parser::StrInput<'t>>,
    path: Vec<String>,
}

impl<'t> Reader<'t> {
    fn next(&mut self) -> Result<(Event<'t>, Span), Diagnostic> {
        match self.parser.next_event() {
            Some(Ok(event)) => Ok(event),
            Some(Err(error)) => {
                let pos = Pos::from_marker(error.marker());
                Err(Diagnostic {
                    line: pos.line,
                    column: pos.column,
                    key: self.key(),
                    message: format!("YAML syntax error: {}", error.info()),
                })
            }
            // The parser ends every stream with StreamEnd; running dry means the same.
            None => Ok((Event::StreamEnd, Span::default())),
        }
    }

    fn key(&self) -> String {
        let mut key = String::new();
        for part in &self.path {
            if !key.is_empty() && !part.starts_with('[') {
                key.push('.');
            }
            key.push_str(part);
        }
        key
    }

    fn error(&self, span: Span, message: &str) -> Diagnostic {
        let pos = Pos::from_marker(&span.start);
        Diagnostic { line: pos.line, column: pos.column, key: self.key(), message: message.to_string() }
    }

    /// Builds the node that `event` starts, consuming events up to its end.
    fn node(&mut self, event: Event<'t>, span: Span, depth: usize) -> Result<Node, Diagnostic> {
        if depth > MAX_DEPTH {
            return Err(self.error(span, "nesting is too deep"));
        }
        let anchored = match &event {
            Event::Scalar(_, _, anchor, _) | Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                *anchor != 0
            }
            _ => false,
        };
        if anchored || matches!(event, Event::Alias(_)) {
            return Err(self.error(span, "YAML anchors and aliases are not supported; write the value out"));
        }
        let pos = Pos::from_marker(&span.start);
        match event {
            Event::Scalar(text, style, _, _) => {
                Ok(Node { pos, end: span.end.index(), kind: Kind::Scalar { text: text.into_owned(), style } })
            }
            Event::SequenceStart(..) => self.sequence(pos, depth),
            Event::MappingStart(..) => self.mapping(pos, depth),
            _ => Err(self.error(span, "unexpected YAML event")),
        }
    }

    fn sequence(&mut self, pos: Pos, depth: usize) -> Result<Node, Diagnostic> {
        let mut items = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if let Event::SequenceEnd = event {
                return Ok(Node { pos, end: span.end.index(), kind: Kind::Seq(items) });
            }
            self.path.push(format!("[{}]", items.len()));
            let item = self.node(event, span, depth + 1);
            self.path.pop();
            items.push(item?);
        }
    }

    fn mapping(&mut self, pos: Pos, depth: usize) -> Result<Node, Diagnostic> {
        let mut entries = Vec::new();
        loop {
            let (event, span) = self.next()?;
            if let Event::MappingEnd = event {
                return Ok(Node { pos, end: span.end.index(), kind: Kind::Map(entries) });
            }
            let key = self.node(event, span, depth + 1)?;
            self.path.push(key.text().unwrap_or("?").to_string());
            let value = self.next().and_then(|(event, span)| self.node(event, span, depth + 1));
            self.path.pop();
            entries.push((key, value?));
        }
    }
}

/// Finds where a character of a scalar's value sits in the file.
///
/// Walks the scalar's source text alongside its value: characters the value lacks
/// (quotes, block indentation, folded line breaks) are skipped. When the two cannot be
/// lined up (escapes in double quotes), the scalar's own start is the best answer.
pub(crate) fn locate(text: &str, node: &Node, value: &str, target: usize) -> Pos {
    let mut pos = node.pos;
    let mut source = text.chars().skip(node.pos.index).peekable();
    for (i, want) in value.chars().enumerate() {
        loop {
            match source.peek() {
                Some(&c) if pos.index < node.end => {
                    if c == want || (want.is_whitespace() && c.is_whitespace()) {
                        break;
                    }
                    advance(&mut pos, c);
                    source.next();
                }
                _ => return node.pos,
            }
        }
        if i == target {
            return pos;
        }
        if let Some(c) = source.next() {
            advance(&mut pos, c);
        }
    }
    pos
}

fn advance(pos: &mut Pos, c: char) {
    pos.index += 1;
    if c == '\n' {
        pos.line += 1;
        pos.column = 1;
    } else {
        pos.column += 1;
    }
}
