//! The configuration file (TOML), with keys a user of the original recognises, then
//! environment variables, then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How p2pchat reaches Tor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TorMode {
    /// Start our own `tor` (the default when no system Tor answers and `tor` is on PATH).
    Launch,
    /// An existing tor or Tor Browser: SOCKS 9050/9150, control port 9051/9151.
    System,
    /// The original's way: torrc has HiddenServiceDir/HiddenServicePort.
    HiddenServiceDir,
    /// No Tor: loopback only. Not anonymous; for the demo and tests.
    Direct,
}

impl core::fmt::Display for TorMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Launch => "launch",
            Self::System => "system",
            Self::HiddenServiceDir => "hidden-service-dir",
            Self::Direct => "direct",
        })
    }
}

/// `[server]`: the registry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Its onion address (or a loopback address in direct mode).
    pub address: Option<String>,
    /// Its port.
    pub port: Option<u16>,
}

/// `[host]`: where our own onion service forwards to, and the port it advertises.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Local address to listen on (loopback).
    pub host: Option<String>,
    /// Port: the onion service's virtual port, and the local one unless in use.
    pub port: Option<u16>,
}

/// `[hidden_service]`: for `hidden-service-dir` mode.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiddenServiceSection {
    /// The HiddenServiceDir of the user's torrc.
    pub dir: Option<PathBuf>,
}

/// `[tor]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorSection {
    /// launch, system, hidden-service-dir or direct.
    pub mode: Option<TorMode>,
    /// SOCKS port address (system and hidden-service-dir modes).
    pub socks: Option<String>,
    /// Control port address (system mode).
    pub control: Option<String>,
    /// Control port password (system mode, when tor uses HashedControlPassword).
    pub control_password: Option<String>,
    /// Trust a control port that asks for no authentication (system mode). Off by
    /// default: anything on this machine could be listening there.
    pub allow_null_auth: Option<bool>,
    /// Trust plain COOKIE authentication, which sends the cookie to the port (system
    /// mode). Off by default: SAFECOOKIE proves the port is tor without giving it away.
    pub allow_plain_cookie: Option<bool>,
    /// The `tor` program (launch mode).
    pub binary: Option<PathBuf>,
    /// Extra torrc lines for a launched tor (bridges, a private network's DirAuthority…).
    pub extra_torrc: Option<Vec<String>>,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Our nickname.
    pub nick: Option<String>,
    /// Keep message history (default true). Off: only contacts, the outbox and
    /// de-duplication state are stored.
    pub history: Option<bool>,
    /// The registry.
    #[serde(default)]
    pub server: ServerSection,
    /// Our listener.
    #[serde(default)]
    pub host: HostSection,
    /// hidden-service-dir mode.
    #[serde(default)]
    pub hidden_service: HiddenServiceSection,
    /// Tor.
    #[serde(default)]
    pub tor: TorSection,
    /// Pinned contacts: nick = key fingerprint (as `/fingerprint` shows it). A registry
    /// record or a peer presenting another key is refused as a possible impersonation.
    #[serde(default)]
    pub contacts: std::collections::BTreeMap<String, String>,
}

impl FileConfig {
    /// The pinned contacts, checked: each nick valid, each fingerprint 64 hex digits.
    pub fn pinned(
        &self,
    ) -> Result<
        std::collections::BTreeMap<p2pchat_core::nick::Nick, p2pchat_core::identity::Fingerprint>,
        ConfigError,
    > {
        self.contacts
            .iter()
            .map(|(nick, fingerprint)| {
                let n = p2pchat_core::nick::Nick::new(nick).map_err(|e| ConfigError::Invalid {
                    key: "contacts",
                    why: format!("{nick:?}: {e}"),
                })?;
                let f = fingerprint.parse().map_err(|e| ConfigError::Invalid {
                    key: "contacts",
                    why: format!("{nick}: {e}"),
                })?;
                Ok((n, f))
            })
            .collect()
    }
}

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// Which file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key that does not exist, or a value of the wrong type.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// Required values are missing.
    #[error("{}", missing_message(.keys, .path))]
    Missing {
        /// Config keys with the flag that sets each.
        keys: Vec<(&'static str, &'static str)>,
        /// The config file consulted.
        path: PathBuf,
    },
    /// A value is out of range or malformed.
    #[error("invalid value for {key}: {why}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        why: String,
    },
}

