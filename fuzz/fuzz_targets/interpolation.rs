//! Variable and secret interpolation: the input becomes a flow step's URL, header and body
//! templates (`${var}`, `${env:..}`, `${file:..}`, `${totp:..}`, `$${`), which either load or
//! are reported as errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar::config::{MapEnv, Overrides, load_str};

fuzz_target!(|template: &str| {
    let quoted = toml::Value::String(template.to_string()).to_string();
    let text = format!(
        "[[check]]\nname = \"f\"\ntype = \"flow\"\n\
[[check.steps]]\nname = \"login\"\nurl = \"http://127.0.0.1:1/\"\nextract = {{ token = {{ regex = 'x' }} }}\n\
[[check.steps]]\nname = \"use\"\nurl = \"http://127.0.0.1:1/${{token}}\"\nbody = {quoted}\nheaders = {{ x-a = {quoted} }}\n\n\
[[check]]\nname = \"h\"\ntype = \"http\"\nurl = {quoted}\n"
    );
    let env = MapEnv(
        [("PW", "secret"), ("TOTP", "JBSWY3DPEHPK3PXP")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let _ = load_str(
        std::path::Path::new("fuzz.toml"),
        &text,
        &env,
        &Overrides::default(),
    );
});
