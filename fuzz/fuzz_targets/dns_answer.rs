//! DNS response handling: any bytes from a server are parsed, recorded and judged as a run
//! would, ending in a pass or a failure with a reason, never a panic.
#![no_main]

use std::str::FromStr;

use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;
use nightjar::checks::dns::{DnsExpect, judge_answer};

fuzz_target!(|bytes: &[u8]| {
    let name = Name::from_str("www.example.test.").expect("a valid name");
    for record in [RecordType::A, RecordType::SOA, RecordType::TXT] {
        let _ = judge_answer(bytes, &name, record, &DnsExpect::default());
    }
});
