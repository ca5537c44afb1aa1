//! `conflux`: the daemon binary. See the crate docs of `conflux` (src/lib.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conflux::config::{Config, DEFAULT_CONFIG};

/// Conflux: a multi-protocol metrics gateway.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML); without it the embedded default runs.
    #[arg(long, short, global = true, env = "CONFLUX_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and report every problem.
    Check,
    /// Print the embedded default configuration.
    PrintConfig,
}

fn load(path: Option<&PathBuf>) -> Result<(String, String), String> {
    match path {
        None => Ok(("embedded default".to_owned(), DEFAULT_CONFIG.to_owned())),
        Some(p) => std::fs::read_to_string(p)
            .map(|t| (p.display().to_string(), t))
            .map_err(|e| format!("read {}: {e}", p.display())),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::PrintConfig = command {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let (source, text) = match load(cli.config.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conflux: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match Config::parse(&text) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("conflux: {source}: {problems}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Check => {
            println!(
                "{source}: ok ({} listener{}, {} sink{})",
                cfg.listeners.len(),
                if cfg.listeners.len() == 1 { "" } else { "s" },
                cfg.sinks.len(),
                if cfg.sinks.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Command::Run | Command::PrintConfig => {
            let source = match cli.config {
                Some(p) => conflux::run::Source::File(p),
                None => conflux::run::Source::Embedded,
            };
            match conflux::run::main(cfg, source) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("conflux: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
