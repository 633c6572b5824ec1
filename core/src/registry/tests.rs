use super::*;
use crate::conn::ConnId;
use crate::frame::encode_frame;
use crate::harness::World;
use crate::identity::{Ed25519Signature, Identity};
use crate::test_keys;
use crate::time::Instant;
use core::time::Duration;

#[test]
fn a_valid_registration_is_listed_and_looked_up() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "Alice");
    let (_, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    let (c, _) = h.connect_client();
    let reply = h.client_send(
        c,
        &ClientMessage::Lookup {
            request: 5,
            nick: "alice".into(),
        },
    );
    let [
        ServerMessage::LookupResult {
            request: 5,
            record: Some(r),
        },
    ] = reply.as_slice()
    else {
        panic!("{reply:?}")
    };
    assert_eq!(r.certificate, alice.certificate);
    assert_eq!(r.port, 7000);
}

#[test]
fn duplicate_nick_and_duplicate_onion_are_rejected() {
    let mut h = World::registry_only(RegistryConfig::default());
    h.register_client(&test_keys::identity(0, "alice"));
    let (_, reply) = h.register_client(&test_keys::identity(1, "ALICE"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::NickTaken)]
    );
    // Same onion key (index 0), other nick and RSA key.
    let same_onion = Identity::new(
        crate::Nick::new("bob").unwrap(),
        test_keys::rsa(2),
        test_keys::onion(0),
    );
    let (_, reply) = h.register_client(&same_onion);
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::AddressTaken)]
    );
}

#[test]
fn the_same_identity_registering_again_replaces_its_stale_connection() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "alice");
    let (old, _) = h.register_client(&alice);
    // A restarted client: same certificate, fresh challenge, new connection.
    let (new, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    assert_eq!(
        h.client_inbox(old),
        vec![ServerMessage::Error(ServerError::Replaced)]
    );
    assert!(h.registry_closed.contains(&old));
    assert_eq!(h.registry.user_count(), 1);
    // The record now belongs to the new connection: closing it removes the user.
    h.registry.handle_closed(new);
    assert_eq!(h.registry.user_count(), 0);
}

#[test]
fn another_key_under_a_registered_nick_and_onion_does_not_replace_it() {
    let mut h = World::registry_only(RegistryConfig::default());
    h.register_client(&test_keys::identity(0, "alice"));
    let impostor = Identity::new(
        crate::Nick::new("alice").unwrap(),
        test_keys::rsa(4),
        test_keys::onion(0),
    );
    let (_, reply) = h.register_client(&impostor);
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::NickTaken)]
    );
}

#[test]
fn a_certificate_from_another_onion_key_is_rejected() {
    let mut h = World::registry_only(RegistryConfig::default());
    let mallory = test_keys::identity(3, "mallory");
    let victim = test_keys::identity(4, "victim");
    let (conn, nonce) = h.connect_client();
    let mut reg = h.registration(&mallory, &nonce, 7000);
    // Mallory claims the victim's onion address with her own certificate signature.
    reg.onion = *victim.address().public_key();
    assert_eq!(
        h.client_send(conn, &ClientMessage::Register(reg)),
        vec![ServerMessage::RegisterRejected(
            RegisterError::BadCertificate
        )]
    );
}

#[test]
fn a_signature_over_another_challenge_is_rejected() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "alice");
    let (_, old_nonce) = h.connect_client();
    let (conn, _) = h.connect_client();
    let reg = h.registration(&alice, &old_nonce, 7000);
    assert_eq!(
        h.client_send(conn, &ClientMessage::Register(reg)),
        vec![ServerMessage::RegisterRejected(RegisterError::BadSignature)]
    );
}

#[test]
fn invalid_fields_get_their_own_rejections() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "alice");
    let (conn, nonce) = h.connect_client();
    let good = h.registration(&alice, &nonce, 7000);
    let cases: Vec<(Registration, RegisterError)> = vec![
        (
            Registration {
                nick: "a b".into(),
                ..good.clone()
            },
            RegisterError::InvalidNick,
        ),
        (
            Registration {
                rsa_public_key: vec![1, 2, 3],
                ..good.clone()
            },
            RegisterError::InvalidKey,
        ),
        (
            Registration {
                port: 0,
                ..good.clone()
            },
            RegisterError::InvalidPort,
        ),
        (
            Registration {
                certificate_signature: Ed25519Signature([0; 64]),
                ..good.clone()
            },
            RegisterError::BadCertificate,
        ),
        (
            // Someone with the RSA key and the certificate, but not the onion key.
            Registration {
                onion_signature: Ed25519Signature(test_keys::onion(9).sign(
                    &crate::registry::onion_proof_bytes(&registration_signed_bytes(
                        None,
                        &nonce,
                        &alice.certificate,
                        7000,
                    )),
                )),
                ..good.clone()
            },
            RegisterError::BadOnionSignature,
        ),
    ];
    for (reg, want) in cases {
        assert_eq!(
            h.client_send(conn, &ClientMessage::Register(reg)),
            vec![ServerMessage::RegisterRejected(want)]
        );
    }
}

