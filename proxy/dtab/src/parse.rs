//! The one hand-written recursive-descent parser shared by paths, prefixes, name trees and dtabs.
//!
//! Grammar (whitespace and `#` comments may stand between tokens, never inside a path):
//!
//! ```text
//! dtab     = [ dentry { ';' dentry } [ ';' ] ]
//! dentry   = prefix '=>' tree
//! prefix   = '/' [ pelem { '/' pelem } ]        pelem = label | '*'
//! path     = '/' [ label { '/' label } ]
//! label    = { labelchar | '\x' hex hex }+      labelchar = 0-9 A-Z a-z _ : . # $ % -
//! tree     = union { '|' union }
//! union    = weighted { '&' weighted }
//! weighted = [ weight '*' ] simple              weight = digits [ '.' digits ] | '.' digits
//! simple   = '~' | '!' | '$' | path | '(' tree ')'
//! ```

use std::fmt;

use crate::dtab::{Dentry, Dtab, Prefix, PrefixElem};
use crate::path::{is_label_char, Label, Path};
use crate::tree::{NameTree, Weighted};

/// Why some text is not a valid path, prefix, name tree or dtab, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the offending character in the input.
    pub offset: usize,
    /// 1-based line of the offending character.
    pub line: usize,
    /// 1-based column of the offending character, counted in characters.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// How deeply `( … )` may nest: keeps recursion (here and in binding) far from the stack limit.
pub const MAX_NESTING: usize = 32;

/// Parse a whole string as a path.
pub(crate) fn read_path(s: &str) -> Result<Path, ParseError> {
    let mut p = Parser::new(s);
    p.skip_ws();
    let path = p.path("a path starting with '/'")?;
    p.finish("'/' or end of input after the path")?;
    Ok(path)
}

/// Parse a whole string as a dentry prefix.
pub(crate) fn read_prefix(s: &str) -> Result<Prefix, ParseError> {
    let mut p = Parser::new(s);
    p.skip_ws();
    let prefix = p.prefix("a prefix starting with '/'")?;
    p.finish("'/' or end of input after the prefix")?;
    Ok(prefix)
}

/// Parse a whole string as a name tree.
pub(crate) fn read_tree(s: &str) -> Result<NameTree<Path>, ParseError> {
    let mut p = Parser::new(s);
    let tree = p.tree()?;
    p.finish("'|', '&' or end of input after the name tree")?;
    Ok(tree)
}

/// Parse a whole string as one dentry.
pub(crate) fn read_dentry(s: &str) -> Result<Dentry, ParseError> {
    let mut p = Parser::new(s);
    let dentry = p.dentry()?;
    p.finish("'|', '&' or end of input after the dentry")?;
    Ok(dentry)
}

