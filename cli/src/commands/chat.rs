//! `p2pchat chat`: set up Tor, register, then the line interface.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use async_std::net::TcpListener;
use clap::Args;
use p2pchat_async_std::{Command, PeerSettings};
use p2pchat_core::identity::Identity;
use p2pchat_core::nick::Nick;
use p2pchat_core::peer::{AcceptPolicy, Event, Peer, PeerConfig};
use p2pchat_core::registry::RegisterError;

use crate::config::{ConfigError, FileConfig, TorMode, split_host_port, split_listen};
use crate::errors::CliError;
use crate::tor_setup::{self, Progress};

/// Options of `p2pchat chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Your nickname (config: nick).
    #[arg(long)]
    nick: Option<String>,
    /// The registry, HOST:PORT (config: server.address, server.port).
    #[arg(long, value_name = "HOST:PORT")]
    server: Option<String>,
    /// Where your onion service forwards to, loopback HOST:PORT (config: host.host,
    /// host.port; default 127.0.0.1:5051).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// How to reach Tor (config: tor.mode).
    #[arg(long, value_enum)]
    tor: Option<TorMode>,
    /// Accept every authenticated chat request without asking.
    #[arg(long)]
    auto_accept: bool,
    /// The line interface even on a terminal (it is always used through pipes).
    #[arg(long)]
    plain: bool,
    /// Where the store's passphrase comes from.
    #[command(flatten)]
    passphrase: crate::profile::PassphraseArgs,
}

/// The default port of a peer's onion service.
pub const DEFAULT_PEER_PORT: u16 = 5051;

/// Reads the configuration file (required only if named with --config) and the
/// environment.
pub fn load_config(config: Option<PathBuf>) -> Result<(FileConfig, PathBuf), CliError> {
    let required = config.is_some();
    let path = crate::paths::config_file(config)?;
    let mut file = FileConfig::load(&path, required)?;
    file.apply_env(|k| std::env::var(k).ok())?;
    Ok((file, path))
}

/// A loopback listen address from `value` (checked: anything else would expose p2pchat
/// outside Tor).
pub fn loopback_addr(host: &str, port: u16, key: &'static str) -> Result<SocketAddr, CliError> {
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        other => other.parse().map_err(|_| ConfigError::Invalid {
            key,
            why: format!("{other:?} is not an IP address; use 127.0.0.1"),
        })?,
    };
    if !ip.is_loopback() {
        return Err(ConfigError::Invalid {
            key,
            why: format!(
                "{ip} is not a loopback address: p2pchat listens on loopback only, and Tor \
                 forwards the onion service to it"
            ),
        }
        .into());
    }
    Ok(SocketAddr::new(ip, port))
}

/// Runs `p2pchat chat`.
pub fn run(
    args: ChatArgs,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    async_std::task::block_on(chat(args, config, data_dir))
}

