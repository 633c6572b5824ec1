//! Running the real `p2pchat` binary: processes with piped stdin/stdout, read line by line.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_p2pchat")
}

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
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line seen so far (for failure messages).
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `p2pchat ARGS`.
    pub fn start(name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(args)
            .env("RUST_LOG", "warn")
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

    /// Waits (up to 30 s) for a line containing `needle`; returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
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
        let deadline = Instant::now() + Duration::from_secs(30);
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
pub fn start_registry(dir: &Path) -> (Proc, u16) {
    let config = empty_config(dir);
    let data = dir.join("registry-data");
    let mut server = Proc::start(
        "server",
        &[
            "server",
            "--tor",
            "direct",
            "--listen",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let line = server.expect("p2pchat registry listening on");
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    (server, port)
}

/// Starts `p2pchat chat` in direct mode as `nick`, with its own data directory.
pub fn start_chat(dir: &Path, nick: &str, registry_port: u16, extra: &[&str]) -> Proc {
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
    Proc::start(nick, &args)
}
