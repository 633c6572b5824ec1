//! A private Tor network on 127.0.0.1, built the way Tor's chutney builds one: three
//! directory authorities, relays, and client tors, all from Debian's `tor` and
//! `tor-gencert`. Every instance gets its own DirAuthority lines and `TestingTorNetwork 1`
//! (with which tor refuses the public authorities), binds to 127.0.0.1 only, and is killed
//! by PID when the network is dropped — also when a test fails.

use core::time::Duration;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use p2pchat_async_std::tor::ControlConnection;

/// What went wrong building the network.
#[derive(Debug)]
pub struct NetworkError(pub String);

impl core::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(what: impl core::fmt::Display) -> NetworkError {
    NetworkError(what.to_string())
}

/// A free loopback port, for a process started next to bind. It is drawn at random from
/// below Linux's ephemeral range (32768–60999): a port the kernel handed out (`bind` to
/// port 0, or an outgoing connection's source port) comes from that range, so between our
/// check and the other process's `bind` nothing else in the test run takes it, as it did
/// with a released ephemeral port ("Address already in use" in about one full run of two).
pub fn free_port() -> Result<u16, NetworkError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    const LOW: u64 = 20_000;
    const SPAN: u64 = 12_000;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(err)?
        .as_nanos() as u64;
    let mut x =
        (nanos ^ (u64::from(std::process::id()) << 32) ^ DRAWS.fetch_add(1, Ordering::Relaxed))
            .max(1);
    for _ in 0..200 {
        // xorshift64*: spreads the draws of parallel tests over the span.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let port = (LOW + x.wrapping_mul(0x2545_f491_4f6c_dd1d) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(err("no free loopback port between 20000 and 32000"))
}

/// One running tor.
pub struct TorNode {
    /// Its nickname.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its control port.
    pub control: SocketAddr,
    /// Its SOCKS port (clients only).
    pub socks: Option<SocketAddr>,
    child: Option<Child>,
}

