//! The command line: flags as clap parses them, and the commands that turn them into a
//! run or a simulator. Validation of the flags lives in `config.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rand::RngCore;

use crate::catalog::{Catalog, Dialect};
use crate::config::{Origin, RunConfig, parse_duration};
use crate::exit;
use crate::flags::RunArgs;
use crate::inspect;
use crate::preflight;
use crate::report::{self, ReportFormat};
use crate::runner::{self, Interrupts, Outcome};
use crate::secret::ApiKey;
use crate::sim::{self, SimConfig, SimServer};

#[derive(Debug, Parser)]
#[command(
    name = "bulkgen",
    version,
    about = "Turn a CSV of prompts into images through slow image-generation APIs: \
bounded concurrency, exact rate limits, long timeouts, backoff, a resumable checkpoint and a latency report."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a batch, or resume it (same --out).
    Run(Box<RunArgs>),
    /// Resume the batch in --out with the flags its last run was given (flags given here win).
    Resume(ResumeArgs),
    /// One screen: rows by state and class, failures by class, recent errors, spend, whether a run is active.
    Status(OutArgs),
    /// Cancel the folder's open provider batch jobs (--engine batch), and say what was already paid for.
    Cancel(OutArgs),
    /// The latency report, from the checkpoint alone (works during a run and after a crash).
    Report(ReportArgs),
    /// The model catalogue; with --base-url (and a key), what that endpoint serves beside it.
    Models(ModelsArgs),
    /// Serve the built-in simulated provider (OpenAI and Gemini dialects) on loopback.
    Sim(SimArgs),
    /// Rebuild a damaged or lost checkpoint from the manifest and the complete images in --out; pays for nothing.
    #[command(long_about = "Rebuild a damaged or lost checkpoint (DIR/bulkgen.db) from the manifest and the \
complete images already in DIR/images, without any call.

