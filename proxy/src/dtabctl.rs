//! `switchyard dtab …`: read, replace, compare and explain a router's dtab over a sidecar's admin API, for people
//! who would rather not hand-craft curl.
//!
//! `get` prints the dtab; `set FILE` replaces it with a compare-and-swap (`If-Match` from a GET just before), so
//! a concurrent change is reported instead of overwritten; `diff FILE` prints a line diff of the two dtabs in
//! canonical form (so formatting differences do not show); `explain PATH` prints the delegator's tree as an
//! indented outline. Exit status: 0 ok, 1 failure (or `diff` found differences), 64 bad usage.

use std::io::Read;
use std::process::ExitCode;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchyard_dtab::Dtab;

use crate::consul::encode_component;

/// Usage of the `dtab` subcommand.
pub const USAGE: &str = "\
USAGE:
    switchyard dtab [--admin URL] [--router LABEL] get
    switchyard dtab [--admin URL] [--router LABEL] set FILE     (FILE `-` reads standard input)
    switchyard dtab [--admin URL] [--router LABEL] diff FILE
    switchyard dtab [--admin URL] [--router LABEL] explain PATH

    --admin    the sidecar's admin server (default $SWITCHYARD_ADMIN or http://127.0.0.1:9990); https:// trusts
               the CA certificate in $SWITCHYARD_ADMIN_CA and checks the name in $SWITCHYARD_ADMIN_TLS_NAME
               (default: the URL's host), e.g. forex-rate.switchyard.local for a sidecar's own identity
    --router   the router label (default egress)

    Writes send $SWITCHYARD_ADMIN_TOKEN as a bearer token (required when admin listens beyond loopback).
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
struct Args {
    admin: String,
    router: String,
    command: Command,
}

#[derive(Debug, PartialEq)]
enum Command {
    Get,
    Set(String),
    Diff(String),
    Explain(String),
}

fn parse(args: &[&str]) -> Result<Args, String> {
    let mut admin = std::env::var("SWITCHYARD_ADMIN").unwrap_or_else(|_| "http://127.0.0.1:9990".into());
    let mut router = "egress".to_string();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "--admin" => admin = it.next().ok_or("--admin needs a URL")?.to_string(),
            "--router" => router = it.next().ok_or("--router needs a label")?.to_string(),
            other => rest.push(other),
        }
    }
    let command = match rest.as_slice() {
        ["get"] => Command::Get,
        ["set", file] => Command::Set(file.to_string()),
        ["diff", file] => Command::Diff(file.to_string()),
        ["explain", path] => Command::Explain(path.to_string()),
        _ => return Err(format!("expected get, set FILE, diff FILE or explain PATH; got {rest:?}")),
    };
    let admin = admin.trim_end_matches('/').to_string();
    if !admin.starts_with("http://") && !admin.starts_with("https://") {
        return Err(format!("--admin must be an http:// or https:// URL, got {admin:?}"));
    }
    Ok(Args { admin, router, command })
}

