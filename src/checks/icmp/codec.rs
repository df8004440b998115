//! ICMP echo messages: the request the check sends, and what it makes of what comes back.
//!
//! The parsers take bytes a network peer chose and never panic: anything short, of another
//! type or otherwise not ours is `None` (the fuzz target `icmp_reply` holds them to that).

use std::borrow::Cow;

/// ICMPv4 echo reply.
const V4_ECHO_REPLY: u8 = 0;
/// ICMPv4 echo request.
const V4_ECHO_REQUEST: u8 = 8;
/// ICMPv6 echo request.
const V6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 echo reply.
const V6_ECHO_REPLY: u8 = 129;

/// The length of an echo message's header (type, code, checksum, identifier, sequence).
pub const HEADER: usize = 8;

/// An echo request: `HEADER` bytes and `payload`. The checksum is filled for ICMPv4 (a raw
/// socket sends it as written); for ICMPv6 the kernel computes it over the pseudo-header.
pub fn echo_request(v6: bool, ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(HEADER + payload.len());
    packet.push(if v6 { V6_ECHO_REQUEST } else { V4_ECHO_REQUEST });
    packet.push(0);
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(payload);
    if !v6 {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The payload of every request of a run: `size` bytes of a repeating pattern that starts at
/// the run's `cookie`, so a reply carrying another run's payload is not taken for ours.
pub fn payload(size: usize, cookie: u16) -> Vec<u8> {
    let [high, low] = cookie.to_be_bytes();
    (0..size)
        .map(|idx| match idx {
            0 => high,
            1 => low,
            _ => (idx as u8).wrapping_add(low),
        })
        .collect()
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo reply as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The identifier (on a datagram socket, the one the kernel chose).
    pub ident: u16,
    /// The sequence number.
    pub seq: u16,
    /// What followed the header.
    pub payload: &'a [u8],
    /// The TTL of the IPv4 header the message came in, when the socket hands it over (raw
    /// IPv4 sockets).
    pub ttl: Option<u8>,
}

/// Reads an echo reply from what a socket received: an ICMP message, preceded by its IPv4
/// header when `ip_header` (raw IPv4 sockets). `None` for anything else.
pub fn parse_reply(data: &[u8], v6: bool, ip_header: bool) -> Option<Reply<'_>> {
    let (icmp, ttl) = if ip_header {
        let (icmp, ttl) = strip_ipv4_header(data)?;
        (icmp, Some(ttl))
    } else {
        (data, None)
    };
    let want = if v6 { V6_ECHO_REPLY } else { V4_ECHO_REPLY };
    if icmp.len() < HEADER || icmp[0] != want || icmp[1] != 0 {
        return None;
    }
    Some(Reply {
        ident: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
        payload: &icmp[HEADER..],
        ttl,
    })
}

/// The ICMP message inside an IPv4 packet carrying ICMP, and the packet's TTL.
fn strip_ipv4_header(data: &[u8]) -> Option<(&[u8], u8)> {
    let first = *data.first()?;
    let header = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header < 20 || data.len() < header || data[9] != 1 {
        return None;
    }
    Some((&data[header..], data[8]))
}

/// The identifier and sequence number of the echo request an ICMP error quotes: the error
/// queue hands over the quoted request from its ICMP header on (`data`). `None` when it is
/// not an echo request.
pub fn quoted_request(data: &[u8], v6: bool) -> Option<(u16, u16)> {
    let want = if v6 { V6_ECHO_REQUEST } else { V4_ECHO_REQUEST };
    if data.len() < HEADER || data[0] != want {
        return None;
    }
    Some((
        u16::from_be_bytes([data[4], data[5]]),
        u16::from_be_bytes([data[6], data[7]]),
    ))
}

/// The name of an ICMP error by type and code, as RFC 792, RFC 1812 and RFC 4443 call them.
pub fn error_name(v6: bool, kind: u8, code: u8) -> Cow<'static, str> {
    let name = if v6 {
        match (kind, code) {
            (1, 0) => "no route to destination",
            (1, 1) => "communication with destination administratively prohibited",
            (1, 2) => "beyond scope of source address",
            (1, 3) => "address unreachable",
            (1, 4) => "port unreachable",
            (1, 5) => "source address failed ingress/egress policy",
            (1, 6) => "reject route to destination",
            (1, _) => "destination unreachable",
            (2, _) => "packet too big",
            (3, 0) => "hop limit exceeded in transit",
            (3, _) => "fragment reassembly time exceeded",
            (4, _) => "parameter problem",
            _ => return Cow::Owned(format!("ICMPv6 error type {kind}")),
        }
    } else {
        match (kind, code) {
            (3, 0) => "destination network unreachable",
            (3, 1) => "destination host unreachable",
            (3, 2) => "destination protocol unreachable",
            (3, 3) => "destination port unreachable",
            (3, 4) => "fragmentation needed and DF set",
            (3, 5) => "source route failed",
            (3, 6) => "destination network unknown",
            (3, 7) => "destination host unknown",
            (3, 8) => "source host isolated",
            (3, 9) => "destination network administratively prohibited",
            (3, 10) => "destination host administratively prohibited",
            (3, 11) => "destination network unreachable for type of service",
            (3, 12) => "destination host unreachable for type of service",
            (3, 13) => "communication administratively prohibited",
            (3, 14) => "host precedence violation",
            (3, 15) => "precedence cutoff in effect",
            (3, _) => "destination unreachable",
            (11, 0) => "time to live exceeded in transit",
            (11, _) => "fragment reassembly time exceeded",
            (12, _) => "parameter problem",
            _ => return Cow::Owned(format!("ICMP error type {kind}")),
        }
    };
    Cow::Borrowed(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_checksums_to_zero_and_parses_back_as_a_reply() {
        let payload = payload(56, 0xbeef);
        let request = echo_request(false, 0x1234, 7, &payload);
        assert_eq!(request.len(), 64);
        assert_eq!(checksum(&request), 0, "a valid checksum sums to zero");
        let mut reply = request.clone();
        reply[0] = V4_ECHO_REPLY;
        let parsed = parse_reply(&reply, false, false).unwrap();
        assert_eq!((parsed.ident, parsed.seq), (0x1234, 7));
        assert_eq!(parsed.payload, &payload[..]);
        assert_eq!(
            parse_reply(&request, false, false),
            None,
            "a request is no reply"
        );
        assert_eq!(quoted_request(&request, false), Some((0x1234, 7)));
    }

    #[test]
    fn a_raw_ipv4_reply_gives_its_ttl() {
        let mut packet = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 61, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let mut icmp = echo_request(false, 1, 2, b"abc");
        icmp[0] = V4_ECHO_REPLY;
        packet.extend_from_slice(&icmp);
        let parsed = parse_reply(&packet, false, true).unwrap();
        assert_eq!(parsed.ttl, Some(61));
        assert_eq!(parsed.payload, b"abc");
        // A header that claims more than there is, or another protocol, is not a reply.
        packet[0] = 0x4f;
        assert_eq!(parse_reply(&packet, false, true), None);
        packet[0] = 0x45;
        packet[9] = 17;
        assert_eq!(parse_reply(&packet, false, true), None);
        assert_eq!(parse_reply(&[], false, true), None);
    }

    #[test]
    fn icmpv6_types_and_names() {
        let mut reply = echo_request(true, 9, 10, b"");
        assert_eq!(reply[0], V6_ECHO_REQUEST);
        reply[0] = V6_ECHO_REPLY;
        assert_eq!(parse_reply(&reply, true, false).unwrap().seq, 10);
        assert_eq!(parse_reply(&reply, false, false), None);
        assert_eq!(
            error_name(true, 1, 1),
            "communication with destination administratively prohibited"
        );
        assert_eq!(error_name(false, 3, 1), "destination host unreachable");
        assert_eq!(error_name(false, 5, 0), "ICMP error type 5");
    }
}
