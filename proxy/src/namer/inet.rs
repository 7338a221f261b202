//! `/$/inet/<host>/<port>` — literal addresses, as in Finagle and linkerd 1.
//!
//! `<host>` is an IPv4/IPv6 literal, an inet_aton shorthand such as `127.1` (= 127.0.0.1, as the original configs
//! use), or `localhost`; `/$/inet/<port>` means localhost. Anything after the port is the bound name's residual.
//! Host names needing DNS are not resolved here (a later namer can); they bind to Neg with a logged reason.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};

use switchyard_dtab::{NameTree, Path};

use super::{BoundName, Endpoint, EndpointSet, EndpointWatch};

/// Interns one [`EndpointWatch`] per address so every binding of the same literal shares it — weakly: an address
/// no binding holds any more is forgotten, so a stream of distinct addresses cannot grow memory.
#[derive(Default)]
pub struct InetNamer {
    watches: Mutex<HashMap<SocketAddr, Weak<EndpointWatch>>>,
}

impl InetNamer {
    /// Binds a full `/$/inet/…` path.
    pub fn lookup(&self, path: &Path) -> NameTree<BoundName> {
        Self::bind_with(path, |addr| self.watch(addr))
    }

    /// Binds a path for an explanation: the same answer, with an address that is not interned.
    pub fn peek(path: &Path) -> NameTree<BoundName> {
        let fresh = |addr| EndpointWatch::new(EndpointSet { endpoints: vec![Endpoint { addr, weight: 1.0 }] });
        Self::bind_with(path, fresh)
    }

    fn bind_with(path: &Path, watch: impl FnOnce(SocketAddr) -> Arc<EndpointWatch>) -> NameTree<BoundName> {
        let labels = path.labels();
        let strs: Vec<Option<&str>> = labels.iter().skip(2).map(|l| l.as_str()).collect();
        let (addr, used) = match strs.as_slice() {
            [Some(host), Some(port), ..] if parse_port(port).is_some() => match parse_host(host) {
                Some(ip) => (SocketAddr::new(ip, parse_port(port).unwrap_or(0)), 2),
                None => return NameTree::Neg,
            },
            [Some(port), ..] if parse_port(port).is_some() => {
                (SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), parse_port(port).unwrap_or(0)), 1)
            }
            _ => return NameTree::Neg,
        };
        let id = path.take(2 + used);
        let residual = path.drop(2 + used);
        NameTree::Leaf(BoundName { id, residual, endpoints: watch(addr), host: None })
    }

    fn watch(&self, addr: SocketAddr) -> Arc<EndpointWatch> {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = watches.get(&addr).and_then(Weak::upgrade) {
            return live;
        }
        // Forget the addresses nothing holds any more, once the table has doubled since the last sweep.
        if watches.len() >= 64 && watches.len().is_power_of_two() {
            watches.retain(|_, w| w.strong_count() > 0);
        }
        let watch = EndpointWatch::new(EndpointSet { endpoints: vec![Endpoint { addr, weight: 1.0 }] });
        watches.insert(addr, Arc::downgrade(&watch));
        watch
    }

    /// Addresses interned now (for tests and the admin API).
    pub fn interned(&self) -> usize {
        self.watches.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// Parses an IP literal, `localhost`, or an inet_aton shorthand (`127.1`, `10.1.2`).
pub fn parse_host(s: &str) -> Option<IpAddr> {
    if s.eq_ignore_ascii_case("localhost") {
        return Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    // Bracketed IPv6 as in URLs.
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<IpAddr>().ok();
    }
    let parts: Vec<u32> = s.split('.').map(|p| p.parse::<u32>().ok()).collect::<Option<_>>()?;
    let v = match parts.as_slice() {
        [a, b] if *a < 256 && *b < (1 << 24) => (a << 24) | b,
        [a, b, c] if *a < 256 && *b < 256 && *c < (1 << 16) => (a << 24) | (b << 16) | c,
        _ => return None,
    };
    Some(IpAddr::V4(Ipv4Addr::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(path: &str) -> Option<(String, String, SocketAddr)> {
        match InetNamer::default().lookup(&Path::read(path).ok()?) {
            NameTree::Leaf(b) => Some((b.id.to_string(), b.residual.to_string(), b.endpoints.load().endpoints[0].addr)),
            _ => None,
        }
    }

    #[test]
    fn shorthand_and_literals() {
        assert_eq!(parse_host("127.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_host("10.1.2"), Some("10.1.0.2".parse().unwrap()));
        assert_eq!(parse_host("127.0.3.1"), Some("127.0.3.1".parse().unwrap()));
        assert_eq!(parse_host("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_host("localhost"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_host("forex-rate"), None);
        assert_eq!(parse_host("256.1"), None);
    }

    #[test]
    fn binds_host_port_and_residual() {
        let (id, residual, addr) = bound("/$/inet/127.1/8080/extra/bits").unwrap();
        assert_eq!(id, "/$/inet/127.1/8080");
        assert_eq!(residual, "/extra/bits");
        assert_eq!(addr, "127.0.0.1:8080".parse().unwrap());
        let (id, residual, addr) = bound("/$/inet/9990").unwrap();
        assert_eq!((id.as_str(), residual.as_str()), ("/$/inet/9990", "/"));
        assert_eq!(addr, "127.0.0.1:9990".parse().unwrap());
    }

    #[test]
    fn addresses_nothing_holds_are_forgotten_and_peeking_interns_nothing() {
        let namer = InetNamer::default();
        for port in 1..=2000u16 {
            let path = Path::read(&format!("/$/inet/10.0.0.1/{port}")).unwrap();
            let _ = namer.lookup(&path);
        }
        assert!(namer.interned() <= 1024, "{} addresses kept", namer.interned());
        let held = namer.lookup(&Path::read("/$/inet/10.0.0.2/80").unwrap());
        let again = namer.lookup(&Path::read("/$/inet/10.0.0.2/80").unwrap());
        match (held, again) {
            (NameTree::Leaf(a), NameTree::Leaf(b)) => assert!(Arc::ptr_eq(&a.endpoints, &b.endpoints), "shared"),
            _ => panic!("expected leaves"),
        }
        let before = namer.interned();
        let _ = InetNamer::peek(&Path::read("/$/inet/10.9.9.9/80").unwrap());
        assert_eq!(namer.interned(), before);
    }

    #[test]
    fn bad_literals_are_neg() {
        assert!(bound("/$/inet/127.1/notaport").is_none());
        assert!(bound("/$/inet/127.1/0").is_none());
        assert!(bound("/$/inet/some-host/80").is_none());
        assert!(bound("/$/inet").is_none());
    }
}
