//! `switchyard identity …`: a mesh CA for a trust domain, short-lived service certificates with SPIFFE
//! identities, and a look at what a certificate says — issuing with rcgen, never hand-rolled ASN.1.
//!
//! A service certificate names its service twice: a SPIFFE URI SAN `spiffe://<trust-domain>/svc/<service>` (what
//! authorization policies and the dashboard use) and a DNS SAN `<service>.<trust-domain>` (what a linkerd-style
//! client `commonName` checks). It is valid for both server and client authentication, so one identity serves
//! a sidecar's ingress and its egress. Private keys are written with mode 0600 and never leave the machine that
//! issued them. Exit status: 0 ok, 1 failure, 64 bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::OffsetDateTime;

use crate::tls::identity::CertInfo;

/// Usage of the `identity` subcommand.
pub const USAGE: &str = "\
USAGE:
    switchyard identity ca --trust-domain DOMAIN --out DIR [--valid DURATION]
        create a mesh CA: DIR/ca.pem (share it) and DIR/ca.key (keep it secret); default validity 365d
    switchyard identity issue --ca DIR --service NAME --out DIR [--valid DURATION]
        issue NAME's identity: DIR/NAME.pem (certificate, then the CA), DIR/NAME.key; default validity 24h
    switchyard identity show FILE.pem
        print what a certificate says: identity, names, issuer, validity

    DURATION: a number with s, m, h or d (90m, 24h, 30d)
";

/// A parsed `identity` command line.
#[derive(Debug, PartialEq)]
enum Command {
    Ca { trust_domain: String, out: PathBuf, valid: Duration },
    Issue { ca: PathBuf, service: String, out: PathBuf, valid: Duration },
    Show(PathBuf),
}

fn duration(text: &str) -> Result<Duration, String> {
    let split = text.char_indices().last().map_or(0, |(i, _)| i);
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?} is not a duration like 90m, 24h or 30d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} is not a duration like 90m, 24h or 30d")),
    };
    if n == 0 {
        return Err("a validity must be longer than zero".into());
    }
    match n.checked_mul(secs).filter(|s| *s <= 100 * 365 * 86_400) {
        Some(s) => Ok(Duration::from_secs(s)),
        None => Err(format!("{text:?} is longer than 100 years")),
    }
}

/// A trust domain or service name: DNS-label characters only, so it fits both the URI and the DNS SAN.
fn dns_safe(text: &str, what: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!("{what} {text:?} must be DNS labels (letters, digits, `-`) separated by dots"))
    }
}

fn parse(args: &[&str]) -> Result<Command, String> {
    let (verb, rest) = args.split_first().ok_or("missing command: ca, issue or show")?;
    if *verb == "show" {
        return match rest {
            [file] => Ok(Command::Show(PathBuf::from(file))),
            _ => Err("show takes one certificate file".into()),
        };
    }
    let mut flags = std::collections::HashMap::new();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let name = flag.strip_prefix("--").ok_or_else(|| format!("unexpected argument {flag:?}"))?;
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        flags.insert(name, *value);
    }
    let mut take = |name: &str| flags.remove(name).ok_or_else(|| format!("--{name} is required"));
    let command = match *verb {
        "ca" => Command::Ca {
            trust_domain: dns_safe(take("trust-domain")?, "trust domain")?,
            out: PathBuf::from(take("out")?),
            valid: flags.remove("valid").map(duration).transpose()?.unwrap_or(Duration::from_secs(365 * 86_400)),
        },
        "issue" => Command::Issue {
            ca: PathBuf::from(take("ca")?),
            service: dns_safe(take("service")?, "service name")?,
            out: PathBuf::from(take("out")?),
            valid: flags.remove("valid").map(duration).transpose()?.unwrap_or(Duration::from_secs(86_400)),
        },
        other => return Err(format!("unknown command {other:?}: ca, issue or show")),
    };
    match flags.keys().next() {
        Some(extra) => Err(format!("unknown flag --{extra}")),
        None => Ok(command),
    }
}