#[test]
fn a_registration_must_name_the_registry_it_was_made_for() {
    let registry = test_keys::onion(50).address();
    let mut h = World::registry_only(RegistryConfig {
        onion: Some(registry),
        ..RegistryConfig::default()
    });
    let alice = test_keys::identity(0, "alice");
    // A hostile registry passed this registry's challenge on to alice: she signed it for
    // the registry she dialled, and the answer is no use here.
    let hostile = test_keys::onion(51).address();
    let (conn, nonce) = h.connect_client();
    for elsewhere in [Some(&hostile), None] {
        let reg = h.registration_for(elsewhere, &alice, &nonce, 7000);
        assert_eq!(
            h.client_send(conn, &ClientMessage::Register(reg)),
            vec![ServerMessage::RegisterRejected(RegisterError::BadSignature)]
        );
    }
    let reg = h.registration_for(Some(&registry), &alice, &nonce, 7000);
    assert_eq!(
        h.client_send(conn, &ClientMessage::Register(reg)),
        vec![ServerMessage::Registered]
    );
}

#[test]
fn an_onion_key_that_is_not_a_curve_point_is_invalid_onion() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "alice");
    let (conn, nonce) = h.connect_client();
    let mut reg = h.registration(&alice, &nonce, 7000);
    // y = 2 is not on the curve.
    let mut bad = [0u8; 32];
    bad[0] = 2;
    reg.onion = bad;
    assert_eq!(
        h.client_send(conn, &ClientMessage::Register(reg)),
        vec![ServerMessage::RegisterRejected(RegisterError::InvalidOnion)]
    );
}

#[test]
fn closing_the_connection_unregisters_and_pushes_left() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (watcher, _) = h.connect_client();
    assert!(h.client_send(watcher, &ClientMessage::Subscribe).is_empty());
    let (alice_conn, _) = h.register_client(&test_keys::identity(0, "alice"));
    let pushed = h.client_inbox(watcher);
    assert!(
        matches!(pushed.as_slice(), [ServerMessage::Presence(p)] if matches!(p.as_slice(), [Presence::Joined(r)] if r.nick().as_str() == "alice")),
        "{pushed:?}"
    );
    h.registry.handle_closed(alice_conn);
    h.advance(RegistryConfig::default().presence_interval);
    assert_eq!(
        h.client_inbox(watcher),
        vec![ServerMessage::Presence(vec![Presence::Left(
            crate::Nick::new("alice").unwrap()
        )])]
    );
    let reply = h.client_send(
        watcher,
        &ClientMessage::Lookup {
            request: 1,
            nick: "alice".into(),
        },
    );
    assert_eq!(
        reply,
        vec![ServerMessage::LookupResult {
            request: 1,
            record: None
        }]
    );
}

#[test]
fn presence_joined_is_pushed_to_subscribers_but_not_to_the_registering_connection() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (watcher, _) = h.connect_client();
    h.client_send(watcher, &ClientMessage::Subscribe);
    let alice = test_keys::identity(0, "alice");
    let (conn, nonce) = h.connect_client();
    h.client_send(conn, &ClientMessage::Subscribe);
    let reg = h.registration(&alice, &nonce, 7000);
    assert_eq!(
        h.client_send(conn, &ClientMessage::Register(reg)),
        vec![ServerMessage::Registered]
    );
    let pushed = h.client_inbox(watcher);
    assert!(
        matches!(pushed.as_slice(), [ServerMessage::Presence(p)] if matches!(p.as_slice(), [Presence::Joined(r)] if r.certificate == alice.certificate)),
        "{pushed:?}"
    );
    h.advance(RegistryConfig::default().presence_interval * 4);
    assert!(h.client_inbox(conn).is_empty());
}

/// Registers identity `i` as `nick` on a fresh connection, then unregisters it: two
/// presence changes. Returns the connection.
fn register_and_unregister(h: &mut World, i: usize, nick: &str) -> ConnId {
    let (conn, reply) = h.register_client(&test_keys::identity(i, nick));
    assert_eq!(reply, vec![ServerMessage::Registered]);
    assert_eq!(
        h.client_send(conn, &ClientMessage::Unregister),
        vec![ServerMessage::Unregistered]
    );
    conn
}

