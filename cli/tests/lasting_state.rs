//! Lasting state with real `p2pchat` processes on loopback (direct mode, encrypted stores):
//! messages that wait for a contact who is not running, that survive SIGKILL of either side
//! at any moment, a registry and contacts that refuse an impostor, and stores that refuse
//! to open wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::path::{Path, PathBuf};
use std::time::Duration;

use p2pchat_tests::process::{
    Proc, empty_config, registry_command, start_chat, start_registry, temp_dir,
};
use p2pchat_tests::tor_network::free_port;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

/// Bob's arguments: he accepts requests, and keeps his port across restarts as an onion
/// service keeps its virtual port.
fn bob_args(port: u16) -> Vec<String> {
    vec![
        "--auto-accept".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ]
}

fn start(dir: &Path, nick: &str, registry: u16, extra: &[String]) -> Proc {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut p = start_chat(bin(), dir, nick, registry, &extra);
    p.expect(&format!("you are {nick}"));
    p
}

/// Alice and bob become contacts: one message each way.
fn become_contacts(alice: &mut Proc, bob: &mut Proc) {
    alice.send("/connect bob");
    alice.expect("bob: connected");
    alice.send("hello bob");
    alice.expect("#1 delivered to bob");
    bob.expect("<alice> hello bob");
}

/// How many entries of `/history alice` in a fresh bob process show `text`.
fn times_in_history(dir: &Path, registry: u16, bob_port: u16, text: &str) -> usize {
    let mut bob = start(dir, "bob", registry, &bob_args(bob_port));
    bob.send("/history alice 1000");
    bob.send("/fingerprint");
    bob.expect("* you (bob)");
    let n = bob
        .seen
        .iter()
        .filter(|l| l.starts_with("  [") && l.ends_with(&format!("<alice> {text}")))
        .count();
    bob.quit();
    n
}

#[test]
fn messages_to_a_contact_who_is_not_running_arrive_once_when_they_start_with_the_registry_down() {
    let dir = temp_dir("offline-contact");
    let (mut server, port, bob_port, mut alice) = contacts_with_bob_gone(&dir);

    // Bob is not running: the message is accepted and waits. His conversation stays the
    // current one, so plain text waits too.
    alice.expect("bob closed the chat");
    alice.send("are you there?");
    alice.expect("#2 to bob queued");
    alice.send("/msg bob while you were away");
    alice.expect("#3 to bob queued");
    alice.send("/outbox");
    alice.expect("#3 to bob, written");

    // The registry goes away too; bob comes back anyway and can be reached directly.
    server.kill();
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    // (stderr and stdout are read apart: the line may come before or after "you are bob")
    if !bob
        .output()
        .contains("retrying the registry in the background")
    {
        bob.expect("retrying the registry in the background");
    }
    alice.send("/retry bob");
    bob.expect("<alice> are you there?");
    bob.expect("<alice> while you were away");
    alice.expect("#3 delivered to bob");
    // Switching to a chat shows its recent history, from the store.
    bob.send("/switch alice");
    bob.expect("the last 3 messages with alice");
    bob.expect("<alice> hello bob");
    alice.quit();
    bob.quit();
    let shown = bob
        .seen
        .iter()
        .filter(|l| l.starts_with("<alice> while you were away"))
        .count();
    assert_eq!(shown, 1, "{}", bob.output());
    assert_eq!(
        times_in_history(&dir, port, bob_port, "while you were away"),
        1
    );
}

/// A registry, and alice and bob who became contacts; bob has quit. Returns the registry,
/// its port, bob's port and alice.
fn contacts_with_bob_gone(dir: &Path) -> (Proc, u16, u16, Proc) {
    let (server, port) = start_registry(bin(), dir);
    let bob_port = free_port().unwrap();
    let mut alice = start(dir, "alice", port, &[]);
    let mut bob = start(dir, "bob", port, &bob_args(bob_port));
    become_contacts(&mut alice, &mut bob);
    bob.quit();
    (server, port, bob_port, alice)
}