/// Runs `switchyard identity ARGS…`.
pub fn main(args: &[&str]) -> ExitCode {
    let command = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard identity: {e}\n\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let result = match command {
        Command::Ca { trust_domain, out, valid } => create_ca(&trust_domain, &out, valid, OffsetDateTime::now_utc())
            .map(|()| format!("wrote {0}/ca.pem and {0}/ca.key for spiffe://{trust_domain}", out.display())),
        Command::Issue { ca, service, out, valid } => issue(&ca, &service, &out, valid, OffsetDateTime::now_utc())
            .map(|id| format!("wrote {0}/{service}.pem and {0}/{service}.key: {id}", out.display())),
        Command::Show(file) => show(&file),
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard identity: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    // Write beside, then rename: a sidecar watching the file never reads half of it. A fresh temporary file each
    // time (create_new), so the mode above always applies and a leftover file is never reused.
    options.create_new(true);
    let tmp = path.with_extension(format!("tmp-{}-{}", std::process::id(), fastrand::u64(..)));
    let mut f = options.open(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn uri(text: &str) -> Result<SanType, String> {
    Ia5String::try_from(text).map(SanType::URI).map_err(|e| e.to_string())
}

/// Creates a CA for `trust_domain` valid from `now` for `valid`: `out/ca.pem`, `out/ca.key`.
pub fn create_ca(trust_domain: &str, out: &Path, valid: Duration, now: OffsetDateTime) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("switchyard mesh CA for {trust_domain}"));
    params.subject_alt_names.push(uri(&format!("spiffe://{trust_domain}"))?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::minutes(5);
    params.not_after =
        now.checked_add(time::Duration::try_from(valid).map_err(|e| e.to_string())?).ok_or("validity too long")?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write(&out.join("ca.key"), &key.serialize_pem(), true)?;
    write(&out.join("ca.pem"), &cert.pem(), false)
}

/// Issues `service`'s identity with the CA in `ca_dir`, valid from `not_before` for `valid`: writes
/// `out/<service>.pem` (the certificate followed by the CA's, a chain a server can present as is) and
/// `out/<service>.key`. Returns the SPIFFE ID.
pub fn issue(
    ca_dir: &Path,
    service: &str,
    out: &Path,
    valid: Duration,
    not_before: OffsetDateTime,
) -> Result<String, String> {
    let ca_pem = read(&ca_dir.join("ca.pem"))?;
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join("ca.key"))?)
        .map_err(|e| format!("{}: not a private key: {e}", ca_dir.join("ca.key").display()))?;
    let trust_domain = trust_domain_of(&ca_pem).ok_or_else(|| {
        format!("{} is not a switchyard mesh CA (no spiffe://<trust-domain> name)", ca_dir.join("ca.pem").display())
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca_dir.join("ca.pem").display()))?;
    let spiffe = format!("spiffe://{trust_domain}/svc/{service}");
    let mut params = CertificateParams::new(vec![format!("{service}.{trust_domain}")]).map_err(|e| e.to_string())?;
    params.subject_alt_names.push(uri(&spiffe)?);
    params.distinguished_name.push(DnType::CommonName, format!("{service}.{trust_domain}"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_before
        .checked_add(time::Duration::try_from(valid).map_err(|e| e.to_string())?)
        .ok_or("validity too long")?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    write(&out.join(format!("{service}.key")), &key.serialize_pem(), true)?;
    write(&out.join(format!("{service}.pem")), &format!("{}{ca_pem}", cert.pem()), false)?;
    Ok(spiffe)
}

/// The trust domain a mesh CA certificate names (`spiffe://<trust-domain>`).
fn trust_domain_of(ca_pem: &str) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).ok()?;
    let info = CertInfo::parse(&der).ok()?;
    info.spiffe.iter().find_map(|s| s.strip_prefix("spiffe://").filter(|d| !d.contains('/')).map(str::to_string))
}

fn show(file: &Path) -> Result<String, String> {
    let certs = crate::tls::read_certs(file, "certificate").map_err(|e| e.0)?;
    let info = CertInfo::parse(&certs[0]).map_err(|e| format!("{}: {e}", file.display()))?;
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(|d| format!("{} {:02}:{:02}:{:02} UTC", d.date(), d.hour(), d.minute(), d.second()))
            .unwrap_or_else(|_| t.to_string())
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let state = if now < info.not_before {
        "not valid yet".to_string()
    } else if now >= info.not_after {
        "EXPIRED".to_string()
    } else {
        format!("valid, {} h left", (info.not_after - now) / 3600)
    };
    Ok(format!(
        "identity:   {}\nspiffe:     {}\ndns:        {}\nsubject:    {}\nissuer:     {}\nvalid:      {} → {} ({state})\nca:         {}\nchain:      {} certificate(s) in the file",
        info.identity(),
        info.spiffe.join(", "),
        info.dns.join(", "),
        info.subject,
        info.issuer,
        at(info.not_before),
        at(info.not_after),
        info.is_ca,
        certs.len(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(
            parse(&["issue", "--ca", "c", "--service", "Forex-Rate", "--out", "o", "--valid", "90m"]),
            Ok(Command::Issue {
                ca: "c".into(),
                service: "forex-rate".into(),
                out: "o".into(),
                valid: Duration::from_secs(5400)
            })
        );
        assert!(parse(&["ca", "--out", "o"]).unwrap_err().contains("--trust-domain is required"));
        assert!(parse(&["ca", "--trust-domain", "a/b", "--out", "o"]).unwrap_err().contains("DNS labels"));
        assert!(parse(&["issue", "--ca", "c", "--service", "s", "--out", "o", "--valid", "2w"]).is_err());
        assert!(parse(&["issue", "--ca", "c", "--service", "s", "--out", "o", "--valid", "5é"]).is_err());
        let huge = parse(&["issue", "--ca", "c", "--service", "s", "--out", "o", "--valid", "99999999999999d"]);
        assert!(huge.unwrap_err().contains("longer than 100 years"));
        assert!(parse(&["issue", "--ca", "c", "--service", "s", "--out", "o", "--bogus", "1"]).is_err());
    }

    #[test]
    fn a_ca_issues_service_identities_that_name_the_service_twice() {
        let dir = std::env::temp_dir().join(format!("sy-identity-{}-{}", std::process::id(), fastrand::u64(..)));
        let now = OffsetDateTime::now_utc();
        create_ca("mesh.test", &dir, Duration::from_secs(86_400), now).unwrap();
        let id = issue(&dir, "forex-rate", &dir, Duration::from_secs(3600), now).unwrap();
        assert_eq!(id, "spiffe://mesh.test/svc/forex-rate");
        let chain = crate::tls::read_certs(&dir.join("forex-rate.pem"), "certificate").unwrap();
        assert_eq!(chain.len(), 2, "leaf, then the CA");
        let leaf = CertInfo::parse(&chain[0]).unwrap();
        assert_eq!(leaf.spiffe, ["spiffe://mesh.test/svc/forex-rate"]);
        assert_eq!(leaf.dns, ["forex-rate.mesh.test"]);
        assert!(!leaf.is_ca && CertInfo::parse(&chain[1]).unwrap().is_ca);
        assert_eq!(leaf.not_after - leaf.not_before, 3600);
        crate::tls::read_key(&dir.join("forex-rate.key")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("forex-rate.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "keys are private");
        }
        assert!(show(&dir.join("forex-rate.pem")).unwrap().contains("identity:   spiffe://mesh.test/svc/forex-rate"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
