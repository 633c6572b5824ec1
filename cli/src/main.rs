//! `p2pchat`: peer-to-peer chat over Tor onion services.
//!
//! `chat` to talk, `server` to run a registry, `demo` to see it work on this machine,
//! `init` to write a configuration, `id` to show who you are, `sim` to simulate a network.
#![forbid(unsafe_code)]

mod chat_ui;
mod commands;
mod errors;
mod keystore;
mod paths;
mod profile;
mod tor_setup;
mod tui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p2pchat::config;

use crate::errors::CliError;

/// Peer-to-peer chat over Tor onion services.
#[derive(Debug, Parser)]
#[command(name = "p2pchat", version, about)]
pub struct Cli {
    /// The configuration file (default: config.toml in the platform config directory).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Where keys and tor's state live (default: the platform data directory).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Chat: register with a registry, list people, open chats, send messages.
    Chat(commands::chat::ChatArgs),
    /// Run a registry server (published as an onion service).
    Server(commands::server::ServerArgs),
    /// A registry and two peers on this machine: a short conversation, then exit.
    Demo,
    /// Write a commented default configuration file.
    Init(commands::init::InitArgs),
    /// Show your nick, onion address and key fingerprint.
    Id(commands::id::IdArgs),
    /// Change the passphrase of your store (or encrypt it).
    Passphrase(commands::passphrase::PassphraseCommandArgs),
    /// Simulate a network of peers, deterministically, and check the protocol's invariants.
    Sim(commands::sim::SimArgs),
    /// Load generators: `bench registry`, `bench chat`.
    Bench(commands::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Chat(args) => commands::chat::run(args, cli.config, cli.data_dir),
        Command::Server(args) => commands::server::run(args, cli.config, cli.data_dir),
        Command::Demo => commands::demo::run(),
        Command::Init(args) => commands::init::run(args, cli.config, cli.data_dir),
        Command::Id(args) => commands::id::run(args, cli.config, cli.data_dir),
        Command::Passphrase(args) => commands::passphrase::run(args, cli.data_dir),
        Command::Sim(args) => commands::sim::run(args),
        Command::Bench(args) => commands::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    }
}

/// Logs go to stderr (coloured only on a terminal, and not with `NO_COLOR`); warnings only
/// by default. Message text and keys are never logged.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Turns a usage problem into an error.
pub fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}