Every row whose complete image images/<id>.<png|jpg|webp> is in place is marked done; the others are \
pending. Repair trusts that the images in the folder were made for the manifest's current rows: give it \
the manifest and the flags that set rows' identity (--provider, --model, --size, --param, ...) as the run \
was given them. The old checkpoint is kept as DIR/bulkgen.db.damaged-<unix time> (with its -wal and -shm), \
and what can still be read from it is carried over (rows failed for good, paid result URLs, attempts, the \
runs' settings); image files cut short are moved to DIR/images-damaged-<unix time>/. Nothing is deleted. \
No key is needed. Then run the batch again with the same command.")]
    Repair(Box<RunArgs>),
    /// Print a shell completion script, e.g. `source <(bulkgen completions bash)`.
    #[command(long_about = "Print the completion script of a shell on stdout, made from bulkgen's own command \
definition (so it always knows every command and flag of this build).

  bash:  source <(bulkgen completions bash)      (or save it in ~/.local/share/bash-completion/completions/bulkgen)
  zsh:   bulkgen completions zsh > ~/.zfunc/_bulkgen   (with ~/.zfunc in $fpath, before compinit)
  fish:  bulkgen completions fish > ~/.config/fish/completions/bulkgen.fish")]
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct OutArgs {
    /// The output folder of the batch.
    #[arg(short = 'o', long, env = "BULKGEN_OUT", default_value = "bulkgen-out")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub folder: OutArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// Only this dialect's models (and the dialect --base-url speaks) [default: openai
    /// with --base-url, else all].
    #[arg(long, value_enum, env = "BULKGEN_PROVIDER")]
    pub provider: Option<Dialect>,
    /// Ask this endpoint which models it serves, and mark them against the catalogue.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Environment variable that holds the API key (with --base-url).
    #[arg(long, default_value = "BULKGEN_API_KEY")]
    pub api_key_env: String,
    /// Catalogue entries to add or override.
    #[arg(long, env = "BULKGEN_MODELS_FILE")]
    pub models_file: Option<PathBuf>,
    /// Allow sending the key over plain http:// to a host that is not loopback.
    #[arg(long)]
    pub allow_plain_http: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub folder: OutArgs,
    /// `run` flags that override the stored ones, e.g. `-c 16 --rpm 120`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "RUN FLAGS")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8900")]
    pub listen: SocketAddr,
    /// Latency multiplier: 1 is real time, 0.01 makes a 45 s call take 0.45 s, 0 answers at once.
    #[arg(long, default_value_t = 0.01)]
    pub time_scale: f64,
    /// Inject a fault at a rate, e.g. 429=0.05, or only for one model, 503@MODEL=1 (429,
    /// quota, 503, 500, 502, 504, stall, reset, badjson, html, noimage, badbase64, refuse,
    /// download); repeatable.
    #[arg(long = "fault", value_name = "KIND[@MODEL]=RATE")]
    pub faults: Vec<String>,
    /// Seed of the latency and fault draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Require the key held by this environment variable (otherwise any key is accepted).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Size of each PNG in bytes (about).
    #[arg(long, default_value_t = 16 * 1024)]
    pub image_bytes: usize,
    /// Retry-After advice sent with a 429, in simulated time.
    #[arg(long, default_value = "20s")]
    pub retry_after: String,
    /// A fixed latency (simulated time) instead of the fitted distribution.
    #[arg(long)]
    pub latency: Option<String>,
    /// Serve only these models (comma-separated); others get a 404. Default: the models
    /// the SDK fixtures say are served today (tests/sdk/fixtures.json).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Answer 404 on the model-list endpoints, like an aggregator that has none.
    #[arg(long)]
    pub no_list_endpoint: bool,
    /// How long an uploaded file (Gemini Files API) lives, in simulated time (scaled by
    /// --time-scale) [default: the Files API's 48h].
    #[arg(long)]
    pub file_ttl: Option<String>,
    /// Forget every uploaded file once, after the N-th generation request that names one
    /// (fileData), as if they expired: later uses get the real 403 until re-uploaded.
    #[arg(long, value_name = "N")]
    pub forget_files_after: Option<u64>,
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match cli.command {
        Command::Run(args) => {
            let origin =
                Origin { cwd: std::env::current_dir().unwrap_or_default(), argv: std::env::args().skip(2).collect() };
            runtime.block_on(run_command(*args, origin))
        }
        Command::Resume(args) => match resume_args(&args) {
            Ok((run, origin)) => runtime.block_on(run_command(run, origin)),
            Err(e) => {
                eprintln!("bulkgen resume: {e}");
                exit::USAGE
            }
        },
        Command::Status(args) => emit("bulkgen status", inspect::status(&args.out)),
        Command::Cancel(args) => runtime.block_on(cancel_command(args)),
        Command::Report(args) => emit("bulkgen report", inspect::report(&args.folder.out, args.format)),
        Command::Models(args) => runtime.block_on(models_command(args)),
        Command::Sim(args) => runtime.block_on(sim_command(args)),
        Command::Repair(args) => runtime.block_on(repair_command(*args)),
        Command::Completions(args) => completions_command(args.shell),
    }
}

/// `bulkgen completions SHELL`: the script clap_complete makes from the command
/// definition, written through [`print_stdout`] so `| head -1` ends quietly.
fn completions_command(shell: clap_complete::Shell) -> i32 {
    print_stdout(&completion_script(shell)).err().unwrap_or(exit::OK)
}

fn completion_script(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "bulkgen", &mut script);
    String::from_utf8(script).expect("completion scripts are UTF-8")
}

/// `bulkgen cancel`: the last run's flags give the endpoint and the key's variable.
async fn cancel_command(args: OutArgs) -> i32 {
    let resume = ResumeArgs { folder: args, overrides: Vec::new() };
    let cfg = match resume_args(&resume).and_then(|(run, _)| RunConfig::from_args(&run).map_err(|e| e.to_string())) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("bulkgen cancel: {e}");
            return exit::USAGE;
        }
    };
    if cfg.simulate.is_some() {
        eprintln!(
            "bulkgen cancel: {} was run against the built-in simulator (--simulate), whose jobs ended with that run: \
             nothing to cancel",
            resume.folder.out.display()
        );
        return exit::USAGE;
    }
    match crate::runner::cancel(cfg).await {
        Ok(text) => print_stdout(&text).err().unwrap_or(exit::OK),
        Err(e) => {
            eprintln!("bulkgen cancel: {e}");
            e.exit_code()
        }
    }
}

