//! TLS on both sides of a hop (rustls with the ring provider): servers that terminate TLS (optionally requiring
//! a client certificate), clients that originate it to upstream sidecars, and certificate files that are
//! reloaded when they change on disk.
//!
//! linkerd 1's keys configure it (server `tls: {certPath, keyPath, intermediateCertsPath, caCertPath,
//! requireClientAuth, protocols}`, client `tls: {commonName, trustCerts, trustCertsBundle, disableValidation,
//! clientAuth, protocols}`); see `docs/security.md`. Every file is read when the config is checked, so a missing
//! or malformed certificate or key is a config error naming the file, before any port is bound.
//!
//! Rotation: each [`Reloading`] config polls its files' modification time and size every [`RELOAD_INTERVAL`];
//! when one changed it rebuilds the whole rustls config and swaps it in (arc-swap). Connections already open
//! keep the certificate they were made with; new handshakes use the new one. A broken file on disk (half
//! written, wrong key) keeps the previous config in force and is counted and logged.

pub mod identity;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use prometheus::{GaugeVec, IntCounterVec};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};

use crate::config::{ClientTlsConfig, ServerTlsConfig, TlsVersion};
use crate::metrics::{names, Registry};

/// How often certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Why TLS could not be set up: always names the file (or setting) at fault.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The crypto provider every TLS config uses (ring: see docs/decisions/0011-tls-and-identity.md).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file (a chain, or a bundle of roots).
pub fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("cannot read {what} {}: {}", path.display(), pem_error(&e))))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("cannot read {what} {}: {}", path.display(), pem_error(&e))))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{what} {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// Reads a private key (PKCS#8, SEC1 or PKCS#1 PEM).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "cannot read private key {}: {} (expected a PEM PKCS#8, SEC1 or PKCS#1 key)",
            path.display(),
            pem_error(&e)
        ))
    })
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind found".into(),
        other => format!("{other:?}"),
    }
}

fn versions(protocols: &[TlsVersion]) -> Vec<&'static SupportedProtocolVersion> {
    if protocols.is_empty() {
        return vec![&rustls::version::TLS13, &rustls::version::TLS12];
    }
    protocols
        .iter()
        .map(|p| match p {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect()
}

fn roots(paths: &[&Path]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for path in paths {
        for cert in read_certs(path, "trusted CA certificate")? {
            store
                .add(cert)
                .map_err(|e| TlsError(format!("trusted CA certificate {} is not usable: {e}", path.display())))?;
        }
    }
    Ok(store)
}

/// A certificate chain (leaf plus intermediates) and its key, checked to match.
fn chain_and_key(
    cert: &Path,
    intermediates: Option<&Path>,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let mut chain = read_certs(cert, "certificate")?;
    if let Some(path) = intermediates {
        chain.extend(read_certs(path, "intermediate certificates")?);
    }
    let key_der = read_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der.clone_key())
        .map_err(|e| TlsError(format!("private key {} is not usable: {e}", key.display())))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    certified.keys_match().map_err(|_| {
        TlsError(format!("private key {} does not belong to certificate {}", key.display(), cert.display()))
    })?;
    Ok((chain, key_der))
}