fn missing_message(keys: &[(&'static str, &'static str)], path: &Path) -> String {
    let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let mut flags: Vec<&str> = keys.iter().map(|(_, f)| *f).collect();
    flags.dedup();
    let plural = names.len() > 1;
    format!(
        "missing configuration value{}: {}. Set {} in {} (`p2pchat init` writes a commented \
         file), or pass {} {}",
        if plural { "s" } else { "" },
        names.join(", "),
        if plural { "them" } else { "it" },
        path.display(),
        if flags.len() > 1 {
            "the flags"
        } else {
            "the flag"
        },
        flags.join(" ")
    )
}

impl FileConfig {
    /// Reads `path`. A missing file is an empty configuration unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; unknown keys are errors that name the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|span| text.get(..span.start).unwrap_or("").matches('\n').count() + 1);
            match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_owned(),
            }
        })
    }

    /// Applies `P2PCHAT_*` environment variables (`P2PCHAT_NICK`, `P2PCHAT_SERVER_ADDRESS`,
    /// `P2PCHAT_SERVER_PORT`, `P2PCHAT_TOR_MODE`, `P2PCHAT_TOR_SOCKS`,
    /// `P2PCHAT_TOR_CONTROL`, `P2PCHAT_HIDDEN_SERVICE_DIR`).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("P2PCHAT_NICK") {
            self.nick = Some(v);
        }
        if let Some(v) = get("P2PCHAT_SERVER_ADDRESS") {
            self.server.address = Some(v);
        }
        if let Some(v) = get("P2PCHAT_SERVER_PORT") {
            self.server.port = Some(v.parse().map_err(|_| ConfigError::Invalid {
                key: "P2PCHAT_SERVER_PORT",
                why: format!("{v:?} is not a port number"),
            })?);
        }
        if let Some(v) = get("P2PCHAT_TOR_MODE") {
            self.tor.mode = Some(<TorMode as clap::ValueEnum>::from_str(&v, true).map_err(
                |_| ConfigError::Invalid {
                    key: "P2PCHAT_TOR_MODE",
                    why: format!("{v:?}: use launch, system, hidden-service-dir or direct"),
                },
            )?);
        }
        if let Some(v) = get("P2PCHAT_TOR_SOCKS") {
            self.tor.socks = Some(v);
        }
        if let Some(v) = get("P2PCHAT_TOR_CONTROL") {
            self.tor.control = Some(v);
        }
        if let Some(v) = get("P2PCHAT_HIDDEN_SERVICE_DIR") {
            self.hidden_service.dir = Some(v.into());
        }
        Ok(())
    }
}

/// Splits `HOST:PORT` (brackets allowed around IPv6).
pub fn split_host_port(s: &str, key: &'static str) -> Result<(String, u16), ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        key,
        why: format!("{s:?} {why}"),
    };
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| invalid("is not HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| invalid("does not end in a port number"))?;
    let host = host.trim_matches(['[', ']']);
    if host.is_empty() || port == 0 {
        return Err(invalid("is not HOST:PORT"));
    }
    Ok((host.to_owned(), port))
}

/// Splits a listen address `HOST:PORT`; port 0 means any free port.
pub fn split_listen(s: &str, key: &'static str) -> Result<(String, u16), ConfigError> {
    match s.rsplit_once(':') {
        Some((host, "0")) if !host.is_empty() => Ok((host.trim_matches(['[', ']']).to_owned(), 0)),
        _ => split_host_port(s, key),
    }
}

/// Fuzzing entry point: arbitrary text through the TOML loader, the environment
/// overrides and the address splitter.
#[cfg(fuzzing)]
pub fn fuzz(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut config) = FileConfig::parse(text) {
        let _ = config.apply_env(|key| (key.len() % 3 == 0).then(|| text.to_owned()));
    }
    let _ = split_host_port(text, "fuzz");
    let _ = split_listen(text, "fuzz");
}

/// The commented default written by `p2pchat init`.
pub const DEFAULT_CONFIG: &str = r#"# p2pchat configuration. Every key is optional here; flags and P2PCHAT_* environment
# variables override what is set. Unknown keys are errors.

# Your nickname: 1-32 characters from A-Z a-z 0-9 _ -.
# nick = "alice"

# Keep message history in your (encrypted) store. With false, only contacts, messages
# waiting to be delivered and what de-duplicates resent messages are kept.
# history = true

[server]
# The registry's onion address and port (ask whoever runs it).
# address = "registryaddressxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion"
# port = 5050