/// Parse a whole string as a dtab.
pub(crate) fn read_dtab(s: &str) -> Result<Dtab, ParseError> {
    Parser::new(s).dtab()
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset of the next unread character; always on a char boundary because the
    /// parser only ever steps over ASCII bytes it has just examined.
    pos: usize,
    /// Current `(` depth.
    nesting: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser { src, pos: 0, nesting: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_is(&self, b: u8) -> bool {
        self.peek() == Some(b)
    }

    fn at_label_start(&self) -> bool {
        self.peek().is_some_and(|b| is_label_char(b) || b == b'\\')
    }

    /// Skip whitespace and `#` comments (to end of line).
    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                b'#' => {
                    let rest = &self.src.as_bytes()[self.pos..];
                    self.pos += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                }
                _ => break,
            }
        }
    }

    /// Describe the character at `offset` for an error message.
    fn found_at(&self, offset: usize) -> String {
        match self.src.get(offset..).and_then(|rest| rest.chars().next()) {
            None => "end of input".to_owned(),
            Some(c) => format!("'{}'", c.escape_debug()),
        }
    }

    fn error_at(&self, offset: usize, message: String) -> ParseError {
        let before = self.src.get(..offset).unwrap_or(self.src);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ParseError {
            offset,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message,
        }
    }

    /// "expected {what}, found {the next character}" at the current position.
    fn unexpected(&self, what: &str) -> ParseError {
        self.error_at(self.pos, format!("expected {what}, found {}", self.found_at(self.pos)))
    }

    /// Require that only whitespace and comments remain.
    fn finish(&mut self, what: &str) -> Result<(), ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.unexpected(what)),
        }
    }

    fn dtab(&mut self) -> Result<Dtab, ParseError> {
        let mut dentries = Vec::new();
        self.skip_ws();
        while self.peek().is_some() {
            dentries.push(self.dentry()?);
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(b';') => self.pos += 1,
                Some(_) => return Err(self.unexpected("';', '|', '&' or end of input after the dentry")),
            }
            self.skip_ws();
            if self.peek_is(b';') {
                return Err(self.error_at(self.pos, "empty dentry: ';;' is not allowed".to_owned()));
            }
        }
        Ok(Dtab::from_dentries(dentries))
    }

    fn dentry(&mut self) -> Result<Dentry, ParseError> {
        self.skip_ws();
        let prefix = self.prefix("a dentry (a prefix starting with '/')")?;
        self.skip_ws();
        if !self.src.as_bytes()[self.pos..].starts_with(b"=>") {
            let found = self.found_at(self.pos);
            return Err(self.error_at(self.pos, format!("expected '=>' after prefix {prefix}, found {found}")));
        }
        self.pos += 2;
        let dst = self.tree()?;
        Ok(Dentry::new(prefix, dst))
    }

    /// A path; `what` describes it for the error when there is no leading `/`.
    fn path(&mut self, what: &str) -> Result<Path, ParseError> {
        let mut labels = Vec::new();
        self.segments(what, |p| {
            labels.push(p.label()?);
            Ok(())
        })?;
        Ok(Path::from_labels(labels))
    }

    fn prefix(&mut self, what: &str) -> Result<Prefix, ParseError> {
        let mut elems = Vec::new();
        self.segments(what, |p| {
            elems.push(p.prefix_elem()?);
            Ok(())
        })?;
        Ok(Prefix::new(elems))
    }

    /// The `/`-separated segment structure shared by paths and prefixes; `segment` parses one
    /// segment and is only called where a segment starts.
    fn segments(
        &mut self,
        what: &str,
        mut segment: impl FnMut(&mut Self) -> Result<(), ParseError>,
    ) -> Result<(), ParseError> {
        if !self.peek_is(b'/') {
            return Err(self.unexpected(what));
        }
        self.pos += 1;
        if !self.at_segment_start() {
            // `/` alone is the empty path, but `//` is an empty segment.
            return match self.peek_is(b'/') {
                true => Err(self.segment_error()),
                false => Ok(()),
            };
        }
        loop {
            segment(self)?;
            if !self.peek_is(b'/') {
                return Ok(());
            }
            self.pos += 1;
            if !self.at_segment_start() {
                return Err(self.segment_error());
            }
        }
    }

    fn at_segment_start(&self) -> bool {
        self.at_label_start() || self.peek_is(b'*')
    }

    fn segment_error(&self) -> ParseError {
        if self.peek_is(b'/') {
            self.error_at(self.pos, "empty path segment: '//' is not allowed".to_owned())
        } else {
            self.unexpected("a label after '/' (a trailing '/' is not allowed)")
        }
    }

    fn prefix_elem(&mut self) -> Result<PrefixElem, ParseError> {
        if self.peek_is(b'*') {
            self.pos += 1;
            if self.at_segment_start() {
                let found = self.found_at(self.pos);
                return Err(
                    self.error_at(self.pos, format!("'*' must be a whole prefix segment, but is followed by {found}"))
                );
            }
            return Ok(PrefixElem::Any);
        }
        let label = self.label()?;
        if self.peek_is(b'*') {
            return Err(self.error_at(self.pos, format!("'*' must be a whole prefix segment, but follows '{label}'")));
        }
        Ok(PrefixElem::Label(label))
    }

    fn label(&mut self) -> Result<Label, ParseError> {
        let start = self.pos;
        let mut bytes = Vec::new();
        while let Some(b) = self.peek() {
            if is_label_char(b) {
                bytes.push(b);
                self.pos += 1;
            } else if b == b'\\' {
                bytes.push(self.escape()?);
            } else {
                break;
            }
        }
        Label::new(bytes).ok_or_else(|| {
            let found = self.found_at(start);
            let message = format!("expected a label (characters 0-9 A-Z a-z _ : . # $ % - or \\xHH), found {found}");
            self.error_at(start, message)
        })
    }

    /// `\xHH` (either case of hex digit), with `pos` at the backslash.
    fn escape(&mut self) -> Result<u8, ParseError> {
        self.pos += 1;
        if !self.peek_is(b'x') {
            return Err(self.unexpected("'x' after '\\' (escapes are written \\xHH)"));
        }
        self.pos += 1;
        let high = self.hex_digit()?;
        let low = self.hex_digit()?;
        Ok(high << 4 | low)
    }

    fn hex_digit(&mut self) -> Result<u8, ParseError> {
        let digit = self.peek().and_then(|b| char::from(b).to_digit(16));
        match digit.and_then(|d| u8::try_from(d).ok()) {
            Some(d) => {
                self.pos += 1;
                Ok(d)
            }
            None => Err(self.unexpected("a hex digit in a \\xHH escape")),
        }
    }

    /// `union { '|' union }`; a single alternative is returned as itself.
    fn tree(&mut self) -> Result<NameTree<Path>, ParseError> {
        let mut alts = vec![self.union()?];
        loop {
            self.skip_ws();
            if !self.peek_is(b'|') {
                break;
            }
            self.pos += 1;
            alts.push(self.union()?);
        }
        Ok(match alts.len() {
            1 => alts.pop().unwrap_or(NameTree::Neg),
            _ => NameTree::Alt(alts),
        })
    }

    /// `weighted { '&' weighted }`; one branch without an explicit weight is the branch itself,
    /// so that `/a` is a leaf while `2 * /a` stays a one-branch union (and prints back as such).
    fn union(&mut self) -> Result<NameTree<Path>, ParseError> {
        let (explicit, first) = self.weighted()?;
        let mut branches = vec![first];
        loop {
            self.skip_ws();
            if !self.peek_is(b'&') {
                break;
            }
            self.pos += 1;
            branches.push(self.weighted()?.1);
        }
        if branches.len() == 1 && !explicit {
            if let Some(only) = branches.pop() {
                return Ok(only.tree);
            }
        }
        Ok(NameTree::Union(branches))
    }

    /// `[ weight '*' ] simple`, and whether the weight was written out.
    fn weighted(&mut self) -> Result<(bool, Weighted<Path>), ParseError> {
        self.skip_ws();
        let weight = match self.peek() {
            Some(b) if b.is_ascii_digit() || b == b'.' => Some(self.weight()?),
            _ => None,
        };
        if let Some(w) = weight {
            self.skip_ws();
            if !self.peek_is(b'*') {
                return Err(self.unexpected(&format!("'*' after weight {w}")));
            }
            self.pos += 1;
        }
        let tree = self.simple()?;
        Ok((weight.is_some(), Weighted { weight: weight.unwrap_or(1.0), tree }))
    }

    /// A non-negative plain decimal: `3`, `0.3`, `.5`, `3.`.
    fn weight(&mut self) -> Result<f64, ParseError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
        let int = digits(self.pos);
        self.pos += int;
        let mut frac = 0;
        if self.peek_is(b'.') {
            self.pos += 1;
            frac = digits(self.pos);
            self.pos += frac;
        }
        let text = &self.src[start..self.pos];
        if int + frac == 0 {
            return Err(self.error_at(start, "expected a weight like 0.5, found '.'".to_owned()));
        }
        match text.parse::<f64>() {
            Ok(w) if w.is_finite() => Ok(w),
            _ => Err(self.error_at(start, format!("weight {text} is too large"))),
        }
    }

    fn simple(&mut self) -> Result<NameTree<Path>, ParseError> {
        self.skip_ws();
        let atom = match self.peek() {
            Some(b'~') => NameTree::Neg,
            Some(b'!') => NameTree::Fail,
            Some(b'$') => NameTree::Empty,
            Some(b'/') => return Ok(NameTree::Leaf(self.path("a path")?)),
            Some(b'(') => return self.parenthesized(),
            _ => {
                return Err(self.unexpected("a name tree (a path, '~', '!', '$', '(' or a weight)"));
            }
        };
        self.pos += 1;
        Ok(atom)
    }

    /// `( tree )`, with `pos` at the `(`.
    fn parenthesized(&mut self) -> Result<NameTree<Path>, ParseError> {
        let open = self.pos;
        if self.nesting >= MAX_NESTING {
            return Err(self.error_at(open, format!("name tree nested more than {MAX_NESTING} parentheses deep")));
        }
        self.nesting += 1;
        self.pos += 1;
        let tree = self.tree()?;
        self.skip_ws();
        if !self.peek_is(b')') {
            let opened = self.error_at(open, String::new());
            return Err(
                self.unexpected(&format!("')' to close the '(' at line {}, column {}", opened.line, opened.column))
            );
        }
        self.pos += 1;
        self.nesting -= 1;
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse `src` with `f`, expecting an error; return (offset, line, column, message).
    fn err<T: fmt::Debug>(f: fn(&str) -> Result<T, ParseError>, src: &str) -> (usize, usize, usize, String) {
        match f(src) {
            Ok(v) => panic!("{src:?} parsed as {v:?}"),
            Err(e) => (e.offset, e.line, e.column, e.message),
        }
    }

    fn tree(s: &str) -> NameTree<Path> {
        NameTree::read(s).expect("test tree parses")
    }

    fn leaf(s: &str) -> NameTree<Path> {
        NameTree::Leaf(Path::read(s).expect("test path parses"))
    }

    fn w(weight: f64, tree: NameTree<Path>) -> Weighted<Path> {
        Weighted { weight, tree }
    }

    #[test]
    fn paths_parse() {
        assert_eq!(Path::read("/"), Ok(Path::empty()));
        assert_eq!(Path::read(" /svc/forex-rate \n").ok(), Path::from_strs(&["svc", "forex-rate"]));
        let odd = Path::read("/#/$/%/_:.-/A9").expect("parses");
        assert_eq!(odd.to_string(), "/#/$/%/_:.-/A9");
        let escaped = Path::read("/a\\x2Fb/\\x00").expect("parses");
        assert_eq!(escaped.labels()[0].as_bytes(), b"a/b");
        assert_eq!(escaped.labels()[1].as_bytes(), &[0u8]);
        assert_eq!(escaped.to_string(), "/a\\x2fb/\\x00");
    }

    #[test]
    fn path_errors() {
        let e = err(Path::read, "svc");
        assert_eq!(e, (0, 1, 1, "expected a path starting with '/', found 's'".into()));
        let e = err(Path::read, "");
        assert_eq!(e, (0, 1, 1, "expected a path starting with '/', found end of input".into()));
        let e = err(Path::read, "/a//b");
        assert_eq!(e, (3, 1, 4, "empty path segment: '//' is not allowed".into()));
        let e = err(Path::read, "//");
        assert_eq!(e, (1, 1, 2, "empty path segment: '//' is not allowed".into()));
        let e = err(Path::read, "/a/");
        assert_eq!(
            e,
            (3, 1, 4, "expected a label after '/' (a trailing '/' is not allowed), found end of input".into())
        );
        let e = err(Path::read, "/a b");
        assert_eq!(e, (3, 1, 4, "expected '/' or end of input after the path, found 'b'".into()));
        let e = err(Path::read, "/a/*");
        assert_eq!(e.0, 3);
        assert!(e.3.starts_with("expected a label (characters"), "{}", e.3);
        assert!(e.3.ends_with("found '*'"), "{}", e.3);
        let e = err(Path::read, "/a/é");
        assert_eq!((e.0, e.2), (3, 4));
        assert!(e.3.ends_with("found 'é'"), "{}", e.3);
    }

    #[test]
    fn escape_errors() {
        let e = err(Path::read, "/a\\y");
        assert_eq!(e, (3, 1, 4, "expected 'x' after '\\' (escapes are written \\xHH), found 'y'".into()));
        let e = err(Path::read, "/a\\x4");
        assert_eq!(e, (5, 1, 6, "expected a hex digit in a \\xHH escape, found end of input".into()));
        let e = err(Path::read, "/\\xg1");
        assert_eq!(e, (3, 1, 4, "expected a hex digit in a \\xHH escape, found 'g'".into()));
    }

    #[test]
    fn prefixes_parse_wildcards() {
        let p = Prefix::read("/http/1.1/*/*").expect("parses");
        assert_eq!(p.elems().iter().filter(|e| **e == PrefixElem::Any).count(), 2);
        assert_eq!(Prefix::read("/"), Ok(Prefix::default()));
        assert_eq!(Prefix::read("/*").map(|p| p.to_string()).as_deref(), Ok("/*"));
    }

    #[test]
    fn prefix_errors() {
        let e = err(Prefix::read, "/foo*");
        assert_eq!(e, (4, 1, 5, "'*' must be a whole prefix segment, but follows 'foo'".into()));
        let e = err(Prefix::read, "/*foo");
        assert_eq!(e, (2, 1, 3, "'*' must be a whole prefix segment, but is followed by 'f'".into()));
        let e = err(Prefix::read, "/a//b");
        assert_eq!(e, (3, 1, 4, "empty path segment: '//' is not allowed".into()));
        let e = err(Prefix::read, "/*/");
        assert_eq!(e.0, 3);
        let e = err(Dtab::parse, "/svc/**=>/a");
        assert_eq!(e, (6, 1, 7, "'*' must be a whole prefix segment, but is followed by '*'".into()));
    }

    #[test]
    fn trees_parse_with_precedence() {
        let union = NameTree::Union(vec![w(1.0, leaf("/a")), w(1.0, leaf("/b"))]);
        assert_eq!(tree("/a & /b | /c"), NameTree::Alt(vec![union.clone(), leaf("/c")]));
        assert_eq!(tree("/c | /a & /b"), NameTree::Alt(vec![leaf("/c"), union]));
        assert_eq!(tree("0.9 * /a & .1*/b"), NameTree::Union(vec![w(0.9, leaf("/a")), w(0.1, leaf("/b"))]));
        assert_eq!(tree("3. * /a & 3*/b"), NameTree::Union(vec![w(3.0, leaf("/a")), w(3.0, leaf("/b"))]));
        assert_eq!(tree("~ | ! | $"), NameTree::Alt(vec![NameTree::Neg, NameTree::Fail, NameTree::Empty]));
        assert_eq!(
            tree("/a | (/b | /c)"),
            NameTree::Alt(vec![leaf("/a"), NameTree::Alt(vec![leaf("/b"), leaf("/c")])])
        );
        assert_eq!(tree("((/a))"), leaf("/a"));
        assert_eq!(tree("2 * /a"), NameTree::Union(vec![w(2.0, leaf("/a"))]));
        assert_eq!(tree("0 * (/a | /b) & /c").to_string(), "0 * (/a | /b) & /c");
    }

    #[test]
    fn tree_errors() {
        let e = err(NameTree::read, "");
        assert_eq!(
            e,
            (0, 1, 1, "expected a name tree (a path, '~', '!', '$', '(' or a weight), found end of input".into())
        );
        let e = err(NameTree::read, "/a |");
        assert_eq!(e.0, 4);
        let e = err(NameTree::read, "-1 * /a");
        assert_eq!(e.0, 0);
        let e = err(NameTree::read, "0.5 /b");
        assert_eq!(e, (4, 1, 5, "expected '*' after weight 0.5, found '/'".into()));
        let e = err(NameTree::read, ". * /b");
        assert_eq!(e, (0, 1, 1, "expected a weight like 0.5, found '.'".into()));
        let e = err(NameTree::read, "2 * 3 * /b");
        assert_eq!(e.0, 4);
        let e = err(NameTree::read, "(/b | /c");
        assert_eq!(e, (8, 1, 9, "expected ')' to close the '(' at line 1, column 1, found end of input".into()));
        let e = err(NameTree::read, "/a /b");
        assert_eq!(e, (3, 1, 4, "expected '|', '&' or end of input after the name tree, found '/'".into()));
        let e = err(NameTree::read, "/a | ~x");
        assert_eq!(e.0, 6);
    }

    #[test]
    fn huge_weights_are_rejected_not_infinite() {
        let src = format!("1{} * /a", "0".repeat(400));
        let e = err(NameTree::read, &src);
        assert_eq!(e.0, 0);
        assert!(e.3.starts_with("weight 1000"), "{}", e.3);
        assert!(e.3.ends_with("is too large"), "{}", e.3);
    }

    #[test]
    fn nesting_is_limited() {
        let ok = format!("{}/a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert_eq!(NameTree::read(&ok), Ok(leaf("/a")));
        let deep = format!("{}/a{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
        let e = err(NameTree::read, &deep);
        assert_eq!(
            e,
            (MAX_NESTING, 1, MAX_NESTING + 1, format!("name tree nested more than {MAX_NESTING} parentheses deep"))
        );
        // Far deeper input must fail the same way instead of overflowing the stack.
        let e = err(NameTree::read, &"(".repeat(1_000_000));
        assert_eq!(e.0, MAX_NESTING);
    }

    #[test]
    fn dtabs_parse_separators_whitespace_and_comments() {
        assert_eq!(Dtab::parse(""), Ok(Dtab::empty()));
        assert_eq!(Dtab::parse("  \n # only a comment\n"), Ok(Dtab::empty()));
        let d = Dtab::parse("/a=>/b;").expect("parses");
        assert_eq!(d.len(), 1);
        let src = "# routing\n/svc => /#/io.l5d.fs ; # files\n\t/svc/x\n=>\n/#/io.l5d.fs/y # why\n;\n";
        let d = Dtab::parse(src).expect("parses");
        assert_eq!(d.to_string(), "/svc=>/#/io.l5d.fs;/svc/x=>/#/io.l5d.fs/y");
        // `#` inside a path is a label character, not a comment.
        let d = Dtab::parse("/s=>/a#b").expect("parses");
        assert_eq!(d.dentries()[0].dst, leaf("/a#b"));
    }

    #[test]
    fn dtab_errors() {
        let e = err(Dtab::parse, "/a=>/b;\n         /svc!");
        assert_eq!((e.1, e.2), (2, 14));
        let shown = ParseError { offset: e.0, line: e.1, column: e.2, message: e.3 }.to_string();
        assert_eq!(shown, "line 2, column 14: expected '=>' after prefix /svc, found '!'");
        let e = err(Dtab::parse, "/a=>/b;;");
        assert_eq!(e, (7, 1, 8, "empty dentry: ';;' is not allowed".into()));
        let e = err(Dtab::parse, "/a=>/b; ;");
        assert_eq!(e.0, 8);
        let e = err(Dtab::parse, ";");
        assert_eq!(e, (0, 1, 1, "expected a dentry (a prefix starting with '/'), found ';'".into()));
        let e = err(Dtab::parse, "/a=>");
        assert_eq!(e.0, 4);
        let e = err(Dtab::parse, "/a=/b");
        assert_eq!(e, (2, 1, 3, "expected '=>' after prefix /a, found '='".into()));
        let e = err(Dtab::parse, "/a=>/b /c");
        assert_eq!(e, (7, 1, 8, "expected ';', '|', '&' or end of input after the dentry, found '/'".into()));
        let e = err(Dtab::parse, "/a=>/b;/c=>/d\n;/e");
        assert_eq!(e, (17, 2, 4, "expected '=>' after prefix /e, found end of input".into()));
    }

    #[test]
    fn columns_count_characters_and_lines_count_newlines() {
        // Two-byte characters in a comment on earlier lines shift the offset, not the column.
        let e = err(Dtab::parse, "# ééé\n/a=>/b;\r\n  /c=>?");
        assert_eq!((e.0, e.1, e.2), (24, 3, 7));
    }

    #[test]
    fn dentry_read() {
        let d = Dentry::read(" /svc => /a | /b ").expect("parses");
        assert_eq!(d.to_string(), "/svc=>/a | /b");
        assert!(Dentry::read("/a=>/b;").is_err());
    }
}
