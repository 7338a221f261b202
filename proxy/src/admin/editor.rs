//! `POST /dtab/{label}/validate`: the dashboard's dtab editor checks a draft as the user types — a malformed
//! draft answers 400 with the error's line and column (the same shape a refused `PUT` has), a valid one answers
//! its canonical form and a dentry-by-dentry diff against the router's current dtab, with the current version
//! so the page can apply it with `If-Match`. Nothing changes on the server.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use switchyard_dtab::Dtab;

use super::{parse_text_dtab, AdminError, AdminState};

/// Above this many cells (old × new dentries after trimming the common ends), the diff stops looking for common
/// dentries in the middle and shows it as replaced: the admin server must not spend quadratic time on a huge draft.
const MAX_DIFF_CELLS: usize = 1_000_000;

/// One line of a diff: a dentry kept, added by the draft, or removed by it.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    /// `"same"`, `"add"` or `"remove"`.
    pub op: &'static str,
    /// The dentry as `prefix => dst;`.
    pub text: String,
}

fn lines(dtab: &Dtab) -> Vec<String> {
    dtab.dentries().iter().map(|d| format!("{} => {};", d.prefix, d.dst)).collect()
}

fn line(op: &'static str, text: &str) -> DiffLine {
    DiffLine { op, text: text.to_string() }
}

/// A line diff (longest common subsequence) of `old` into `new`; dentry order matters in a dtab, so a moved
/// dentry shows as removed and added.
pub fn diff(old: &[String], new: &[String]) -> Vec<DiffLine> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..].iter().rev().zip(new[head..].iter().rev()).take_while(|(a, b)| a == b).count();
    let (a, b) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    let mut out: Vec<DiffLine> = old[..head].iter().map(|t| line("same", t)).collect();
    if a.len().saturating_mul(b.len()) > MAX_DIFF_CELLS {
        out.extend(a.iter().map(|t| line("remove", t)));
        out.extend(b.iter().map(|t| line("add", t)));
    } else {
        out.extend(lcs_diff(a, b));
    }
    out.extend(old[old.len() - tail..].iter().map(|t| line("same", t)));
    out
}

/// The classic dynamic-programming LCS walk; `a` and `b` are small (bounded by `MAX_DIFF_CELLS`).
fn lcs_diff(a: &[String], b: &[String]) -> Vec<DiffLine> {
    let w = b.len() + 1;
    // common[i * w + j]: length of the LCS of a[i..] and b[j..].
    let mut common = vec![0usize; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i * w + j] = if a[i] == b[j] {
                common[(i + 1) * w + j + 1] + 1
            } else {
                common[(i + 1) * w + j].max(common[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(line("same", &a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[(i + 1) * w + j] >= common[i * w + j + 1]) {
            // Removals before additions, as diff(1) shows a replaced line.
            out.push(line("remove", &a[i]));
            i += 1;
        } else {
            out.push(line("add", &b[j]));
            j += 1;
        }
    }
    out
}

/// `POST /dtab/{label}/validate` with the draft as the body (text, as `PUT` takes it).
pub async fn validate(
    State(s): State<Arc<AdminState>>,
    UrlPath(label): UrlPath<String>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    let router = s.router(&label)?;
    let draft = parse_text_dtab(&body)?;
    let table = router.table();
    let changes = diff(&lines(&table.dtab), &lines(&draft));
    let changed = changes.iter().any(|d| d.op != "same");
    Ok(Json(json!({
        "valid": true,
        "router": router.label(),
        "dtab": draft.pretty(),
        "dentries": draft.len(),
        "changed": changed,
        "diff": changes,
        "current": { "etag": table.etag, "generation": table.generation, "dtab": table.dtab.pretty() },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn ops(d: &[DiffLine]) -> String {
        d.iter().map(|l| format!("{}{}", &l.op[..1], l.text)).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn diff_keeps_common_dentries_and_marks_changes() {
        let d = diff(&v(&["a", "b", "c"]), &v(&["a", "x", "c", "d"]));
        assert_eq!(ops(&d), "sa rb ax sc ad");
        assert_eq!(ops(&diff(&v(&[]), &v(&["a"]))), "aa");
        assert_eq!(ops(&diff(&v(&["a"]), &v(&[]))), "ra");
        assert_eq!(ops(&diff(&v(&["a", "b"]), &v(&["a", "b"]))), "sa sb");
        // A moved dentry changes precedence, so it shows as removed and added.
        assert_eq!(ops(&diff(&v(&["a", "b"]), &v(&["b", "a"]))), "ra sb aa");
    }

    #[test]
    fn huge_drafts_are_shown_replaced_not_diffed_quadratically() {
        let old: Vec<String> = (0..2000).map(|i| format!("o{i}")).collect();
        let new: Vec<String> = (0..2000).map(|i| format!("n{i}")).collect();
        let d = diff(&old, &new);
        assert_eq!(d.len(), 4000);
        assert!(d[..2000].iter().all(|l| l.op == "remove") && d[2000..].iter().all(|l| l.op == "add"));
    }
}
