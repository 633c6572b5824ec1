//! Our control-port client against a real `tor` (Debian's, on PATH), launched offline
//! (`DisableNetwork 1`): ADD_ONION works without a network, so this needs no Tor network.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::net::SocketAddr;

use p2pchat_async_std::tor::launch::launch;
use p2pchat_core::test_keys;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pchat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_launched_tor_publishes_our_onion_key_with_add_onion() {
    async_std::task::block_on(async {
        let dir = temp_dir("tor-launch");
        let (tor, mut control) = launch(
            std::path::Path::new("tor"),
            &dir,
            &["DisableNetwork 1".to_owned()],
        )
        .await
        .expect("tor must be installed (apt-get install tor) for this test");
        assert_eq!(tor.socks, None, "an offline tor opens no SOCKS port");
        assert!(tor.control.ip().is_loopback());
        let key = test_keys::onion(3);
        let target: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        let address = control.add_onion(&key, 5051, target).await.unwrap();
        assert_eq!(address, key.address());
        let (progress, _) = control.bootstrap().await.unwrap();
        assert!(progress < 100, "an offline tor cannot be bootstrapped");
        // The same key twice is refused by tor, with its message passed on.
        let again = control.add_onion(&key, 5051, target).await.unwrap_err();
        assert!(again.to_string().contains("ADD_ONION"), "{again}");
        drop(control);
        drop(tor);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_tor_binary_that_does_not_exist_is_reported_as_not_installed() {
    async_std::task::block_on(async {
        let dir = temp_dir("tor-missing");
        let Err(e) = launch(std::path::Path::new("/nonexistent/tor"), &dir, &[]).await else {
            panic!("launched a tor that does not exist");
        };
        assert!(e.to_string().contains("Install tor"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    });
}
