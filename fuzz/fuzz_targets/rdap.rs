//! RDAP parsing: any body is an expiry, a bootstrap registry or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::checks::domain::{parse_bootstrap, parse_expiration};

fuzz_target!(|body: &[u8]| {
    let _ = parse_expiration(body);
    let _ = parse_bootstrap(body);
});
