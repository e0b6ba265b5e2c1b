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
    /// Prints the seat table (status, state, pending change, registration) of a running
    /// switch, from its HTTP API.
    Agents {
        /// Base address of the running switch's HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
    },
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
    /// Capacity planning (Erlang C): seats needed for a service level, and the figures for
    /// a range of seats.
    Erlang {
        /// Calls offered per hour.
        #[arg(long)]
        calls_per_hour: f64,
        /// Average handling time per call (talk + wrap-up), seconds.
        #[arg(long)]
        aht: f64,
        /// Service-level target as PERCENT/SECONDS (NENA: 90/15).
        #[arg(long, default_value = "90/15", value_parser = parse_target)]
        target: (f64, f64),
        /// Seats to tabulate, as FIRST-LAST.
        #[arg(long, default_value = "15-25", value_parser = parse_range)]
        seats: (u32, u32),
    },
}

/// `90/15` → (0.90, 15.0).
fn parse_target(text: &str) -> Result<(f64, f64), String> {
    let (pct, secs) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected PERCENT/SECONDS, e.g. 90/15"))?;
    let pct: f64 = pct
        .trim()
        .parse()
        .map_err(|_| format!("{pct:?} is not a percentage"))?;
    let secs: f64 = secs
        .trim()
        .parse()
        .map_err(|_| format!("{secs:?} is not a number of seconds"))?;
    if !(0.0..=100.0).contains(&pct) || secs < 0.0 {
        return Err(format!("{text:?}: percentage 0-100 and seconds >= 0"));
    }
    Ok((pct / 100.0, secs))
}

/// `15-25` → (15, 25).
fn parse_range(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?}: expected FIRST-LAST, e.g. 15-25"))?;
    let (a, b): (u32, u32) = (
        a.trim()
            .parse()
            .map_err(|_| format!("{a:?} is not a seat count"))?,
        b.trim()
            .parse()
            .map_err(|_| format!("{b:?} is not a seat count"))?,
    );
    if a == 0 || b < a || b - a > 1000 {
        return Err(format!("{text:?}: 1 <= FIRST <= LAST, at most 1000 rows"));
    }
    Ok((a, b))
}

/// Prints the Erlang C plan.
fn erlang(calls_per_hour: f64, aht: f64, target: (f64, f64), seats: (u32, u32)) -> ExitCode {
    use vigie::acd::erlang::{seats_needed, staffing, traffic};
    if !(calls_per_hour.is_finite() && calls_per_hour > 0.0 && aht.is_finite() && aht > 0.0) {
        eprintln!("error: --calls-per-hour and --aht must be positive numbers");
        return ExitCode::FAILURE;
    }
    let (ratio, secs) = target;
    println!(
        "offered traffic: {:.2} Erlangs ({calls_per_hour} calls/h, AHT {aht} s)",
        traffic(calls_per_hour, aht)
    );
    match seats_needed(calls_per_hour, aht, ratio, secs, 10_000) {
        Some(n) => println!(
            "seats needed for {:.0} % answered within {secs} s: {n}",
            ratio * 100.0
        ),
        None => println!("no staffing up to 10000 seats reaches the target"),
    }
    println!();
    println!("seats  occupancy  P(wait)  ASA (s)  answered within {secs} s");
    for n in seats.0..=seats.1 {
        let s = staffing(n, calls_per_hour, aht, secs);
        println!(
            "{:>5}  {:>8.1} %  {:>6.1} %  {:>7.1}  {:>6.1} %",
            s.seats,
            s.occupancy * 100.0,
            s.p_wait * 100.0,
            s.asa_s,
            s.service_level * 100.0
        );
    }
    ExitCode::SUCCESS
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
        Command::Erlang {
            calls_per_hour,
            aht,
            target,
            seats,
        } => erlang(calls_per_hour, aht, target, seats),
        Command::GenConfig => {
            print!("{DEFAULT_CONFIG_TOML}");
            ExitCode::SUCCESS
        }
        Command::Agents { api } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(vigie::app::agents::fetch_table(&api)) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
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
