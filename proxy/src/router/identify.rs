//! The identify stage: turn a request into a logical name under the router's `dstPrefix`.
//!
//! linkerd 1's identifiers: `io.l5d.header.token` (a header's value as one label, default `Host`),
//! `io.l5d.methodAndHost` (`/<prefix>/1.1/<METHOD>/<host>`, the pre-0.9 default), `io.l5d.path` (leading URI path
//! segments, optionally consumed), and `io.l5d.header` (a header holding a whole path). Several may be configured;
//! the first that names the request wins.

use http::{HeaderName, Request, Uri, Version};
use switchyard_dtab::{Label, Path};

use super::headers::authority;
use crate::config::IdentifierConfig;

/// A configured identifier.
#[derive(Clone, Debug)]
pub enum Identifier {
    HeaderToken(HeaderName),
    MethodAndHost { uri_in_dst: bool },
    PathSegments { segments: usize, consume: bool },
    HeaderPath(HeaderName),
}

impl From<&IdentifierConfig> for Identifier {
    fn from(c: &IdentifierConfig) -> Self {
        match c {
            IdentifierConfig::HeaderToken { header } => Self::HeaderToken(header.clone()),
            IdentifierConfig::MethodAndHost { http_uri_in_dst } => Self::MethodAndHost { uri_in_dst: *http_uri_in_dst },
            IdentifierConfig::Path { segments, consume } => {
                Self::PathSegments { segments: *segments, consume: *consume }
            }
            IdentifierConfig::Header { header } => Self::HeaderPath(header.clone()),
        }
    }
}

/// The result of identification: the logical name, and a new request URI when the identifier consumed part of it.
#[derive(Debug, PartialEq)]
pub struct Identified {
    pub path: Path,
    pub rewrite: Option<Uri>,
}

/// Tries each identifier in order; the error explains why the last one could not name the request.
pub fn identify<B>(ids: &[Identifier], prefix: &Path, req: &Request<B>) -> Result<Identified, String> {
    let mut why = String::from("no identifier configured");
    for id in ids {
        match id.identify(prefix, req) {
            Ok(found) => return Ok(found),
            Err(e) => why = e,
        }
    }
    Err(why)
}

fn label(bytes: &[u8], what: &str) -> Result<Label, String> {
    Label::new(bytes.to_vec()).ok_or_else(|| format!("empty {what}"))
}

impl Identifier {
    fn identify<B>(&self, prefix: &Path, req: &Request<B>) -> Result<Identified, String> {
        match self {
            Self::HeaderToken(name) => {
                let value = if name == http::header::HOST {
                    authority(req).map(str::as_bytes)
                } else {
                    req.headers().get(name).map(|v| v.as_bytes())
                };
                let value = value.filter(|v| !v.is_empty()).ok_or_else(|| format!("no {name} header"))?;
                Ok(Identified { path: prefix.append(label(value, name.as_str())?), rewrite: None })
            }
            Self::MethodAndHost { uri_in_dst } => {
                let host = authority(req).ok_or("no Host header")?;
                let version = if req.version() == Version::HTTP_10 { "1.0" } else { "1.1" };
                let mut path = prefix
                    .append(label(version.as_bytes(), "version")?)
                    .append(label(req.method().as_str().as_bytes(), "method")?)
                    .append(label(host.as_bytes(), "host")?);
                if *uri_in_dst {
                    for seg in req.uri().path().split('/').filter(|s| !s.is_empty()) {
                        path = path.append(label(seg.as_bytes(), "segment")?);
                    }
                }
                Ok(Identified { path, rewrite: None })
            }
            Self::PathSegments { segments, consume } => {
                let uri_path = req.uri().path();
                let segs: Vec<&str> = uri_path.split('/').filter(|s| !s.is_empty()).collect();
                if segs.len() < *segments {
                    return Err(format!("request path {uri_path} has fewer than {segments} segment(s)"));
                }
                let mut path = prefix.clone();
                for seg in &segs[..*segments] {
                    path = path.append(label(seg.as_bytes(), "segment")?);
                }
                let rewrite = if *consume { Some(consumed_uri(req.uri(), &segs[*segments..])?) } else { None };
                Ok(Identified { path, rewrite })
            }
            Self::HeaderPath(name) => {
                let value = req.headers().get(name).ok_or_else(|| format!("no {name} header"))?;
                let text = value.to_str().map_err(|_| format!("{name} header is not text"))?;
                let path = Path::read(text).map_err(|e| format!("{name} header is not a path: {e}"))?;
                Ok(Identified { path: prefix.concat(&path), rewrite: None })
            }
        }
    }
}

/// The URI with its leading segments removed (the identifier consumed them), keeping the query.
fn consumed_uri(uri: &Uri, rest: &[&str]) -> Result<Uri, String> {
    let mut pq = format!("/{}", rest.join("/"));
    if uri.path().ends_with('/') && !rest.is_empty() {
        pq.push('/');
    }
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    pq.parse::<Uri>().map_err(|e| format!("cannot rewrite request path: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn p(s: &str) -> Path {
        Path::read(s).unwrap()
    }

    #[test]
    fn header_token_uses_host_or_authority() {
        let ids = [Identifier::HeaderToken(http::header::HOST)];
        let got = identify(&ids, &p("/svc"), &req("GET", "/x", &[("host", "forex-rate")])).unwrap();
        assert_eq!(got.path, p("/svc/forex-rate"));
        let got = identify(&ids, &p("/svc"), &req("GET", "http://forex-web:4140/x", &[])).unwrap();
        assert_eq!(got.path, p("/svc/forex-web:4140"));
        assert!(identify(&ids, &p("/svc"), &req("GET", "/x", &[])).unwrap_err().contains("no host header"));
    }

    #[test]
    fn method_and_host_is_the_legacy_form() {
        let ids = [Identifier::MethodAndHost { uri_in_dst: false }];
        let got = identify(&ids, &p("/http"), &req("GET", "/2016-09-05/USD/JPY", &[("host", "forex-rate")])).unwrap();
        assert_eq!(got.path, p("/http/1.1/GET/forex-rate"));
        let ids = [Identifier::MethodAndHost { uri_in_dst: true }];
        let got = identify(&ids, &p("/http"), &req("POST", "/a/b", &[("host", "h")])).unwrap();
        assert_eq!(got.path, p("/http/1.1/POST/h/a/b"));
    }

    #[test]
    fn path_segments_and_consume() {
        let ids = [Identifier::PathSegments { segments: 2, consume: true }];
        let got = identify(&ids, &p("/svc"), &req("GET", "/forex/rate/2016-09-05?x=1", &[])).unwrap();
        assert_eq!(got.path, p("/svc/forex/rate"));
        assert_eq!(got.rewrite.unwrap().to_string(), "/2016-09-05?x=1");
        assert!(identify(&ids, &p("/svc"), &req("GET", "/one", &[])).is_err());
    }

    #[test]
    fn header_path_and_fallthrough_order() {
        let ids =
            [Identifier::HeaderPath(HeaderName::from_static("l5d-name")), Identifier::HeaderToken(http::header::HOST)];
        let got = identify(&ids, &p("/svc"), &req("GET", "/", &[("l5d-name", "/a/b"), ("host", "h")])).unwrap();
        assert_eq!(got.path, p("/svc/a/b"));
        let got = identify(&ids, &p("/svc"), &req("GET", "/", &[("host", "h")])).unwrap();
        assert_eq!(got.path, p("/svc/h"), "second identifier used when the first cannot name the request");
        let err = identify(&ids, &p("/svc"), &req("GET", "/", &[("l5d-name", "not a path")]));
        assert!(err.is_err());
    }
}
