//! `launch` mode: start our own `tor` with a generated torrc in our data directory. Its
//! SOCKS and control ports are chosen by tor (`auto`) on loopback, its control port
//! accepts only cookie authentication, and it exits with us (`__OwningControllerProcess`
//! and `TAKEOWNERSHIP`).

use core::time::Duration;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::TorError;
use super::control::ControlConnection;
use super::trust::{ControlTrust, owner_of};

/// A tor process we started. Killed when dropped.
pub struct LaunchedTor {
    child: Child,
    /// Its control port.
    pub control: SocketAddr,
    /// Its SOCKS port (none while its network is disabled).
    pub socks: Option<SocketAddr>,
    /// Its log file (for error messages).
    pub log: PathBuf,
}

impl Drop for LaunchedTor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long tor may take to open its control port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The torrc we write. `extra` lines come last (bridges, a private network's
/// DirAuthority lines, …).
pub fn torrc(dir: &Path, extra: &[String]) -> String {
    let mut rc = format!(
        "# Written by p2pchat; rewritten at every start.\n\
         DataDirectory {data}\n\
         SocksPort 127.0.0.1:auto\n\
         ControlPort 127.0.0.1:auto\n\
         ControlPortWriteToFile {port_file}\n\
         CookieAuthentication 1\n\
         __OwningControllerProcess {pid}\n\
         Log notice file {log}\n",
        data = dir.join("data").display(),
        port_file = dir.join("control-port").display(),
        pid = std::process::id(),
        log = dir.join("tor.log").display(),
    );
    for line in extra {
        rc.push_str(line);
        rc.push('\n');
    }
    rc
}

/// Starts `binary` with a torrc in `dir` (created 0700 by the caller), waits for its
/// control port, authenticates and takes ownership. Does not wait for bootstrap.
pub async fn launch(
    binary: &Path,
    dir: &Path,
    extra: &[String],
) -> Result<(LaunchedTor, ControlConnection), TorError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| TorError::Io {
            what,
            path,
            why: e.to_string(),
        }
    };
    let data = dir.join("data");
    std::fs::create_dir_all(&data).map_err(io("cannot create", &data))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // tor refuses a DataDirectory that others can read.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot set permissions of", &data))?;
    }
    let rc_path = dir.join("torrc");
    std::fs::write(&rc_path, torrc(dir, extra)).map_err(io("cannot write", &rc_path))?;
    let defaults = dir.join("torrc-defaults");
    std::fs::write(&defaults, "").map_err(io("cannot write", &defaults))?;
    let port_file = dir.join("control-port");
    let _ = std::fs::remove_file(&port_file);
    let log = dir.join("tor.log");
    let child = Command::new(binary)
        .arg("-f")
        .arg(&rc_path)
        .arg("--defaults-torrc")
        .arg(&defaults)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                TorError::TorNotInstalled(binary.to_owned())
            } else {
                TorError::Io {
                    what: "cannot start",
                    path: binary.to_owned(),
                    why: e.to_string(),
                }
            }
        })?;
    let mut launched = LaunchedTor {
        child,
        control: SocketAddr::from(([127, 0, 0, 1], 0)),
        socks: None,
        log,
    };
    launched.control = wait_for_control_port(&mut launched, &port_file).await?;
    let mut control = ControlConnection::connect(launched.control).await?;
    let trust = ControlTrust::launched(data.join("control_auth_cookie"), owner_of(dir));
    control.authenticate(&trust).await?;
    control.take_ownership().await?;
    launched.socks = control.socks_listeners().await?.into_iter().next();
    Ok((launched, control))
}

/// Waits for tor to write its control port file (its readiness signal), watching that it
/// has not exited.
async fn wait_for_control_port(
    launched: &mut LaunchedTor,
    port_file: &Path,
) -> Result<SocketAddr, TorError> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(port_file)
            && let Some(addr) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("PORT="))
                .and_then(|a| a.parse().ok())
        {
            return Ok(addr);
        }
        if let Ok(Some(status)) = launched.child.try_wait() {
            return Err(TorError::TorExited {
                status: status.to_string(),
                log_tail: log_tail(&launched.log),
            });
        }
        if started.elapsed() > START_TIMEOUT {
            return Err(TorError::TorExited {
                status: "no control port after 60 s".into(),
                log_tail: log_tail(&launched.log),
            });
        }
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
}

/// The last lines of tor's log, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
