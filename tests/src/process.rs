//! Running the real `p2pchat` binary: processes with piped stdin/stdout, read line by line.
//! Tests of the `p2pchat` package pass `env!("CARGO_BIN_EXE_p2pchat")`; others use
//! [`p2pchat_binary`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The `p2pchat` binary of this build (`target/<profile>/p2pchat`), built first if it is
/// missing (as when only this package's tests are run).
pub fn p2pchat_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> → target/<profile>/p2pchat
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let binary = profile_dir.join("p2pchat");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--locked", "-p", "p2pchat", "--bin", "p2pchat"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cannot build p2pchat");
    }
    binary
}

/// The variable p2pchat reads the store's passphrase from.
pub const PASSPHRASE_ENV: &str = "P2PCHAT_PASSPHRASE";
/// The passphrase of test profiles.
pub const TEST_PASSPHRASE: &str = "correct horse battery staple";

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("p2pchat-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An empty configuration file in `dir` (so the user's own is never read).
pub fn empty_config(dir: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, "").unwrap();
    path
}

/// A running `p2pchat` process.
pub struct Proc {
    /// A label for failure messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line seen so far (for failure messages).
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `BINARY ARGS`.
    pub fn start(binary: &Path, name: &str, args: &[&str]) -> Self {
        Self::start_command(Command::new(binary).args(args), name)
    }

    /// Starts a prepared command (for example `strace … p2pchat …`).
    pub fn start_command(command: &mut Command, name: &str) -> Self {
        // Every test profile is encrypted, unless the test says otherwise.
        if !command
            .get_envs()
            .any(|(k, _)| k == std::ffi::OsStr::new(PASSPHRASE_ENV))
        {
            command.env(PASSPHRASE_ENV, TEST_PASSPHRASE);
        }
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {line}"));
            }
        });
        Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Types `/quit` and waits for a clean exit (code 0).
    pub fn quit(&mut self) {
        self.send("/quit");
        let code = self.wait();
        assert_eq!(
            code,
            0,
            "{} did not quit cleanly:\n{}",
            self.name,
            self.output()
        );
    }

    /// Waits (up to 30 s) for a line containing `needle`; returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, Duration::from_secs(30))
    }

    /// Waits up to `limit` for a line containing `needle`; returns it.
    pub fn expect_within(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: no line containing {needle:?}; saw:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Types a line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (up to 30 s) for the process to exit; returns its exit code.
    pub fn wait(&mut self) -> i32 {
        self.wait_within(Duration::from_secs(30))
    }

    /// Waits up to `limit` for the process to exit; returns its exit code.
    pub fn wait_within(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect what is left of the output for assertions.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; saw:\n{}",
                self.name,
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (what `kill` and service managers send).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills it at once (like a crash or a power cut).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// All output so far, joined.
    pub fn output(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a registry in direct mode on a free port; returns it and its port.
pub fn start_registry(binary: &Path, dir: &Path) -> (Proc, u16) {
    let mut server = Proc::start_command(&mut registry_command(binary, dir), "server");
    let line = server.expect("p2pchat registry listening on");
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (server, port)
}

/// `p2pchat server` in direct mode on a free loopback port, with its data in `dir`.
pub fn registry_command(binary: &Path, dir: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args([
            "server",
            "--tor",
            "direct",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(empty_config(dir))
        .arg("--data-dir")
        .arg(dir.join("registry-data"));
    command
}

/// Starts `p2pchat chat` with the configuration `config` (written to `dir/custom.toml`),
/// its data in `dir/data`, and `extra` arguments.
pub fn chat_with_config(binary: &Path, dir: &Path, config: &str, extra: &[&str]) -> Proc {
    let path = dir.join("custom.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.join("data");
    let mut args = vec![
        "chat",
        "--config",
        path.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Proc::start(binary, "chat", &args)
}

/// Starts `p2pchat chat` in direct mode as `nick`, with its own data directory.
pub fn start_chat(
    binary: &Path,
    dir: &Path,
    nick: &str,
    registry_port: u16,
    extra: &[&str],
) -> Proc {
    let config = empty_config(dir);
    let data = dir.join(format!("{nick}-data"));
    let server = format!("127.0.0.1:{registry_port}");
    let listen = if extra.contains(&"--listen") {
        None
    } else {
        Some("127.0.0.1:0")
    };
    let mut args = vec![
        "chat", "--tor", "direct", "--nick", nick, "--server", &server,
    ];
    if let Some(l) = listen {
        args.extend_from_slice(&["--listen", l]);
    }
    args.extend_from_slice(&[
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    Proc::start(binary, nick, &args)
}
