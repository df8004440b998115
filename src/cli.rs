//! The command line: `nightjar run` (the default), `nightjar check` and `nightjar validate`.
//!
//! Exit codes: 0 success; 1 a check failed (`check`); 2 a usage, config or runtime error.
//! User errors print one clear message, never a backtrace.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::Semaphore;

use crate::config::{self, CheckDef, Config, ConfigErrors, Overrides, ProcessEnv};
use crate::result::{CheckResult, Failure, Status};
use crate::runner::{RunEnv, run_one};
use crate::status::RunView;

/// Synthetic probes with Prometheus SLI metrics.
#[derive(Debug, Parser)]
#[command(name = "nightjar", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NIGHTJAR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `nightjar=debug` (RUST_LOG syntax).
    #[arg(long, global = true, env = "NIGHTJAR_LOG")]
    log_level: Option<String>,
    /// Threads that run checks. One handles thousands of probes a second and wakes fewer
    /// threads per probe; raise it for more than ~1,000 TLS handshakes a second.
    #[arg(long, global = true, env = "NIGHTJAR_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: schedule checks and serve metrics (the default).
    Run(RunArgs),
    /// Run each selected check once and print the results.
    Check(CheckArgs),
    /// Validate the configuration and print every problem.
    Validate(ValidateArgs),
    /// Write Prometheus recording and alerting rules for the SLOs, expiries and regions.
    Rules(RulesArgs),
    /// SLO helpers.
    #[command(subcommand)]
    Slo(SloCommand),
    /// Print a shell completion script, e.g. `nightjar completions bash >
    /// /etc/bash_completion.d/nightjar`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `nightjar man | man -l -`; with --dir, write one page
    /// per command there.
    Man(ManArgs),
    /// Import another prober's configuration as nightjar TOML.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Print the JSON Schema of the configuration file, for editors (Taplo, VS Code's Even
    /// Better TOML): completion, hover docs and inline errors.
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// Write the schema here instead of to standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// blackbox_exporter: one `[[module]]` per module of blackbox.yml (served at /probe) and,
    /// with --targets, one `[[check]]` per module and target. Exits 1, writing nothing, when an
    /// option cannot be carried over (listed on stderr with file and line), unless
    /// --allow-partial; 2 when an input cannot be read.
    Blackbox(ImportBlackboxArgs),
}