[host]
# Where your onion service forwards to on this machine, and the port it advertises.
# host = "127.0.0.1"
# port = 5051

[tor]
# launch: start our own tor (needs `tor` on PATH). system: use a running tor or Tor
# Browser. hidden-service-dir: your torrc has HiddenServiceDir/HiddenServicePort.
# direct: no Tor, this machine only, NOT anonymous.
# mode = "launch"
# socks = "127.0.0.1:9050"       # system / hidden-service-dir (9150 for Tor Browser)
# control = "127.0.0.1:9051"     # system (9151 for Tor Browser)
# control_password = "..."      # if tor uses HashedControlPassword
# allow_null_auth = false        # trust a control port with no authentication (unsafe)
# allow_plain_cookie = false     # trust plain COOKIE authentication (unsafe)
# binary = "tor"                 # launch
# extra_torrc = ["UseBridges 1"] # launch: extra torrc lines

[hidden_service]
# dir = "/var/lib/tor/p2pchat"   # hidden-service-dir mode: your HiddenServiceDir

[contacts]
# Pin a contact's key, once compared out of band (/fingerprint bob):
# bob = "9D1D AAB2 F069 B733 0415 AEE1 7D01 B140 60D5 8291 130B 0F5B D941 0280 CAE2 ED91"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses() {
        FileConfig::parse(DEFAULT_CONFIG).unwrap();
    }

    #[test]
    fn the_original_keys_are_read() {
        let c = FileConfig::parse(
            "nick = \"alice\"\n[server]\naddress = \"x.onion\"\nport = 5050\n[host]\nhost = \"127.0.0.1\"\nport = 5051\n[hidden_service]\ndir = \"/tmp/hs\"\n[tor]\nmode = \"system\"\nsocks = \"127.0.0.1:9150\"\ncontrol = \"127.0.0.1:9151\"\n",
        )
        .unwrap();
        assert_eq!(c.nick.as_deref(), Some("alice"));
        assert_eq!(c.server.port, Some(5050));
        assert_eq!(c.tor.mode, Some(TorMode::System));
        assert_eq!(c.hidden_service.dir, Some(PathBuf::from("/tmp/hs")));
    }

    #[test]
    fn pinned_contacts_are_read_and_checked() {
        let f = "9D1D AAB2 F069 B733 0415 AEE1 7D01 B140 60D5 8291 130B 0F5B D941 0280 CAE2 ED91";
        let c = FileConfig::parse(&format!("[contacts]\nbob = \"{f}\"\n")).unwrap();
        let pinned = c.pinned().unwrap();
        assert_eq!(
            pinned.values().next().map(|x| x.to_string()),
            Some(f.to_owned())
        );
        let bad = FileConfig::parse("[contacts]\nbob = \"12\"\n").unwrap();
        assert!(bad.pinned().unwrap_err().to_string().contains("bob"));
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let e = FileConfig::parse("[server]\nadress = \"x\"\n").unwrap_err();
        assert!(e.contains("adress"), "{e}");
        let e = FileConfig::parse("nik = \"x\"\n").unwrap_err();
        assert!(e.contains("nik"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = FileConfig::parse("nick = \"alice\"\n").unwrap();
        c.apply_env(|k| (k == "P2PCHAT_NICK").then(|| "bob".to_owned()))
            .unwrap();
        assert_eq!(c.nick.as_deref(), Some("bob"));
        let bad = c.apply_env(|k| (k == "P2PCHAT_SERVER_PORT").then(|| "x".to_owned()));
        assert!(bad.is_err());
    }

    #[test]
    fn missing_values_are_named_with_their_flags() {
        let e = ConfigError::Missing {
            keys: vec![("nick", "--nick"), ("server.address", "--server")],
            path: PathBuf::from("/c.toml"),
        };
        let text = e.to_string();
        assert!(text.contains("nick, server.address"), "{text}");
        assert!(text.contains("--nick"), "{text}");
    }

    #[test]
    fn host_port_pairs_are_split_and_checked() {
        assert_eq!(
            split_host_port("127.0.0.1:5050", "k").unwrap(),
            ("127.0.0.1".into(), 5050)
        );
        assert_eq!(split_host_port("[::1]:1", "k").unwrap(), ("::1".into(), 1));
        assert!(split_host_port("nohost", "k").is_err());
        assert!(split_host_port("h:0", "k").is_err());
    }
}
