//! `nightjar schema`: the JSON Schema editors use, checked with real validators: Python's
//! `jsonschema` (the reference implementation) and Taplo, the TOML toolkit behind VS Code's
//! Even Better TOML, both from the test virtualenv. Every example in `checks/` and the
//! embedded default validate; a misspelled key and a wrong type are caught, at the key, as
//! the configuration's own reader catches them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{nightjar, run_ok, venv_python};

/// Validates TOML files against a schema with `jsonschema` (Draft 7), each converted to JSON
/// by `tomllib`; prints one line per file: the path, a tab, and its problems joined by ` | `
/// (nothing after the tab when it validates).
const VALIDATE: &str = r#"
import json, sys, tomllib, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
for path in sys.argv[2:]:
    with open(path, "rb") as file:
        data = json.loads(json.dumps(tomllib.load(file), default=str))
    problems = sorted({
        "/".join(str(part) for part in error.absolute_path) + ": " + error.message
        for error in validator.iter_errors(data)
    })
    print(path + "\t" + " | ".join(problems))
"#;

/// The schema `nightjar schema --output` writes, in `dir`.
fn write_schema(dir: &Path) -> PathBuf {
    let path = dir.join("nightjar.schema.json");
    run_ok(nightjar().arg("schema").arg("--output").arg(&path));
    path
}

/// Each file's problems by `jsonschema`, in the order given.
fn validate(schema: &Path, files: &[PathBuf]) -> Vec<(String, String)> {
    let out = run_ok(
        Command::new(venv_python())
            .arg("-c")
            .arg(VALIDATE)
            .arg(schema)
            .args(files),
    );
    out.lines()
        .map(|line| {
            let (path, problems) = line.split_once('\t').unwrap_or((line, ""));
            (path.to_string(), problems.to_string())
        })
        .collect()
}

/// `taplo check --schema` on `files`: whether it passed, and what it said.
fn taplo(schema: &Path, files: &[PathBuf]) -> (bool, String) {
    let taplo = venv_python().with_file_name("taplo");
    assert!(
        taplo.exists(),
        "{} is missing: run `bash scripts/test.sh` once to install scripts/test-requirements.txt",
        taplo.display()
    );
    let out = Command::new(taplo)
        .arg("check")
        .arg("--schema")
        .arg(format!("file://{}", schema.display()))
        .args(files)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("checks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "checks/ holds the examples");
    files
}

#[test]
fn the_schema_is_json_on_stdout_and_the_same_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let printed = run_ok(nightjar().arg("schema"));
    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let written = std::fs::read_to_string(write_schema(dir.path())).unwrap();
    assert_eq!(printed, written);
    // Each key has its description and default, nested tables included.
    let agent = &schema["properties"]["agent"]["properties"];
    assert_eq!(agent["listen"]["default"], "127.0.0.1:9465");
    assert!(
        agent["listen"]["description"]
            .as_str()
            .unwrap()
            .contains("server")
    );
    let check = &schema["properties"]["check"]["items"];
    let http = check["allOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["if"]["properties"]["type"]["const"] == "http")
        .expect("an if/then for http checks");
    let http = &http["then"]["properties"];
    assert_eq!(http["method"]["default"], "GET");
    assert_eq!(
        http["expect"]["properties"]["status"]["type"], "array",
        "nested tables are described too"
    );
    assert_eq!(http["tls"]["properties"]["ca"]["enum"][1], "system");
}

#[test]
fn every_example_and_the_embedded_default_validate() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write_schema(dir.path());
    let default = dir.path().join("embedded.toml");
    std::fs::write(
        &default,
        nightjar::config::embedded_text("127.0.0.1:9465".parse().unwrap()),
    )
    .unwrap();
    let mut files = examples();
    files.push(default);
    let results = validate(&schema, &files);
    assert_eq!(results.len(), files.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, problems)| !problems.is_empty())
        .map(|(path, problems)| format!("{path}: {problems}"))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let (passed, said) = taplo(&schema, &files);
    assert!(passed, "taplo check --schema rejects valid files:\n{said}");
}

