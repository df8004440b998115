//! `[agent] blackbox_config`: blackbox_exporter's own file, read by `blackbox::parse`, each
//! module validated as a `[[module]]` table is. Strict: an option nightjar cannot carry over
//! is a problem naming its place, the option and the reason (a module that silently dropped
//! it would give other verdicts than blackbox_exporter).

use std::path::Path;

use super::module::{ModuleDef, place_error};
use super::{AgentConfig, ConfigError, Env};

/// The modules of the blackbox_exporter configuration at `path`; problems go to `errors`.
pub(super) fn read(
    path: &Path,
    env: &dyn Env,
    agent: &AgentConfig,
    errors: &mut Vec<ConfigError>,
) -> Vec<ModuleDef> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(ConfigError {
                path: path.to_path_buf(),
                line: None,
                column: None,
                message: format!("cannot read blackbox_config: {error}"),
                hint: Some("blackbox_config is relative to the file that names it".to_string()),
            });
            return Vec::new();
        }
    };
    let parsed = match crate::blackbox::parse(path, &text) {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            return Vec::new();
        }
    };
    for unsupported in &parsed.unsupported {
        errors.push(ConfigError {
            path: unsupported.origin.path.clone(),
            line: Some(unsupported.origin.line),
            column: Some(1),
            message: format!(
                "module {:?}: option `{}` is not supported: {}",
                unsupported.module, unsupported.option, unsupported.reason
            ),
            hint: Some(
                "a module that dropped it would give other verdicts than blackbox_exporter; remove the option, or run nightjar import blackbox --allow-partial to see the rest".to_string(),
            ),
        });
    }
    let mut modules = Vec::new();
    for module in parsed.modules {
        let place = format!("{}:{}", module.origin.path.display(), module.origin.line);
        match ModuleDef::from_blackbox(&module, env, agent) {
            Ok(def) => modules.push(def),
            Err(problems) => errors.extend(problems.into_iter().map(|problem| {
                place_error(
                    &place,
                    format!("module {:?}: {problem}", module.name),
                    "the module's options as nightjar reads them; see the README's blackbox table",
                )
            })),
        }
    }
    modules
}