#[derive(Debug, Args)]
struct ImportBlackboxArgs {
    /// blackbox_exporter's configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A Prometheus configuration whose jobs scrape /probe (targets from static_configs and
    /// file_sd_configs, the module from params.module), or a file_sd file (JSON or YAML target
    /// groups with a __param_module label). Repeatable.
    #[arg(long, value_name = "FILE")]
    targets: Vec<PathBuf>,
    /// Write what can be carried over, with a comment at each option that cannot.
    #[arg(long)]
    allow_partial: bool,
    /// What to write: checks, modules, or both.
    #[arg(long, value_enum, default_value_t = ImportEmit::Both)]
    emit: ImportEmit,
    /// Write the TOML here instead of to standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportEmit {
    Both,
    Checks,
    Modules,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
struct ManArgs {
    /// Write nightjar.1 and a page per command (nightjar-run.1, ...) into this directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Per SLO and alert tier: the traffic that keeps one failure from paging, and what the
    /// traffic injector will add.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    config: RequiredConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Default, Args)]
struct RunArgs {
    /// Config file or directory of *.toml files; may repeat. Without it, the embedded
    /// default runs.
    #[arg(long, short = 'c', env = "NIGHTJAR_CONFIG", value_delimiter = ',')]
    config: Vec<PathBuf>,
    /// Address of the agent's server [default: from [agent], else 127.0.0.1:9465].
    #[arg(long, env = "NIGHTJAR_LISTEN")]
    listen: Option<SocketAddr>,
    /// Region label on every series [default: from [agent], else "default"].
    #[arg(long, env = "NIGHTJAR_REGION")]
    region: Option<String>,
    /// Directory where check states, histories, ad hoc maintenance windows and the RDAP cache
    /// survive restarts [default: from [agent] state_dir, else none].
    #[arg(long, env = "NIGHTJAR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Run only shard I of N (1-based, e.g. 2/3): the checks whose stable name hash falls in
    /// it, so N agents in a region split the checks with no coordination.
    #[arg(long, env = "NIGHTJAR_SHARD", value_parser = parse_shard)]
    shard: Option<Shard>,
}

/// `--shard I/N`.
#[derive(Debug, Clone, Copy)]
struct Shard {
    index: u64,
    count: u64,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not I/N, like 2/3"))?;
    let index: u64 = index
        .trim()
        .parse()
        .map_err(|_| format!("{index:?} is not a number"))?;
    let count: u64 = count
        .trim()
        .parse()
        .map_err(|_| format!("{count:?} is not a number"))?;
    if count == 0 || index == 0 || index > count {
        return Err(format!("shard {index}/{count} is not between 1/N and N/N"));
    }
    Ok(Shard { index, count })
}

/// `--config` for the commands that need one.
#[derive(Debug, Args)]
struct RequiredConfig {
    /// Config file or directory of *.toml files; may repeat.
    #[arg(
        long,
        short = 'c',
        env = "NIGHTJAR_CONFIG",
        value_delimiter = ',',
        required = true
    )]
    config: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    config: RequiredConfig,
    /// Run only the check with this name (every target of a template), or one target of a
    /// template as NAME@TARGET; may repeat.
    #[arg(long)]
    only: Vec<String>,
    /// Run only the checks that run in this region.
    #[arg(long, env = "NIGHTJAR_REGION")]
    region: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

#[derive(Debug, Args)]
struct RulesArgs {
    #[command(flatten)]
    config: RequiredConfig,
    /// Write the rule file here instead of to standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    config: RequiredConfig,
    /// Check everything but the secret values: `${env:..}` and `${file:..}` references are
    /// checked for syntax only and stand for a placeholder (for CI without the secrets).
    #[arg(long)]
    no_secrets: bool,
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    // Generated from this definition; they need no runtime and no logging.
    match &cli.command {
        Some(Command::Completions(args)) => return cmd_completions(args),
        Some(Command::Man(args)) => return cmd_man(args),
        Some(Command::Import(ImportCommand::Blackbox(args))) => return cmd_import_blackbox(args),
        Some(Command::Schema(args)) => return cmd_schema(args),
        _ => {}
    }
    init_logging(&cli);
    // As Go programs do: the soft open-files limit up to the hard one, for checks and clients.
    crate::server::raise_open_files_limit();
    // One crypto provider for the whole process; later builders name it explicitly too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.threads))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nightjar: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
            Command::Run(args) => cmd_run(args).await,
            Command::Check(args) => cmd_check(args).await,
            Command::Validate(args) => cmd_validate(&args),
            Command::Rules(args) => cmd_rules(&args),
            Command::Slo(SloCommand::Plan(args)) => cmd_slo_plan(&args).await,
            Command::Completions(_) | Command::Man(_) | Command::Import(_) | Command::Schema(_) => {
                unreachable!("handled before the runtime")
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("nightjar: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn cmd_completions(args: &CompletionsArgs) -> ExitCode {
    use clap::CommandFactory as _;
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "nightjar", &mut out);
    write_stdout(&out)
}

fn cmd_man(args: &ManArgs) -> ExitCode {
    use clap::CommandFactory as _;
    let command = Cli::command();
    match &args.dir {
        Some(dir) => {
            if let Err(error) =
                std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(command, dir))
            {
                eprintln!(
                    "nightjar: cannot write man pages to {}: {error}",
                    dir.display()
                );
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        None => {
            let mut out = Vec::new();
            if let Err(error) = clap_mangen::Man::new(command).render(&mut out) {
                eprintln!("nightjar: cannot render the man page: {error}");
                return ExitCode::from(2);
            }
            write_stdout(&out)
        }
    }
}

/// `nightjar import blackbox`: the TOML to stdout or `--output`, every option not carried
/// over and the secrets to set on stderr.
fn cmd_import_blackbox(args: &ImportBlackboxArgs) -> ExitCode {
    use crate::blackbox::import::{self, Emit};
    let options = import::Options {
        config: args.config.clone(),
        targets: args.targets.clone(),
        allow_partial: args.allow_partial,
        emit: match args.emit {
            ImportEmit::Both => Emit::Both,
            ImportEmit::Checks => Emit::Checks,
            ImportEmit::Modules => Emit::Modules,
        },
    };
    let imported = match import::run(&options) {
        Ok(imported) => imported,
        Err(error) => {
            eprintln!("nightjar: {error}");
            return ExitCode::from(2);
        }
    };
    for message in &imported.messages {
        eprintln!("{message}");
    }
    let Some(toml) = imported.toml else {
        eprintln!(
            "nightjar: nothing written: the options above cannot be carried over (--allow-partial writes the rest)"
        );
        return ExitCode::from(1);
    };
    let code = match &args.output {
        Some(path) => match std::fs::write(path, toml) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("nightjar: cannot write {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => write_stdout(toml.as_bytes()),
    };
    if imported.incomplete {
        ExitCode::from(1)
    } else {
        code
    }
}

/// `nightjar schema`: the configuration's JSON Schema to stdout or `--output`.
fn cmd_schema(args: &SchemaArgs) -> ExitCode {
    let schema = crate::config::schema::json_schema();
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    match &args.output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("nightjar: cannot write {}: {error}", path.display());
                ExitCode::from(2)
            }
        },
        None => write_stdout(text.as_bytes()),
    }
}

/// Writes `bytes` to standard output; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nightjar: cannot write to standard output: {error}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = match &cli.command {
        Some(Command::Check(_) | Command::Validate(_) | Command::Rules(_) | Command::Slo(_)) => {
            "warn"
        }
        _ => "info",
    };
    let filter = cli
        .log_level
        .clone()
        .and_then(|level| tracing_subscriber::EnvFilter::try_new(level).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default))
        // Libraries that could log cookie or header values stay quiet whatever the level.
        .add_directive("cookie_store=warn".parse().expect("a valid directive"))
        .add_directive("hyper=info".parse().expect("a valid directive"))
        .add_directive("h2=info".parse().expect("a valid directive"));
    // Colour only on a terminal and without NO_COLOR: journald, files and log shippers get
    // plain text.
    let ansi = {
        use std::io::IsTerminal as _;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Loads the config, or reports every problem and returns `Err` with exit code 2.
fn load(paths: &[PathBuf], overrides: &Overrides) -> Result<Config, ConfigErrors> {
    config::load(paths, &ProcessEnv, overrides)
}

fn print_config_errors(errors: &ConfigErrors) {
    let mut stderr = std::io::stderr().lock();
    for error in &errors.0 {
        let _ = writeln!(stderr, "{error}");
    }
    let n = errors.0.len();
    let _ = writeln!(
        stderr,
        "nightjar: the configuration has {n} problem{}",
        if n == 1 { "" } else { "s" }
    );
}

async fn cmd_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        region: args.region,
        listen: args.listen,
        state_dir: args.state_dir,
    };
    let config = if args.config.is_empty() {
        config::embedded(&overrides)
    } else {
        match load(&args.config, &overrides) {
            Ok(config) => config,
            Err(errors) => {
                print_config_errors(&errors);
                return Ok(ExitCode::from(2));
            }
        }
    };
    let mut config = config;
    if let Some(shard) = args.shard {
        config.select_shard(shard.index - 1, shard.count);
        tracing::info!(
            message = "Running one shard of the checks.",
            shard = %format!("{}/{}", shard.index, shard.count),
            checks = config.checks.len()
        );
    }
    // Signals are listened for before the port is bound: whoever sees the port answer may
    // send SIGHUP or SIGTERM at once, and neither may then kill the agent by default action.
    let shutdown = shutdown_signal();
    crate::agent::listen_for_hangups();
    let listen = config.agent.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to bind the agent's server on {listen}"))?;
    // A reload reads the same files with the same overrides and shard.
    let reloader: Option<crate::agent::Reloader> = (!args.config.is_empty()).then(|| {
        let paths = args.config.clone();
        let shard = args.shard;
        let reload: crate::agent::Reloader = std::sync::Arc::new(move || {
            let mut config = load(&paths, &overrides)?;
            if let Some(shard) = shard {
                config.select_shard(shard.index - 1, shard.count);
            }
            Ok(config)
        });
        reload
    });
    crate::agent::run(
        config,
        listener,
        crate::agent::Probes::real(RunEnv::system()),
        shutdown,
        reloader,
    )
    .await
    .context("the agent's server failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM. The signals are listened for from the call on (not from
/// the first poll), so one sent as soon as the agent's port answers still stops it cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {}
                () = wait(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The checks `nightjar check` runs: those `--only` names (a template's name selects all its
/// targets, `NAME@TARGET` one) of the region asked for; `None` (said on stderr) when a name
/// matches nothing.
fn select_checks(config: &Config, args: &CheckArgs) -> Option<Vec<Arc<CheckDef>>> {
    let chosen = |only: &str, def: &CheckDef| only == &*def.name || only == def.check_name();
    let mut known: Vec<&str> = Vec::new();
    for def in &config.checks {
        if !known.contains(&def.check_name()) {
            known.push(def.check_name());
        }
    }
    let unknown: Vec<&String> = args
        .only
        .iter()
        .filter(|name| !config.checks.iter().any(|def| chosen(name, def)))
        .collect();
    if !unknown.is_empty() {
        eprintln!(
            "nightjar: no check named {}; the configuration has: {}",
            unknown
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            known.join(", ")
        );
        return None;
    }
    Some(
        config
            .checks
            .iter()
            .filter(|def| args.only.is_empty() || args.only.iter().any(|name| chosen(name, def)))
            .filter(|def| args.region.is_none() || def.runs_in(&config.agent.region))
            .cloned()
            .collect(),
    )
}

async fn cmd_check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        region: args.region.clone(),
        ..Overrides::default()
    };
    let mut config = match load(&args.config.config, &overrides) {
        Ok(config) => config,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    let env = RunEnv::system();
    // Templates with `targets_from` read their sources once.
    let discovery = crate::discovery::DiscoveryEnv::new(
        env.resolver.clone(),
        env.rdap.clone(),
        crate::runner::USER_AGENT,
    );
    if let Err(error) = crate::fleet::discover_once(&mut config, &discovery).await {
        eprintln!("nightjar: service discovery failed: {error}");
        return Ok(ExitCode::from(2));
    }
    let Some(selected) = select_checks(&config, &args) else {
        return Ok(ExitCode::from(2));
    };

    let permits = Arc::new(Semaphore::new(config.agent.concurrency));
    let progress = progress_bar(selected.len());
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = selected
        .iter()
        .map(|def| {
            let def = def.clone();
            let env = env.clone();
            let permits = permits.clone();
            let progress = progress.clone();
            let failed = failed.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let res = run_one(&def, &env).await;
                if !res.is_success() {
                    let failed = failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress.set_message(format!("{failed} failed, last {}", def.name));
                }
                progress.inc(1);
                res
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.context("a check task panicked")?);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();

    let written = match args.format {
        // Colours only on a terminal, and never with NO_COLOR set (anstream strips them).
        OutputFormat::Text => anstream::stdout()
            .lock()
            .write_all(render_text(&selected, &results).as_bytes()),
        OutputFormat::Json => std::io::stdout()
            .lock()
            .write_all(render_json(&selected, &results)?.as_bytes()),
        OutputFormat::Junit => std::io::stdout()
            .lock()
            .write_all(render_junit(&selected, &results, elapsed).as_bytes()),
    };
    written.context("cannot write the results")?;
    let all_passed = results.iter().all(CheckResult::is_success);
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let loaded = if args.no_secrets {
        config::load(
            &args.config.config,
            &config::NoSecrets,
            &Overrides::default(),
        )
    } else {
        load(&args.config.config, &Overrides::default())
    };
    match loaded {
        Ok(config) => {
            let n = config.checks.len();
            let discovering = config
                .templates
                .iter()
                .filter(|template| !template.sources.is_empty())
                .count();
            let more = match discovering {
                0 => String::new(),
                1 => ", and 1 template that discovers more when it runs".to_string(),
                _ => format!(", and {discovering} templates that discover more when they run"),
            };
            println!(
                "configuration is valid: {n} check{}{more}",
                if n == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            print_config_errors(&errors);
            Ok(ExitCode::from(2))
        }
    }
}

fn cmd_rules(args: &RulesArgs) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config.config, &Overrides::default()) {
        Ok(config) => config,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    let rules = crate::rules::generate(&config);
    match &args.output {
        Some(path) => std::fs::write(path, rules)
            .with_context(|| format!("failed to write the rule file {}", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(rules.as_bytes())
            .context("cannot write the rules")?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn cmd_slo_plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config.config, &Overrides::default()) {
        Ok(config) => config,
        Err(errors) => {
            print_config_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    let env = RunEnv::system();
    let mut out = String::new();
    if config.slos.is_empty() {
        out.push_str("no [[slo]] in the configuration\n");
    }
    for slo in &config.slos {
        plan_slo(&mut out, &env, &config, slo).await;
    }
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("cannot write the plan")?;
    Ok(ExitCode::SUCCESS)
}

/// The plan of one SLO: its real rate, each tier's floor, the binding floor and what its
/// injector adds.
async fn plan_slo(out: &mut String, env: &RunEnv, config: &Config, slo: &config::Slo) {
    out.push_str(&format!(
        "SLO {}: objective {}, window {}, tolerated failures k = {}\n",
        slo.name,
        slo.objective,
        crate::rules::prom_duration(slo.window),
        slo.tolerated_failures
    ));
    // The first injector of this SLO, if any.
    let injector = config
        .traffic
        .iter()
        .find(|def| def.slo.as_deref() == Some(slo.name.as_str()));
    let real = match injector {
        Some(def) => real_rate(out, env, def).await,
        None => None,
    };
    if let Some(real) = real {
        out.push_str(&format!(
            "  real rate: {:.4}/s = {:.1}/h\n",
            real,
            real * 3600.0
        ));
    }
    tier_table(out, slo, real);
    let floor = crate::tiers::binding_floor(slo.window, slo.objective, slo.tolerated_failures);
    out.push_str(&format!(
        "  floor with a {:.0}% margin: {:.4}/s = {:.1}/h (one request every {:.1}s)\n",
        crate::tiers::FLOOR_MARGIN * 100.0,
        floor,
        floor * 3600.0,
        1.0 / floor
    ));
    match injector {
        Some(def) => {
            let planned = crate::traffic::plan(def, real, true);
            let when = if real.is_some() {
                "now"
            } else {
                "with the real rate unknown (fallback)"
            };
            out.push_str(&format!(
                "  injector {}: adds {:.4}/s = {:.1}/h {when}, at most {}/s\n",
                def.name,
                planned.inject,
                planned.inject * 3600.0,
                def.max_rate
            ));
        }
        None => out.push_str("  no [[traffic]] injects for this SLO\n"),
    }
}

/// The real rate of an SLO's events, from its injector if that can ask Prometheus; a failed
/// query is a line of the plan and an unknown rate.
async fn real_rate(out: &mut String, env: &RunEnv, injector: &config::TrafficDef) -> Option<f64> {
    let (prometheus, query) = injector
        .prometheus
        .as_ref()
        .zip(injector.real_rate.as_ref())?;
    match crate::traffic::query_rate(env, prometheus, query).await {
        Ok(rate) => Some(rate),
        Err(error) => {
            out.push_str(&format!("  real rate: unknown ({error})\n"));
            None
        }
    }
}

/// Per alert tier of an SLO: its windows and burn rate, the traffic at which the tolerated
/// failures stay below its threshold, and how much of the budget one failure burns at the
/// real rate.
fn tier_table(out: &mut String, slo: &config::Slo, real: Option<f64>) {
    let budget = 1.0 - slo.objective;
    out.push_str(&format!(
        "  {:<7} {:>6} {:>7} {:>7}  {:>17}  {:>10}  {:>10}  {:>18}\n",
        "tier",
        "long",
        "short",
        "burn",
        "min requests/long",
        "floor/h",
        "floor/s",
        "1 failure now burns"
    ));
    for tier in crate::tiers::TIERS {
        let factor = crate::tiers::tier_factor(tier, slo.window);
        let threshold = crate::tiers::tier_threshold(tier, slo.window, slo.objective);
        let rate =
            crate::tiers::floor_rate(tier, slo.window, slo.objective, slo.tolerated_failures);
        let min_requests = f64::from(slo.tolerated_failures) / threshold;
        let one_failure = real.map_or_else(
            || "-".to_string(),
            |real| {
                let requests = real * tier.long.as_secs_f64();
                if requests > 0.0 {
                    format!("{:.1}x", 1.0 / (requests * budget))
                } else {
                    "all of it".to_string()
                }
            },
        );
        out.push_str(&format!(
            "  {:<7} {:>6} {:>7} {:>6.1}x  {:>17.1}  {:>10.1}  {:>10.5}  {:>18}\n",
            tier.severity,
            crate::rules::prom_duration(tier.long),
            crate::rules::prom_duration(tier.short),
            factor,
            min_requests,
            rate * 3600.0,
            rate,
            one_failure
        ));
    }
}

/// Live progress of `nightjar check`: a bar when standard output is a terminal, nothing when
/// it is a pipe or a file.
fn progress_bar(checks: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(checks as u64),
        indicatif::ProgressDrawTarget::stdout(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{bar:30}] {pos}/{len} checks  {elapsed}  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// Text wrapped in an ANSI style; anstream removes it where colours do not belong.
fn paint(style: anstyle::Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

fn render_text(defs: &[Arc<CheckDef>], results: &[CheckResult]) -> String {
    use anstyle::{AnsiColor, Style};
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let green = Style::new().fg_color(Some(AnsiColor::Green.into()));
    let yellow = Style::new().fg_color(Some(AnsiColor::Yellow.into()));
    let bold = Style::new().bold();
    let name_width = defs
        .iter()
        .map(|def| def.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    // "websocket" is longer than the column's usual 6.
    let kind_width = defs
        .iter()
        .map(|def| def.kind().as_str().len())
        .max()
        .unwrap_or(6)
        .max(6);
    let header = format!(
        "{:<name_width$}  {:<kind_width$}  {:<6}  {:>9}  {:<12}  DETAIL",
        "CHECK", "TYPE", "RESULT", "DURATION", "REASON"
    );
    let mut out = paint(bold, &header);
    out.push('\n');
    for res in results {
        let (result, reason, detail) = match &res.status {
            Status::Pass => (paint(green, "pass  "), String::new(), ""),
            Status::Fail(Failure { reason, detail }) => (
                paint(red, "FAIL  "),
                paint(yellow, &format!("{:<12}", reason.as_str())),
                detail.as_str(),
            ),
        };
        let reason = if reason.is_empty() {
            " ".repeat(12)
        } else {
            reason
        };
        out.push_str(
            format!(
                "{:<name_width$}  {:<kind_width$}  {result}  {:>9}  {reason}  {detail}",
                res.check,
                res.kind.as_str(),
                format!("{:.1}ms", res.duration.as_secs_f64() * 1000.0),
            )
            .trim_end(),
        );
        out.push('\n');
    }
    let failed = results.iter().filter(|res| !res.is_success()).count();
    let summary = format!(
        "{} checks: {} passed, {} failed",
        results.len(),
        results.len() - failed,
        failed
    );
    out.push_str(&paint(if failed > 0 { red } else { green }, &summary));
    out.push('\n');
    out
}

#[derive(serde::Serialize)]
struct JsonResult<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a str,
    #[serde(flatten)]
    run: RunView,
}

fn render_json(defs: &[Arc<CheckDef>], results: &[CheckResult]) -> anyhow::Result<String> {
    let items: Vec<JsonResult<'_>> = defs
        .iter()
        .zip(results)
        .map(|(def, res)| JsonResult {
            name: &def.name,
            kind: def.kind().as_str(),
            target: &def.target,
            run: RunView::new(res),
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&items).context("cannot encode results as JSON")?;
    text.push('\n');
    Ok(text)
}

fn render_junit(
    defs: &[Arc<CheckDef>],
    results: &[CheckResult],
    elapsed: std::time::Duration,
) -> String {
    let failures = results.iter().filter(|res| !res.is_success()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"nightjar\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">\n",
        results.len(),
        elapsed.as_secs_f64()
    ));
    out.push_str(&format!(
        "  <testsuite name=\"nightjar\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\" timestamp=\"{}\">\n",
        results.len(),
        elapsed.as_secs_f64(),
        crate::time::rfc3339(std::time::SystemTime::now()).trim_end_matches('Z'),
    ));
    for (def, res) in defs.iter().zip(results) {
        out.push_str(&format!(
            "    <testcase name=\"{}\" classname=\"nightjar.{}\" time=\"{:.3}\"",
            xml_escape(&def.name),
            def.kind().as_str(),
            res.duration.as_secs_f64()
        ));
        match &res.status {
            Status::Pass => out.push_str(" />\n"),
            Status::Fail(Failure { reason, detail }) => {
                out.push_str(">\n");
                out.push_str(&format!(
                    "      <failure message=\"{}: {}\" type=\"{}\">{}\ntarget: {}</failure>\n",
                    reason.as_str(),
                    xml_escape(detail),
                    reason.as_str(),
                    xml_escape(detail),
                    xml_escape(&def.target)
                ));
                out.push_str("    </testcase>\n");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 forbids.
fn xml_escape(text: &str) -> String {
    crate::text::escape_markup(text, crate::text::Markup::Xml)
}
