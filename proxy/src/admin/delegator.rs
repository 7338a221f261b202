//! `/delegator.json`: how a path resolves under a router's current dtab (or one supplied), step by step, with
//! what the namers know right now (a name no request has bound yet shows as neg until one does).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_dtab::{explain, Dentry, Dtab, Explain, Path};

use super::{AdminError, AdminState};
use crate::namer::BoundName;

/// Query parameters: `router` (label; defaults to the first router), `path` (required), `dtab` (optional: use this
/// dtab instead of the router's current one, to try a change before making it).
#[derive(Deserialize)]
pub struct DelegateQuery {
    router: Option<String>,
    path: String,
    dtab: Option<String>,
}

pub async fn delegate(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<DelegateQuery>,
) -> Result<Json<Value>, AdminError> {
    let router = match &q.router {
        Some(label) => s.router(label)?,
        None => s.routers.first().ok_or(AdminError::NotFound)?,
    };
    let path = Path::read(&q.path).map_err(|e| AdminError::BadRequest(format!("path {:?}: {e}", q.path)))?;
    let dtab = match &q.dtab {
        Some(text) => Dtab::parse(text).map_err(AdminError::BadDtab)?,
        None => router.table().dtab.clone(),
    };
    // Explaining is side-effect free: it never starts a watch or interns an address (a GET must not be able to
    // fill the namers' tables).
    let tree = explain(&dtab, &path, &s.namers.explaining());
    Ok(Json(json!({
        "router": router.label(),
        "path": path.to_string(),
        "dtab": dtab.to_string(),
        "tree": to_json(&tree),
    })))
}

fn dentry_json(d: &Option<Dentry>) -> Value {
    match d {
        Some(d) => json!({ "prefix": d.prefix.to_string(), "dst": d.dst.to_string() }),
        None => Value::Null,
    }
}

fn bound_json(b: &BoundName) -> Value {
    let addrs: Vec<String> = b.endpoints.load().endpoints.iter().map(|e| e.addr.to_string()).collect();
    json!({ "id": b.id.to_string(), "residual": b.residual.to_string(), "endpoints": addrs })
}

/// linkerd's DelegateTree JSON shape: `type`, `path`, `dentry`, and the children.
pub fn to_json(tree: &Explain<BoundName>) -> Value {
    match tree {
        Explain::Neg { path, dentry } => {
            json!({ "type": "neg", "path": path.to_string(), "dentry": dentry_json(dentry) })
        }
        Explain::Fail { path, dentry } => {
            json!({ "type": "fail", "path": path.to_string(), "dentry": dentry_json(dentry) })
        }
        Explain::Empty { path, dentry } => {
            json!({ "type": "empty", "path": path.to_string(), "dentry": dentry_json(dentry) })
        }
        Explain::Error { path, message } => {
            json!({ "type": "exception", "path": path.to_string(), "message": message })
        }
        Explain::Delegate { path, dentry, next } => json!({
            "type": "delegate", "path": path.to_string(), "dentry": dentry_json(dentry), "delegate": to_json(next),
        }),
        Explain::Bound { path, dentry, bound } => json!({
            "type": "leaf", "path": path.to_string(), "dentry": dentry_json(dentry), "bound": bound_json(bound),
        }),
        Explain::Alt { path, dentry, alts } => json!({
            "type": "alt", "path": path.to_string(), "dentry": dentry_json(dentry),
            "alt": alts.iter().map(to_json).collect::<Vec<_>>(),
        }),
        Explain::Union { path, dentry, branches } => json!({
            "type": "union", "path": path.to_string(), "dentry": dentry_json(dentry),
            "union": branches.iter().map(|(w, t)| json!({ "weight": w, "tree": to_json(t) })).collect::<Vec<_>>(),
        }),
    }
}
