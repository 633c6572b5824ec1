//! A process on this machine pretending to be Tor's control port never gets the onion key
//! (`ADD_ONION`), the cookie, or a password from `p2pchat chat`, and the user reads what
//! was refused and why. The fake port is a plain TCP listener that answers like tor and
//! records every line it receives.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use p2pchat_tests::process::{Proc, chat_with_config, temp_dir};
use sha2::Sha256;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_p2pchat"))
}

/// What the fake control port offers.
#[derive(Clone)]
enum Offer {
    /// `METHODS=NULL`.
    Null,
    /// `METHODS=COOKIE,SAFECOOKIE` with this cookie file, whose content the impostor knows
    /// (it wrote it), so its SAFECOOKIE server hash is right.
    SafeCookie { file: PathBuf, cookie: Vec<u8> },
    /// `METHODS=COOKIE` pointing at this file (the real tor's cookie, say).
    PlainCookie { file: PathBuf },
}

/// A fake control port: answers PROTOCOLINFO with `offer`, AUTHCHALLENGE correctly for
/// the cookie it knows, everything else with what a bootstrapped tor would say. Returns
/// its port and every line it received.
fn fake_control_port(offer: Offer) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream).lines();
            while let Some(Ok(line)) = lines.next() {
                log.lock().unwrap().push(line.clone());
                let reply = answer(&offer, &line);
                if out.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, received)
}

fn answer(offer: &Offer, line: &str) -> String {
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    if line.starts_with("PROTOCOLINFO") {
        let auth = match offer {
            Offer::Null => "METHODS=NULL".to_owned(),
            Offer::SafeCookie { file, .. } => {
                format!("METHODS=COOKIE,SAFECOOKIE COOKIEFILE={}", quoted(file))
            }
            Offer::PlainCookie { file } => format!("METHODS=COOKIE COOKIEFILE={}", quoted(file)),
        };
        return format!(
            "250-PROTOCOLINFO 1\r\n250-AUTH {auth}\r\n250-VERSION Tor=\"0.4.8.10\"\r\n250 OK\r\n"
        );
    }
    if let (Some(client_nonce), Offer::SafeCookie { cookie, .. }) =
        (line.strip_prefix("AUTHCHALLENGE SAFECOOKIE "), offer)
    {
        let client_nonce = data_encoding::HEXUPPER_PERMISSIVE
            .decode(client_nonce.trim().as_bytes())
            .unwrap();
        let server_nonce = [7u8; 32];
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(
            b"Tor safe cookie authentication server-to-controller hash",
        )
        .unwrap();
        mac.update(cookie);
        mac.update(&client_nonce);
        mac.update(&server_nonce);
        let hash = data_encoding::HEXUPPER.encode(&mac.finalize().into_bytes());
        let nonce = data_encoding::HEXUPPER.encode(&server_nonce);
        return format!("250 AUTHCHALLENGE SERVERHASH={hash} SERVERNONCE={nonce}\r\n");
    }
    if line.starts_with("GETINFO net/listeners/socks") {
        return "250-net/listeners/socks=\"127.0.0.1:9\"\r\n250 OK\r\n".into();
    }
    if line.starts_with("GETINFO status/bootstrap-phase") {
        return "250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=\"Done\"\r\n250 OK\r\n".into();
    }
    if line.starts_with("ADD_ONION") {
        return "512 not today\r\n".into();
    }
    "250 OK\r\n".into()
}

/// `p2pchat chat` in system mode against the fake port, with `extra` lines in `[tor]`.
fn chat_against(dir: &Path, control: u16, extra: &str) -> Proc {
    let registry = p2pchat_core::test_keys::onion(6).address().hostname();
    let config = format!(
        "nick = \"alice\"\n[server]\naddress = \"{registry}\"\nport = 5050\n[tor]\nmode = \"system\"\ncontrol = \"127.0.0.1:{control}\"\n{extra}"
    );
    chat_with_config(bin(), dir, &config, &["--listen", "127.0.0.1:0"])
}

/// A 32-byte cookie file with `mode`, owned by `uid`.
fn cookie_file(dir: &Path, uid: u32, mode: u32) -> (PathBuf, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("control_auth_cookie");
    let cookie = vec![0x42u8; 32];
    std::fs::write(&path, &cookie).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    (path, cookie)
}

fn assert_nothing_secret_sent(received: &Mutex<Vec<String>>, cookie: Option<&[u8]>) {
    let lines = received.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.starts_with("ADD_ONION")),
        "the onion key went to the impostor: {lines:?}"
    );
    if let Some(cookie) = cookie {
        let hex = data_encoding::HEXUPPER.encode(cookie);
        assert!(
            !lines.iter().any(|l| l.to_uppercase().contains(&hex)),
            "the cookie went to the impostor: {lines:?}"
        );
    }
}

