//! `p2pchat`: peer-to-peer chat over Tor onion services.
//!
//! The protocol core is in place (`p2pchat-core`); the commands that drive it over real
//! Tor (`chat`, `server`, `init`, ...) and the simulator (`sim`) arrive with the runtime
//! and simulator crates. Until then this binary only reports its version.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => {
            println!("p2pchat {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help") | Some("-h") | None => {
            println!(
                "p2pchat {}: peer-to-peer chat over Tor onion services\n\n\
                 This build contains the protocol core only; the chat, server and sim\n\
                 commands are not available yet.",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("p2pchat: unknown command {other:?}; run `p2pchat --help`.");
            ExitCode::from(2)
        }
    }
}
