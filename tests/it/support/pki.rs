//! Certificates made at test time with rcgen: a root CA, an intermediate, server
//! certificates valid, expiring, expired, misnamed and self-signed, and a client certificate.
//! Written as PEM files for nginx and for `ca_file`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A PEM certificate chain (leaf first) and its key, on disk.
pub struct Served {
    pub chain: PathBuf,
    pub key: PathBuf,
}

/// Everything the TLS tests use.
pub struct Pki {
    /// The root CA certificate (PEM): what `ca_file` points at.
    pub ca: PathBuf,
    /// localhost and 127.0.0.1, signed by the root, valid for 90 days.
    pub leaf: Served,
    /// localhost, signed by an intermediate that expires in 10 days; the leaf in 60.
    pub short_intermediate: Served,
    /// localhost, expired two days ago.
    pub expired: Served,
    /// Valid, but for other.example only.
    pub wrong_host: Served,
    /// A self-signed certificate for localhost.
    pub self_signed: Served,
    /// A client certificate (clientAuth) signed by the root.
    pub client: Served,
    /// localhost, signed by the root, whose subject and one SAN hold terminal escape
    /// sequences (ESC, BEL, a bidi override): [`HOSTILE_CN`], [`HOSTILE_O`], [`HOSTILE_SAN`].
    pub hostile: Served,
}

/// A common name that retitles a terminal window, clears the screen and turns text red.
pub const HOSTILE_CN: &str = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31mred";
/// An organisation with a right-to-left override and a DEL.
pub const HOSTILE_O: &str = "corp\u{202e}exe.txt\x7f";
/// A DNS name (IA5String allows any ASCII) with an escape sequence and a newline.
pub const HOSTILE_SAN: &str = "x\x1b[31m\nforged.localhost";

struct Authority {
    params: CertificateParams,
    key: KeyPair,
}

impl Authority {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "nightjar tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn leaf_params(
    names: &[&str],
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    client: bool,
) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn write(dir: &Path, file: &str, pems: &[String]) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, pems.concat()).unwrap();
    path
}

impl Pki {
    pub fn make(dir: &Path) -> Pki {
        let now = OffsetDateTime::now_utc();
        let day = Duration::days(1);
        let root = Authority {
            params: ca_params("nightjar test root", now - day, now + 365 * day),
            key: KeyPair::generate().unwrap(),
        };
        let root_cert = root.params.self_signed(&root.key).unwrap();
        let ca = write(dir, "ca.pem", &[root_cert.pem()]);

        let issue = |file: &str,
                     names: &[&str],
                     cn: &str,
                     from: OffsetDateTime,
                     to: OffsetDateTime,
                     client: bool,
                     by: &Authority,
                     extra: &[String]| {
            let key = KeyPair::generate().unwrap();
            let cert = leaf_params(names, cn, from, to, client)
                .signed_by(&key, &by.issuer())
                .unwrap();
            let mut pems = vec![cert.pem()];
            pems.extend_from_slice(extra);
            Served {
                chain: write(dir, &format!("{file}.pem"), &pems),
                key: write(dir, &format!("{file}.key"), &[key.serialize_pem()]),
            }
        };

        let leaf = issue(
            "leaf",
            &["localhost", "127.0.0.1"],
            "localhost",
            now - day,
            now + 90 * day,
            false,
            &root,
            &[],
        );
        let intermediate = Authority {
            params: ca_params("nightjar test intermediate", now - day, now + 10 * day),
            key: KeyPair::generate().unwrap(),
        };
        let intermediate_cert = intermediate
            .params
            .signed_by(&intermediate.key, &root.issuer())
            .unwrap();
        let short_intermediate = issue(
            "short-intermediate",
            &["localhost"],
            "localhost",
            now - day,
            now + 60 * day,
            false,
            &intermediate,
            &[intermediate_cert.pem()],
        );
        let expired = issue(
            "expired",
            &["localhost"],
            "localhost",
            now - 30 * day,
            now - 2 * day,
            false,
            &root,
            &[],
        );
        let wrong_host = issue(
            "wrong-host",
            &["other.example"],
            "other.example",
            now - day,
            now + 90 * day,
            false,
            &root,
            &[],
        );
        let client = issue(
            "client",
            &[],
            "nightjar-probe",
            now - day,
            now + 90 * day,
            true,
            &root,
            &[],
        );

        let hostile = {
            let key = KeyPair::generate().unwrap();
            let mut params = leaf_params(
                &["localhost", HOSTILE_SAN],
                HOSTILE_CN,
                now - day,
                now + 90 * day,
                false,
            );
            params
                .distinguished_name
                .push(DnType::OrganizationName, HOSTILE_O);
            let cert = params.signed_by(&key, &root.issuer()).unwrap();
            Served {
                chain: write(dir, "hostile.pem", &[cert.pem()]),
                key: write(dir, "hostile.key", &[key.serialize_pem()]),
            }
        };

        let self_key = KeyPair::generate().unwrap();
        let self_cert = leaf_params(
            &["localhost"],
            "localhost",
            now - day,
            now + 90 * day,
            false,
        )
        .self_signed(&self_key)
        .unwrap();
        let self_signed = Served {
            chain: write(dir, "self-signed.pem", &[self_cert.pem()]),
            key: write(dir, "self-signed.key", &[self_key.serialize_pem()]),
        };
        Pki {
            ca,
            leaf,
            short_intermediate,
            expired,
            wrong_host,
            self_signed,
            client,
            hostile,
        }
    }
}