#[test]
fn a_presence_storm_reaches_a_subscriber_as_one_coalesced_frame_per_interval() {
    let config = RegistryConfig::default();
    let mut h = World::registry_only(config.clone());
    let (watcher, _) = h.connect_client();
    h.client_send(watcher, &ClientMessage::Subscribe);
    // 200 changes within one instant: 25 nicks, each registered and unregistered 4 times.
    for _ in 0..4 {
        for i in 0..25 {
            register_and_unregister(&mut h, i, &format!("storm{i}"));
        }
    }
    // The first change went out at once; everything after it waits for the interval.
    let first = h.client_inbox(watcher);
    assert_eq!(first.len(), 1, "{first:?}");
    h.advance(config.presence_interval);
    let second = h.client_inbox(watcher);
    let [ServerMessage::Presence(changes)] = second.as_slice() else {
        panic!("one frame per interval: {second:?}");
    };
    // Each nick once, as it is now (gone).
    let mut left: Vec<String> = changes
        .iter()
        .map(|p| match p {
            Presence::Left(n) => n.canonical(),
            other => panic!("every storm nick is gone now: {other:?}"),
        })
        .collect();
    left.sort();
    let mut expected: Vec<String> = (0..25).map(|i| format!("storm{i}")).collect();
    expected.sort();
    assert_eq!(left, expected);
    h.advance(config.presence_interval * 4);
    assert!(h.client_inbox(watcher).is_empty());
    assert!(!h.registry_closed.contains(&watcher));
}

#[test]
fn a_subscriber_that_does_not_read_is_sent_resync_and_never_disconnected() {
    let config = RegistryConfig::default();
    let mut h = World::registry_only(config.clone());
    let (watcher, _) = h.connect_client();
    h.client_send(watcher, &ClientMessage::Subscribe);
    h.slow_readers.insert(watcher);
    for i in 0..30 {
        register_and_unregister(&mut h, i, &format!("n{i}"));
        h.advance(config.presence_interval);
    }
    assert!(h.client_inbox(watcher).is_empty());
    assert!(!h.registry_closed.contains(&watcher));
    // It reads again: it is told it missed changes, and then the news from there on.
    h.slow_readers.clear();
    h.advance(config.presence_interval);
    assert_eq!(
        h.client_inbox(watcher),
        vec![ServerMessage::Presence(vec![Presence::Resync])]
    );
    h.register_client(&test_keys::identity(40, "late"));
    h.advance(config.presence_interval);
    let pushed = h.client_inbox(watcher);
    assert!(
        matches!(pushed.as_slice(), [ServerMessage::Presence(p)] if matches!(p.as_slice(), [Presence::Joined(r)] if r.nick().as_str() == "late")),
        "{pushed:?}"
    );
}

#[test]
fn a_subscriber_further_behind_than_the_backlog_is_sent_resync() {
    let config = RegistryConfig {
        presence_backlog: 4,
        ..RegistryConfig::default()
    };
    let mut h = World::registry_only(config.clone());
    let (watcher, _) = h.connect_client();
    h.client_send(watcher, &ClientMessage::Subscribe);
    // Sent at once: the first change.
    h.register_client(&test_keys::identity(0, "first"));
    assert_eq!(h.client_inbox(watcher).len(), 1);
    for i in 1..4 {
        register_and_unregister(&mut h, i, &format!("n{i}"));
    }
    h.advance(config.presence_interval);
    assert_eq!(
        h.client_inbox(watcher),
        vec![ServerMessage::Presence(vec![Presence::Resync])]
    );
}

#[test]
fn registrations_beyond_the_global_rate_are_refused_as_busy_until_it_refills() {
    let config = RegistryConfig {
        registrations_burst: 2,
        registrations_per_second: 1,
        ..RegistryConfig::default()
    };
    let mut h = World::registry_only(config);
    for i in 0..2 {
        let (_, reply) = h.register_client(&test_keys::identity(i, &format!("n{i}")));
        assert_eq!(reply, vec![ServerMessage::Registered]);
    }
    let (conn, reply) = h.register_client(&test_keys::identity(2, "n2"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::Busy)]
    );
    // The connection stays; once the bucket refills, a registration goes through.
    assert!(!h.registry_closed.contains(&conn));
    h.advance(Duration::from_secs(1));
    let (_, reply) = h.register_client(&test_keys::identity(3, "n3"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
}

#[test]
fn only_the_owner_connection_can_unregister() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (alice_conn, _) = h.register_client(&test_keys::identity(0, "alice"));
    let (other, _) = h.connect_client();
    assert_eq!(
        h.client_send(other, &ClientMessage::Unregister),
        vec![ServerMessage::Error(ServerError::NotRegistered)]
    );
    assert!(h.registry_closed.contains(&other));
    assert_eq!(h.registry.user_count(), 1);
    assert_eq!(
        h.client_send(alice_conn, &ClientMessage::Unregister),
        vec![ServerMessage::Unregistered]
    );
    assert_eq!(h.registry.user_count(), 0);
}

