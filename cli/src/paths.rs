//! Where the configuration file and the data directory are.

use std::path::PathBuf;

use crate::config::ConfigError;

/// The platform's directories for p2pchat (e.g. `~/.config/p2pchat`,
/// `~/.local/share/p2pchat` on Linux).
fn project() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "p2pchat")
}

/// The configuration file: `--config`, or `config.toml` in the platform config directory.
pub fn config_file(flag: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    match flag {
        Some(p) => Ok(p),
        None => project()
            .map(|p| p.config_dir().join("config.toml"))
            .ok_or(ConfigError::Invalid {
                key: "--config",
                why: "no home directory to find the configuration in; pass --config PATH".into(),
            }),
    }
}

/// The data directory: `--data-dir`, or the platform data directory.
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf, ConfigError> {
    match flag {
        Some(p) => Ok(p),
        None => project()
            .map(|p| p.data_dir().to_owned())
            .ok_or(ConfigError::Invalid {
                key: "--data-dir",
                why: "no home directory to keep keys in; pass --data-dir DIR".into(),
            }),
    }
}
