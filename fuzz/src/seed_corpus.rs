//! Writes the seed corpora (`fuzz/corpus/<target>/`) from real frames made by the real
//! protocol code with the test keys, laid out in each target's input format (see
//! `p2pchat_core::fuzzing`). Build it without `--cfg fuzzing`:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin seed_corpus`.

use std::path::Path;

use p2pchat_core::frame::encode_frame;
use p2pchat_core::handshake::{ExpectedPeer, Initiator, Responder, VerifiedHello};
use p2pchat_core::nick::Nick;
use p2pchat_core::peer_wire::{Finish, PeerFrame, ChannelMessage};
use p2pchat_core::registry::{
    ClientMessage, Presence, RegisterError, Registration, ServerError, ServerMessage, UserRecord,
};
use p2pchat_core::test_keys;

fn frame<T: serde::Serialize>(message: &T) -> Vec<u8> {
    encode_frame(message).expect("seed frames fit")
}

/// `[len][bytes]` chunks of at most 255 bytes.
fn chunks(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in bytes.chunks(255) {
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
    out
}

/// `[op][len16][bytes]`.
fn long(op: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![op];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    let mut rng = test_keys::rng(99);
    let alice = test_keys::identity(0, "alice");
    let bob = test_keys::identity(1, "bob");
    let expected = ExpectedPeer {
        nick: bob.nick.clone(),
        onion: bob.address(),
        rsa: bob.rsa.public().clone(),
    };

    // A real handshake, alice to bob.
    let (initiator, hello) = Initiator::start(&mut rng, &alice, 5051, 7, expected).unwrap();
    let hello_body = &hello[4..];
    let PeerFrame::Hello(parsed) = p2pchat_core::frame::decode_body(hello_body).unwrap() else {
        panic!("not a hello")
    };
    let verified = VerifiedHello::check(&bob, hello_body.to_vec(), parsed).unwrap();
    let (responder, challenge) =
        Responder::respond(&mut rng, &bob, &verified).unwrap();
    let challenge_frame = p2pchat_core::frame::decode_body::<PeerFrame>(&challenge[4..]).unwrap();
    let PeerFrame::Challenge(challenge_msg) = challenge_frame else {
        panic!("not a challenge")
    };
    let (finish, alice_cipher) = initiator
        .on_challenge(&mut rng, &alice, &challenge_msg)
        .unwrap();
    let PeerFrame::Finish(finish_msg) =
        p2pchat_core::frame::decode_body::<PeerFrame>(&finish[4..]).unwrap()
    else {
        panic!("not a finish")
    };
    let mut bob_established = responder.on_finish(&mut rng, &bob, &finish_msg).unwrap();
    let mut alice_cipher = alice_cipher;
    let sealed = alice_cipher
        .seal(&ChannelMessage::Message {
            id: 1,
            nonce: 11,
            text: "hello".into(),
        })
        .unwrap();
    let _ = bob_established
        .cipher
        .seal(&ChannelMessage::Accept { instance: 9 })
        .unwrap();

    // The fuzz build's fake RSA-OAEP: a length byte, then the secret.
    let mut fake_secret = vec![32u8];
    fake_secret.extend_from_slice(&[0x11; 32]);
    fake_secret.resize(256, 0);
    let fake_finish = frame(&PeerFrame::Finish(Finish {
        encrypted_secret: fake_secret,
        signature: vec![0x5a; 256],
    }));

    let registration = {
        let nonce = [7u8; 32];
        ClientMessage::Register(
            Registration::signed(&alice, None, &nonce, 5051, &mut rng).unwrap(),
        )
    };
    let record = UserRecord {
        certificate: bob.certificate.clone(),
        port: 5051,
    };
    let client_messages = [
        registration,
        ClientMessage::Lookup {
            request: 1,
            nick: "bob".into(),
        },
        ClientMessage::List {
            request: 2,
            prefix: "b".into(),
            after: None,
            limit: 100,
        },
        ClientMessage::Subscribe,
        ClientMessage::Ping,
        ClientMessage::Unregister,
    ];
    let server_messages = [
        ServerMessage::Challenge { nonce: [3; 32] },
        ServerMessage::Registered,
        ServerMessage::RegisterRejected(RegisterError::NickTaken),
        ServerMessage::LookupResult {
            request: 1,
            record: Some(record.clone()),
        },
        ServerMessage::Page {
            request: 0,
            users: vec![record.clone()],
            more: true,
        },
        ServerMessage::Presence(vec![
            Presence::Joined(record.clone()),
            Presence::Left(Nick::new("bob").unwrap()),
        ]),
        ServerMessage::Presence(vec![Presence::Resync]),
        ServerMessage::Pong,
        ServerMessage::Error(ServerError::RateLimited),
        ServerMessage::ShuttingDown,
        ServerMessage::Unregistered,
    ];

    // frame_decoder: a split size, then real frames of every kind back to back.
    let mut all = vec![37u8];
    all.extend_from_slice(&hello);
    all.extend_from_slice(&challenge);
    all.extend_from_slice(&finish);
    all.extend_from_slice(&sealed);
    for m in &client_messages {
        all.extend_from_slice(&frame(m));
    }
    for m in &server_messages {
        all.extend_from_slice(&frame(m));
    }
    write("frame_decoder", "all-frames", &all);
    write(
        "frame_decoder",
        "hello-whole",
        &[[255u8].as_slice(), &hello].concat(),
    );

    // handshake_initiator: bob's challenge (then a sealed frame), in chunks.
    write("handshake_initiator", "challenge", &chunks(&challenge));
    write(
        "handshake_initiator",
        "challenge-sealed",
        &chunks(&[challenge.as_slice(), &sealed].concat()),
    );

    // handshake_responder: alice's hello, a finish bob's fake crypto accepts, a decision.
    let mut responder_seed = long(0, &hello);
    responder_seed.extend(long(0, &fake_finish));
    responder_seed.extend([3, 1, 0]);
    write(
        "handshake_responder",
        "hello-finish-accept",
        &responder_seed,
    );
    let mut split_seed = long(0, &hello[..100]);
    split_seed.extend(long(1, &hello[100..]));
    split_seed.extend([2, 200]);
    write("handshake_responder", "hello-split-timeout", &split_seed);

    // channel: messages both ways, every channel message sealed by bob, time, commands.
    let mut channel = vec![0, 5];
    channel.extend_from_slice(b"hello");
    channel.extend([1, 2]);
    channel.extend_from_slice(b"hi");
    for m in [
        ChannelMessage::Message {
            id: 5,
            nonce: 55,
            text: "from bob".into(),
        },
        ChannelMessage::Ack { id: 1 },
        ChannelMessage::Ping,
        ChannelMessage::Pong,
        ChannelMessage::Accept { instance: 9 },
        ChannelMessage::Deny {
            reason: "no".into(),
        },
        ChannelMessage::Close {
            reason: "bye".into(),
        },
        ChannelMessage::CloseAck,
        ChannelMessage::Resume {
            stored_upto: 3,
            nonce: 33,
        },
    ] {
        channel.extend(long(2, &postcard::to_allocvec(&m).unwrap()));
    }
    channel.extend([5, 100, 6, 0]);
    write("channel", "messages-both-ways", &channel);
    let mut raw = long(4, &sealed);
    raw.extend([5, 130, 6, 2]);
    write("channel", "raw-timeout-retry", &raw);

    // registry_server: connect, register, list, lookup, ping, time, close.
    let mut server = vec![0, 0, 3, 0, 1, 80, 3, 0, 0, 81];
    for m in &client_messages[1..] {
        server.push(1);
        server.push(0);
        let f = frame(m);
        server.extend_from_slice(&(f.len() as u16).to_le_bytes());
        server.extend_from_slice(&f);
    }
    server.extend([5, 95, 4, 0]);
    write("registry_server", "register-list-lookup", &server);

    // registry_client: every server message, then time.
    let mut client = Vec::new();
    for m in &server_messages {
        client.extend(long(0, &frame(m)));
    }
    client.extend([3, 100, 4, 1, b'b']);
    write("registry_client", "every-message", &client);

    // onion_address
    for (i, a) in [
        alice.address().hostname(),
        bob.address().service_id(),
        bob.address().hostname().to_uppercase(),
        "x.onion".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        write("onion_address", &format!("address-{i}"), a.as_bytes());
    }

    // key_binding_certificate: certificates and keys.
    write(
        "key_binding_certificate",
        "certificate",
        &postcard::to_allocvec(&alice.certificate).unwrap(),
    );
    write(
        "key_binding_certificate",
        "rsa-2048",
        alice.rsa.public().der(),
    );
    write(
        "key_binding_certificate",
        "rsa-3072",
        test_keys::rsa_3072().public().der(),
    );

    // tor_control_reply: what tor really answers.
    let replies: &[&str] = &[
        "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/var/run/tor/control.authcookie\"\r\n250-VERSION Tor=\"0.4.9.8\"\r\n250 OK\r\n",
        "250 AUTHCHALLENGE SERVERHASH=680A73C9836C4F557314EA1C4EDE54C285DB9DC89C83627401AEF9D7D27A95D5 SERVERNONCE=F8EA4B1F896B5B2D8A7E8C2A7F8D4B6E0E2C7A1B3D5F7A9C1E3F5A7B9D1F3A5C\r\n",
        "250-ServiceID=abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx\r\n250 OK\r\n",
        "250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n250 OK\r\n",
        "250-net/listeners/socks=\"127.0.0.1:9050\"\r\n250 OK\r\n",
        "650 HS_DESC UPLOADED abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx UNKNOWN $AAAA\r\n",
        "250+config-text=\r\nSocksPort 9050\r\n..dot\r\n.\r\n250 OK\r\n",
        "515 Authentication failed: Wrong length on authentication cookie.\r\n",
        "552 Onion address collision\r\n",
    ];
    for (i, r) in replies.iter().enumerate() {
        write(
            "tor_control_reply",
            &format!("reply-{i}"),
            &[[7u8].as_slice(), r.as_bytes()].concat(),
        );
    }

    // config
    write(
        "config",
        "default",
        p2pchat::config::DEFAULT_CONFIG.as_bytes(),
    );
    write(
        "config",
        "full",
        b"nick = \"alice\"\n[server]\naddress = \"x.onion\"\nport = 5050\n[host]\nhost = \"127.0.0.1\"\nport = 5051\n[tor]\nmode = \"launch\"\nextra_torrc = [\"UseBridges 1\"]\n[hidden_service]\ndir = \"/tmp/hs\"\n",
    );
    write("config", "host-port", b"127.0.0.1:5050");
    println!("seed corpora written to fuzz/corpus/");
}
