//! blackbox_exporter's record rules (`validate_answer_rrs`, `validate_authority_rrs`,
//! `validate_additional_rrs`): regexes over each record of a section as miekg/dns prints it
//! (`www.example.com.\t300\tIN\tA\t192.0.2.1`: owner, TTL, class, type and the data in
//! presentation format, tab-separated), with blackbox's exact semantics.

use base64::Engine;
use hickory_proto::dnssec::PublicKey;
use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use regex::Regex;

use crate::result::{Failure, FailureReason};

/// The rules for one section (`expect.answer_rrs` and its siblings); empty lists are no rule,
/// as in blackbox_exporter.
#[derive(Debug, Clone, Default)]
pub struct RrRules {
    /// Fail if any record matches any of these.
    pub fail_if_matches: Vec<Regex>,
    /// Fail unless every record matches every one of these (blackbox_exporter's code, whatever
    /// the name says; no records pass).
    pub fail_if_all_match: Vec<Regex>,
    /// Fail if there are no records, or a record does not match one of these.
    pub fail_if_not_matches: Vec<Regex>,
    /// Fail if there are no records, or no record matches any of these.
    pub fail_if_none_matches: Vec<Regex>,
}

impl RrRules {
    /// No rule is set.
    pub fn is_empty(&self) -> bool {
        self.fail_if_matches.is_empty()
            && self.fail_if_all_match.is_empty()
            && self.fail_if_not_matches.is_empty()
            && self.fail_if_none_matches.is_empty()
    }

    /// Judges a section's records (as [`rr_text`] prints them), in blackbox's order: the
    /// rules that need records, then record by record `fail_if_matches` and
    /// `fail_if_not_matches`, then `fail_if_all_match` and `fail_if_none_matches`. `section`
    /// names it in the detail.
    pub fn judge(&self, section: &str, records: &[String]) -> Result<(), Failure> {
        let fail = |detail: String| Err(Failure::new(FailureReason::Answer, detail));
        if records.is_empty() {
            if let Some(regex) = self.fail_if_not_matches.first() {
                return fail(format!(
                    "{section} section: fail_if_not_matches /{regex}/ needs records, and there are none"
                ));
            }
            if let Some(regex) = self.fail_if_none_matches.first() {
                return fail(format!(
                    "{section} section: fail_if_none_matches /{regex}/ needs records, and there are none"
                ));
            }
        }
        let mut unmatched: Option<(&Regex, &String)> = None;
        for record in records {
            if let Some(regex) = self.fail_if_matches.iter().find(|re| re.is_match(record)) {
                return fail(format!(
                    "{section} record {record:?} matches fail_if_matches /{regex}/"
                ));
            }
            if unmatched.is_none() {
                unmatched = self
                    .fail_if_all_match
                    .iter()
                    .find(|re| !re.is_match(record))
                    .map(|re| (re, record));
            }
            if let Some(regex) = self
                .fail_if_not_matches
                .iter()
                .find(|re| !re.is_match(record))
            {
                return fail(format!(
                    "{section} record {record:?} does not match fail_if_not_matches /{regex}/"
                ));
            }
        }
        if let Some((regex, record)) = unmatched {
            return fail(format!(
                "{section} record {record:?} does not match fail_if_all_match /{regex}/ (blackbox_exporter's rule: every record must match)"
            ));
        }
        if !self.fail_if_none_matches.is_empty()
            && !records.iter().any(|record| {
                self.fail_if_none_matches
                    .iter()
                    .any(|re| re.is_match(record))
            })
        {
            let shown: Vec<String> = self
                .fail_if_none_matches
                .iter()
                .map(|re| format!("/{re}/"))
                .collect();
            return fail(format!(
                "{section} section: no record matches fail_if_none_matches {}; the first is {:?}",
                shown.join(", "),
                records[0]
            ));
        }
        Ok(())
    }
}

/// The rules of the three sections.
#[derive(Debug, Clone, Default)]
pub struct SectionRules {
    /// `expect.answer_rrs`.
    pub answer: RrRules,
    /// `expect.authority_rrs`.
    pub authority: RrRules,
    /// `expect.additional_rrs`.
    pub additional: RrRules,
}

