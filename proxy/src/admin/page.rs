//! The admin index page: what this sidecar runs and links to everything the admin server offers.
//! (Plain server-rendered HTML; no scripts, no external assets.)

use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::AdminState;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub async fn index(State(s): State<Arc<AdminState>>) -> Html<String> {
    let mut routers = String::new();
    for r in &s.routers {
        let table = r.table();
        let mut clients = String::new();
        for c in r.binder.clients() {
            clients.push_str(&format!("<li><code>{}</code> — {} endpoint(s)</li>", escape(&c.id.to_string()), c.endpoint_count()));
        }
        routers.push_str(&format!(
            "<section><h2>{label}</h2><p>dtab generation {gen}, version <code>{etag}</code> — \
             <a href=\"/dtab/{label}\">/dtab/{label}</a></p><pre>{dtab}</pre><h3>clients</h3><ul>{clients}</ul></section>",
            label = escape(&r.label),
            gen = table.generation,
            etag = escape(&table.etag),
            dtab = escape(&table.dtab.pretty()),
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>switchyard admin</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         pre{{background:#f4f4f4;padding:.5rem}}section{{border-top:1px solid #ddd;margin-top:1rem}}</style></head>\
         <body><h1>switchyard</h1><p>\
         <a href=\"/admin/metrics/prometheus\">metrics</a> · <a href=\"/config.json\">config</a> · \
         <a href=\"/routers.json\">routers</a> · <a href=\"/namers.json\">namers</a> · \
         <a href=\"/admin/ready\">ready</a></p>\
         <form action=\"/delegator.json\"><label>explain <input name=\"path\" value=\"/svc/forex-rate\"></label> \
         <label>router <input name=\"router\" value=\"egress\" size=\"8\"></label> <button>delegate</button></form>\
         {routers}</body></html>"
    ))
}
