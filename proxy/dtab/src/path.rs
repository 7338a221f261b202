//! Paths: the hierarchical names (`/svc/forex-rate`) that dtabs rewrite and namers resolve.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::parse::{self, ParseError};

/// One non-empty path segment. Any bytes are allowed; bytes outside the label alphabet
/// are written `\xHH` when printed.
///
/// Shared (`Arc`) rather than boxed: rewriting copies labels into new paths all the time,
/// and a copy should not be an allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(Arc<[u8]>);

impl Label {
    /// A label made of `bytes`, or `None` if `bytes` is empty (empty segments are not names).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Label> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            None
        } else {
            Some(Label(bytes.into()))
        }
    }

    /// The raw bytes of the label (escapes already decoded).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The label as text, if its bytes are valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

/// Whether `b` may appear in a printed label without escaping.
pub(crate) fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'#' | b'$' | b'%' | b'-')
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest: &[u8] = &self.0;
        while !rest.is_empty() {
            // Write runs of plain characters in one go: printing is on the admin and error paths.
            let plain = rest.iter().take_while(|&&b| is_label_char(b)).count();
            let (run, after) = rest.split_at(plain);
            f.write_str(std::str::from_utf8(run).map_err(|_| fmt::Error)?)?;
            if let Some((&b, after)) = after.split_first() {
                write!(f, "\\x{b:02x}")?;
                rest = after;
            } else {
                rest = after;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A sequence of labels, printed `/a/b`; the empty path is printed `/`.
///
/// Labels sit behind an `Arc` so that cloning a path (done per request by the proxy) is cheap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Path(Arc<[Label]>);

impl Path {
    /// The empty path `/`.
    pub fn empty() -> Path {
        Path::default()
    }

    /// Parse a path such as `/svc/forex-rate` (`/` is the empty path).
    pub fn read(s: &str) -> Result<Path, ParseError> {
        parse::read_path(s)
    }

    /// A path made of `labels`, in order.
    pub fn from_labels(labels: impl IntoIterator<Item = Label>) -> Path {
        Path(labels.into_iter().collect())
    }

    /// A path whose labels are the given strings taken verbatim (no escape decoding),
    /// or `None` if any of them is empty.
    pub fn from_strs(labels: &[&str]) -> Option<Path> {
        labels.iter().map(|s| Label::new(s.as_bytes())).collect::<Option<Vec<_>>>().map(Path::from_labels)
    }

    /// The labels of this path.
    pub fn labels(&self) -> &[Label] {
        &self.0
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether this is the empty path `/`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the first labels of `self` are exactly those of `prefix`.
    pub fn starts_with(&self, prefix: &Path) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The first `n` labels (all of them if `n` is larger than the length).
    pub fn take(&self, n: usize) -> Path {
        if n >= self.len() {
            self.clone()
        } else {
            Path::from_labels(self.0[..n].iter().cloned())
        }
    }

    /// Everything after the first `n` labels (empty if `n` is at least the length).
    pub fn drop(&self, n: usize) -> Path {
        match n {
            0 => self.clone(),
            n if n >= self.len() => Path::empty(),
            n => Path::from_labels(self.0[n..].iter().cloned()),
        }
    }

    /// `self` followed by `other`.
    pub fn concat(&self, other: &Path) -> Path {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Path::from_labels(self.0.iter().chain(other.0.iter()).cloned())
    }

    /// `self` followed by one more label.
    pub fn append(&self, label: Label) -> Path {
        Path::from_labels(self.0.iter().cloned().chain(std::iter::once(label)))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for label in self.0.iter() {
            write!(f, "/{label}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Path {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Path, ParseError> {
        Path::read(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Path {
        Path::read(s).expect("test path parses")
    }

    #[test]
    fn label_rejects_empty_and_keeps_bytes() {
        assert_eq!(Label::new(""), None);
        let l = Label::new(vec![b'a', 0xff]).expect("non-empty");
        assert_eq!(l.as_bytes(), &[b'a', 0xff]);
        assert_eq!(l.as_str(), None);
        assert_eq!(Label::new("ok").and_then(|l| l.as_str().map(str::to_owned)).as_deref(), Some("ok"));
    }

    #[test]
    fn label_display_escapes_non_label_bytes_in_lowercase_hex() {
        let l = Label::new(&b"a b/\\\xAB#$%:._-Z9"[..]).expect("non-empty");
        assert_eq!(l.to_string(), "a\\x20b\\x2f\\x5c\\xab#$%:._-Z9");
    }

    #[test]
    fn display_of_paths() {
        assert_eq!(Path::empty().to_string(), "/");
        assert_eq!(p("/svc/forex-rate").to_string(), "/svc/forex-rate");
        assert_eq!(format!("{:?}", p("/#/io.l5d.fs")), "/#/io.l5d.fs");
        assert_eq!(Path::from_strs(&["a b"]).map(|p| p.to_string()).as_deref(), Some("/a\\x20b"));
    }

    #[test]
    fn from_strs_rejects_empty_labels() {
        assert_eq!(Path::from_strs(&["a", ""]), None);
        assert_eq!(Path::from_strs(&[]), Some(Path::empty()));
        assert_eq!(Path::from_strs(&["a", "b"]), Some(p("/a/b")));
    }

    #[test]
    fn take_drop_concat_append() {
        let path = p("/a/b/c");
        assert_eq!(path.take(2), p("/a/b"));
        assert_eq!(path.take(9), path);
        assert_eq!(path.drop(1), p("/b/c"));
        assert_eq!(path.drop(3), Path::empty());
        assert_eq!(path.drop(9), Path::empty());
        assert_eq!(p("/a").concat(&p("/b/c")), path);
        assert_eq!(Path::empty().concat(&path), path);
        assert_eq!(path.concat(&Path::empty()), path);
        let c = Label::new("c").expect("non-empty");
        assert_eq!(p("/a/b").append(c), path);
        assert_eq!(path.len(), 3);
        assert!(!path.is_empty());
        assert!(Path::empty().is_empty());
    }

    #[test]
    fn starts_with_is_label_wise() {
        assert!(p("/svc/foo").starts_with(&p("/svc")));
        assert!(p("/svc/foo").starts_with(&Path::empty()));
        assert!(!p("/svcx/foo").starts_with(&p("/svc")));
        assert!(!p("/svc").starts_with(&p("/svc/foo")));
        assert!(!p("/Svc").starts_with(&p("/svc")));
    }

    #[test]
    fn from_str_matches_read() {
        assert_eq!("/a/b".parse::<Path>(), Path::read("/a/b"));
    }
}