#[test]
fn pages_follow_nick_order_with_prefix_and_continuation() {
    let mut h = World::registry_only(RegistryConfig::default());
    let nicks = ["ann", "anna", "annie", "bob", "ant", "zed"];
    for (i, n) in nicks.iter().enumerate() {
        h.register_client(&test_keys::identity(i, n));
    }
    let (c, _) = h.connect_client();
    let page = |h: &mut World, after: Option<&str>| match h
        .client_send(
            c,
            &ClientMessage::List {
                request: 1,
                prefix: "AN".into(),
                after: after.map(Into::into),
                limit: 2,
            },
        )
        .as_slice()
    {
        [ServerMessage::Page { users, more, .. }] => (
            users
                .iter()
                .map(|u| u.nick().to_string())
                .collect::<Vec<_>>(),
            *more,
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        page(&mut h, None),
        (vec!["ann".to_string(), "anna".into()], true)
    );
    assert_eq!(
        page(&mut h, Some("anna")),
        (vec!["annie".to_string(), "ant".into()], false)
    );
    assert_eq!(
        page(&mut h, Some("aaa")),
        (vec!["ann".to_string(), "anna".into()], true)
    );
}

#[test]
fn garbage_bytes_close_the_connection_with_an_error() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (c, _) = h.connect_client();
    h.registry
        .handle_received(h.now, c, &[0, 0, 0, 3, 1, 0xff, 0xff]);
    assert_eq!(
        h.client_inbox(c),
        vec![ServerMessage::Error(ServerError::Malformed)]
    );
    assert!(h.registry_closed.contains(&c));
    assert_eq!(h.registry.connection_count(), 0);
}

#[test]
fn a_flood_of_messages_is_rate_limited() {
    let mut h = World::registry_only(RegistryConfig {
        burst: 5,
        per_second: 1,
        ..Default::default()
    });
    let (c, _) = h.connect_client();
    let mut bytes = vec![];
    for _ in 0..6 {
        bytes.extend(encode_frame(&ClientMessage::Ping).unwrap());
    }
    h.registry.handle_received(h.now, c, &bytes);
    let out = h.client_inbox(c);
    assert_eq!(out.iter().filter(|m| **m == ServerMessage::Pong).count(), 5);
    assert_eq!(
        out.last(),
        Some(&ServerMessage::Error(ServerError::RateLimited))
    );
}

#[test]
fn tokens_refill_over_time() {
    let mut h = World::registry_only(RegistryConfig {
        burst: 1,
        per_second: 1,
        ..Default::default()
    });
    let (c, _) = h.connect_client();
    assert_eq!(
        h.client_send(c, &ClientMessage::Ping),
        vec![ServerMessage::Pong]
    );
    h.now = h.now + Duration::from_secs(1);
    assert_eq!(
        h.client_send(c, &ClientMessage::Ping),
        vec![ServerMessage::Pong]
    );
}

#[test]
fn a_silent_client_times_out_and_its_user_leaves() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (alice, _) = h.register_client(&test_keys::identity(0, "alice"));
    let deadline = h.now + RegistryConfig::default().heartbeat_timeout;
    h.registry.handle_timeout(deadline);
    assert_eq!(
        h.client_inbox(alice),
        vec![ServerMessage::Error(ServerError::Timeout)]
    );
    assert_eq!(h.registry.user_count(), 0);
    // Only the clock's timer is left.
    assert!(h.registry.poll_timeout().is_some_and(|t| t > deadline));
}

#[test]
fn connections_beyond_the_cap_are_refused() {
    let mut h = World::registry_only(RegistryConfig {
        max_connections: 2,
        ..Default::default()
    });
    h.connect_client();
    h.connect_client();
    assert_eq!(h.registry.accept_connection(h.now), Err(RegistryFull));
}