/// `bulkgen repair`: the run's flags give the manifest, the folder and the rows' identity.
async fn repair_command(args: RunArgs) -> i32 {
    // Nothing is sent: the settings are built as for a simulated run, which needs no key
    // (the identity of rows does not depend on where they would be sent).
    let flags = RunArgs { simulate: true, ..args };
    let cfg = match RunConfig::from_args(&flags) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("bulkgen repair: {e}");
            return exit::USAGE;
        }
    };
    match crate::repair::repair(&cfg).await {
        Ok(repaired) => {
            print!("{}", crate::repair::summary(&repaired, &cfg.manifest));
            exit::OK
        }
        Err(e) => {
            eprintln!("bulkgen repair: {e}");
            e.exit_code()
        }
    }
}

/// Writes to stdout (see [`exit::write_stdout`]); Err holds the exit code to end with: 0
/// when the reader went away early, 3 when stdout failed otherwise.
fn print_stdout(text: &str) -> Result<(), i32> {
    match exit::write_stdout(text) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(exit::OK),
        Err(e) => {
            eprintln!("bulkgen: cannot write to stdout: {e}");
            Err(exit::STOPPED)
        }
    }
}

/// Prints a read-only command's text, or its error on stderr (exit 2).
fn emit(command: &str, text: Result<String, inspect::Failed>) -> i32 {
    match text {
        Ok(text) => print_stdout(&text).err().unwrap_or(exit::OK),
        Err(e) => {
            eprintln!("{command}: {}", e.text);
            e.code
        }
    }
}

/// Rebuilds a run's flags from the last run stored in `--out`, the new flags after them
/// (a flag given twice keeps its last value), paths made absolute from the stored folder.
fn resume_args(args: &ResumeArgs) -> Result<(RunArgs, Origin), String> {
    let out = &args.folder.out;
    let origin = inspect::last_origin(out)?;
    let mut argv = vec!["bulkgen".to_owned(), "run".to_owned()];
    argv.extend(origin.argv.iter().cloned());
    argv.extend(args.overrides.iter().cloned());
    argv.extend(["--out".to_owned(), out.display().to_string()]);
    let cli = Cli::try_parse_from(&argv).map_err(|e| format!("the stored flags with yours do not parse: {e}"))?;
    let Command::Run(mut run) = cli.command else { unreachable!("parsed as run") };
    if run.manifest.is_relative() {
        run.manifest = origin.cwd.join(&run.manifest);
    }
    if let Some(dir) = run.images_dir.as_mut().filter(|d| d.is_relative()) {
        *dir = origin.cwd.join(&*dir);
    }
    Ok((*run, Origin { cwd: origin.cwd, argv: argv[2..].to_vec() }))
}

async fn run_command(args: RunArgs, origin: Origin) -> i32 {
    let mut cfg = match RunConfig::from_args(&args) {
        Ok(cfg) => RunConfig { origin: Some(origin), ..cfg },
        Err(e) => {
            eprintln!("bulkgen: {e}");
            return exit::USAGE;
        }
    };
    // --simulate: a private simulator with a random key, on a free loopback port.
    let _sim = match &cfg.simulate {
        Some(s) => {
            let key = format!("sim-{:016x}", rand::rng().next_u64());
            let sim_cfg = SimConfig {
                time_scale: s.time_scale,
                faults: s.faults.clone(),
                seed: s.seed,
                api_key: Some(key.clone()),
                ..SimConfig::default()
            };
            let server = match SimServer::start(sim_cfg, "127.0.0.1:0".parse().expect("address")).await {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("bulkgen: cannot start the simulator on loopback: {e}");
                    return exit::STOPPED;
                }
            };
            cfg.base_url = server.base_url().parse().expect("the simulator's URL parses");
            cfg.api_key = Some(ApiKey::new(key));
            if !matches!(cfg.progress, crate::config::ProgressMode::Quiet) {
                eprintln!(
                    "bulkgen: simulating the provider at {} (time scale {}: a 45 s call takes {:.2} s)",
                    server.base_url(),
                    s.time_scale,
                    45.0 * s.time_scale
                );
            }
            Some(server)
        }
        None => None,
    };
    match runner::run(cfg, listen_for_interrupts()).await {
        Ok(Some(outcome)) => {
            print_outcome(&outcome);
            outcome.exit_code
        }
        Ok(None) => exit::OK,
        Err(e) => {
            eprintln!("bulkgen: {e}");
            e.exit_code()
        }
    }
}