impl SectionRules {
    /// Judges the answer, authority and additional sections, in that order. The EDNS OPT
    /// record is not among the additional records.
    pub fn judge(&self, message: &Message) -> Result<(), Failure> {
        let sections = [
            ("answer", &self.answer, &message.answers),
            ("authority", &self.authority, &message.authorities),
            ("additional", &self.additional, &message.additionals),
        ];
        for (section, rules, records) in sections {
            if rules.is_empty() {
                continue;
            }
            let texts: Vec<String> = records.iter().map(rr_text).collect();
            rules.judge(section, &texts)?;
        }
        Ok(())
    }
}

/// A record as miekg/dns's `RR.String()` prints it: owner, TTL, class, type and data,
/// tab-separated, the data in presentation format.
pub fn rr_text(record: &Record) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}",
        name_text(&record.name),
        record.ttl,
        class_text(record.dns_class),
        type_text(record.record_type()),
        data_text(&record.data)
    )
}

/// A class as miekg names it.
fn class_text(class: DNSClass) -> String {
    match class {
        DNSClass::IN => "IN".into(),
        DNSClass::CH => "CH".into(),
        DNSClass::HS => "HS".into(),
        DNSClass::NONE => "NONE".into(),
        DNSClass::ANY => "ANY".into(),
        other => format!("CLASS{}", u16::from(other)),
    }
}

/// A type as miekg names it (`TYPE65534` for one it does not know).
fn type_text(record: RecordType) -> String {
    match record {
        RecordType::Unknown(code) => format!("TYPE{code}"),
        known => known.to_string(),
    }
}

/// A name with miekg's escapes: the characters special in zone files after a backslash,
/// other bytes outside printable ASCII as `\DDD`; the root is `.`.
fn name_text(name: &Name) -> String {
    if name.is_root() {
        return ".".into();
    }
    let mut out = String::new();
    for label in name.iter() {
        for &byte in label {
            match byte {
                b'.' | b' ' | b'\'' | b'@' | b';' | b'(' | b')' | b'"' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(byte));
                }
                b if !(b' '..=b'~').contains(&b) => out.push_str(&format!("\\{b:03}")),
                b => out.push(char::from(b)),
            }
        }
        out.push('.');
    }
    if !name.is_fqdn() {
        out.pop();
    }
    out
}