#[test]
fn registration_attempts_are_capped_per_connection() {
    let mut h = World::registry_only(RegistryConfig {
        max_register_attempts: 2,
        ..Default::default()
    });
    let alice = test_keys::identity(0, "alice");
    let (conn, nonce) = h.connect_client();
    let mut reg = h.registration(&alice, &nonce, 7000);
    reg.port = 0;
    h.client_send(conn, &ClientMessage::Register(reg.clone()));
    h.client_send(conn, &ClientMessage::Register(reg.clone()));
    assert_eq!(
        h.client_send(conn, &ClientMessage::Register(reg)),
        vec![ServerMessage::Error(ServerError::TooManyAttempts)]
    );
}

#[test]
fn shutdown_tells_every_client() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (c, _) = h.connect_client();
    h.registry.shutdown();
    assert_eq!(h.client_inbox(c), vec![ServerMessage::ShuttingDown]);
    assert!(h.registry_closed.contains(&c));
}

proptest::proptest! {
    #[test]
    fn arbitrary_client_bytes_never_panic_and_never_leak_connections(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
        let mut h = World::registry_only(RegistryConfig::default());
        let (c, _) = h.connect_client();
        for chunk in &chunks {
            h.registry.handle_received(h.now, c, chunk);
        }
        while h.registry.poll_output().is_some() {}
        proptest::prop_assert!(h.registry.connection_count() <= 1);
    }
}

#[test]
fn a_full_page_of_3072_bit_keys_still_fits_in_one_frame() {
    // One key for all (3072-bit keys are slow to make): the per-key cap is lifted.
    let mut h = World::registry_only(RegistryConfig {
        max_bindings_per_key: usize::MAX,
        ..RegistryConfig::default()
    });
    let rsa = test_keys::rsa_3072().public().clone();
    for i in 0..150 {
        let (conn, _) = h.connect_client();
        let nick = crate::Nick::new(&format!("user-with-a-long-nick-{i:04}")).unwrap();
        let certificate = crate::identity::KeyBindingCertificate::issue(
            &test_keys::onion(100 + i),
            nick,
            rsa.clone(),
            0,
        );
        h.registry
            .insert_user(
                conn,
                UserRecord {
                    certificate,
                    port: 7000,
                },
            )
            .unwrap();
    }
    let (c, _) = h.connect_client();
    let reply = h.client_send(
        c,
        &ClientMessage::List {
            request: 1,
            prefix: String::new(),
            after: None,
            limit: MAX_PAGE,
        },
    );
    let [
        ServerMessage::Page {
            users, more: true, ..
        },
    ] = reply.as_slice()
    else {
        panic!("{reply:?}")
    };
    assert!(!users.is_empty() && users.len() <= usize::from(MAX_PAGE));
}

#[test]
fn a_client_frame_above_the_client_limit_is_refused_before_buffering() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (c, _) = h.connect_client();
    let prefix = (MAX_CLIENT_FRAME as u32 + 1).to_be_bytes();
    h.registry.handle_received(h.now, c, &prefix);
    assert_eq!(
        h.client_inbox(c),
        vec![ServerMessage::Error(ServerError::Malformed)]
    );
    assert!(h.registry_closed.contains(&c));
}

/// bob under alice's nick: another RSA key and another onion.
fn impostor(nick: &str) -> Identity {
    test_keys::identity(5, nick)
}

#[test]
fn a_nick_stays_bound_to_its_owners_key_after_the_owner_leaves() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "alice");
    let (conn, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    h.registry.handle_closed(conn);
    assert_eq!(h.registry.user_count(), 0);
    // Someone else cannot take the nick a second later…
    let (_, reply) = h.register_client(&impostor("ALICE"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::NickReserved)]
    );
    // …nor use alice's onion address under another nick (it would need alice's onion
    // key; the owner moving to a new nick waits for the reservation too).
    let renamed = Identity::new(
        crate::Nick::new("alice2").unwrap(),
        test_keys::rsa(0),
        test_keys::onion(0),
    );
    let (_, reply) = h.register_client(&renamed);
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(
            RegisterError::AddressReserved
        )]
    );
    // The owner gets it back at once.
    let (_, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
}