/// Ctrl-C (or SIGTERM) once: no new calls; twice: abandon calls in flight; a third
/// time: exit at once (the checkpoint is consistent at every commit).
fn listen_for_interrupts() -> Interrupts {
    let interrupts = Interrupts::default();
    let tokens = interrupts.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        next_signal(&mut term).await;
        tokens.first.cancel();
        next_signal(&mut term).await;
        tokens.second.cancel();
        next_signal(&mut term).await;
        eprintln!("bulkgen: interrupted three times: exiting now");
        std::process::exit(exit::INTERRUPTED);
    });
    interrupts
}

async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    let terminate = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn print_outcome(o: &Outcome) {
    // The run's exit code stands whether or not anyone reads the summary.
    let _ = print_stdout(&format!(
        "{}\nimages in {}, per-row results in {}, report in {} and {}\n",
        report::render(&o.report, false),
        o.out.join(crate::output::IMAGES_DIR).display(),
        o.out.join(crate::output::RESULTS_FILE).display(),
        o.out.join(report::MD_FILE).display(),
        o.out.join(report::JSON_FILE).display()
    ));
    let refs = &o.references;
    if refs.uploads > 0 {
        let again = if refs.reuploads > 0 {
            format!(", {} of them again after the provider lost the file", refs.reuploads)
        } else {
            String::new()
        };
        let _ = print_stdout(&format!(
            "reference images: {} uploaded ({}){again}\n",
            refs.uploads,
            crate::http::bytes_text(refs.upload_bytes)
        ));
    }
    if let Some(runner::StopReason::Interrupted) = &o.stopped {
        eprintln!(
            "bulkgen: interrupted; {} row(s) left pending: run the same command again to finish them",
            o.counts.pending + o.counts.running
        );
    } else if let Some(reason @ runner::StopReason::Budget(_)) = &o.stopped {
        eprintln!(
            "bulkgen: the run stopped: {reason}\n  {} row(s) left pending (done rows are not sent again)",
            o.counts.pending + o.counts.running + o.counts.batch
        );
    } else if let Some(reason) = &o.stopped {
        eprintln!(
            "bulkgen: the run stopped: {reason}\n  {} row(s) left pending: fix the cause and run the same command again \
             to finish them (done rows are not sent again)",
            o.counts.pending + o.counts.running
        );
    } else if o.counts.failed > 0 {
        eprintln!(
            "bulkgen: {} row(s) failed (see error and error_class in results.csv): the next run of the same command \
             tries again those that ran out of attempts on transient errors; refused or invalid ones need \
             --retry-failed",
            o.counts.failed
        );
    }
}