/// Runs `switchyard dtab ARGS…`.
pub fn main(args: &[&str]) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("switchyard dtab: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard dtab: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("switchyard dtab: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<ExitCode, String> {
    let dtab_url = format!("{}/dtab/{}", args.admin, encode_component(args.router.as_bytes()));
    match &args.command {
        Command::Get => {
            let (status, etag, body) = call("GET", &dtab_url, None, None).await?;
            expect_ok(status, &body)?;
            print!("{body}");
            eprintln!("# router {} version {}", args.router, etag.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Set(file) => set(&dtab_url, &args.router, &read_file(file)?).await,
        Command::Diff(file) => {
            let wanted = canonical(&read_file(file)?, file)?;
            let (status, _, body) = call("GET", &dtab_url, None, None).await?;
            expect_ok(status, &body)?;
            let current = canonical(&body, "the router's dtab")?;
            let diff = line_diff(&current, &wanted);
            if diff.iter().all(|l| l.starts_with(' ')) {
                println!("no differences: {file} is the dtab in force on router {}", args.router);
                return Ok(ExitCode::SUCCESS);
            }
            println!("--- router {} (in force)\n+++ {file}", args.router);
            diff.iter().for_each(|l| println!("{l}"));
            Ok(ExitCode::FAILURE)
        }
        Command::Explain(path) => {
            let url = format!(
                "{}/delegator.json?router={}&path={}",
                args.admin,
                encode_component(args.router.as_bytes()),
                encode_component(path.as_bytes())
            );
            let (status, _, body) = call("GET", &url, None, None).await?;
            expect_ok(status, &body)?;
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("unreadable delegator answer: {e}"))?;
            let mut out = String::new();
            outline(&v["tree"], 0, &mut out);
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn set(url: &str, router: &str, text: &str) -> Result<ExitCode, String> {
    // Check locally first: a typo is reported with its position without a round trip.
    Dtab::parse(text).map_err(|e| format!("the new dtab is malformed: {e}"))?;
    let (status, etag, body) = call("GET", url, None, None).await?;
    expect_ok(status, &body)?;
    let etag = etag.ok_or("the admin server sent no ETag for the current dtab")?;
    let (status, new_etag, body) = call("PUT", url, Some(&etag), Some(text.to_string())).await?;
    match status {
        StatusCode::NO_CONTENT | StatusCode::OK => {
            println!("router {router}: dtab replaced (version {})", new_etag.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        StatusCode::PRECONDITION_FAILED => Err(format!(
            "router {router}: the dtab changed after it was read (someone else wrote it); nothing was replaced. \
             Compare with `switchyard dtab diff FILE` and try again."
        )),
        _ => Err(format!("router {router}: {} {}", status.as_u16(), error_text(&body))),
    }
}

fn read_file(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))
}

fn canonical(text: &str, what: &str) -> Result<String, String> {
    Dtab::parse(text).map(|d| d.pretty()).map_err(|e| format!("{what}: malformed dtab: {e}"))
}

fn expect_ok(status: StatusCode, body: &str) -> Result<(), String> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{} {}", status.as_u16(), error_text(body)))
    }
}

/// The admin API's `{"error": …}` message, or the body as it is.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| body.trim().to_string())
}

/// One HTTP/1.1 exchange on a fresh connection: (status, ETag, body).
async fn call(
    method: &str,
    url: &str,
    if_match: Option<&str>,
    body: Option<String>,
) -> Result<(StatusCode, Option<String>, String), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?.clone();
    let https = uri.scheme_str() == Some("https");
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(if https { 443 } else { 80 }));
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("cannot reach the admin server at {addr}: {e}"))?;
    let mut sender = if https {
        let name = std::env::var("SWITCHYARD_ADMIN_TLS_NAME").unwrap_or_else(|_| authority.host().to_string());
        handshake(tls_connect(&name, stream).await?, &addr).await?
    } else {
        handshake(stream, &addr).await?
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::builder().method(method).uri(path).header("host", authority.as_str());
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    if let Ok(token) = std::env::var("SWITCHYARD_ADMIN_TOKEN") {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| format!("{addr}: {e}"))?;
    let status = resp.status();
    let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(String::from);
    let bytes = resp.into_body().collect().await.map_err(|e| format!("{addr}: {e}"))?.to_bytes();
    Ok((status, etag, String::from_utf8_lossy(&bytes).into_owned()))
}

/// An HTTP/1.1 connection over `io` (plaintext or TLS), driven in its own task.
async fn handshake<I>(io: I, addr: &str) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// TLS to an `https://` admin server, trusting the CA in `$SWITCHYARD_ADMIN_CA` (the mesh CA, usually) and checking
/// that its certificate carries `host` (`$SWITCHYARD_ADMIN_TLS_NAME`, else the URL's host).
async fn tls_connect(
    host: &str,
    stream: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let ca = std::env::var("SWITCHYARD_ADMIN_CA").map_err(|_| {
        "https:// needs SWITCHYARD_ADMIN_CA: the CA certificate the admin server's chains to".to_string()
    })?;
    let config = crate::config::ClientTlsConfig {
        common_name: Some(host.to_string()),
        trust_certs: vec![ca.into()],
        trust_certs_bundle: None,
        disable_validation: false,
        client_auth: None,
        protocols: Vec::new(),
    };
    let config = crate::tls::client_config(&config, crate::tls::Alpn::Http1).map_err(|e| e.0)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS to the admin server {host} failed: {}", crate::tls::describe(&e)))
}