#[test]
fn a_control_port_without_authentication_never_gets_the_onion_key() {
    let dir = temp_dir("fake-tor-null");
    let (port, received) = fake_control_port(Offer::Null);
    let mut p = chat_against(&dir, port, "");
    assert_eq!(p.wait(), 4);
    let out = p.output();
    assert!(out.contains("asks for no authentication"), "{out}");
    assert!(out.contains("tor.allow_null_auth"), "{out}");
    assert_nothing_secret_sent(&received, None);
}

#[test]
fn the_fake_port_does_get_add_onion_once_the_user_allows_null_authentication() {
    // The other tests' assertion can fail: with the user's consent, the same fake port is
    // trusted and asked to publish the service.
    let dir = temp_dir("fake-tor-null-allowed");
    let (port, received) = fake_control_port(Offer::Null);
    let mut p = chat_against(&dir, port, "allow_null_auth = true\n");
    assert_eq!(p.wait(), 4);
    assert!(
        p.output().contains("Tor refused ADD_ONION"),
        "{}",
        p.output()
    );
    let lines = received.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("ADD_ONION")),
        "{lines:?}"
    );
}

#[test]
fn a_safecookie_whose_cookie_file_another_user_wrote_is_refused() {
    let dir = temp_dir("fake-tor-safecookie");
    // The impostor (user nobody) wrote the cookie it points at, so it can answer the
    // SAFECOOKIE challenge correctly: only the file's owner gives it away.
    let (file, cookie) = cookie_file(&dir, 65534, 0o600);
    let (port, received) = fake_control_port(Offer::SafeCookie {
        file: file.clone(),
        cookie: cookie.clone(),
    });
    let mut p = chat_against(&dir, port, "");
    assert_eq!(p.wait(), 4);
    let out = p.output();
    assert!(out.contains("refused Tor's control port"), "{out}");
    assert!(out.contains("belongs to user id 65534"), "{out}");
    assert!(out.contains(&file.display().to_string()), "{out}");
    assert_nothing_secret_sent(&received, Some(&cookie));
    let lines = received.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.starts_with("AUTH")),
        "nothing was even attempted: {lines:?}"
    );
}

#[test]
fn a_safecookie_whose_cookie_file_others_can_write_is_refused() {
    let dir = temp_dir("fake-tor-writable");
    let (file, cookie) = cookie_file(&dir, 0, 0o666);
    let (port, received) = fake_control_port(Offer::SafeCookie { file, cookie });
    let mut p = chat_against(&dir, port, "");
    assert_eq!(p.wait(), 4);
    assert!(
        p.output().contains("can be written by other users"),
        "{}",
        p.output()
    );
    assert_nothing_secret_sent(&received, None);
}

#[test]
fn plain_cookie_authentication_never_sends_the_real_cookie() {
    let dir = temp_dir("fake-tor-plain-cookie");
    // The real tor's cookie, readable by us: the impostor wants us to send it.
    let (file, cookie) = cookie_file(&dir, 0, 0o600);
    let (port, received) = fake_control_port(Offer::PlainCookie { file });
    let mut p = chat_against(&dir, port, "");
    assert_eq!(p.wait(), 4);
    let out = p.output();
    assert!(out.contains("only plain COOKIE"), "{out}");
    assert!(out.contains("tor.allow_plain_cookie"), "{out}");
    assert_nothing_secret_sent(&received, Some(&cookie));
}

#[test]
fn remote_tor_ports_and_a_registry_that_is_not_an_onion_are_configuration_errors() {
    let dir = temp_dir("tor-not-loopback");
    let onion = p2pchat_core::test_keys::onion(6).address().hostname();
    for (registry, tor_line, needle) in [
        (onion.as_str(), "socks = \"10.0.0.1:9050\"", "tor.socks"),
        (
            onion.as_str(),
            "control = \"192.168.1.1:9051\"",
            "tor.control",
        ),
        ("registry.example.com", "", "is not an onion address"),
    ] {
        let config = format!(
            "nick = \"alice\"\n[server]\naddress = \"{registry}\"\nport = 5050\n[tor]\nmode = \"system\"\n{tor_line}\n"
        );
        let mut p = chat_with_config(bin(), &dir, &config, &[]);
        assert_eq!(p.wait(), 3, "{}", p.output());
        assert!(p.output().contains(needle), "{}", p.output());
    }
}