/// `bulkgen models`: the catalogue, or what an endpoint serves marked against it.
async fn models_command(args: ModelsArgs) -> i32 {
    let catalog = match Catalog::load(args.models_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bulkgen models: {e}");
            return exit::USAGE;
        }
    };
    let Some(base) = &args.base_url else {
        let shown = Catalog {
            models: catalog.models.into_iter().filter(|m| args.provider.is_none_or(|p| p == m.dialect)).collect(),
            batch: catalog.batch.into_iter().filter(|b| args.provider.is_none_or(|p| p == b.dialect)).collect(),
        };
        return emit(
            "bulkgen models",
            Ok(match args.format {
                ListFormat::Text => shown.render_text(),
                ListFormat::Json => serde_json::to_string_pretty(&shown).expect("catalogue serializes") + "\n",
            }),
        );
    };
    let dialect = args.provider.unwrap_or(Dialect::Openai);
    let url = match crate::config::parse_base_url(base, args.allow_plain_http) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("bulkgen models: {e}");
            return exit::USAGE;
        }
    };
    let key = ApiKey::from_env(&args.api_key_env);
    let client = match crate::http::client(crate::http::HttpPolicy {
        connect_timeout: std::time::Duration::from_secs(10),
        http2: false,
        concurrency: 1,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bulkgen models: cannot set up the HTTP client: {e}");
            return exit::STOPPED;
        }
    };
    let target = preflight::Target { dialect, base_url: &url, key: key.as_ref(), client: &client };
    let served = match preflight::served(&target).await {
        Ok(preflight::Served::Models(list)) => list,
        Ok(preflight::Served::NoList(why)) => {
            eprintln!("bulkgen models: {url} has no model list ({why}); the catalogue is `bulkgen models`");
            return exit::STOPPED;
        }
        Err(e) => {
            eprintln!("bulkgen models: {e}");
            return exit::STOPPED;
        }
    };
    let today = crate::catalog::today();
    let mark = |id: &str| catalog.lookup(id).map(crate::catalog::status_text);
    let missing: Vec<&crate::catalog::ModelEntry> = catalog
        .models
        .iter()
        .filter(|m| m.dialect == dialect && !m.is_shut_down(&today))
        .filter(|m| !served.iter().any(|s| catalog.lookup(s).is_some_and(|e| e.name == m.name)))
        .collect();
    let mut text = String::new();
    match args.format {
        ListFormat::Json => {
            let v = serde_json::json!({
                "endpoint": url.as_str(),
                "dialect": dialect.as_str(),
                "served": served.iter().map(|id| serde_json::json!({"id": id, "catalogue": mark(id)})).collect::<Vec<_>>(),
                "catalogue_not_served": missing.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            });
            text = serde_json::to_string_pretty(&v).expect("json") + "\n";
        }
        ListFormat::Text => {
            use std::fmt::Write as _;
            let _ = writeln!(text, "{url} serves {} model(s) ({} dialect):", served.len(), dialect.as_str());
            for id in &served {
                let _ = writeln!(text, "  {id:<40} {}", mark(id).unwrap_or_else(|| "not in the catalogue".into()));
            }
            if !missing.is_empty() {
                let _ = writeln!(
                    text,
                    "in the catalogue ({} dialect) but not served here: {}",
                    dialect.as_str(),
                    missing.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    emit("bulkgen models", Ok(text))
}

async fn sim_command(args: SimArgs) -> i32 {
    let cfg = match sim_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("bulkgen sim: {e}");
            return exit::USAGE;
        }
    };
    let fd_raised = crate::fdlimit::raise_to_hard();
    let server = match SimServer::start(cfg.clone(), args.listen).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("bulkgen sim: cannot listen on {}: {e}", args.listen);
            return exit::STOPPED;
        }
    };
    // The simulator serves on whether or not anyone reads its stdout.
    let _ = print_stdout(&format!("bulkgen sim: listening on {}\n", server.base_url()));
    if let Some(r) = fd_raised {
        let _ =
            print_stdout(&format!("  open-file limit raised from {} to {} (a socket per connection)\n", r.from, r.to));
    }
    let _ = print_stdout(&format!(
        "  time scale {}; faults: {}; key: {}; stats at {}/_sim/stats; Ctrl-C to stop\n",
        cfg.time_scale,
        if cfg.faults.is_empty() {
            "none".to_owned()
        } else {
            cfg.faults
                .iter()
                .map(|f| {
                    let model = f.model.as_deref().map(|m| format!("@{m}")).unwrap_or_default();
                    format!("{}{model}={}", f.fault.name(), f.rate)
                })
                .collect::<Vec<_>>()
                .join(" ")
        },
        if cfg.api_key.is_some() { "required" } else { "any" },
        server.base_url()
    ));
    let _ = tokio::signal::ctrl_c().await;
    let st = server.stats();
    let _ = print_stdout(&format!(
        "bulkgen sim: {} requests, {} images, {} downloads, at most {} in flight\n",
        st.requests, st.successes, st.downloads, st.max_in_flight
    ));
    exit::OK
}

fn sim_config(args: &SimArgs) -> Result<SimConfig, String> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        return Err(format!("--time-scale {}: must be a number >= 0", args.time_scale));
    }
    let api_key = match &args.api_key_env {
        Some(var) => Some(
            ApiKey::from_env(var)
                .ok_or_else(|| format!("--api-key-env {var}: the variable is not set"))?
                .expose()
                .to_owned(),
        ),
        None => None,
    };
    Ok(SimConfig {
        time_scale: args.time_scale,
        faults: args.faults.iter().map(|f| sim::parse_fault(f)).collect::<Result<_, _>>()?,
        seed: args.seed,
        api_key,
        image_bytes: args.image_bytes,
        retry_after: parse_duration(&args.retry_after).map_err(|e| format!("--retry-after: {e}"))?,
        fixed_latency: args
            .latency
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("--latency: {e}"))?,
        models: (!args.models.is_empty()).then(|| args.models.clone()),
        list_endpoint: !args.no_list_endpoint,
        file_ttl: match args.file_ttl.as_deref() {
            Some(ttl) => parse_duration(ttl).map_err(|e| format!("--file-ttl: {e}"))?,
            None => SimConfig::default().file_ttl,
        },
        forget_files_after: args.forget_files_after,
        ..SimConfig::default()
    })
}