/// Mistakes the configuration's reader rejects: what, the file, what a validator says, and
/// what `nightjar validate` says.
const MISTAKES: &[(&str, &str, &str, &str)] = &[
    (
        "misspelled check key",
        "[[check]]\nname = \"shop\"\ntype = \"http\"\nurl = \"https://shop.example.com/\"\nintervall = \"30s\"\n",
        "'intervall' was unexpected",
        "unknown key `intervall`",
    ),
    (
        "key of another kind",
        "[[check]]\nname = \"pg\"\ntype = \"tcp\"\ntarget = \"db.example.com:5432\"\nurl = \"https://db.example.com/\"\n",
        "'url' was unexpected",
        "unknown key `url`",
    ),
    (
        "wrong type",
        "[[check]]\nname = \"pg\"\ntype = \"tcp\"\ntarget = \"db.example.com:5432\"\ntimeout = 30\n",
        "30 is not of type 'string'",
        "`timeout` in check \"pg\" must be a string",
    ),
    (
        "duration without a unit",
        "[defaults]\ninterval = \"30\"\n",
        "does not match",
        "is not a positive duration",
    ),
    (
        "misspelled nested key",
        "[[check]]\nname = \"shop\"\ntype = \"http\"\nurl = \"https://shop.example.com/\"\nexpect = { statuss = [200] }\n",
        "'statuss' was unexpected",
        "unknown key `statuss`",
    ),
    (
        "misspelled agent key",
        "[agent]\nlisten_address = \"0.0.0.0:9465\"\n",
        "'listen_address' was unexpected",
        "unknown key `listen_address`",
    ),
    (
        "unknown enum value",
        "[[check]]\nname = \"ns\"\ntype = \"dns\"\nquery = \"example.com\"\ntransport = \"quic\"\n",
        "'quic' is not one of",
        "unknown transport \"quic\"",
    ),
    (
        "unknown type",
        "[[check]]\nname = \"x\"\ntype = \"htp\"\nurl = \"https://example.com/\"\n",
        "'htp' is not one of",
        "unknown check type \"htp\"",
    ),
];

#[test]
fn a_misspelled_key_and_a_wrong_type_are_caught_as_the_reader_catches_them() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write_schema(dir.path());
    let files: Vec<PathBuf> = MISTAKES
        .iter()
        .enumerate()
        .map(|(idx, (_, text, _, _))| {
            let path = dir.path().join(format!("mistake-{idx}.toml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let results = validate(&schema, &files);
    for ((what, _, expected, by_reader), (file, (_, problems))) in
        MISTAKES.iter().zip(files.iter().zip(&results))
    {
        assert!(
            problems.contains(expected),
            "{what}: jsonschema said {problems:?}, not {expected:?}"
        );
        // The reader rejects it too: the schema says what `nightjar validate` says.
        let out = nightjar()
            .args(["validate", "--no-secrets", "--config"])
            .arg(file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains(by_reader),
            "{what}: nightjar validate said {said:?}, not {by_reader:?}"
        );
        let (passed, said) = taplo(&schema, std::slice::from_ref(file));
        assert!(!passed, "{what}: taplo accepts it:\n{said}");
        let expected_by_taplo = expected.replace('\'', "\"");
        assert!(
            said.contains(expected) || said.contains(&expected_by_taplo),
            "{what}: taplo said:\n{said}"
        );
    }
}

/// The two ways the README gives of pointing Taplo at the schema: a `.taplo.toml` rule and a
/// `#:schema` directive relative to the file. Each finds the schema and the mistake in it.
#[test]
fn taplo_finds_the_schema_through_taplo_toml_and_the_directive() {
    let dir = tempfile::tempdir().unwrap();
    write_schema(dir.path());
    let checks = dir.path().join("checks");
    std::fs::create_dir(&checks).unwrap();
    let mistake = MISTAKES[0].1;
    std::fs::write(checks.join("by-rule.toml"), mistake).unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(
        config.join("by-directive.toml"),
        format!("#:schema ../nightjar.schema.json\n{mistake}"),
    )
    .unwrap();
    let taplo = venv_python().with_file_name("taplo");
    let check = |file: &str| {
        let out = Command::new(&taplo)
            .arg("check")
            .arg(file)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };
    // Without a rule, Taplo knows no schema for the file and only checks its syntax.
    let (passed, said) = check("checks/by-rule.toml");
    assert!(passed, "no schema yet, valid TOML:\n{said}");
    std::fs::write(
        dir.path().join(".taplo.toml"),
        "[[rule]]\ninclude = [\"checks/**/*.toml\"]\n\n[rule.schema]\npath = \"./nightjar.schema.json\"\n",
    )
    .unwrap();
    for file in ["checks/by-rule.toml", "config/by-directive.toml"] {
        let (passed, said) = check(file);
        assert!(
            !passed && said.contains("'intervall' was unexpected"),
            "{file}: taplo said:\n{said}"
        );
    }
}
