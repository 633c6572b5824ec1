//! End to end through real onion services, on a private Tor network on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use p2pchat_tests::tor_network::PrivateNetwork;

#[test]
fn private_network_smoke() {
    async_std::task::block_on(async {
        let dir = std::env::temp_dir().join(format!("p2pchat-tornet-{}", std::process::id()));
        let net = PrivateNetwork::start(&dir, 3, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("bootstrapped in {:?}", net.started.elapsed());
        let mut control =
            p2pchat_async_std::tor::ControlConnection::connect(net.clients[0].control)
                .await
                .unwrap();
        control.authenticate(None).await.unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let key = p2pchat_core::test_keys::onion(1);
        let addr = control
            .add_onion(&key, 80, listener.local_addr().unwrap())
            .await
            .unwrap();
        let t = net
            .wait_reachable(&net.clients[1], &addr.hostname(), 80)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!("reachable after {t:?}; total {:?}", net.started.elapsed());
    });
}