/// Builds a server config: our certificate, ALPN h2 and HTTP/1.1, and — with `caCertPath` — client certificates
/// verified against that CA (required with `requireClientAuth`, else optional).
pub fn server_config(c: &ServerTlsConfig) -> Result<rustls::ServerConfig, TlsError> {
    let (chain, key) = chain_and_key(&c.cert_path, c.intermediate_certs_path.as_deref(), &c.key_path)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&c.protocols))
        .map_err(|e| TlsError(format!("protocols: {e}")))?;
    let builder = match &c.ca_cert_path {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(&[ca.as_path()])?),
                provider(),
            );
            let verifier = if c.require_client_auth { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| TlsError(format!("caCertPath {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("certificate {}: {e}", c.cert_path.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// What a client offers by ALPN: only `h2` on an `h2` router; `h2` then `http/1.1` on an HTTP/1.1 router that
/// upgrades (a peer that accepts h2 gets the requests as streams); else only `http/1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http1,
    Http1OrH2,
}

/// Builds a client config (without the server name, which each connection supplies): trusted roots (or no
/// validation at all with `disableValidation`), an optional client certificate, ALPN for the upstream protocol.
/// Session resumption uses rustls's in-memory cache, shared by every connection made with this config.
pub fn client_config(c: &ClientTlsConfig, alpn: Alpn) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&c.protocols))
        .map_err(|e| TlsError(format!("protocols: {e}")))?;
    let builder = if c.disable_validation {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoValidation(provider())))
    } else {
        let paths: Vec<&Path> =
            c.trust_certs.iter().chain(c.trust_certs_bundle.as_ref()).map(PathBuf::as_path).collect();
        builder.with_root_certificates(roots(&paths)?)
    };
    let mut config = match &c.client_auth {
        Some(auth) => {
            let (chain, key) = chain_and_key(&auth.cert_path, auth.intermediate_certs_path.as_deref(), &auth.key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError(format!("clientAuth certificate {}: {e}", auth.cert_path.display())))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match alpn {
        Alpn::H2 => vec![b"h2".to_vec()],
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::Http1OrH2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// The system's CA bundle: `$SSL_CERT_FILE`, else Debian's `/etc/ssl/certs/ca-certificates.crt`.
pub fn system_trust_bundle() -> PathBuf {
    std::env::var_os("SSL_CERT_FILE").map_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"), PathBuf::from)
}

/// `disableValidation: true`: accepts any server certificate (signatures are still checked). For tests and
/// migrations only; `switchyard check` warns about it.
#[derive(Debug)]
struct NoValidation(Arc<CryptoProvider>);

impl ServerCertVerifier for NoValidation {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS families: when each certificate in use expires, and reloads by result.
#[derive(Clone)]
pub struct TlsMetrics {
    expiry: GaugeVec,
    reloads: IntCounterVec,
    handshake_errors: IntCounterVec,
}

impl TlsMetrics {
    /// Registers the families.
    pub fn register(r: &Registry) -> Self {
        Self {
            expiry: r.gauge_vec(
                names::TLS_CERT_EXPIRY,
                "When a certificate this sidecar presents expires (Unix seconds), by where it is used and identity.",
                &["use", "identity"],
            ),
            reloads: r.int_counter_vec(
                names::TLS_RELOADS,
                "Certificate reloads after a file changed, by result (ok, failed: the old one stays).",
                &["use", "result"],
            ),
            handshake_errors: r.int_counter_vec(
                names::TLS_HANDSHAKE_ERRORS,
                "TLS handshakes refused by this sidecar's servers, by router and reason.",
                &["router", "reason"],
            ),
        }
    }

    /// Counts a refused handshake.
    pub fn handshake_error(&self, router: &str, reason: &str) {
        self.handshake_errors.with_label_values(&[router, reason]).inc();
    }
}

/// A rustls config rebuilt from its files whenever one of them changes.
pub struct Reloading<T> {
    current: ArcSwap<T>,
    /// Where it is used (`server:ingress`, `client:egress`, `admin`), for metrics and logs.
    usage: String,
    files: Vec<PathBuf>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
    build: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    /// The certificate whose expiry is exported (the one this side presents), if any.
    presented: Option<PathBuf>,
    /// The identity label its expiry series carries now (replaced on reload, others' series untouched).
    exported: Mutex<Option<String>>,
    metrics: TlsMetrics,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the config once (an error here is a start-up error) and starts watching `files`.
    pub fn start(
        usage: String,
        files: Vec<PathBuf>,
        presented: Option<PathBuf>,
        metrics: TlsMetrics,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let stamps = files.iter().map(|f| stamp(f)).collect();
        let first = build()?;
        let this = Arc::new(Self {
            current: ArcSwap::from_pointee(first),
            usage,
            files,
            stamps: Mutex::new(stamps),
            build: Box::new(build),
            presented,
            exported: Mutex::new(None),
            metrics,
        });
        this.export_expiry();
        let weak = Arc::downgrade(&this);
        tokio::spawn(watch(weak));
        Ok(this)
    }

    /// The config in force.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    fn export_expiry(&self) {
        let Some(path) = &self.presented else { return };
        let Ok(certs) = read_certs(path, "certificate") else { return };
        let Some(info) = certs.first().and_then(|c| identity::CertInfo::parse(c).ok()) else { return };
        let identity = info.identity();
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = exported.as_ref().filter(|old| **old != identity) {
            let _ = self.metrics.expiry.remove_label_values(&[&self.usage, old]);
        }
        self.metrics.expiry.with_label_values(&[&self.usage, &identity]).set(info.not_after as f64);
        *exported = Some(identity);
    }

    /// Rebuilds when a file changed since the last look; returns whether a new config is in force.
    pub fn reload_if_changed(&self) -> bool {
        let now: Vec<_> = self.files.iter().map(|f| stamp(f)).collect();
        {
            let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if *stamps == now {
                return false;
            }
            *stamps = now;
        }
        match (self.build)() {
            Ok(next) => {
                self.current.store(Arc::new(next));
                self.metrics.reloads.with_label_values(&[&self.usage, "ok"]).inc();
                self.export_expiry();
                tracing::info!(usage = %self.usage, "TLS certificates reloaded");
                true
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&[&self.usage, "failed"]).inc();
                tracing::warn!(usage = %self.usage, error = %e, "TLS reload failed; the previous certificates stay");
                false
            }
        }
    }
}

async fn watch<T: Send + Sync + 'static>(weak: Weak<Reloading<T>>) {
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        let Some(this) = weak.upgrade() else { return };
        // On the blocking pool: looking at the files (and rebuilding after a change) must not stall the thread that
        // serves traffic — by default the sidecar's only one.
        let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
    }
}

