//! HTML form extraction: any page, any field name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::checks::flow::form_field;

fuzz_target!(|input: (&str, &str)| {
    let (html, name) = input;
    let _ = form_field(html, name);
    let _ = form_field(html, "csrf_token");
});
