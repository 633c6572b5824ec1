//! The one place where errors become what the user reads, and exit codes.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::keystore::KeystoreError;

/// Everything that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The configuration is wrong or incomplete.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The data directory or a key in it.
    #[error("{0}")]
    Keystore(#[from] KeystoreError),
    /// The store: wrong passphrase, damaged, newer, unwritable.
    #[error("{0}")]
    Store(#[from] p2pchat_async_std::store::StoreError),
    /// Tor could not be set up.
    #[error("{0}")]
    Tor(#[from] p2pchat_async_std::tor::TorError),
    /// The network: Tor, the registry or a listener.
    #[error("{0}")]
    Network(String),
    /// The other side refused or broke the protocol (e.g. the registry refused us).
    #[error("{0}")]
    Protocol(String),
    /// The simulator found a broken invariant (details printed already).
    #[error("the simulation broke an invariant")]
    Invariant,
}

impl CliError {
    /// The process exit code: 2 usage, 3 configuration or store, 4 network, 5 protocol,
    /// 6 simulation invariant.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => 2,
            Self::Config(_) | Self::Keystore(_) | Self::Store(_) => 3,
            Self::Tor(_) | Self::Network(_) => 4,
            Self::Protocol(_) => 5,
            Self::Invariant => 6,
        })
    }

    /// Prints the error as one clear sentence on stderr.
    pub fn report(&self) {
        if !matches!(self, Self::Invariant) {
            eprintln!("p2pchat: {self}");
        }
    }
}
