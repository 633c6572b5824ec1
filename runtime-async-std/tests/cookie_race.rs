//! Another user on this machine runs a fake control port whose cookie path it keeps
//! swapping between a symbolic link to a file of root's (which a check by path would
//! trust) and a 32-byte file of its own (whose content it knows, so it could answer
//! SAFECOOKIE). However the swaps fall, our client never authenticates to it: it checks
//! what it opened, and a link or file of another user is refused.
//!
//! The attacker runs as `nobody` through `runuser`, so this needs root (CI runs as root);
//! without root it says so and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic here is how a test reports failure

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use p2pchat_async_std::tor::{ControlConnection, ControlTrust};

/// The attacker: a fake control port (SAFECOOKIE with its own cookie) and a thread that
/// swaps the cookie's name as fast as it can. Prints its port, then serves.
const ATTACKER: &str = r#"
import hashlib, hmac, os, socket, sys, threading
d = sys.argv[1]
name, evil, link = d + "/cookie", d + "/evil", d + "/link"
cookie = os.urandom(32)
with open(evil + ".src", "wb") as f:
    f.write(cookie)
os.chmod(evil + ".src", 0o600)
def swap():
    while True:
        for make, tmp in ((lambda: os.symlink(sys.argv[2], link), link),
                          (lambda: os.link(evil + ".src", evil), evil)):
            try:
                make()
            except FileExistsError:
                pass
            os.replace(tmp, name)
def watch():
    sys.stdin.read()  # the test ended (or died): so do we
    os._exit(0)
threading.Thread(target=swap, daemon=True).start()
threading.Thread(target=watch, daemon=True).start()
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
S2C = b"Tor safe cookie authentication server-to-controller hash"
while True:
    c, _ = srv.accept()
    f = c.makefile("rwb")
    for line in f:
        line = line.strip().decode()
        if line.startswith("PROTOCOLINFO"):
            f.write(('250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="%s"\r\n250-VERSION Tor="0.4.8.10"\r\n250 OK\r\n' % name).encode())
        elif line.startswith("AUTHCHALLENGE SAFECOOKIE "):
            cn = bytes.fromhex(line.split()[2]); sn = bytes(32)
            h = hmac.new(S2C, cookie + cn + sn, hashlib.sha256).hexdigest().upper()
            f.write(("250 AUTHCHALLENGE SERVERHASH=%s SERVERNONCE=%s\r\n" % (h, sn.hex().upper())).encode())
        elif line.startswith("AUTHENTICATE"):
            f.write(b"250 OK\r\n")
        else:
            f.write(b"250 OK\r\n")
        f.flush()
    c.close()
"#;

struct Attacker(Child);

impl Drop for Attacker {
    fn drop(&mut self) {
        // Closing its stdin ends the attacker (runuser's child, which kill would miss).
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chown_to_nobody(path: &Path) {
    let status = Command::new("chown")
        .arg("nobody")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_cookie_path_swapped_by_another_user_never_authenticates_us() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root, to run the attacker as another user (runuser -u nobody)");
        return;
    }
    let iterations: usize = std::env::var("COOKIE_RACE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let base = std::env::temp_dir().join(format!("p2pchat-cookie-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's file: passes every check by path (root, 0640), content unknown to nobody.
    let roots = base.join("root_cookie");
    std::fs::write(&roots, [0x42; 32]).unwrap();
    std::fs::set_permissions(&roots, std::fs::Permissions::from_mode(0o640)).unwrap();
    let theirs = base.join("attacker");
    std::fs::create_dir(&theirs).unwrap();
    chown_to_nobody(&theirs);
    let script = base.join("attacker.py");
    std::fs::write(&script, ATTACKER).unwrap();
    let mut child = Command::new("runuser")
        .args(["-u", "nobody", "--", "python3"])
        .arg(&script)
        .arg(&theirs)
        .arg(&roots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runuser and python3");
    let mut port = String::new();
    {
        use std::io::BufRead;
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut port)
            .unwrap();
    }
    let _attacker = Attacker(child);
    let addr = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    // Root and ourselves are trusted owners, as for a system tor.
    let trust = ControlTrust::system(Some(0));
    let (mut refused, mut authenticated) = (0, 0);
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    async_std::task::block_on(async {
        for _ in 0..iterations {
            let mut control = ControlConnection::connect(addr).await.unwrap();
            match control.authenticate(&trust).await {
                Ok(()) => authenticated += 1,
                Err(e) => {
                    refused += 1;
                    let text = e.to_string();
                    let why = if text.contains("symbolic link") {
                        "a link of another user"
                    } else if text.contains("user id") {
                        "a file of another user"
                    } else {
                        "other"
                    };
                    *reasons.entry(why.to_owned()).or_default() += 1;
                }
            }
        }
    });
    let _ = std::io::stderr().write_all(
        format!("{iterations} attempts: {authenticated} authenticated, {refused} refused ({reasons:?})\n")
            .as_bytes(),
    );
    drop(_attacker);
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(
        authenticated, 0,
        "an impostor's port was trusted: {reasons:?}"
    );
    // Both faces of the swap were met and refused, so the race was really run.
    assert!(
        reasons.contains_key("a link of another user"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains_key("a file of another user"),
        "{reasons:?}"
    );
}
