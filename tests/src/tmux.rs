//! A real terminal for interface tests: a detached tmux session running a command, driven
//! with `send-keys` and read with `capture-pane`.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux session, killed when dropped.
pub struct Tmux {
    name: String,
}

impl Tmux {
    /// Starts `shell_command` (run by `sh -c`) in a new detached session of `width` ×
    /// `height`, with `env` set.
    pub fn start(
        name: &str,
        width: u16,
        height: u16,
        env: &[(&str, &str)],
        shell_command: &str,
    ) -> Self {
        let name = format!("{name}-{}", std::process::id());
        // A session left by an earlier run of this process id (none, usually: then tmux
        // complains, unheard).
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let mut command = Command::new("tmux");
        command.args(["new-session", "-d", "-s", &name, "-x"]);
        command
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string());
        for (k, v) in env {
            command.arg("-e").arg(format!("{k}={v}"));
        }
        command.args(["sh", "-c", shell_command]);
        let status = command
            .status()
            .expect("tmux is installed (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        Self { name }
    }

    /// Types `keys` (tmux key names: "Enter", "C-c", or literal text with `literal`).
    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", text])
            .status()
            .unwrap();
        assert!(status.success());
        self.keys(&["Enter"]);
    }

    /// Pastes `text` as a terminal paste (bracketed, when the program asked for it).
    pub fn paste(&self, text: &str) {
        let set = Command::new("tmux")
            .args(["set-buffer", "--", text])
            .status()
            .unwrap();
        assert!(set.success());
        let paste = Command::new("tmux")
            .args(["paste-buffer", "-p", "-t", &self.name])
            .status()
            .unwrap();
        assert!(paste.success());
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (up to 30 s) until the screen satisfies `ok`; returns it. Panics with the
    /// screen otherwise.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the screen never showed {what}; it shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen contains `text`.
    pub fn expect(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}
