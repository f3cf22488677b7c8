//! The `authgate` command: flags, logging, and a call into the library. The only home of
//! `anyhow`.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use authgate::config::{load_file, ConfigErrors, LogFormat};

/// The development issuer, echo upstream and demo config: part of the command, not of the
/// library a production gateway links.
mod demo;
mod logs;

// pingora allocates and frees many small buffers per request; mimalloc's thread-local free
// lists cost less than glibc's malloc there (see docs/PERFORMANCE.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "A reverse-proxy authentication gateway for JWT access tokens"
)]
struct Cli {
    /// Log format. Default: the config's `server.log_format`, else text on a terminal and
    /// JSON otherwise. Anything else is an error.
    #[arg(long, global = true, env = "AUTHGATE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// Config file (TOML).
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file and print the routes as understood; starts nothing.
    Check {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Run the self-contained demo: dev issuer, echo upstream, gateway on config/demo.toml.
    Demo,
    /// Run policy test cases (TOML) against a config, offline; exit 1 when one fails.
    Test {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Case files.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
    },
    /// Revoke a token (--jti) or a subject's tokens (--subject) in the fleet store every
    /// gateway on this config reads, or list what the store holds (--list).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["jti", "subject", "list"])))]
    Revoke {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
        /// The provider whose tokens these are (a `[providers.NAME]` with
        /// `revocation = "store"`).
        #[arg(long)]
        provider: String,
        /// Revoke the token with this `jti`.
        #[arg(long)]
        jti: Option<String>,
        /// Revoke every token of this `sub` issued before --before.
        #[arg(long)]
        subject: Option<String>,
        /// With --subject: the cutoff, RFC 3339 or Unix seconds (default: now).
        #[arg(long, requires = "subject", conflicts_with_all = ["jti", "list"])]
        before: Option<String>,
        /// Print the provider's revocations in the store (revocation_file format).
        #[arg(long)]
        list: bool,
    },
    /// Explain one request: every step of the decision the gateway would make, the answer,
    /// and what the upstream would get. Never prints the token.
    Explain {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
        /// A bearer token (sent as `Authorization: Bearer TOKEN`). It shows in `ps` and the
        /// shell history: prefer --token-file.
        #[arg(long, conflicts_with = "token_file")]
        token: Option<String>,
        /// A file holding the bearer token.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Verify against this JWKS file instead of fetching each provider's keys.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// The clock: Unix seconds or an RFC 3339 instant (default: now).
        #[arg(long)]
        now: Option<String>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// The request method, e.g. GET.
        method: String,
        /// The request URL, e.g. http://api.example.com/orders/7.
        url: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Json,
    Text,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Text => LogFormat::Text,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command, cli.log_format.map(LogFormat::from)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    match command {
        Command::Check { config } => {
            let cfg = load_file(&config).map_err(ConfigErrors)?;
            let mut text = cfg.describe();
            for w in &cfg.warnings {
                text.push_str(&format!("warning: {w}\n"));
            }
            text.push_str("OK\n");
            print_out(&text)
        }
        Command::Run { config } => {
            let cfg = load_file(&config).map_err(ConfigErrors)?;
            // The flag (or AUTHGATE_LOG_FORMAT) wins over the file's `server.log_format`.
            // Held until `run` returns (or handed to `before_exit`), so buffered log lines
            // are written before the process exits.
            let format = log_format.or(cfg.server.log_format);
            let guard = Arc::new(Mutex::new(Some(init_logging(format))));
            let flush = guard.clone();
            authgate::run(authgate::RunOptions {
                config: cfg,
                watch: Some(config),
                control: None,
                on_ready: None,
                before_exit: Some(Box::new(move || {
                    drop(flush.lock().unwrap_or_else(|p| p.into_inner()).take());
                })),
            })
            .context("cannot start")
        }
        Command::Explain {
            config,
            token,
            token_file,
            headers,
            jwks,
            now,
            json,
            method,
            url,
        } => {
            let cfg = load_file(&config).map_err(ConfigErrors)?;
            let token = match token_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?,
                ),
                None => token,
            };
            let headers = headers
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    // Never repeat the header: it may be a credential.
                    h.split_once(':')
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .with_context(|| format!("-H #{} is not `Name: value`", i + 1))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let now = now
                .map(|t| authgate::cases::instant(&t))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let request = authgate::explain::Request {
                method,
                url,
                headers,
                token,
            };
            let options = authgate::explain::Options { jwks, now };
            let e =
                authgate::explain::explain(cfg, &request, &options).map_err(anyhow::Error::msg)?;
            let text = if json {
                format!("{}\n", e.json())
            } else {
                e.text()
            };
            print_out(&text)
        }
        Command::Test {
            config,
            json,
            cases,
        } => {
            let outcomes = authgate::cases::run(&config, &cases).map_err(anyhow::Error::msg)?;
            let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
            let passed = outcomes.len() - failed;
            let text = if json {
                let list: Vec<serde_json::Value> = outcomes
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "file": o.file.display().to_string(),
                            "case": o.name,
                            "passed": o.failure.is_none(),
                            "failure": o.failure,
                        })
                    })
                    .collect();
                format!(
                    "{}\n",
                    serde_json::json!({ "cases": list, "passed": passed, "failed": failed })
                )
            } else {
                let mut out = String::new();
                for o in outcomes.iter().filter(|o| o.failure.is_some()) {
                    out.push_str(&format!(
                        "FAIL {}: {}: {}\n",
                        o.file.display(),
                        o.name,
                        o.failure.as_deref().unwrap_or_default()
                    ));
                }
                out.push_str(&format!("{passed} passed, {failed} failed\n"));
                out
            };
            print_out(&text)?;
            if failed > 0 {
                anyhow::bail!("{failed} case(s) failed");
            }
            Ok(())
        }
        Command::Revoke {
            config,
            provider,
            jti,
            subject,
            before,
            list,
        } => {
            let cfg = load_file(&config).map_err(ConfigErrors)?;
            let action = match (jti, subject, list) {
                (Some(jti), _, _) => authgate::revoke::Action::Jti(jti),
                (_, Some(sub), _) => authgate::revoke::Action::Subject {
                    sub,
                    before: before
                        .map(|t| authgate::cases::instant(&t))
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--before {e}"))?,
                },
                _ => authgate::revoke::Action::List,
            };
            let text =
                authgate::revoke::run(&cfg, &provider, action).map_err(anyhow::Error::msg)?;
            print_out(&text)
        }
        Command::Demo => {
            let _log_guard = init_logging(log_format);
            demo::run_demo().context("demo failed")
        }
    }
}

/// Writes a command's output. `authgate check | head` closes the pipe early: that is no
/// failure (and `print!` would panic on it).
fn print_out(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Logs go through a batching writer (`logs.rs`): the request path appends its line to a
/// buffer instead of taking stdout's lock or waking a thread (it waits rather than drops when
/// stdout cannot keep up).
fn init_logging(format: Option<LogFormat>) -> logs::Guard {
    // AUTHGATE_LOG, else the conventional RUST_LOG, else info (which includes the access log;
    // `warn` turns it off).
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("AUTHGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // pingora's debug and trace lines dump request headers, Authorization included: they
    // stay off whatever AUTHGATE_LOG says (capped at info; a quieter level stays quieter).
    if filter
        .max_level_hint()
        .is_none_or(|l| l > tracing::level_filters::LevelFilter::INFO)
    {
        filter = filter
            .add_directive("pingora_core=info".parse().expect("static directive"))
            .add_directive("pingora_proxy=info".parse().expect("static directive"));
    }
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stdout().is_terminal(),
    };
    let (writer, guard) = logs::batched(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(std::io::stdout().is_terminal()).init();
    }
    guard
}