#[test]
fn a_binding_lapses_once_its_owner_was_not_seen_for_the_reservation() {
    let config = RegistryConfig {
        reserve_for: Duration::from_secs(3600),
        heartbeat_timeout: Duration::from_secs(10 * 3600),
        ..RegistryConfig::default()
    };
    let mut h = World::registry_only(config);
    let (conn, _) = h.register_client(&test_keys::identity(0, "alice"));
    h.registry.handle_closed(conn);
    h.now = h.now + Duration::from_secs(3599);
    h.registry.handle_timeout(h.now);
    let (_, reply) = h.register_client(&impostor("alice"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::NickReserved)]
    );
    h.now = h.now + Duration::from_secs(2);
    h.registry.handle_timeout(h.now);
    let (_, reply) = h.register_client(&impostor("alice"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
}

#[test]
fn bindings_come_back_after_a_restart_from_what_the_registry_stored() {
    let mut h = World::registry_only(RegistryConfig::default());
    let (conn, _) = h.register_client(&test_keys::identity(0, "alice"));
    h.registry.handle_closed(conn);
    h.client_inbox(conn);
    let mut restored = Bindings::default();
    for op in &h.registry_stored {
        restored.apply(op);
    }
    assert_eq!(&restored, h.registry.bindings());
    // A new registry process, restored from the store.
    h.registry = Registry::restore(
        RegistryConfig::default(),
        restored,
        &mut test_keys::rng(9),
        Instant::ZERO,
    );
    let (_, reply) = h.register_client(&impostor("alice"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::NickReserved)]
    );
}

