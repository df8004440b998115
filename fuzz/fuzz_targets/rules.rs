//! The rule generator: every configuration that loads yields a rule file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::config::{MapEnv, Overrides, load_str};

fuzz_target!(|text: &str| {
    let env = MapEnv(Default::default());
    if let Ok(config) = load_str(
        std::path::Path::new("fuzz.toml"),
        text,
        &env,
        &Overrides::default(),
    ) {
        let rules = nightjar::rules::generate(&config);
        assert!(
            rules.starts_with("groups:") || rules.contains("groups:"),
            "{rules}"
        );
    }
});
