//! `p2pchat server`: the registry, published as an onion service.

use std::path::PathBuf;

use async_std::net::TcpListener;
use clap::Args;
use p2pchat_async_std::ServerSettings;
use p2pchat_core::registry::{Registry, RegistryConfig};

use crate::commands::chat::{load_config, loopback_addr};
use crate::config::{ConfigError, TorMode, split_listen};
use crate::errors::CliError;
use crate::tor_setup::{self, Progress};

/// Options of `p2pchat server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Loopback address to listen on; its port is also the onion service's port.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:5050")]
    listen: String,
    /// How to publish it (config: tor.mode).
    #[arg(long, value_enum)]
    tor: Option<TorMode>,
    /// Most registered users.
    #[arg(long, default_value_t = RegistryConfig::default().max_users)]
    max_users: usize,
    /// Most open connections.
    #[arg(long, default_value_t = RegistryConfig::default().max_connections)]
    max_connections: usize,
    /// Days a nick stays bound to its owner's key and onion address after the owner was
    /// last seen: meanwhile nobody else can register it.
    #[arg(long, default_value_t = 30)]
    reserve_days: u32,
    /// Registrations accepted per second from everyone together (ten seconds' worth may
    /// come at once); beyond, clients are told the registry is busy and try again.
    #[arg(long, default_value_t = RegistryConfig::default().registrations_per_second)]
    registrations_per_second: u32,
    /// Revoke NICK's binding and exit (with the registry stopped): the nick is free again,
    /// and its onion address can never register here again. For an owner whose onion key
    /// leaked, or a nick an impostor took while the registry could not see its owner.
    #[arg(long, value_name = "NICK")]
    revoke: Vec<String>,
}

/// Runs the registry until Ctrl-C or SIGTERM.
pub fn run(
    args: ServerArgs,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    async_std::task::block_on(serve(args, config, data_dir))
}

async fn serve(
    args: ServerArgs,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), CliError> {
    let (file, config_path) = load_config(config)?;
    let (host, port) = split_listen(&args.listen, "--listen")?;
    let listen = loopback_addr(&host, port, "--listen")?;
    let data_dir = crate::paths::data_dir(data_dir)?;
    if !args.revoke.is_empty() {
        return revoke(&data_dir, &args.revoke);
    }
    tor_setup::check_addresses(args.tor.or(file.tor.mode), &file, None)?;
    let mode = tor_setup::choose_mode(args.tor, &file).await?;
    let progress = Progress::new();
    let onion = match mode {
        TorMode::Direct => None,
        TorMode::HiddenServiceDir => {
            let dir = file
                .hidden_service
                .dir
                .clone()
                .ok_or(ConfigError::Missing {
                    keys: vec![("hidden_service.dir", "P2PCHAT_HIDDEN_SERVICE_DIR")],
                    path: config_path.clone(),
                })?;
            Some(tor_setup::hidden_service_key(&dir)?)
        }
        _ => {
            let dir = data_dir.join("registry");
            let (key, _) = async_std::task::spawn_blocking(move || {
                crate::keystore::load_or_create_onion_only(&dir)
            })
            .await?;
            Some(key)
        }
    };
    let mut tor = tor_setup::setup(mode, &file, &data_dir.join("tor"), &progress).await?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Network(format!("cannot listen on {listen}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Network(format!("cannot read the listening address: {e}")))?;
    if let Some(key) = &onion {
        progress.set("publishing the registry's onion service…");
        tor.publish(key, local.port(), local).await?;
    }
    progress.done();
    let registry_config = RegistryConfig {
        max_users: args.max_users,
        max_connections: args.max_connections,
        reserve_for: std::time::Duration::from_secs(u64::from(args.reserve_days) * 86_400),
        registrations_per_second: args.registrations_per_second,
        registrations_burst: args.registrations_per_second.saturating_mul(10),
        // Registrations name the onion address their client dialled.
        onion: onion.as_ref().map(|key| key.address()),
        ..RegistryConfig::default()
    };
    crate::keystore::ensure_private_dir(&data_dir)?;
    let store_path = data_dir.join(p2pchat_async_std::store::REGISTRY_STORE_FILE);
    let (store, bindings) = p2pchat_async_std::store::RegistryStore::open(&store_path)?;
    let mut rng = p2pchat_async_std::rng::os_rng().map_err(|e| CliError::Network(e.to_string()))?;
    let core = Registry::restore(
        registry_config,
        bindings,
        &mut rng,
        p2pchat_core::time::Instant::ZERO,
    );
    let (stop, task) =
        p2pchat_async_std::spawn_server(core, listener, ServerSettings::default(), Some(store));
    let stopper = stop.clone();
    ctrlc::set_handler(move || stopper.stop())
        .map_err(|e| CliError::Network(format!("cannot handle Ctrl-C: {e}")))?;
    say(&format!("p2pchat registry listening on {local}"));
    match &onion {
        Some(key) => say(&format!(
            "onion address: {} port {} (clients: --server {}:{})",
            key.address().hostname(),
            local.port(),
            key.address().hostname(),
            local.port()
        )),
        None => say("direct mode: reachable from this machine only, NOT anonymous"),
    }
    tracing::info!(mode = %mode, "registry running");
    let result = task.await;
    drop(tor);
    match result {
        Ok(()) => {
            say("p2pchat registry stopped");
            Ok(())
        }
        // The store failed (a full disk, say): a failure, so a supervisor sees it as one.
        Err(e) => Err(e.into()),
    }
}

/// `--revoke`: each nick's binding goes, and its onion address is refused from now on.
fn revoke(data_dir: &std::path::Path, nicks: &[String]) -> Result<(), CliError> {
    let store_path = data_dir.join(p2pchat_async_std::store::REGISTRY_STORE_FILE);
    if !store_path.exists() {
        return Err(CliError::Usage(format!(
            "no registry store at {}: nothing to revoke (is --data-dir right?)",
            store_path.display()
        )));
    }
    let (mut store, bindings) = p2pchat_async_std::store::RegistryStore::open(&store_path)?;
    for nick in nicks {
        let nick = p2pchat_core::nick::Nick::new(nick)
            .map_err(|e| CliError::Usage(format!("--revoke {nick}: {e}")))?;
        let Some(binding) = bindings.of_nick(&nick.canonical()).cloned() else {
            return Err(CliError::Usage(format!(
                "--revoke {nick}: the registry has no binding for {nick}; nothing was changed"
            )));
        };
        store.apply(&[p2pchat_core::registry::BindingOp::Revoke(nick.clone())])?;
        say(&format!(
            "revoked {nick}: {} (key {}) can never register here again; {nick} is free",
            binding.onion.hostname(),
            binding.fingerprint
        ));
    }
    Ok(())
}

/// Prints a status line. The registry serves its clients whether or not anybody reads its
/// output: a closed stdout (a terminal gone, a pipe whose reader left) is ignored, where
/// `println!` would panic and take every client's registration with it.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