async fn chat(
    args: ChatArgs,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    let (file, config_path) = load_config(config)?;
    let pinned = file.pinned()?;
    let nick = args.nick.clone().or(file.nick.clone());
    let server = match &args.server {
        Some(s) => Some(split_host_port(s, "--server")?),
        None => file.server.address.clone().zip(file.server.port),
    };
    let mut missing = Vec::new();
    if nick.is_none() {
        missing.push(("nick", "--nick"));
    }
    if server.is_none() {
        if file.server.address.is_none() {
            missing.push(("server.address", "--server"));
        }
        if file.server.port.is_none() {
            missing.push(("server.port", "--server"));
        }
    }
    let (Some(nick), Some((server_host, server_port))) = (nick, server) else {
        return Err(ConfigError::Missing {
            keys: missing,
            path: config_path.clone(),
        }
        .into());
    };
    let nick = Nick::new(&nick).map_err(|e| ConfigError::Invalid {
        key: "nick",
        why: e.to_string(),
    })?;
    let listen = match &args.listen {
        Some(l) => {
            let (h, p) = split_listen(l, "--listen")?;
            loopback_addr(&h, p, "--listen")?
        }
        None => loopback_addr(
            file.host.host.as_deref().unwrap_or("127.0.0.1"),
            file.host.port.unwrap_or(DEFAULT_PEER_PORT),
            "host.host",
        )?,
    };
    let data_dir = crate::paths::data_dir(data_dir)?;
    tor_setup::check_addresses(args.tor.or(file.tor.mode), &file, Some(&server_host))?;
    let mode = tor_setup::choose_mode(args.tor, &file).await?;
    let options = p2pchat_async_std::store::OpenOptions {
        history: file.history.unwrap_or(true),
    };
    let passphrase = args.passphrase.clone();
    let profile_dir = data_dir.clone();
    let profile = async_std::task::spawn_blocking(move || {
        crate::profile::open_or_create(&profile_dir, &passphrase, false, options)
    })
    .await?;
    if profile.created {
        eprintln!("p2pchat: created a new identity in {}", data_dir.display());
    }
    // The full-screen interface takes the terminal once the passphrase is in, and shows
    // the rest of start-up in its status bar.
    use std::io::IsTerminal;
    let full_screen =
        !args.plain && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let boot = full_screen.then(|| crate::tui::Boot::start(&nick));
    let progress = boot
        .as_ref()
        .map_or_else(Progress::new, crate::tui::Boot::progress);
    let store = profile.store;
    let onion = match mode {
        TorMode::HiddenServiceDir => {
            let dir = file
                .hidden_service
                .dir
                .clone()
                .ok_or(ConfigError::Missing {
                    keys: vec![("hidden_service.dir", "P2PCHAT_HIDDEN_SERVICE_DIR")],
                    path: config_path.clone(),
                })?;
            tor_setup::hidden_service_key(&dir)?
        }
        _ => profile.onion,
    };
    let mut tor = tor_setup::setup(mode, &file, &data_dir.join("tor"), &progress).await?;
    let listener = bind(listen, mode).await?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Network(format!("cannot read the listening address: {e}")))?;
    // Direct mode advertises the port it listens on; with Tor the onion service's
    // virtual port is host.port, whatever local port it forwards to.
    let advertised = match mode {
        TorMode::Direct => local.port(),
        _ => listen.port(),
    };
    progress.set("publishing your onion service…");
    tor.publish(&onion, advertised, local).await?;
    let identity = Identity::with_serial(nick.clone(), profile.rsa, onion, profile.serial);
    let address = identity.address();
    let fingerprint = identity.rsa.public().fingerprint();
    let config = PeerConfig {
        port: advertised,
        // A registry reached without Tor (loopback) has no onion address to name.
        registry_onion: server_host.parse().ok(),
        accept_policy: if args.auto_accept {
            AcceptPolicy::AcceptAll
        } else {
            AcceptPolicy::Ask
        },
        ..PeerConfig::default()
    };
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(|e| CliError::Network(e.to_string()))?;
    let now = p2pchat_core::time::Instant::ZERO;
    let has_contacts = !store.state().contacts.is_empty();
    let mut core = Peer::restore(
        config,
        identity,
        store.state().clone(),
        &mut rng,
        now,
        p2pchat_async_std::local::wall_clock(),
    );
    // Contacts pinned in the configuration are verified contacts.
    for (nick, fingerprint) in pinned {
        core.import_verified(now, &nick, fingerprint);
    }
    let settings = PeerSettings {
        transport: tor.transport.clone(),
        registry_host: server_host.clone(),
        registry_port: server_port,
    };
    let (peer, updates) = p2pchat_async_std::spawn_peer(core, settings, listener, Box::new(store));
    progress.set(format!("registering with {server_host}:{server_port}…"));
    let _ = peer.command(Command::Register).await;
    // Events that arrive meanwhile (a contact's message, a request) are shown after.
    let mut earlier = Vec::new();
    let mut notices = Vec::new();
    match wait_registered(&updates, &mut earlier, &server_host, server_port).await {
        Ok(()) => notices.push("* registered: you are online".to_owned()),
        // With contacts there is something to do without the registry: they are dialled
        // at their pinned addresses. The registry is retried in the background.
        Err(StartFailure::Unreachable(e)) if has_contacts => {
            notices.push(format!("! {e}"));
            notices.push(
                "! retrying the registry in the background; your contacts can be reached meanwhile"
                    .to_owned(),
            );
        }
        // Someone else holds our nick (or address) at this registry — after it lost its
        // data, say. That is no reason to stop: contacts are dialled directly.
        Err(StartFailure::Refused(e)) if has_contacts => {
            notices.push(format!("! {e}"));
            notices.push(format!(
                "! your contacts can still reach you, and you them. If {nick} is yours, someone registered it while the registry could not see you: ask the registry's operator to revoke that binding (p2pchat server --revoke {nick}), or use another registry"
            ));
        }
        Err(StartFailure::Unreachable(e) | StartFailure::Refused(e) | StartFailure::Other(e)) => {
            return Err(e);
        }
    }
    progress.done();
    notices.push(format!(
        "* you are {nick} at {}:{advertised} (key {fingerprint})",
        address.hostname()
    ));
    match boot {
        Some(boot) => {
            // Said on stderr at start-up, which the start screen then covered.
            if mode == TorMode::Direct {
                notices.push(
                    "! direct mode: no Tor, this machine only. NOT anonymous: never use it for real conversations"
                        .to_owned(),
                );
            }
            let tor_state = match mode {
                TorMode::Direct => "direct: no Tor, NOT anonymous".to_owned(),
                other => format!("tor ({other}): bootstrapped, onion published"),
            };
            let tor = Arc::new(async_std::sync::Mutex::new(tor));
            let report = boot.tor_reporter();
            let watcher = async_std::task::spawn(watch_tor(Arc::clone(&tor), move |state| {
                report(format!("tor ({mode}): {state}"));
            }));
            let result = boot.run(peer, updates, earlier, notices, tor_state).await;
            watcher.cancel().await;
            result?;
        }
        None => {
            for notice in &notices {
                match notice.strip_prefix("! ") {
                    Some(warning) => eprintln!("p2pchat: {warning}"),
                    None => println!("{notice}"),
                }
            }
            crate::chat_ui::run(peer, updates, earlier, nick).await?;
            drop(tor);
        }
    }
    Ok(())
}