/// Whether alice's `/outbox` says nothing waits.
fn outbox_is_empty(alice: &mut Proc) -> bool {
    let from = alice.seen.len();
    alice.send("/outbox");
    alice.send("/fingerprint");
    alice.expect("* you (alice)");
    alice.seen[from..]
        .iter()
        .any(|l| l.contains("nothing is waiting to be delivered"))
}

/// A deterministic stream of delays from the seed printed on failure.
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self, max: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % max
    }
}

#[test]
fn sigkill_of_sender_or_receiver_at_random_moments_never_loses_or_repeats_a_message() {
    let dir = temp_dir("sigkill");
    let (_server, port) = start_registry(bin(), &dir);
    let bob_port = free_port().unwrap();
    let alice_port = free_port().unwrap();
    let alice_args = vec!["--listen".into(), format!("127.0.0.1:{alice_port}")];
    let mut alice = start(&dir, "alice", port, &alice_args);
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    become_contacts(&mut alice, &mut bob);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut delays = Delays(seed);
    let rounds = 8;
    for round in 0..rounds {
        let text = format!("round {round} of seed {seed}");
        alice.send(&format!("/msg bob {text}"));
        alice.expect("to bob queued");
        std::thread::sleep(Duration::from_millis(delays.next_ms(400)));
        // Even rounds kill the sender, odd rounds the receiver, wherever they are.
        if round % 2 == 0 {
            alice.kill();
            alice = start(&dir, "alice", port, &alice_args);
        } else {
            bob.kill();
            bob = start(&dir, "bob", port, &bob_args(bob_port));
        }
        alice.send("/retry bob");
    }
    // Everything waiting is delivered in the end.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !outbox_is_empty(&mut alice) {
        assert!(
            std::time::Instant::now() < deadline,
            "seed {seed}: messages still waiting:\n{}\nbob:\n{}",
            alice.output(),
            bob.output()
        );
        std::thread::sleep(Duration::from_millis(500));
        alice.send("/retry bob");
    }
    alice.quit();
    bob.quit();
    let mut stored = 0;
    for round in 0..rounds {
        let text = format!("round {round} of seed {seed}");
        let n = times_in_history(&dir, port, bob_port, &text);
        assert_eq!(n, 1, "seed {seed}: {text:?} is in bob's history {n} times");
        stored += n;
    }
    assert_eq!(stored, rounds);
}

#[test]
fn the_registry_and_then_a_contact_refuse_an_impostor_who_takes_a_nick_with_another_key() {
    let dir = temp_dir("impostor");
    let (mut server, port, bob_port, mut alice) = contacts_with_bob_gone(&dir);
    // The registry keeps "bob" bound to bob's key: another key is refused.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut early = start_chat(bin(), &elsewhere, "bob", port, &[]);
    early.expect("reserved by another key");
    assert_eq!(early.wait(), 5, "{}", early.output());
    // Bob himself gets it back at once.
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    bob.quit();
    // The registry is wiped: it remembers nothing, so anyone can register "bob" now.
    server.kill();
    let wiped = dir.join("wiped");
    std::fs::create_dir_all(&wiped).unwrap();
    let (_server, port2) = start_registry(bin(), &wiped);
    alice.quit();
    let mut alice = start(&dir, "alice", port2, &[]);
    let mut impostor = start(&wiped, "bob", port2, &["--auto-accept".into()]);
    impostor.send("/connect alice");
    alice.expect("possible impersonation: the key of bob changed");
    impostor.expect("does not match");
    // Nothing is sent to the new key until alice checks it.
    alice.send("/msg bob are you really bob?");
    alice.expect("#2 to bob queued");
    alice.send("/contacts");
    alice.expect("KEY CHANGED");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!impostor.output().contains("are you really bob"));
    alice.quit();
    impostor.quit();
}

