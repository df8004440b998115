//! DNS SD, as Prometheus's `discovery/dns` reads records: SRV gives `host:port` (the
//! trailing dot removed), A and AAAA give `ip:port` with the configured port (IPv6 in
//! brackets); CNAMEs on the way are followed. A name that does not exist (NXDOMAIN) or has
//! no records of the type is an empty set, as Prometheus takes it ("pseudo-authoritative
//! that there are no records"); a timeout, SERVFAIL, REFUSED or any other error keeps the
//! last good set. Queries go through hickory's resolver, without a cache: to `server` when
//! one is set, else to the system's resolvers (`/etc/resolv.conf`, its search list).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use super::{DiscoveryEnv, DnsSource, Read, RecordKind, Target};
use crate::net::IpPreference;

/// A resolver for `source`: its `server` over UDP (TCP on truncation), or the system's.
async fn resolver_for(source: &DnsSource, env: &DiscoveryEnv) -> Result<TokioResolver, String> {
    let server = match &source.server {
        None => None,
        Some(server) => match server.host.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, server.port)),
            Err(_) => {
                let ips = env
                    .resolver
                    .lookup(&server.host, IpPreference::default())
                    .await?;
                Some(SocketAddr::new(ips[0], server.port))
            }
        },
    };
    let mut builder = match server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                server.ip(),
                true,
                vec![udp, tcp],
            )]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => TokioResolver::builder_tokio().unwrap_or_else(|_| {
            TokioResolver::builder_with_config(
                ResolverConfig::default(),
                TokioRuntimeProvider::default(),
            )
        }),
    };
    let options = builder.options_mut();
    options.cache_size = 0;
    options.timeout = source.timeout;
    options.attempts = 1;
    builder
        .build()
        .map_err(|error| format!("cannot set up the resolver: {error}"))
}

/// Asks once; on failure the targets are `kept`.
pub(crate) async fn read(
    source: &DnsSource,
    env: &DiscoveryEnv,
    kept: Option<Arc<Vec<Target>>>,
) -> Read {
    let kind = match source.record {
        RecordKind::Srv => RecordType::SRV,
        RecordKind::A => RecordType::A,
        RecordKind::Aaaa => RecordType::AAAA,
    };
    let failed = |error: String| Read {
        targets: kept.clone().unwrap_or_default(),
        error: Some(crate::text::sanitize(&error, crate::text::MAX_DETAIL).into_owned()),
    };
    let resolver = match resolver_for(source, env).await {
        Ok(resolver) => resolver,
        Err(error) => return failed(error),
    };
    let answer =
        tokio::time::timeout(source.timeout, resolver.lookup(source.name.as_str(), kind)).await;
    let lookup = match answer {
        Err(_) => return failed(format!("no answer within {:?}", source.timeout)),
        Ok(Err(error)) if error.is_no_records_found() => {
            return Read {
                targets: Arc::default(),
                error: None,
            };
        }
        Ok(Err(error)) => return failed(error.to_string()),
        Ok(Ok(lookup)) => lookup,
    };
    let mut targets: Vec<Target> = lookup
        .answers()
        .iter()
        .filter_map(|record| target_of(&record.data, source.port))
        .map(|target| Target {
            target: target.into(),
            labels: Default::default(),
        })
        .collect();
    targets.sort();
    targets.dedup();
    Read {
        targets: Arc::new(targets),
        error: None,
    }
}

/// The target a record gives: SRV `host:port`, A `ip:port`, AAAA `[ip]:port`; none for
/// anything else (the CNAMEs on the way).
fn target_of(data: &RData, port: Option<u16>) -> Option<String> {
    match data {
        RData::SRV(srv) => {
            let host = srv.target.to_ascii();
            let host = host.trim_end_matches('.');
            (!host.is_empty()).then(|| format!("{host}:{}", srv.port))
        }
        RData::A(a) => Some(SocketAddr::new(a.0.into(), port?).to_string()),
        RData::AAAA(aaaa) => Some(SocketAddr::new(aaaa.0.into(), port?).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};

    #[test]
    fn records_become_targets_as_prometheus_writes_them() {
        let srv = RData::SRV(SRV::new(
            10,
            5,
            443,
            Name::from_ascii("web1.example.com.").unwrap(),
        ));
        assert_eq!(
            target_of(&srv, None).as_deref(),
            Some("web1.example.com:443")
        );
        let a = RData::A(A([192, 0, 2, 7].into()));
        assert_eq!(target_of(&a, Some(9100)).as_deref(), Some("192.0.2.7:9100"));
        let aaaa = RData::AAAA(AAAA("2001:db8::7".parse().unwrap()));
        assert_eq!(
            target_of(&aaaa, Some(443)).as_deref(),
            Some("[2001:db8::7]:443")
        );
        let root = RData::SRV(SRV::new(0, 0, 443, Name::root()));
        assert_eq!(target_of(&root, None), None);
    }
}
