//! `vigie`: the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use vigie::config::{Config, DEFAULT_CONFIG_TOML};

/// vigie: call-centre switch for an emergency line (SIP B2BUA, ACD, media relay).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the switch. Without --config: the demo centre (SIP 127.0.0.1:5060 UDP+TCP,
    /// HTTP 127.0.0.1:8080, queue line19, seats agent01…agent20 with password "demo").
    Run {
        /// TOML configuration file (see `vigie gen-config`).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Prints the full default configuration, with comments.
    GenConfig,
    /// Checks a configuration file and exits 0 if it can run.
    CheckConfig {
        /// TOML configuration file.
        file: PathBuf,
    },
    /// Dialplans: check, trace a call, run the plan's own tests (see dialplans/README.md).
    Dialplan {
        #[command(subcommand)]
        command: DialplanCommand,
    },
}

#[derive(Subcommand)]
enum DialplanCommand {
    /// Checks plans; prints every problem with file:line:col; exit status 1 on error.
    Check {
        #[command(flatten)]
        opts: PlanOpts,
        /// Dialplan files (TOML; their includes are read too).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Prints each decision the plan takes for one call.
    Trace {
        /// Caller number (`anonymous` when withheld).
        #[arg(long)]
        from: String,
        /// Called number (Request-URI user part).
        #[arg(long)]
        to: String,
        /// Instant of the call, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// A SIP header `Name: value` (repeatable).
        #[arg(long)]
        header: Vec<String>,
        /// Source address of the INVITE.
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        /// The INVITE carries a location.
        #[arg(long)]
        location: bool,
        #[command(flatten)]
        opts: PlanOpts,
        /// Dialplan file (TOML; its includes are read too).
        file: PathBuf,
    },
    /// Runs the [[tests]] written in the plans; exit status 1 on any failure.
    Test {
        #[command(flatten)]
        opts: PlanOpts,
        /// Dialplan files (TOML; their includes are read too).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct PlanOpts {
    /// Configuration whose [[queues]] the plan may use (default: the built-in one).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// An extra queue name the plan may use (repeatable).
    #[arg(long)]
    queue: Vec<String>,
    /// Colours in diagnostics.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto)]
    color: ColorWhen,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl PlanOpts {
    /// Queue names and colour choice; `Err` when the configuration cannot be loaded.
    fn resolve(&self) -> Result<(Vec<String>, bool), String> {
        let config = match &self.config {
            Some(path) => Config::load(path).map_err(|e| e.to_string())?,
            None => Config::default(),
        };
        let mut queues: Vec<String> = config.queues.iter().map(|q| q.name.clone()).collect();
        queues.extend(self.queue.iter().cloned());
        let color = match self.color {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Ok((queues, color))
    }
}

fn dialplan(command: DialplanCommand) -> ExitCode {
    use vigie::dialplan::{CallFacts, cli};
    let opts = match &command {
        DialplanCommand::Check { opts, .. }
        | DialplanCommand::Trace { opts, .. }
        | DialplanCommand::Test { opts, .. } => opts,
    };
    let (queues, color) = match opts.resolve() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let ok = match &command {
        DialplanCommand::Check { files, .. } => {
            cli::check(files, &queues, color, &mut out, &mut err)
        }
        DialplanCommand::Test { files, .. } => cli::test(files, &queues, color, &mut out, &mut err),
        DialplanCommand::Trace {
            from,
            to,
            at,
            header,
            source,
            location,
            file,
            ..
        } => {
            let at = match at {
                None => chrono::Utc::now(),
                Some(text) => match chrono::DateTime::parse_from_rfc3339(text) {
                    Ok(t) => t.with_timezone(&chrono::Utc),
                    Err(e) => {
                        eprintln!("error: --at {text:?}: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            let mut headers = Vec::new();
            for h in header {
                match cli::parse_header(h) {
                    Some(h) => headers.push(h),
                    None => {
                        eprintln!("error: --header {h:?}: write Name: value");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let caller = (!from.eq_ignore_ascii_case("anonymous")).then(|| from.clone());
            let facts = CallFacts {
                called: to.clone(),
                caller,
                source: *source,
                headers,
                has_location: *location,
            };
            cli::trace(file, &queues, &facts, at, color, &mut out, &mut err)
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::GenConfig => {
            print!("{DEFAULT_CONFIG_TOML}");
            ExitCode::SUCCESS
        }
        Command::Dialplan { command } => dialplan(command),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let config = match config {
                Some(path) => match Config::load(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                None => Config::default(),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(vigie::app::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal, never in a log file or the journal of systemd.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
