//! ICMP messages as a socket hands them over: any bytes are read as an echo reply (with and
//! without an IPv4 header, ICMPv4 and ICMPv6) or as the request an error quotes, and an
//! error's type and code are named, never a panic; a reply's payload lies within the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::checks::icmp::codec::{error_name, parse_reply, quoted_request};

fuzz_target!(|bytes: &[u8]| {
    for (v6, ip_header) in [(false, false), (false, true), (true, false)] {
        if let Some(reply) = parse_reply(bytes, v6, ip_header) {
            assert!(reply.payload.len() + 8 <= bytes.len());
        }
        let _ = quoted_request(bytes, v6);
        if let [kind, code, ..] = bytes {
            let _ = error_name(v6, *kind, *code);
        }
    }
});
