//! What a TLS handshake showed: the whole presented chain, parsed, and the verdicts on it.
//!
//! Handshakes run with a verifier that accepts any chain but still checks the handshake
//! signature (`net::client_config`). Right after the handshake, and before a single byte of
//! request is sent, the chain is verified here with rustls' own WebPKI verifier. So an
//! expired, self-signed or misnamed certificate is still read and reported, and a check that
//! requires a valid chain stops before talking to an unverified server.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConnection, RootCertStore};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::net;
use crate::result::{CertInfo, TlsInfo};

/// Builds the verifier that judges chains against `roots`.
pub fn verifier(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(roots, net::provider())
        .build()
        .map_err(|error| format!("cannot build the certificate verifier: {error}"))
}

/// Reads the chain and verdicts from an established connection.
pub fn inspect(
    conn: &ClientConnection,
    server_name: &ServerName<'_>,
    verifier: &WebPkiServerVerifier,
) -> TlsInfo {
    let presented: &[CertificateDer<'_>] = conn.peer_certificates().unwrap_or(&[]);
    let chain = presented.iter().map(|der| parse_cert(der)).collect();
    let (chain_valid, hostname_match, verify_error) = match presented.split_first() {
        None => (
            false,
            false,
            Some("the server presented no certificate".to_string()),
        ),
        Some((leaf, intermediates)) => {
            let verdict =
                verifier.verify_server_cert(leaf, intermediates, server_name, &[], UnixTime::now());
            match verdict {
                Ok(_) => (true, true, None),
                // WebPKI checks the chain first and the name last: a name error means the
                // chain itself is fine.
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => (
                    true,
                    false,
                    Some(format!(
                        "the certificate is not valid for {}",
                        name_text(server_name)
                    )),
                ),
                Err(error) => (
                    false,
                    name_matches(leaf, server_name),
                    Some(error.to_string()),
                ),
            }
        }
    };
    TlsInfo {
        version: conn
            .protocol_version()
            .map_or("unknown", net::tls_version_name),
        alpn: conn
            .alpn_protocol()
            .map(|alpn| shown_name(&String::from_utf8_lossy(alpn))),
        chain,
        chain_valid,
        verify_error: verify_error
            .map(|error| crate::text::sanitize(&error, crate::text::MAX_DETAIL).into_owned()),
        hostname_match,
    }
}

/// The server name as text.
pub fn name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(dns) => dns.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => "the server name".to_string(),
    }
}

fn name_matches(leaf: &CertificateDer<'_>, server_name: &ServerName<'_>) -> bool {
    webpki::EndEntityCert::try_from(leaf)
        .map(|cert| cert.verify_is_valid_for_subject_name(server_name).is_ok())
        .unwrap_or(false)
}

/// Parses what matters of one certificate; an unparsable one is kept with its fingerprint.
pub fn parse_cert(der: &CertificateDer<'_>) -> CertInfo {
    let fingerprint_sha256 =
        hex(ring::digest::digest(&ring::digest::SHA256, der.as_ref()).as_ref());
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return CertInfo {
            subject: "unparsable certificate".to_string(),
            fingerprint_sha256,
            ..CertInfo::default()
        };
    };
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(shown_name(dns)),
                    GeneralName::IPAddress(bytes) => ip_text(bytes),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let serial = hex(cert.raw_serial());
    CertInfo {
        subject: shown_name(&cert.subject().to_string()),
        issuer: shown_name(&cert.issuer().to_string()),
        serial: serial.trim_start_matches('0').to_string(),
        sans,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        fingerprint_sha256,
    }
}

/// A name the certificate's issuer chose, made safe to show and to use as a label value:
/// control characters escaped, length capped.
fn shown_name(text: &str) -> String {
    crate::text::sanitize(text, crate::text::MAX_NAME).into_owned()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