/// How often the full-screen interface asks tor how it stands.
const TOR_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Reports how `tor` stands every [`TOR_WATCH_INTERVAL`], while it has a control port to
/// ask (the modes without one have nothing to report).
async fn watch_tor(
    tor: Arc<async_std::sync::Mutex<tor_setup::TorContext>>,
    report: impl Fn(String),
) {
    loop {
        async_std::task::sleep(TOR_WATCH_INTERVAL).await;
        let Some(state) = tor.lock().await.state().await else {
            return;
        };
        report(state);
    }
}

/// Binds the listener. With Tor, a taken port falls back to any free one (the onion
/// service's virtual port stays the same); in direct mode the port is what peers dial.
async fn bind(addr: SocketAddr, mode: TorMode) -> Result<TcpListener, CliError> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && matches!(mode, TorMode::Launch | TorMode::System) =>
        {
            TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .map_err(|e| CliError::Network(format!("cannot listen on {}: {e}", addr.ip())))
        }
        Err(e) => Err(CliError::Network(format!(
            "cannot listen on {addr}: {e}. Choose another port with --listen (or host.port)"
        ))),
    }
}

/// Why the first registration did not happen.
enum StartFailure {
    /// The registry could not be reached.
    Unreachable(CliError),
    /// The registry refused: someone else holds the nick or the onion address.
    Refused(CliError),
    /// Anything else.
    Other(CliError),
}

/// Waits for the first registration; keeps the other events that arrive meanwhile in
/// `earlier`. Failing the first time is an error for someone without contacts (the usual
/// cause is configuration, or a nick already taken); later losses are retried.
async fn wait_registered(
    updates: &p2pchat_async_std::Subscription,
    earlier: &mut Vec<Event>,
    host: &str,
    port: u16,
) -> Result<(), StartFailure> {
    loop {
        match updates.next_event().await {
            Some(Event::Registered) => return Ok(()),
            Some(Event::RegistrationFailed(e)) => {
                let error =
                    CliError::Protocol(format!("the registry refused the registration: {e}"));
                return Err(match e {
                    RegisterError::NickReserved | RegisterError::AddressReserved => {
                        StartFailure::Refused(error)
                    }
                    _ => StartFailure::Other(error),
                });
            }
            Some(Event::RegistryLost { reason, .. }) => {
                return Err(StartFailure::Unreachable(CliError::Network(format!(
                    "could not reach the registry at {host}:{port}: {reason}"
                ))));
            }
            Some(Event::RegistryError(e)) => {
                return Err(StartFailure::Other(CliError::Protocol(format!(
                    "the registry closed the connection: {e}"
                ))));
            }
            Some(other) => earlier.push(other),
            None => {
                return Err(StartFailure::Other(CliError::Network(
                    "the peer stopped unexpectedly".into(),
                )));
            }
        }
    }
}