/// A character string in quotes, with `"` and `\` escaped and bytes outside printable ASCII
/// as `\DDD`, as miekg prints TXT data.
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &byte in bytes {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(byte));
            }
            b if !(b' '..=b'~').contains(&b) => out.push_str(&format!("\\{b:03}")),
            b => out.push(char::from(b)),
        }
    }
    out.push('"');
    out
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An RRSIG time as miekg prints it: `YYYYMMDDHHMMSS`, UTC.
fn sig_time(secs: u32) -> String {
    chrono::DateTime::from_timestamp(i64::from(secs), 0)
        .map(|at| at.format("%Y%m%d%H%M%S").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// The data of a record in miekg's presentation format, for the types name servers commonly
/// serve; others as hickory prints them.
fn data_text(data: &RData) -> String {
    match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::NS(ns) => name_text(&ns.0),
        RData::CNAME(cname) => name_text(&cname.0),
        RData::PTR(ptr) => name_text(&ptr.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name_text(&srv.target)
        ),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            name_text(&soa.mname),
            name_text(&soa.rname),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        RData::TXT(txt) => {
            let parts: Vec<String> = txt.txt_data.iter().map(|part| quoted(part)).collect();
            parts.join(" ")
        }
        RData::CAA(caa) => {
            let flags = (u8::from(caa.issuer_critical) << 7) | caa.reserved_flags;
            format!("{flags} {} {}", caa.tag, quoted(&caa.value))
        }
        RData::TLSA(tlsa) => format!(
            "{} {} {} {}",
            u8::from(tlsa.cert_usage),
            u8::from(tlsa.selector),
            u8::from(tlsa.matching),
            upper_hex(&tlsa.cert_data)
        ),
        RData::DNSSEC(dnssec) => dnssec_text(dnssec).unwrap_or_else(|| data.to_string()),
        other => other.to_string(),
    }
}

fn dnssec_text(data: &DNSSECRData) -> Option<String> {
    Some(match data {
        DNSSECRData::RRSIG(sig) => {
            let input = sig.input();
            format!(
                "{} {} {} {} {} {} {} {} {}",
                type_text(input.type_covered),
                u8::from(input.algorithm),
                input.num_labels,
                input.original_ttl,
                sig_time(input.sig_expiration.get()),
                sig_time(input.sig_inception.get()),
                input.key_tag,
                name_text(&input.signer_name),
                base64(sig.sig())
            )
        }
        DNSSECRData::DNSKEY(key) => format!(
            "{} 3 {} {}",
            key.flags(),
            u8::from(key.public_key().algorithm()),
            base64(key.public_key().public_bytes())
        ),
        DNSSECRData::DS(ds) => format!(
            "{} {} {} {}",
            ds.key_tag(),
            u8::from(ds.algorithm()),
            u8::from(ds.digest_type()),
            upper_hex(ds.digest())
        ),
        DNSSECRData::NSEC(nsec) => {
            let mut out = name_text(nsec.next_domain_name());
            for record in nsec.type_bit_maps() {
                out.push(' ');
                out.push_str(&type_text(record));
            }
            out
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn re(pattern: &str) -> Regex {
        Regex::new(pattern).unwrap()
    }

    fn detail(result: Result<(), Failure>) -> String {
        match result {
            Err(failure) => failure.detail,
            Ok(()) => panic!("passed"),
        }
    }

    #[test]
    fn records_print_as_miekg_prints_them() {
        let name = Name::from_str("www.example.com.").unwrap();
        let a = Record::from_rdata(
            name.clone(),
            300,
            RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        );
        assert_eq!(rr_text(&a), "www.example.com.\t300\tIN\tA\t192.0.2.1");
        let txt = Record::from_rdata(
            name.clone(),
            60,
            RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![
                "v=spf1 \"x\"".into(),
                "a\\b\u{1}".into(),
            ])),
        );
        assert_eq!(
            rr_text(&txt),
            "www.example.com.\t60\tIN\tTXT\t\"v=spf1 \\\"x\\\"\" \"a\\\\b\\001\""
        );
        assert_eq!(name_text(&Name::root()), ".");
        assert_eq!(
            name_text(&Name::from_ascii("a\\.b.c.").unwrap()),
            "a\\.b.c."
        );
        assert_eq!(sig_time(1_767_225_600), "20260101000000");
        assert_eq!(type_text(RecordType::Unknown(65_534)), "TYPE65534");
        assert_eq!(class_text(DNSClass::CH), "CH");
    }

    #[test]
    fn rules_follow_blackbox_semantics() {
        let records = vec![
            "a.\t300\tIN\tA\t192.0.2.1".to_string(),
            "a.\t300\tIN\tA\t192.0.2.2".to_string(),
        ];
        let rules = |f: fn(&mut RrRules)| {
            let mut rules = RrRules::default();
            f(&mut rules);
            rules
        };
        let matches = rules(|r| r.fail_if_matches = vec![re(r"\.2$")]);
        assert_eq!(
            detail(matches.judge("answer", &records)),
            "answer record \"a.\\t300\\tIN\\tA\\t192.0.2.2\" matches fail_if_matches /\\.2$/"
        );
        // fail_if_all_match fails when a record does not match; no records pass.
        let all = rules(|r| r.fail_if_all_match = vec![re(r"\.1$")]);
        assert!(detail(all.judge("answer", &records)).contains("fail_if_all_match"));
        assert!(all.judge("answer", &[]).is_ok());
        let all = rules(|r| r.fail_if_all_match = vec![re(r"\tA\t")]);
        assert!(all.judge("answer", &records).is_ok());
        // fail_if_not_matches: every record matches each, and there must be records.
        let not = rules(|r| r.fail_if_not_matches = vec![re(r"192\.0\.2\.")]);
        assert!(not.judge("answer", &records).is_ok());
        assert!(detail(not.judge("authority", &[])).starts_with("authority section"));
        // fail_if_none_matches: one match among all records and regexes is enough.
        let none = rules(|r| r.fail_if_none_matches = vec![re("nothing"), re(r"\.2$")]);
        assert!(none.judge("answer", &records).is_ok());
        let none = rules(|r| r.fail_if_none_matches = vec![re("nothing")]);
        assert!(
            detail(none.judge("additional", &records))
                .starts_with("additional section: no record matches")
        );
    }
}