#[test]
fn an_owner_whose_nick_an_impostor_took_keeps_chatting_with_contacts_until_the_operator_revokes_it()
{
    let dir = temp_dir("nick-taken");
    let (mut server, _, bob_port, mut alice) = contacts_with_bob_gone(&dir);
    // The registry loses its data (alice keeps running, and keeps trying the old one);
    // an impostor registers "bob" first, then leaves: the new registry binds "bob" to the
    // impostor's key.
    server.kill();
    let wiped = dir.join("wiped");
    std::fs::create_dir_all(&wiped).unwrap();
    let (mut server, port) = start_registry(bin(), &wiped);
    let mut impostor = start(&wiped, "bob", port, &[]);
    impostor.quit();
    // The real bob is refused at the registry, and keeps running: his contacts are
    // dialled directly, and he is told what to do.
    let mut bob = start_chat(
        bin(),
        &dir,
        "bob",
        port,
        &bob_args(bob_port)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    bob.expect("reserved by another key");
    let advice = bob.expect("your contacts can still reach you");
    assert!(advice.contains("p2pchat server --revoke bob"), "{advice}");
    // (stdout and stderr are read apart: this line may have come before the others.)
    if !bob.seen.iter().any(|l| l.contains("you are bob")) {
        bob.expect("you are bob");
    }
    bob.send("/msg alice still here");
    alice.expect("<bob> still here");
    alice.send("/msg bob and you are still you");
    bob.expect("<alice> and you are still you");
    bob.quit();
    // The operator revokes the impostor's binding (with the registry stopped: the store
    // is locked while it runs).
    let revoke = |wiped: &Path| {
        let out = registry_command(bin(), wiped)
            .args(["--revoke", "bob"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = revoke(&wiped);
    assert_eq!(
        code,
        Some(3),
        "a running registry's store was changed: {out}"
    );
    assert!(out.contains("in use by another p2pchat"), "{out}");
    server.kill();
    let (code, out) = revoke(&wiped);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("revoked bob"), "{out}");
    let (_server, port) = start_registry(bin(), &wiped);
    // The impostor's onion address can never register again; bob gets his nick back.
    let mut impostor = start_chat(bin(), &wiped, "bob", port, &[]);
    impostor.expect("revoked this onion address");
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    assert!(
        bob.seen
            .iter()
            .any(|l| l.contains("registered: you are online")),
        "{}",
        bob.output()
    );
    bob.quit();
    drop(impostor);
    alice.quit();
}

#[test]
fn a_new_key_keeps_the_nick_at_the_registry_and_a_contact_is_warned_until_they_verify_it() {
    let dir = temp_dir("new-key");
    let (_server, port, bob_port, mut alice) = contacts_with_bob_gone(&dir);
    let (code, out) = id_with(
        &dir,
        &dir.join("bob-data"),
        p2pchat_tests::process::TEST_PASSPHRASE,
        &["--new-key"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("key serial:  1"), "{out}");
    let fingerprint = out
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("the new fingerprint")
        .trim()
        .to_owned();
    // The registry binds "bob" to the old key; the new one, certified by bob's onion key
    // with the next serial, takes it over.
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    assert!(
        bob.seen
            .iter()
            .any(|l| l.starts_with("* you are bob") && l.contains(&fingerprint)),
        "bob registered with another key: {:?}",
        bob.seen
    );
    // Alice pinned the old key: the new one is refused, loudly, until she checks it.
    bob.send("/connect alice");
    alice.expect("possible impersonation: the key of bob changed");
    alice.send(&format!("/verify bob {fingerprint}"));
    alice.expect("bob's key is verified");
    alice.send("/msg bob with your new key");
    bob.expect("<alice> with your new key");
    alice.quit();
    bob.quit();
}

/// Every file under `dir` and its bytes, but for the stores' lock files (`*.lock`): they
/// hold only the process id of whoever last opened the store.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "lock") {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs `p2pchat id` on `data` with `passphrase`; returns its exit code and output.
fn id(dir: &Path, data: &Path, passphrase: &str) -> (i32, String) {
    id_with(dir, data, passphrase, &[])
}

/// [`id`] with more arguments.
fn id_with(dir: &Path, data: &Path, passphrase: &str, extra: &[&str]) -> (i32, String) {
    let config = empty_config(dir);
    let mut p = Proc::start_command(
        std::process::Command::new(bin())
            .args(["id", "--config", config.to_str().unwrap(), "--data-dir"])
            .arg(data)
            .args(extra)
            .env("P2PCHAT_PASSPHRASE", passphrase),
        "id",
    );
    let code = p.wait();
    (code, p.output())
}

/// Opening the damaged store in `data` exits 3 with a sentence naming the file, and
/// leaves every file as it was.
fn refused_as_damaged_without_change(dir: &Path, data: &Path, how: &str) {
    let before = snapshot(data);
    let (code, out) = id(dir, data, p2pchat_tests::process::TEST_PASSPHRASE);
    assert_eq!(code, 3, "{how}: {out}");
    assert!(
        out.contains("damaged") && out.contains("p2pchat.db"),
        "{how}: {out}"
    );
    assert_eq!(snapshot(data), before, "opening a {how} store changed it");
}

#[test]
fn a_wrong_passphrase_or_a_damaged_store_is_refused_with_exit_3_and_changes_nothing() {
    let dir = temp_dir("store-errors");
    let (_server, port) = start_registry(bin(), &dir);
    let mut alice = start(&dir, "alice", port, &[]);
    let mut bob = start(&dir, "bob", port, &bob_args(free_port().unwrap()));
    become_contacts(&mut alice, &mut bob);
    let marker = "MARKER-the-text-must-not-be-on-disk-8d1f";
    alice.send(&format!("/msg bob {marker}"));
    alice.expect("#2 delivered to bob");
    bob.expect(marker);
    alice.quit();
    bob.quit();

    // The text is nowhere in either data directory's bytes; neither is the other's nick
    // or onion address.
    let onion_of = |p: &Proc, nick: &str| -> String {
        let line = p
            .seen
            .iter()
            .find(|l| l.contains(&format!("you are {nick} at ")))
            .unwrap();
        line.split(" at ")
            .nth(1)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let onions = [onion_of(&alice, "alice"), onion_of(&bob, "bob")];
    for (who, other) in [("alice", 1), ("bob", 0)] {
        let other_nick = ["alice", "bob"][other];
        for (path, bytes) in snapshot(&dir.join(format!("{who}-data"))) {
            let mut needles = vec![
                marker.as_bytes(),
                b"hello bob".as_slice(),
                onions[other].as_bytes(),
            ];
            // A three-letter nick would turn up in random ciphertext now and then.
            if other_nick.len() >= 5 {
                needles.push(other_nick.as_bytes());
            }
            for needle in needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds {:?} in clear",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }

    let data = dir.join("alice-data");
    let db = data.join("p2pchat.db");
    let before = snapshot(&data);
    let (code, out) = id(&dir, &data, "not the passphrase");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("passphrase does not open"), "{out}");
    assert!(out.contains("p2pchat.db"), "{out}");
    assert_eq!(
        snapshot(&data),
        before,
        "a wrong passphrase changed the files"
    );

    let good = std::fs::read(&db).unwrap();
    // Truncated: half the file is gone.
    std::fs::write(&db, &good[..good.len() / 2]).unwrap();
    refused_as_damaged_without_change(&dir, &data, "truncated");

    // Corrupted: the header of every page after the first overwritten (what a bad disk
    // or a careless program does); SQLite's integrity check finds it.
    let mut bad = good.clone();
    for page in (4096..bad.len()).step_by(4096) {
        for b in &mut bad[page..page + 12] {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&db, &bad).unwrap();
    refused_as_damaged_without_change(&dir, &data, "corrupted");

    // The good store still opens.
    std::fs::write(&db, &good).unwrap();
    let (code, out) = id(&dir, &data, p2pchat_tests::process::TEST_PASSPHRASE);
    assert_eq!(code, 0, "{out}");
}

/// A small tmpfs mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a 2 MiB tmpfs at `dir`; `None` if this is not root (or mounting fails).
    fn mount(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2M", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    /// Fills what is left of it.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[0u8; 1]);
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_message_typed_when_the_disk_is_full_is_refused_and_the_chat_carries_on_when_space_returns() {
    let dir = temp_dir("full-disk");
    let Some(disk) = Tmpfs::mount(&dir.join("small")) else {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    };
    let (_server, port) = start_registry(bin(), &dir);
    let bob_port = free_port().unwrap();
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    // Alice's data directory is on the small disk.
    let mut alice = start(&disk.0, "alice", port, &[]);
    become_contacts(&mut alice, &mut bob);
    let filler = disk.fill();
    alice.send("/msg bob written on a full disk");
    alice.expect("disk is full");
    alice.expect("p2pchat is paused");
    // Still running, and saying what it cannot do.
    alice.send("/msg bob also refused");
    alice.expect("Nothing was done: p2pchat is paused");
    // Space comes back: alice carries on by herself, from what she had stored.
    std::fs::remove_file(filler).unwrap();
    alice.expect("storing works again");
    alice.send("/msg bob after the disk was freed");
    alice.expect("#2 delivered to bob");
    bob.expect("<alice> after the disk was freed");
    assert!(outbox_is_empty(&mut alice), "{}", alice.output());
    alice.quit();
    bob.quit();
    // Only #1 and the message after the disk was freed were ever queued.
    let out = alice.output();
    let queued: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("to bob queued"))
        .collect();
    assert_eq!(
        queued,
        ["* #1 to bob queued", "* #2 to bob queued"],
        "a message that was not stored was reported queued:\n{out}"
    );
    for text in ["written on a full disk", "also refused"] {
        assert!(!bob.output().contains(text), "{}", bob.output());
    }
}

#[test]
fn a_receiver_whose_disk_is_full_acknowledges_nothing_until_it_stored_the_message() {
    let dir = temp_dir("full-disk-receiver");
    let Some(disk) = Tmpfs::mount(&dir.join("small")) else {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    };
    let (_server, port) = start_registry(bin(), &dir);
    let bob_port = free_port().unwrap();
    // Bob's data directory is on the small disk.
    let mut bob = start(&disk.0, "bob", port, &bob_args(bob_port));
    let mut alice = start(&dir, "alice", port, &[]);
    become_contacts(&mut alice, &mut bob);
    let filler = disk.fill();
    alice.send("while bob's disk is full");
    bob.expect("p2pchat is paused");
    alice.send("/outbox");
    alice.expect("#2 to bob");
    assert!(!alice.output().contains("#2 delivered to bob"));
    std::fs::remove_file(filler).unwrap();
    bob.expect("storing works again");
    // Alice's chat reconnects (bob's side closed): the message is delivered once.
    alice.send("/retry bob");
    bob.expect("<alice> while bob's disk is full");
    alice.expect("#2 delivered to bob");
    alice.quit();
    bob.quit();
    let shown = bob
        .seen
        .iter()
        .filter(|l| l.starts_with("<alice> while bob's disk is full"))
        .count();
    assert_eq!(shown, 1, "{}", bob.output());
}

#[test]
fn a_registry_whose_disk_is_full_keeps_serving_refuses_new_nicks_and_takes_them_once_it_can_store()
{
    let dir = temp_dir("registry-full");
    let Some(disk) = Tmpfs::mount(&dir.join("small")) else {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    };
    let (mut server, port) = start_registry(bin(), &disk.0);
    let mut bob = start(&dir, "bob", port, &["--auto-accept".into()]);
    let filler = disk.fill();
    // A new nick needs a binding the registry cannot record: refused as passing, and
    // tried again.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut carol = start_chat(bin(), &elsewhere, "carol", port, &[]);
    carol.expect("cannot record new registrations right now");
    assert_ne!(carol.wait(), 0, "{}", carol.output());
    // Bob, registered before, is still listed and looked up.
    bob.send("/users");
    bob.expect("bob");
    server.expect("the registry cannot store");
    // Space comes back: carol's next try gets her nick.
    std::fs::remove_file(filler).unwrap();
    server.expect("the registry can store again");
    let mut carol = start(&elsewhere, "carol", port, &[]);
    bob.send("/users");
    bob.expect("carol");
    carol.quit();
    bob.quit();
    server.terminate();
    assert_eq!(server.wait(), 0, "{}", server.output());
}

/// Debian's libfaketime, wherever its architecture puts it.
fn libfaketime() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
}

#[test]
fn a_registry_started_with_its_clock_a_month_ahead_gives_no_nick_away() {
    let dir = temp_dir("registry-clock");
    let (mut server, port) = start_registry(bin(), &dir);
    let mut alice = start(&dir, "alice", port, &[]);
    alice.quit();
    server.terminate();
    assert_eq!(server.wait(), 0, "{}", server.output());
    // The same registry, its wall clock 31 days ahead (its reservation is 30 days):
    // Debian's libfaketime preloaded into the registry itself (no wrapper process, so it
    // gets the signals), its monotonic clock left true (timed waits use it).
    let libfaketime = libfaketime().expect("Debian's faketime (.ci/run installs it)");
    let mut command = registry_command(bin(), &dir);
    command
        .env("LD_PRELOAD", libfaketime)
        .env("FAKETIME", "+31d")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let mut server = Proc::start_command(&mut command, "server");
    let line = server.expect("p2pchat registry listening on");
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    // (stderr and stdout are read apart: the warning may come before or after)
    let noticed = "reservations count only the time the registry runs";
    if !server.output().contains(noticed) {
        server.expect(noticed);
    }
    // Another key under alice's nick: still hers.
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut impostor = start_chat(bin(), &elsewhere, "alice", port, &[]);
    impostor.expect("reserved by another key");
    assert_eq!(impostor.wait(), 5, "{}", impostor.output());
    // And alice herself is back at once.
    let mut alice = start(&dir, "alice", port, &[]);
    alice.quit();
    server.terminate();
}

#[test]
fn a_second_chat_on_the_same_data_directory_is_refused_naming_the_first() {
    let dir = temp_dir("two-chats");
    let (_server, port) = start_registry(bin(), &dir);
    let mut alice = start(&dir, "alice", port, &[]);
    // The same data directory, another port: refused before it reads or writes anything.
    let other_port = free_port().unwrap();
    let listen = format!("127.0.0.1:{other_port}");
    let mut second = start_chat(bin(), &dir, "alice", port, &["--listen", &listen]);
    assert_eq!(second.wait(), 3, "{}", second.output());
    let out = second.output();
    assert!(
        out.contains("is in use by another p2pchat (process"),
        "{out}"
    );
    assert!(out.contains("p2pchat.db"), "{out}");
    // The first one carries on.
    alice.send("/fingerprint");
    alice.expect("* you (alice)");
    alice.quit();
}

/// Copies directory `from` to `to` (which must not exist), files only: a user's backup.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_data_directory_restored_from_an_older_backup_never_reports_a_message_delivered_that_was_not_shown()
 {
    let dir = temp_dir("restored-backup");
    let (_server, port) = start_registry(bin(), &dir);
    let bob_port = free_port().unwrap();
    let mut alice = start(&dir, "alice", port, &[]);
    let mut bob = start(&dir, "bob", port, &bob_args(bob_port));
    become_contacts(&mut alice, &mut bob);
    // The backup is taken after message #1.
    alice.quit();
    let data = dir.join("alice-data");
    let backup = dir.join("alice-backup");
    copy_dir(&data, &backup);
    let mut alice = start(&dir, "alice", port, &[]);
    alice.send("/connect bob");
    alice.expect("bob: connected");
    for text in ["two", "three"] {
        alice.send(text);
    }
    alice.expect("#3 delivered to bob");
    bob.expect("<alice> three");
    alice.quit();

    // Restored: the older copy numbers its next message #2 again.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let mut alice = start(&dir, "alice", port, &[]);
    alice.send("/msg bob written after the restore");
    alice.expect("#2 to bob queued");
    alice.expect("bob already has your messages up to #3");
    alice.expect("#2 to bob not delivered: this data directory is an older copy");
    alice.send("/msg bob and one more");
    alice.expect("#4 delivered to bob");
    bob.expect("<alice> and one more");
    alice.quit();
    bob.quit();
    let out = alice.output();
    assert!(!out.contains("#2 delivered to bob"), "{out}");
    // Bob never showed the message that collided with his #2; he was shown each message
    // once.
    assert!(
        !bob.output().contains("written after the restore"),
        "{}",
        bob.output()
    );
    for text in ["hello bob", "two", "three", "and one more"] {
        assert_eq!(times_in_history(&dir, port, bob_port, text), 1, "{text}");
    }
}
