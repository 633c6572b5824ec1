//! Choosing and preparing the Tor mode: how we dial (SOCKS or direct), and how our
//! listener becomes reachable (ADD_ONION, a HiddenServiceDir, or loopback only).

use core::time::Duration;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use p2pchat_async_std::Transport;
use p2pchat_async_std::tor::trust::owner_of;
use p2pchat_async_std::tor::{ControlConnection, ControlTrust, LaunchedTor, TorError};
use p2pchat_core::identity::{OnionAddress, OnionIdentity};

use crate::config::{FileConfig, TorMode};
use crate::errors::CliError;
use crate::keystore::ensure_private_dir;

/// Tor as set up for this run. Keep it alive as long as the service must be reachable:
/// services added over the control connection vanish when it closes, and a launched tor
/// is stopped when this is dropped.
pub struct TorContext {
    /// How to dial.
    pub transport: Transport,
    control: Option<ControlConnection>,
    _launched: Option<LaunchedTor>,
}

/// Shows progress on stderr while Tor starts (a spinner on a terminal, nothing otherwise).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// Where progress goes instead (the full-screen interface's start-up screen).
    sink: Option<ProgressSink>,
}

/// Something that shows a progress message.
type ProgressSink = Box<dyn Fn(&str) + Send + Sync>;

impl Progress {
    /// A spinner if stderr is a terminal.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self { bar, sink: None }
    }

    /// Progress shown by `sink` instead of a spinner.
    pub fn to(sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            bar: None,
            sink: Some(Box::new(sink)),
        }
    }

    /// Shows `message`.
    pub fn set(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(sink) = &self.sink {
            sink(&message);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Removes the spinner.
    pub fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done();
    }
}

