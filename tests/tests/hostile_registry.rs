//! Hostile clients against the real registry server (async-std, WebSocket on loopback):
//! garbage bytes, text frames, oversized frames, a byte-at-a-time writer, a thousand idle
//! connections, a registration flood. Meanwhile a legitimate client keeps registering and
//! listing, and must be served every time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use core::time::Duration;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::{TcpListener, TcpStream};
use async_std::task::block_on;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use p2pchat_async_std::{ServerSettings, StopServer};
use p2pchat_core::frame::{FrameDecoder, decode_body, encode_frame};
use p2pchat_core::registry::{
    ClientMessage, Registration, Registry, RegistryConfig, ServerMessage,
};
use p2pchat_core::test_keys;

async fn server(settings: ServerSettings) -> (StopServer, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = RegistryConfig {
        max_connections: 5000,
        ..RegistryConfig::default()
    };
    let core = Registry::new(config, &mut test_keys::rng(3));
    let (stop, _task) = p2pchat_async_std::spawn_server(core, listener, settings, None);
    (stop, port)
}

type Ws = async_tungstenite::WebSocketStream<TcpStream>;

async fn ws(port: u16) -> Ws {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (ws, _) = async_tungstenite::client_async(format!("ws://127.0.0.1:{port}/"), stream)
        .await
        .unwrap();
    ws
}

/// The next server message, or `None` if the connection ended (within 10 s).
async fn recv(ws: &mut Ws) -> Option<ServerMessage> {
    let next = async_std::future::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the server did not answer within 10 s");
    match next? {
        Ok(Message::Binary(b)) => {
            let mut d = FrameDecoder::new();
            let mut input = &b[..];
            let body = d.decode(&mut input).unwrap().unwrap();
            Some(decode_body(&body).unwrap())
        }
        _ => None,
    }
}

async fn send(ws: &mut Ws, message: &ClientMessage) {
    ws.send(Message::binary(encode_frame(message).unwrap()))
        .await
        .unwrap();
}

/// A legitimate client: registers as peer `i` and lists users. Panics if not served.
async fn legitimate_client(port: u16, i: usize) {
    let mut ws = ws(port).await;
    let Some(ServerMessage::Challenge { nonce }) = recv(&mut ws).await else {
        panic!("no challenge")
    };
    let id = test_keys::identity(i, &format!("legit{i}"));
    let registration =
        Registration::signed(&id, None, &nonce, 7000, &mut test_keys::rng(i as u64)).unwrap();
    send(&mut ws, &ClientMessage::Register(registration)).await;
    assert_eq!(recv(&mut ws).await, Some(ServerMessage::Registered));
    send(
        &mut ws,
        &ClientMessage::List {
            request: 1,
            prefix: "legit".into(),
            after: None,
            limit: 100,
        },
    )
    .await;
    match recv(&mut ws).await {
        Some(ServerMessage::Page { users, .. }) => {
            assert!(
                users
                    .iter()
                    .any(|u| u.nick().as_str() == format!("legit{i}"))
            );
        }
        other => panic!("no page: {other:?}"),
    }
    send(&mut ws, &ClientMessage::Unregister).await;
    assert_eq!(recv(&mut ws).await, Some(ServerMessage::Unregistered));
}

/// Whether the server closed `stream` (EOF or reset) within 10 s.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match async_std::future::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn garbage_bytes_instead_of_a_websocket_handshake_are_dropped() {
    block_on(async {
        let (stop, port) = server(ServerSettings::default()).await;
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"\x00\x01garbage\xff\xfe\r\n\r\n")
            .await
            .unwrap();
        assert!(closed_by_server(&mut s).await);
        legitimate_client(port, 0).await;
        stop.stop();
    });
}

#[test]
fn text_frames_and_garbage_binary_frames_end_the_connection() {
    block_on(async {
        let (stop, port) = server(ServerSettings::default()).await;
        let mut a = ws(port).await;
        recv(&mut a).await;
        a.send(Message::text("{\"register\": \"me\"}"))
            .await
            .unwrap();
        assert!(matches!(
            recv(&mut a).await,
            Some(ServerMessage::Error(_)) | None
        ));
        let mut b = ws(port).await;
        recv(&mut b).await;
        b.send(Message::binary(vec![0xffu8; 64])).await.unwrap();
        assert!(matches!(
            recv(&mut b).await,
            Some(ServerMessage::Error(_)) | None
        ));
        legitimate_client(port, 1).await;
        stop.stop();
    });
}

#[test]
fn an_oversized_frame_is_refused_without_being_buffered() {
    block_on(async {
        let (stop, port) = server(ServerSettings::default()).await;
        let mut a = ws(port).await;
        recv(&mut a).await;
        // 1 MiB in one WebSocket message: over tungstenite's configured limit.
        let _ = a.send(Message::binary(vec![0u8; 1 << 20])).await;
        let mut ended = false;
        for _ in 0..3 {
            if recv(&mut a).await.is_none() {
                ended = true;
                break;
            }
        }
        assert!(ended, "the connection survived a 1 MiB message");
        legitimate_client(port, 2).await;
        stop.stop();
    });
}

#[test]
fn a_byte_at_a_time_handshake_is_cut_off_and_does_not_stall_others() {
    block_on(async {
        let settings = ServerSettings {
            handshake_timeout: Duration::from_secs(1),
            ..ServerSettings::default()
        };
        let (stop, port) = server(settings).await;
        let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n";
        let mut cut = false;
        for byte in request {
            if slow.write_all(&[*byte]).await.is_err() {
                cut = true;
                break;
            }
            // Others are served while the slow client dribbles.
            if *byte == b'/' {
                legitimate_client(port, 3).await;
            }
            async_std::task::sleep(Duration::from_millis(100)).await;
        }
        assert!(cut || closed_by_server(&mut slow).await);
        stop.stop();
    });
}

#[test]
fn a_thousand_idle_connections_do_not_stop_a_legitimate_client() {
    block_on(async {
        let (stop, port) = server(ServerSettings::default()).await;
        let mut idle = Vec::new();
        for _ in 0..1000 {
            let mut s = ws(port).await;
            recv(&mut s).await;
            idle.push(s);
        }
        legitimate_client(port, 4).await;
        drop(idle);
        legitimate_client(port, 5).await;
        stop.stop();
    });
}

#[test]
fn a_registration_flood_is_cut_off_while_others_register() {
    block_on(async {
        let (stop, port) = server(ServerSettings::default()).await;
        let mut flood = ws(port).await;
        recv(&mut flood).await;
        let junk = ClientMessage::Register(Registration {
            nick: "flood".into(),
            onion: [0u8; 32],
            port: 1,
            rsa_public_key: vec![1, 2, 3],
            certificate_serial: 0,
            certificate_signature: p2pchat_core::identity::Ed25519Signature([0u8; 64]),
            challenge_signature: vec![0u8; 256],
            onion_signature: p2pchat_core::identity::Ed25519Signature([0u8; 64]),
        });
        let mut cut_off = false;
        for _ in 0..200 {
            if flood
                .send(Message::binary(encode_frame(&junk).unwrap()))
                .await
                .is_err()
            {
                cut_off = true;
                break;
            }
        }
        legitimate_client(port, 6).await;
        // The flood ended with an error (too many attempts / rate limited) and a close.
        while let Some(m) = recv(&mut flood).await {
            if let ServerMessage::Error(_) = m {
                cut_off = true;
            }
        }
        assert!(cut_off);
        stop.stop();
    });
}