/// A server's TLS: the reloadable config and what its clients must prove.
pub struct ServerTls {
    config: Arc<Reloading<rustls::ServerConfig>>,
    /// Clients must present a certificate the CA signed.
    pub requires_client_cert: bool,
}

impl ServerTls {
    /// Loads the server's certificates and starts watching them.
    pub fn start(usage: String, c: &ServerTlsConfig, metrics: TlsMetrics) -> Result<Self, TlsError> {
        let files: Vec<PathBuf> =
            [Some(&c.cert_path), Some(&c.key_path), c.intermediate_certs_path.as_ref(), c.ca_cert_path.as_ref()]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        let owned = c.clone();
        let config = Reloading::start(usage, files, Some(c.cert_path.clone()), metrics, move || server_config(&owned))?;
        Ok(Self { config, requires_client_cert: c.require_client_auth && c.ca_cert_path.is_some() })
    }

    /// An acceptor with the config in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.current())
    }
}

/// A client's TLS: the reloadable config, shared by every connection to every endpoint that uses it.
pub struct ClientTls {
    config: Arc<Reloading<rustls::ClientConfig>>,
}

impl ClientTls {
    /// Loads the client's trust roots and certificate and starts watching them.
    pub fn start(usage: String, c: &ClientTlsConfig, alpn: Alpn, metrics: TlsMetrics) -> Result<Self, TlsError> {
        let mut files: Vec<PathBuf> = c.trust_certs.iter().chain(c.trust_certs_bundle.as_ref()).cloned().collect();
        let mut presented = None;
        if let Some(auth) = &c.client_auth {
            files.extend(
                [Some(&auth.cert_path), Some(&auth.key_path), auth.intermediate_certs_path.as_ref()]
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            presented = Some(auth.cert_path.clone());
        }
        let owned = c.clone();
        let config = Reloading::start(usage, files, presented, metrics, move || client_config(&owned, alpn))?;
        Ok(Self { config })
    }

    /// A connector with the config in force now.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.current())
    }
}

/// Where an endpoint's connections go over TLS: the client config and the name the server must prove.
pub struct TlsTarget {
    /// `None` when the config could not be loaded: connections fail rather than go out in plaintext.
    pub tls: Option<Arc<ClientTls>>,
    /// The `commonName`, as configured (after `{variable}` substitution).
    pub name: String,
    /// `name` as a TLS server name; `None` when it is not a DNS name or IP address (connections then fail).
    pub server_name: Option<ServerName<'static>>,
}

impl TlsTarget {
    /// A target checking `name` with `tls`.
    pub fn new(tls: Arc<ClientTls>, name: &str) -> Self {
        Self { tls: Some(tls), name: name.to_string(), server_name: ServerName::try_from(name.to_string()).ok() }
    }

    /// A target whose TLS config is missing: every connection fails.
    pub fn unavailable() -> Self {
        Self { tls: None, name: String::new(), server_name: None }
    }
}

/// A handshake failure in words: rustls's reason when there is one.
pub fn describe(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the handshake (not TLS, or it refused our certificate)".into()
        }
        None => e.to_string(),
    }
}

