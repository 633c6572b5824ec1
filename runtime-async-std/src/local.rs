//! A peer on loopback in `direct` mode, as the demo, the benchmarks and the tests start it:
//! one helper, so they all start peers the same way.

use async_std::net::TcpListener;
use p2pchat_core::identity::Identity;
use p2pchat_core::peer::{Peer, PeerConfig, WallTime};
use p2pchat_core::time::Instant;
use rand_core::CryptoRng;

use crate::store::{OpenOptions, PeerStore, SqliteStore, StoreError};
use crate::{Command, PeerHandle, PeerSettings, Subscription, Transport};

/// Why a local peer could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalPeerError {
    /// No loopback port.
    #[error("cannot listen on loopback: {0}")]
    Listen(std::io::Error),
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The peer loop stopped at once.
    #[error("{0}")]
    Stopped(#[from] crate::Stopped),
}

/// Starts `identity` on a free loopback port with `config` (its port is set to that one),
/// restoring from and storing into `store`, and asks it to register with the registry on
/// 127.0.0.1:`registry_port`. Returns the handle and the subscription that has every
/// event from the start.
pub async fn start_direct_peer(
    mut config: PeerConfig,
    identity: Identity,
    registry_port: u16,
    store: SqliteStore,
    rng: &mut impl CryptoRng,
) -> Result<(PeerHandle, Subscription), LocalPeerError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(LocalPeerError::Listen)?;
    config.port = listener
        .local_addr()
        .map_err(LocalPeerError::Listen)?
        .port();
    let core = Peer::restore(
        config,
        identity,
        store.state().clone(),
        rng,
        Instant::ZERO,
        wall_clock(),
    );
    let settings = PeerSettings {
        transport: Transport::Direct,
        registry_host: "127.0.0.1".into(),
        registry_port,
    };
    let store: Box<dyn PeerStore> = Box::new(store);
    let (peer, updates) = crate::spawn_peer(core, settings, listener, store);
    let _ = peer.command(Command::Register).await?;
    Ok((peer, updates))
}

/// An unencrypted store in `dir` (created if needed) for a demo or a benchmark.
pub fn scratch_store(dir: &std::path::Path, name: &str) -> Result<SqliteStore, StoreError> {
    let path = dir.join(format!("{name}.db"));
    let options = OpenOptions { history: true };
    if path.exists() {
        SqliteStore::open(&path, None, options)
    } else {
        SqliteStore::create(&path, None, options)
    }
}

/// The wall clock, as the core takes it.
pub fn wall_clock() -> WallTime {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    WallTime(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
