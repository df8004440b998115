//! Config loading and validation: any text is a configuration or a list of errors, never a
//! panic, and every error names a place in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::config::{MapEnv, Overrides, load_str};

fuzz_target!(|text: &str| {
    let env = MapEnv(
        [
            ("TOKEN", "0123456789abcdef0123456789abcdef"),
            ("PW", "secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    if let Err(errors) = load_str(
        std::path::Path::new("fuzz.toml"),
        text,
        &env,
        &Overrides::default(),
    ) {
        assert!(!errors.0.is_empty(), "an Err with no error in it");
        let _ = errors.to_string();
    }
});