/// A short, stable label for a rustls error (metrics), and its text (logs, `l5d-err`).
pub fn error_reason(e: &std::io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof { "eof" } else { "io" };
    };
    use rustls::{CertificateError as C, Error as E};
    match tls {
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "cert_expired",
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => "cert_not_yet_valid",
        E::InvalidCertificate(C::UnknownIssuer) => "unknown_issuer",
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => "wrong_name",
        E::InvalidCertificate(_) => "bad_certificate",
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => "not_tls",
        E::AlertReceived(_) => "alert_received",
        E::NoApplicationProtocol => "no_alpn",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("sy-tls-keys-{}-{}", std::process::id(), fastrand::u64(..)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn openssl(args: &[&str]) {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl (Debian's) is installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn keys_in_pkcs8_sec1_and_pkcs1_all_load() {
        let d = dir();
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(d.join("pkcs8.pem"), key.serialize_pem()).unwrap();
        assert!(std::fs::read_to_string(d.join("pkcs8.pem")).unwrap().starts_with("-----BEGIN PRIVATE KEY"));
        let (pkcs8, sec1, pkcs1) = (d.join("pkcs8.pem"), d.join("sec1.pem"), d.join("pkcs1.pem"));
        openssl(&["ec", "-in", pkcs8.to_str().unwrap(), "-out", sec1.to_str().unwrap()]);
        assert!(std::fs::read_to_string(&sec1).unwrap().starts_with("-----BEGIN EC PRIVATE KEY"));
        openssl(&["genrsa", "-traditional", "-out", pkcs1.to_str().unwrap(), "2048"]);
        assert!(std::fs::read_to_string(&pkcs1).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY"));
        assert!(matches!(read_key(&pkcs8).unwrap(), PrivateKeyDer::Pkcs8(_)));
        assert!(matches!(read_key(&sec1).unwrap(), PrivateKeyDer::Sec1(_)));
        assert!(matches!(read_key(&pkcs1).unwrap(), PrivateKeyDer::Pkcs1(_)));
        let _ = std::fs::remove_dir_all(d);
    }

    #[tokio::test]
    async fn a_reload_replaces_only_its_own_expiry_series() {
        let d = dir();
        let now = time::OffsetDateTime::now_utc();
        crate::identityctl::create_ca("mesh.test", &d, Duration::from_secs(86_400), now).unwrap();
        for svc in ["rate", "web"] {
            crate::identityctl::issue(&d, svc, &d, Duration::from_secs(3600), now).unwrap();
        }
        let server = |svc: &str| ServerTlsConfig {
            cert_path: d.join(format!("{svc}.pem")),
            key_path: d.join(format!("{svc}.key")),
            intermediate_certs_path: None,
            ca_cert_path: None,
            require_client_auth: false,
            protocols: Vec::new(),
        };
        let registry = Registry::empty();
        let metrics = TlsMetrics::register(&registry);
        let rate = ServerTls::start("server:ingress".into(), &server("rate"), metrics.clone()).unwrap();
        let _web = ServerTls::start("admin".into(), &server("web"), metrics.clone()).unwrap();
        // Renew rate's identity for longer; the file's size may not change, so wait for a new modification time.
        std::thread::sleep(Duration::from_millis(20));
        crate::identityctl::issue(&d, "rate", &d, Duration::from_secs(7200), now).unwrap();
        assert!(rate.config.reload_if_changed(), "the renewed certificate is loaded");
        let text = registry.render();
        let series: Vec<&str> = text.lines().filter(|l| l.starts_with(names::TLS_CERT_EXPIRY)).collect();
        assert_eq!(series.len(), 2, "{text}");
        assert!(series.iter().any(|l| l.contains(r#"use="admin""#)), "the other certificate's series stays: {text}");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn unreadable_files_are_named_in_the_error() {
        let d = dir();
        let missing = d.join("missing.pem");
        let err = read_certs(&missing, "certificate").unwrap_err().0;
        assert!(err.starts_with(&format!("cannot read certificate {}", missing.display())), "{err}");
        let key_only = d.join("key.pem");
        std::fs::write(&key_only, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = read_certs(&key_only, "certificate").unwrap_err().0;
        assert!(err.contains(&key_only.display().to_string()) && err.contains("no PEM certificate"), "{err}");
        std::fs::write(d.join("garbage.key"), "not a key").unwrap();
        let err = read_key(&d.join("garbage.key")).unwrap_err().0;
        assert!(err.contains("garbage.key") && err.contains("PKCS#8, SEC1 or PKCS#1"), "{err}");
        let _ = std::fs::remove_dir_all(d);
    }
}