/// A line diff of two dtab texts as `  kept`, `- removed`, `+ added` lines — the admin editor's diff (one
/// implementation, capped for huge inputs).
fn line_diff(old: &str, new: &str) -> Vec<String> {
    let split = |t: &str| t.lines().map(str::to_owned).collect::<Vec<_>>();
    crate::admin::editor::diff(&split(old), &split(new))
        .into_iter()
        .map(|l| match l.op {
            "add" => format!("+ {}", l.text),
            "remove" => format!("- {}", l.text),
            _ => format!("  {}", l.text),
        })
        .collect()
}

/// The delegator's tree (linkerd's DelegateTree JSON) as an indented outline, one node per line.
fn outline(node: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let path = node["path"].as_str().unwrap_or("?");
    let via = match node["dentry"].as_object() {
        Some(d) => format!("   (via {} => {})", d["prefix"].as_str().unwrap_or("?"), d["dst"].as_str().unwrap_or("?")),
        None => String::new(),
    };
    let text = |k: &str| node[k].as_str().unwrap_or("").to_string();
    match node["type"].as_str().unwrap_or("") {
        "delegate" => {
            out.push_str(&format!("{pad}{path}{via}\n"));
            outline(&node["delegate"], depth + 1, out);
        }
        "leaf" => {
            let b = &node["bound"];
            let eps: Vec<&str> =
                b["endpoints"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let residual = b["residual"]
                .as_str()
                .filter(|r| !r.is_empty() && *r != "/")
                .map(|r| format!(" residual {r}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{pad}{path}{via}\n{pad}  => bound {}{residual} [{}]\n",
                b["id"].as_str().unwrap_or("?"),
                eps.join(", ")
            ));
        }
        "alt" => {
            out.push_str(&format!("{pad}{path}{via}\n{pad}  | first of:\n"));
            node["alt"].as_array().into_iter().flatten().for_each(|c| outline(c, depth + 2, out));
        }
        "union" => {
            out.push_str(&format!("{pad}{path}{via}\n{pad}  & split:\n"));
            for branch in node["union"].as_array().into_iter().flatten() {
                out.push_str(&format!("{pad}    weight {}:\n", branch["weight"]));
                outline(&branch["tree"], depth + 3, out);
            }
        }
        "neg" => out.push_str(&format!("{pad}{path}{via}\n{pad}  ~ neg (no binding)\n")),
        "fail" => out.push_str(&format!("{pad}{path}{via}\n{pad}  ! fail\n")),
        "empty" => out.push_str(&format!("{pad}{path}{via}\n{pad}  $ empty (no endpoints)\n")),
        _ => out.push_str(&format!("{pad}{path}\n{pad}  error: {}\n", text("message"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = parse(&["--admin", "http://127.0.2.1:9990/", "--router", "ingress", "explain", "/svc/x"]).unwrap();
        assert_eq!(
            a,
            Args {
                admin: "http://127.0.2.1:9990".into(),
                router: "ingress".into(),
                command: Command::Explain("/svc/x".into())
            }
        );
        assert_eq!(parse(&["set", "f.dtab"]).unwrap().command, Command::Set("f.dtab".into()));
        assert!(parse(&["frobnicate"]).is_err());
        assert!(parse(&["--admin", "127.0.0.1:9990", "get"]).is_err());
    }

    #[test]
    fn diff_marks_removed_and_added_lines() {
        let d = line_diff("/a => /b;\n/c => /d;\n/e => /f;", "/a => /b;\n/c => /x;\n/e => /f;");
        assert_eq!(d, ["  /a => /b;", "- /c => /d;", "+ /c => /x;", "  /e => /f;"]);
    }

    #[test]
    fn outline_of_a_delegation() {
        let tree = serde_json::json!({"type": "delegate", "path": "/svc/r", "dentry": null, "delegate": {
        "type": "alt", "path": "/#/a/r", "dentry": {"prefix": "/svc", "dst": "/#/a|/#/b"}, "alt": [
            {"type": "neg", "path": "/#/a/r", "dentry": null},
            {"type": "leaf", "path": "/#/b/r", "dentry": null, "bound": {"id": "/#/b/r", "residual": "/", "endpoints": ["127.0.0.1:1"]}}
        ]}});
        let mut out = String::new();
        outline(&tree, 0, &mut out);
        assert_eq!(
            out,
            "/svc/r\n  /#/a/r   (via /svc => /#/a|/#/b)\n    | first of:\n      /#/a/r\n        ~ neg (no binding)\n      /#/b/r\n        => bound /#/b/r [127.0.0.1:1]\n"
        );
    }
}
