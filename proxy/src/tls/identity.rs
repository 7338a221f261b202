//! Who a certificate says its holder is — its SPIFFE URI and DNS subject alternative names — and how long it is
//! valid: the peer identity that authorization checks, and what `switchyard identity show` prints.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// What a certificate names and when it is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// `spiffe://…` URI SANs.
    pub spiffe: Vec<String>,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// The subject's distinguished name, as text.
    pub subject: String,
    /// The issuer's distinguished name, as text.
    pub issuer: String,
    /// Validity, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Whether it may sign other certificates.
    pub is_ca: bool,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
        let (mut spiffe, mut dns) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) if uri.starts_with("spiffe://") => spiffe.push((*uri).to_string()),
                    GeneralName::DNSName(d) => dns.push((*d).to_string()),
                    _ => {}
                }
            }
        }
        Ok(Self {
            spiffe,
            dns,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            is_ca: cert.is_ca(),
        })
    }

    /// The identity to show: the SPIFFE ID, else the first DNS name, else the subject.
    pub fn identity(&self) -> String {
        self.spiffe.first().or(self.dns.first()).cloned().unwrap_or_else(|| self.subject.clone())
    }

    /// Whether an allow-list entry names this holder: `*` (anyone with a verified certificate), a SPIFFE ID, or
    /// a DNS name, compared exactly (ASCII case-insensitively for DNS).
    pub fn is(&self, entry: &str) -> bool {
        entry == "*" || self.spiffe.iter().any(|s| s == entry) || self.dns.iter().any(|d| d.eq_ignore_ascii_case(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_spiffe_and_dns_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["forex-rate.switchyard.local".to_string()]).unwrap();
        let uri = rcgen::string::Ia5String::try_from("spiffe://switchyard.local/svc/forex-rate").unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri));
        let cert = params.self_signed(&key).unwrap();
        let info = CertInfo::parse(cert.der()).unwrap();
        assert_eq!(info.identity(), "spiffe://switchyard.local/svc/forex-rate");
        assert!(info.is("forex-rate.switchyard.local") && info.is("FOREX-RATE.switchyard.local"));
        assert!(info.is("spiffe://switchyard.local/svc/forex-rate") && info.is("*"));
        assert!(!info.is("spiffe://switchyard.local/svc/forex-web") && !info.is("forex-rate"));
        assert!(info.not_after > info.not_before);
    }
}