#[test]
fn bindings_are_capped_and_a_bound_owner_still_gets_back_in() {
    let config = RegistryConfig {
        max_bindings: 1,
        ..RegistryConfig::default()
    };
    let mut h = World::registry_only(config);
    let alice = test_keys::identity(0, "alice");
    let (conn, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    h.registry.handle_closed(conn);
    let (_, reply) = h.register_client(&test_keys::identity(1, "bob"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::RegistryFull)]
    );
    let (_, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    assert_eq!(h.registry.bindings().len(), 1);
}

#[test]
fn lookups_over_budget_are_answered_busy_and_the_registration_stays_until_a_flood() {
    let config = RegistryConfig::default();
    let burst = config.burst;
    let mut h = World::registry_only(config);
    let (c, reply) = h.register_client(&test_keys::identity(0, "alice"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
    // The registration cost 10 tokens; the rest of the burst goes to lookups.
    let lookup = |request| ClientMessage::Lookup {
        request,
        nick: "bob".into(),
    };
    let mut bytes = vec![];
    for request in 0..(burst - 10 + 3) {
        bytes.extend(encode_frame(&lookup(request)).unwrap());
    }
    h.client_bytes(c, &bytes);
    let out = h.client_inbox(c);
    let answered = out
        .iter()
        .filter(|m| matches!(m, ServerMessage::LookupResult { .. }))
        .count();
    let busy: Vec<u32> = out
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Busy { request } => Some(*request),
            _ => None,
        })
        .collect();
    assert_eq!(answered as u32, burst - 10);
    assert_eq!(busy, vec![burst - 10, burst - 9, burst - 8]);
    assert_eq!(h.registry.user_count(), 1, "the registration must stay");
    assert!(!h.registry_closed.contains(&c));
    // A client that keeps going past a burst of refusals is flooding: dropped.
    let mut flood = vec![];
    for request in 0..=burst {
        flood.extend(encode_frame(&lookup(1000 + request)).unwrap());
    }
    h.client_bytes(c, &flood);
    assert_eq!(
        h.client_inbox(c).last(),
        Some(&ServerMessage::Error(ServerError::RateLimited))
    );
    assert!(h.registry_closed.contains(&c));
}

#[test]
fn a_page_and_a_registration_cost_more_than_a_ping() {
    let mut h = World::registry_only(RegistryConfig {
        burst: 12,
        per_second: 1,
        ..Default::default()
    });
    let (c, reply) = h.register_client(&test_keys::identity(0, "alice"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
    // 2 tokens left: a page (5) is refused, two pings (1 each) are answered.
    let page = ClientMessage::List {
        request: 1,
        prefix: String::new(),
        after: None,
        limit: 10,
    };
    assert_eq!(
        h.client_send(c, &page),
        vec![ServerMessage::Busy { request: 1 }]
    );
    assert_eq!(
        h.client_send(c, &ClientMessage::Ping),
        vec![ServerMessage::Pong]
    );
    assert_eq!(
        h.client_send(c, &ClientMessage::Ping),
        vec![ServerMessage::Pong]
    );
}

#[test]
fn a_new_key_with_a_higher_serial_takes_over_the_nick_and_older_certificates_are_refused() {
    let mut h = World::registry_only(RegistryConfig::default());
    let first = test_keys::identity(0, "alice");
    let nick = first.nick.clone();
    let rotated = Identity::with_serial(nick.clone(), test_keys::rsa(5), test_keys::onion(0), 1);
    let (conn, reply) = h.register_client(&first);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    h.close_client(conn);
    // Alice moved to a new RSA key, certified by her onion key with the next serial.
    let (conn, reply) = h.register_client(&rotated);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    h.close_client(conn);
    // Whoever holds her old RSA key cannot bring the old certificate back...
    let (_, reply) = h.register_client(&first);
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(
            RegisterError::StaleCertificate
        )]
    );
    // ...nor can another key at the same serial, nor a higher serial from another onion.
    let same_serial =
        Identity::with_serial(nick.clone(), test_keys::rsa(6), test_keys::onion(0), 1);
    let other_onion =
        Identity::with_serial(nick.clone(), test_keys::rsa(6), test_keys::onion(7), 9);
    for id in [same_serial, other_onion] {
        let (_, reply) = h.register_client(&id);
        assert_eq!(
            reply,
            vec![ServerMessage::RegisterRejected(RegisterError::NickReserved)]
        );
    }
    let stored = h.registry_stored.iter().rev().find_map(|op| match op {
        BindingOp::Bind(b) => Some(b.clone()),
        BindingOp::Release(_) | BindingOp::Revoke(_) | BindingOp::Clock(_) => None,
    });
    assert_eq!(
        stored.map(|b| (b.serial, b.fingerprint)),
        Some((1, rotated.rsa.public().fingerprint()))
    );
}

#[test]
fn invalid_and_refused_registrations_spend_none_of_the_registry_wide_budget() {
    let config = RegistryConfig {
        registrations_burst: 2,
        registrations_per_second: 1,
        ..RegistryConfig::default()
    };
    let mut h = World::registry_only(config);
    let (_, reply) = h.register_client(&test_keys::identity(0, "alice"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
    for i in 0..20 {
        // Garbage: a signature over another challenge...
        let (conn, _) = h.connect_client();
        let wrong = h.registration(&test_keys::identity(1, "bob"), &[i as u8; 32], 7000);
        assert_eq!(
            h.client_send(conn, &ClientMessage::Register(wrong)),
            vec![ServerMessage::RegisterRejected(RegisterError::BadSignature)]
        );
        // ...and a registration that would be refused anyway (the nick is taken).
        let mut other = test_keys::identity(2, "alice");
        other.nick = crate::Nick::new("alice").unwrap();
        let (_, reply) = h.register_client(&other);
        assert_eq!(
            reply,
            vec![ServerMessage::RegisterRejected(RegisterError::NickTaken)]
        );
    }
    // The one token left is still there for an honest client.
    let (_, reply) = h.register_client(&test_keys::identity(3, "carol"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
    let (_, reply) = h.register_client(&test_keys::identity(4, "dave"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::Busy)]
    );
}

#[test]
fn one_key_holds_a_few_nicks_at_most_so_it_cannot_fill_the_binding_table() {
    let mut h = World::registry_only(RegistryConfig::default());
    let cap = RegistryConfig::default().max_bindings_per_key;
    let rsa = test_keys::rsa(0);
    for i in 0..cap + 2 {
        let nick = crate::Nick::new(&format!("sock{i}")).unwrap();
        let id = Identity::new(nick, rsa.clone(), test_keys::onion(10 + i));
        let (_, reply) = h.register_client(&id);
        let expected = if i < cap {
            ServerMessage::Registered
        } else {
            ServerMessage::RegisterRejected(RegisterError::KeyLimit)
        };
        assert_eq!(reply, vec![expected], "registration {i}");
    }
    // A nick the key holds already is no new binding: it registers again.
    let id = Identity::new(
        crate::Nick::new("sock0").unwrap(),
        rsa,
        test_keys::onion(10),
    );
    let (_, reply) = h.register_client(&id);
    assert_eq!(reply, vec![ServerMessage::Registered]);
}

#[test]
fn a_revoked_binding_frees_the_nick_and_its_onion_address_never_registers_again() {
    let mallory = test_keys::identity(5, "bob");
    let mut bindings = Bindings::default();
    bindings.apply(&BindingOp::Bind(Binding {
        nick: mallory.nick.clone(),
        onion: mallory.address(),
        fingerprint: mallory.rsa.public().fingerprint(),
        last_seen: RegistryTime(0),
        serial: u64::MAX,
    }));
    bindings.apply(&BindingOp::Revoke(mallory.nick.clone()));
    assert!(bindings.of_nick("bob").is_none());
    assert!(bindings.is_revoked(&mallory.address()));
    assert_eq!(bindings.held_by_key(&mallory.rsa.public().fingerprint()), 0);
    let restored = Bindings::from_stored(
        [],
        bindings.revoked().copied().collect::<Vec<_>>(),
        RegistryTime(0),
    );
    let mut h = World::registry_only(RegistryConfig::default());
    h.registry = Registry::restore(
        RegistryConfig::default(),
        restored,
        &mut test_keys::rng(1),
        h.now,
    );
    // Even with the highest serial, the leaked onion key registers nothing.
    let (_, reply) = h.register_client(&mallory);
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(
            RegisterError::AddressRevoked
        )]
    );
    let (_, reply) = h.register_client(&test_keys::identity(1, "bob"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
}

/// Regression: a registry started once with its wall clock 31 days ahead let every
/// binding lapse at start, and impostors took the nicks. Reservations now count the
/// registry's own running time: however long it was down, and whatever the wall clock
/// says, a nick passes on only after the registry ran for the whole reservation.
#[test]
fn a_binding_lapses_only_after_the_registry_itself_ran_for_the_whole_reservation() {
    let config = RegistryConfig {
        reserve_for: Duration::from_secs(3600),
        heartbeat_timeout: Duration::from_secs(10 * 3600),
        ..RegistryConfig::default()
    };
    let mut h = World::registry_only(config.clone());
    let (conn, _) = h.register_client(&test_keys::identity(0, "alice"));
    h.registry.handle_closed(conn);
    h.now = h.now + Duration::from_secs(1800);
    h.registry.handle_timeout(h.now);
    h.registry.shutdown();
    h.run();
    // Down for 31 days (or started with its clock a month ahead: the same to it).
    let mut disk = Bindings::default();
    for op in &h.registry_stored {
        disk.apply(op);
    }
    h.now = h.now + Duration::from_secs(31 * 86_400);
    h.registry = Registry::restore(config, disk, &mut test_keys::rng(3), h.now);
    let (_, reply) = h.register_client(&impostor("alice"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(RegisterError::NickReserved)]
    );
    // Half an hour of its own running time later, the reservation is over.
    h.now = h.now + Duration::from_secs(1801);
    h.registry.handle_timeout(h.now);
    let (_, reply) = h.register_client(&impostor("alice"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
}

#[test]
fn while_its_store_takes_no_writes_the_registry_refuses_new_bindings_and_serves_the_rest() {
    let mut h = World::registry_only(RegistryConfig::default());
    let alice = test_keys::identity(0, "alice");
    let (conn, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    h.registry.handle_closed(conn);
    h.run();
    let mut disk = Bindings::default();
    for op in &h.registry_stored {
        disk.apply(op);
    }
    // Carol registers in the drain whose writes the store refuses: her binding is not on
    // the disk, so her registration is undone and refused as passing.
    let (carol, _) = h.register_client(&test_keys::identity(2, "carol"));
    let stored = h.registry_stored.len();
    let lost = vec![RegistryOutput::Transmit {
        conn: carol,
        bytes: Vec::new(),
    }];
    h.registry.writes_refused(disk, lost);
    assert_eq!(
        h.client_inbox(carol),
        vec![ServerMessage::RegisterRejected(
            RegisterError::StoreUnavailable
        )]
    );
    assert!(h.registry.bindings().of_nick("carol").is_none());
    // A new nick needs a binding nobody could record: refused, as a passing condition.
    let (_, reply) = h.register_client(&test_keys::identity(1, "bob"));
    assert_eq!(
        reply,
        vec![ServerMessage::RegisterRejected(
            RegisterError::StoreUnavailable
        )]
    );
    // The owner of a stored binding comes back; lookups are answered.
    let (_, reply) = h.register_client(&alice);
    assert_eq!(reply, vec![ServerMessage::Registered]);
    let (c, _) = h.connect_client();
    let reply = h.client_send(
        c,
        &ClientMessage::Lookup {
            request: 1,
            nick: "alice".into(),
        },
    );
    assert!(
        matches!(
            reply.as_slice(),
            [ServerMessage::LookupResult {
                record: Some(_),
                ..
            }]
        ),
        "{reply:?}"
    );
    h.now = h.now + Duration::from_secs(600);
    h.registry.handle_timeout(h.now);
    assert_eq!(
        h.registry_stored.len(),
        stored,
        "nothing was asked to be stored"
    );
    // Writes again: bob gets in, and the clock is stored.
    h.registry.store_available_again();
    let (_, reply) = h.register_client(&test_keys::identity(1, "bob"));
    assert_eq!(reply, vec![ServerMessage::Registered]);
    assert!(h.registry_stored.len() > stored);
}
