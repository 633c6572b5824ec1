//! `p2pchat`: peer-to-peer chat over Tor onion services.
//!
//! Commands: `sim` runs the deterministic simulator. The commands that drive the core over
//! real Tor (`chat`, `server`, `init`, `id`, `demo`) arrive with the async-std runtime.
#![forbid(unsafe_code)]

mod sim_command;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Peer-to-peer chat over Tor onion services.
#[derive(Debug, Parser)]
#[command(name = "p2pchat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a network of peers, deterministically, and check the protocol's invariants.
    Sim(sim_command::SimArgs),
}

/// Exit code: a simulation broke an invariant (or panicked).
const EXIT_INVARIANT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim_command::run(args),
    }
}
