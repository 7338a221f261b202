//! The admin dashboard: `/` (and `/delegator`) serve one page whose script polls `/admin/stats.json` every second
//! and drives the dtab editor and the delegator view; `/admin/assets/*` serve its script and style sheet.
//!
//! Everything is compiled into the binary with `include_str!`: no CDN, no build step. Without JavaScript the page
//! still shows a server-rendered snapshot of the routers, dtabs and clients.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use super::AdminState;

const PAGE: &str = include_str!("assets/dashboard.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The no-script snapshot: each router's dtab and bound clients.
fn snapshot_html(s: &AdminState) -> String {
    let mut routers = String::new();
    for r in &s.routers {
        let table = r.table();
        let mut clients = String::new();
        for c in r.balancers() {
            clients.push_str(&format!(
                "<li><code>{}</code> — {} endpoint(s)</li>",
                escape(&c.id_text),
                c.endpoint_count()
            ));
        }
        routers.push_str(&format!(
            "<section class=\"router\"><h2>{label}</h2><p>dtab generation {gen}, version <code>{etag}</code> — \
             <a href=\"/dtab/{label}\">/dtab/{label}</a></p><pre class=\"code\">{dtab}</pre>\
             <h3>clients</h3><ul>{clients}</ul></section>",
            label = escape(r.label()),
            gen = table.generation,
            etag = escape(&table.etag),
            dtab = escape(&table.dtab.pretty()),
        ));
    }
    routers
}

/// `GET /` and `GET /delegator`: the dashboard page (the script picks the tab from the path or `#fragment`).
pub async fn index(State(s): State<Arc<AdminState>>) -> Response {
    let title = s.routers.iter().map(|r| escape(r.label())).collect::<Vec<_>>().join(" · ");
    let page = PAGE.replace("{{TITLE}}", &title).replace("{{NOSCRIPT}}", &snapshot_html(&s));
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))], Html(page)).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Assets change only with the binary; revalidating each load keeps an upgraded sidecar's page fresh.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /admin/assets/dashboard.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/assets/dashboard.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