const SYSTEM_CONTROL_PORTS: [u16; 2] = [9051, 9151];
const SYSTEM_SOCKS_PORTS: [u16; 2] = [9050, 9150];

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn answers(addr: SocketAddr) -> bool {
    async_std::future::timeout(
        Duration::from_secs(2),
        async_std::net::TcpStream::connect(addr),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

fn parse_addr(value: &str, key: &'static str) -> Result<SocketAddr, CliError> {
    let (host, port) = crate::config::split_host_port(value, key)?;
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| crate::config::ConfigError::Invalid {
            key,
            why: format!("{value:?}: Tor's ports are given as IP:PORT (e.g. 127.0.0.1:9050)"),
        })?;
    Ok(SocketAddr::new(ip, port))
}

/// Checks, before any connection is made, that Tor's ports are on this machine and that
/// a Tor mode (`mode`, or a mode still to be chosen: never direct) reaches the registry
/// (`registry`, when this command dials one) as an onion service. A remote SOCKS or control port would see every address we dial, or get our
/// onion key; a registry dialled by name or IP through Tor leaves Tor at an exit.
pub fn check_addresses(
    mode: Option<TorMode>,
    file: &FileConfig,
    registry: Option<&str>,
) -> Result<(), CliError> {
    for (value, key) in [
        (&file.tor.socks, "tor.socks"),
        (&file.tor.control, "tor.control"),
    ] {
        if let Some(value) = value {
            let addr = parse_addr(value, key)?;
            if !addr.ip().is_loopback() {
                return Err(crate::config::ConfigError::Invalid {
                    key,
                    why: format!(
                        "{addr} is not a loopback address: Tor's ports must be on this machine \
                         (127.0.0.1 or ::1); a port elsewhere would learn every address you \
                         dial, or your onion key"
                    ),
                }
                .into());
            }
        }
    }
    if let Some(host) = registry
        && mode != Some(TorMode::Direct)
        && host.parse::<OnionAddress>().is_err()
    {
        return Err(crate::config::ConfigError::Invalid {
            key: "server.address",
            why: format!(
                "{host:?} is not an onion address: through Tor the registry must be an onion \
                 service (56 letters and digits, then .onion), or your client would reach it \
                 through an exit over the open internet. To try p2pchat on one machine, use \
                 --tor direct"
            ),
        }
        .into());
    }
    Ok(())
}

/// The `tor` binary to launch: tor.binary, or `tor` found on PATH.
fn tor_binary(file: &FileConfig) -> Option<PathBuf> {
    if let Some(b) = &file.tor.binary {
        return Some(b.clone());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("tor"))
        .find(|p| p.is_file())
}

/// Picks the mode: the flag, the configuration, or (neither) a system Tor if its control
/// port answers, else `launch` if tor is installed.
pub async fn choose_mode(flag: Option<TorMode>, file: &FileConfig) -> Result<TorMode, CliError> {
    if let Some(mode) = flag.or(file.tor.mode) {
        return Ok(mode);
    }
    for port in SYSTEM_CONTROL_PORTS {
        if answers(loopback(port)).await {
            return Ok(TorMode::System);
        }
    }
    if tor_binary(file).is_some() {
        return Ok(TorMode::Launch);
    }
    Err(TorError::NoTor.into())
}

/// Prepares `mode`. `tor_dir` is where a launched tor keeps its state.
pub async fn setup(
    mode: TorMode,
    file: &FileConfig,
    tor_dir: &Path,
    progress: &Progress,
) -> Result<TorContext, CliError> {
    match mode {
        TorMode::Direct => {
            eprintln!(
                "p2pchat: direct mode: no Tor, this machine only. NOT anonymous: use it to \
                 try p2pchat out, never for real conversations."
            );
            Ok(TorContext {
                transport: Transport::Direct,
                control: None,
                _launched: None,
            })
        }
        TorMode::Launch => {
            let binary = tor_binary(file).unwrap_or_else(|| PathBuf::from("tor"));
            ensure_private_dir(tor_dir)?;
            progress.set("starting tor…");
            let extra = file.tor.extra_torrc.clone().unwrap_or_default();
            let (launched, mut control) =
                p2pchat_async_std::tor::launch::launch(&binary, tor_dir, &extra).await?;
            wait_bootstrapped(&mut control, progress).await?;
            let socks = match launched.socks {
                Some(s) => s,
                None => control.socks_listeners().await?.into_iter().next().ok_or(
                    TorError::Refused {
                        command: "GETINFO net/listeners/socks",
                        message: "the tor p2pchat started has no SOCKS port (is DisableNetwork \
                                  set in tor.extra_torrc?)"
                            .into(),
                    },
                )?,
            };
            Ok(TorContext {
                transport: Transport::Socks(socks),
                control: Some(control),
                _launched: Some(launched),
            })
        }
        TorMode::System => {
            let control_addr = match &file.tor.control {
                Some(c) => parse_addr(c, "tor.control")?,
                None => first_answering(&SYSTEM_CONTROL_PORTS).await.ok_or(
                    TorError::ControlUnreachable {
                        addr: loopback(SYSTEM_CONTROL_PORTS[0]),
                        why: "nothing answers on 9051 or 9151".into(),
                    },
                )?,
            };
            progress.set("connecting to Tor's control port…");
            let mut control = ControlConnection::connect(control_addr).await?;
            let trust = ControlTrust {
                password: file.tor.control_password.clone(),
                allow_null: file.tor.allow_null_auth.unwrap_or(false),
                allow_plain_cookie: file.tor.allow_plain_cookie.unwrap_or(false),
                ..ControlTrust::system(owner_of(tor_dir.parent().unwrap_or(tor_dir)))
            };
            control.authenticate(&trust).await?;
            // The SOCKS port of the tor that just proved itself, not whatever answers.
            let socks = match &file.tor.socks {
                Some(s) => parse_addr(s, "tor.socks")?,
                None => control
                    .socks_listeners()
                    .await?
                    .into_iter()
                    .find(|a| a.ip().is_loopback())
                    .ok_or(TorError::Refused {
                        command: "GETINFO net/listeners/socks",
                        message: "Tor has no SOCKS port on a loopback address: add \
                                  SocksPort 9050 to the torrc, or set tor.socks"
                            .into(),
                    })?,
            };
            wait_bootstrapped(&mut control, progress).await?;
            Ok(TorContext {
                transport: Transport::Socks(socks),
                control: Some(control),
                _launched: None,
            })
        }
        TorMode::HiddenServiceDir => {
            let socks = system_socks(file).await?;
            Ok(TorContext {
                transport: Transport::Socks(socks),
                control: None,
                _launched: None,
            })
        }
    }
}

async fn first_answering(ports: &[u16]) -> Option<SocketAddr> {
    for port in ports {
        if answers(loopback(*port)).await {
            return Some(loopback(*port));
        }
    }
    None
}

/// The SOCKS port without a control port (hidden-service-dir mode): tor.socks, or 9050,
/// or Tor Browser's 9150, whichever answers.
async fn system_socks(file: &FileConfig) -> Result<SocketAddr, CliError> {
    if let Some(s) = &file.tor.socks {
        return parse_addr(s, "tor.socks");
    }
    Ok(first_answering(&SYSTEM_SOCKS_PORTS)
        .await
        .unwrap_or(loopback(SYSTEM_SOCKS_PORTS[0])))
}

async fn wait_bootstrapped(
    control: &mut ControlConnection,
    progress: &Progress,
) -> Result<(), CliError> {
    loop {
        let (percent, summary) = control.bootstrap().await?;
        if percent >= 100 {
            return Ok(());
        }
        progress.set(format!("Tor bootstrapping: {percent}% {summary}"));
        async_std::task::sleep(Duration::from_millis(250)).await;
    }
}

/// The onion key of `hidden-service-dir` mode, read from the directory tor maintains,
/// checked against its `hostname` file.
pub fn hidden_service_key(dir: &Path) -> Result<OnionIdentity, CliError> {
    let bad = |why: String| TorError::HiddenServiceDir {
        dir: dir.to_owned(),
        why,
    };
    let hostname = std::fs::read_to_string(dir.join("hostname"))
        .map_err(|e| bad(format!("cannot read its hostname file ({e})")))?;
    let key_file = std::fs::read(dir.join("hs_ed25519_secret_key"))
        .map_err(|e| bad(format!("cannot read hs_ed25519_secret_key ({e})")))?;
    let key = OnionIdentity::from_tor_secret_key_file(&key_file)
        .map_err(|e| bad(format!("hs_ed25519_secret_key is not a v3 key ({e})")))?;
    let listed: Result<OnionAddress, _> = hostname.trim().parse();
    match listed {
        Ok(a) if a == key.address() => Ok(key),
        _ => Err(bad(format!(
            "its hostname {:?} is not the address of its key",
            hostname.trim()
        ))
        .into()),
    }
}

impl TorContext {
    /// How tor stands now, for a status bar: its bootstrap (a tor whose network went away
    /// falls back below 100 %), or that its control port is gone. `None` when there is no
    /// control port to ask (direct and hidden-service-dir modes).
    pub async fn state(&mut self) -> Option<String> {
        let control = self.control.as_mut()?;
        Some(match control.bootstrap().await {
            Ok((100, _)) => "connected to the Tor network".to_owned(),
            Ok((percent, summary)) => format!("bootstrapping {percent}%: {summary}"),
            Err(e) => format!("its control port stopped answering ({e})"),
        })
    }

    /// Makes `local` reachable as `key`'s onion service on `virtual_port`. Direct mode
    /// publishes nothing; hidden-service-dir relies on the user's torrc.
    pub async fn publish(
        &mut self,
        key: &OnionIdentity,
        virtual_port: u16,
        local: SocketAddr,
    ) -> Result<(), CliError> {
        if let Some(control) = &mut self.control {
            control.add_onion(key, virtual_port, local).await?;
        }
        Ok(())
    }
}