impl TorNode {
    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("notice.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

impl Drop for TorNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The whole network. Dropping it kills every tor.
pub struct PrivateNetwork {
    /// Where everything lives.
    pub dir: PathBuf,
    /// The torrc lines every member needs (TestingTorNetwork, DirAuthority, …): also what a
    /// `launch`-mode p2pchat needs as `tor.extra_torrc`.
    pub common: Vec<String>,
    /// Authorities, relays.
    pub servers: Vec<TorNode>,
    /// Client tors (SOCKS + control port, cookie authentication).
    pub clients: Vec<TorNode>,
    /// When it started.
    pub started: Instant,
}

struct Authority {
    name: String,
    dir: PathBuf,
    or_port: u16,
    dir_port: u16,
    control: u16,
    v3ident: String,
    fingerprint: String,
}

fn private_dir(dir: &Path) -> Result<(), NetworkError> {
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<String, NetworkError> {
    let out = cmd
        .output()
        .map_err(|e| err(format!("{what}: cannot run ({e}); is tor installed?")))?;
    if !out.status.success() {
        return Err(err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `tor --list-fingerprint` for a relay configured by `torrc`.
fn relay_fingerprint(dir: &Path, torrc: &Path) -> Result<String, NetworkError> {
    run(
        Command::new("tor")
            .arg("--list-fingerprint")
            .arg("-f")
            .arg(torrc)
            .arg("--DisableNetwork")
            .arg("1")
            .arg("--Log")
            .arg("err stderr"),
        "tor --list-fingerprint",
    )?;
    let text = std::fs::read_to_string(dir.join("fingerprint")).map_err(err)?;
    text.split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| err("no fingerprint written"))
}

impl PrivateNetwork {
    /// Builds and starts 3 authorities, `relays` relays and `clients` client tors under
    /// `dir`, and waits until every client has bootstrapped.
    pub async fn start(dir: &Path, relays: usize, clients: usize) -> Result<Self, NetworkError> {
        let started = Instant::now();
        let _ = std::fs::remove_dir_all(dir);
        private_dir(dir)?;
        let empty = dir.join("empty");
        std::fs::write(&empty, "").map_err(err)?;
        let mut authorities = Vec::new();
        for i in 0..3 {
            authorities.push(Self::make_authority(dir, i)?);
        }
        let mut common = vec![
            "TestingTorNetwork 1".to_owned(),
            "PathsNeededToBuildCircuits 0.67".to_owned(),
            "TestingDirAuthVoteHSDir *".to_owned(),
            "TestingDirAuthVoteGuard *".to_owned(),
            "V3AuthNIntervalsValid 2".to_owned(),
            format!("GeoIPFile {}", empty.display()),
            format!("GeoIPv6File {}", empty.display()),
        ];
        for a in &authorities {
            common.push(format!(
                "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
                a.name, a.or_port, a.v3ident, a.dir_port, a.fingerprint
            ));
        }
        let mut network = Self {
            dir: dir.to_owned(),
            common,
            servers: Vec::new(),
            clients: Vec::new(),
            started,
        };
        for a in &authorities {
            let rc = network.authority_torrc(a);
            let node = network.spawn(&a.name, &a.dir, &rc, a.control, None)?;
            network.servers.push(node);
        }
        for i in 0..relays {
            let name = format!("relay{i}");
            let rdir = dir.join(&name);
            private_dir(&rdir)?;
            let or_port = free_port()?;
            let control = free_port()?;
            let mut rc = network.base_torrc(&name, &rdir, control);
            let _ = writeln!(rc, "ORPort 127.0.0.1:{or_port}");
            rc.push_str("Address 127.0.0.1\nExitRelay 0\nAssumeReachable 1\n");
            let node = network.spawn(&name, &rdir, &rc, control, None)?;
            network.servers.push(node);
        }
        for i in 0..clients {
            let name = format!("client{i}");
            let cdir = dir.join(&name);
            private_dir(&cdir)?;
            let control = free_port()?;
            let socks = free_port()?;
            let mut rc = network.base_torrc(&name, &cdir, control);
            let _ = writeln!(rc, "SocksPort 127.0.0.1:{socks}");
            let node = network.spawn(
                &name,
                &cdir,
                &rc,
                control,
                Some(SocketAddr::from(([127, 0, 0, 1], socks))),
            )?;
            network.clients.push(node);
        }
        for client in &network.clients {
            network.wait_bootstrapped(client).await?;
        }
        Ok(network)
    }

    fn make_authority(dir: &Path, i: usize) -> Result<Authority, NetworkError> {
        let name = format!("auth{i}");
        let adir = dir.join(&name);
        let keys = adir.join("keys");
        private_dir(&adir)?;
        private_dir(&keys)?;
        let or_port = free_port()?;
        let dir_port = free_port()?;
        let control = free_port()?;
        let mut gencert = Command::new("tor-gencert")
            .current_dir(&keys)
            .args([
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-m",
                "12",
                "-a",
            ])
            .arg(format!("127.0.0.1:{dir_port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("tor-gencert: {e}; is tor installed?")))?;
        if let Some(mut stdin) = gencert.stdin.take() {
            stdin.write_all(b"\n").map_err(err)?;
        }
        let out = gencert.wait_with_output().map_err(err)?;
        if !out.status.success() {
            return Err(err(format!(
                "tor-gencert failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let cert = std::fs::read_to_string(keys.join("authority_certificate")).map_err(err)?;
        let v3ident = cert
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint "))
            .ok_or_else(|| err("no fingerprint in authority_certificate"))?
            .trim()
            .to_owned();
        // The relay identity: a torrc with just what --list-fingerprint needs.
        let probe = adir.join("probe-torrc");
        std::fs::write(
            &probe,
            format!(
                "DataDirectory {}\nORPort 127.0.0.1:{or_port}\nAddress 127.0.0.1\nNickname {name}\n",
                adir.display()
            ),
        )
        .map_err(err)?;
        let fingerprint = relay_fingerprint(&adir, &probe)?;
        Ok(Authority {
            name,
            dir: adir,
            or_port,
            dir_port,
            control,
            v3ident,
            fingerprint,
        })
    }

    fn base_torrc(&self, name: &str, dir: &Path, control: u16) -> String {
        let mut rc = format!(
            "DataDirectory {d}\nNickname {name}\nRunAsDaemon 0\nLog notice file {d}/notice.log\n\
             ControlPort 127.0.0.1:{control}\nCookieAuthentication 1\nShutdownWaitLength 0\n\
             SafeLogging 0\nSocksPort 0\n",
            d = dir.display()
        );
        for line in &self.common {
            rc.push_str(line);
            rc.push('\n');
        }
        rc
    }

    fn authority_torrc(&self, a: &Authority) -> String {
        let mut rc = self.base_torrc(&a.name, &a.dir, a.control);
        let _ = write!(
            rc,
            "AuthoritativeDirectory 1\nV3AuthoritativeDirectory 1\nContactInfo {name}@test\n\
             ORPort 127.0.0.1:{or}\nDirPort 127.0.0.1:{dirp}\nAddress 127.0.0.1\n\
             AssumeReachable 1\nExitRelay 0\n\
             TestingV3AuthInitialVotingInterval 10\nTestingV3AuthInitialVoteDelay 2\n\
             TestingV3AuthInitialDistDelay 2\nV3AuthVotingInterval 10\nV3AuthVoteDelay 2\n\
             V3AuthDistDelay 2\n",
            name = a.name,
            or = a.or_port,
            dirp = a.dir_port
        );
        rc
    }

    fn spawn(
        &self,
        name: &str,
        dir: &Path,
        torrc: &str,
        control: u16,
        socks: Option<SocketAddr>,
    ) -> Result<TorNode, NetworkError> {
        // A later `SocksPort` line replaces the base `SocksPort 0` for clients.
        let torrc = match socks {
            Some(_) => torrc.replacen("SocksPort 0\n", "", 1),
            None => torrc.to_owned(),
        };
        let path = dir.join("torrc");
        std::fs::write(&path, torrc).map_err(err)?;
        let child = Command::new("tor")
            .arg("-f")
            .arg(&path)
            .arg("--defaults-torrc")
            .arg(self.dir.join("empty"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("cannot start tor for {name}: {e}")))?;
        Ok(TorNode {
            name: name.to_owned(),
            dir: dir.to_owned(),
            control: SocketAddr::from(([127, 0, 0, 1], control)),
            socks,
            child: Some(child),
        })
    }

    /// Waits (up to 120 s) for `node` to report 100 % bootstrap on its control port.
    pub async fn wait_bootstrapped(&self, node: &TorNode) -> Result<(), NetworkError> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut control = loop {
            match ControlConnection::connect(node.control).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    async_std::task::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(err(format!("{}: {e}\n{}", node.name, node.log_tail()))),
            }
        };
        control
            .authenticate(&p2pchat_async_std::tor::ControlTrust::system(None))
            .await
            .map_err(|e| err(format!("{}: {e}", node.name)))?;
        loop {
            let (percent, _) = control
                .bootstrap()
                .await
                .map_err(|e| err(format!("{}: {e}", node.name)))?;
            if percent >= 100 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "{} did not bootstrap in 120 s ({percent}%):\n{}",
                    node.name,
                    node.log_tail()
                )));
            }
            async_std::task::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits (up to 120 s) until `onion:port` accepts a connection through `client`'s SOCKS
    /// port: the onion service's descriptor is published and reachable.
    pub async fn wait_reachable(
        &self,
        client: &TorNode,
        onion: &str,
        port: u16,
    ) -> Result<Duration, NetworkError> {
        let started = Instant::now();
        let socks = client
            .socks
            .ok_or_else(|| err(format!("{} has no SOCKS port", client.name)))?;
        let transport = p2pchat_async_std::Transport::Socks(socks);
        loop {
            match transport.dial(onion, port).await {
                Ok(_) => return Ok(started.elapsed()),
                Err(e) if started.elapsed() > Duration::from_secs(120) => {
                    return Err(err(format!("{onion}:{port} unreachable after 120 s: {e}")));
                }
                Err(_) => async_std::task::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}
