//! Tor: the control-port client, launching our own tor, and the errors of each mode.

pub mod control;
pub mod launch;
pub mod reply;
pub mod trust;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use control::ControlConnection;
pub use launch::LaunchedTor;
pub use trust::ControlTrust;

/// Why Tor could not be used. Each says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorError {
    /// No control port answers.
    #[error(
        "Tor's control port {addr} does not answer ({why}): is Tor running? Start tor or Tor \
         Browser, set tor.control, or use --tor launch"
    )]
    ControlUnreachable {
        /// Where.
        addr: SocketAddr,
        /// What the OS said.
        why: String,
    },
    /// The control connection closed.
    #[error("Tor closed the control connection at {0}")]
    ControlClosed(SocketAddr),
    /// Tor's answer could not be parsed.
    #[error("Tor's control port sent an unreadable reply: {0}")]
    ControlReply(#[from] reply::ReplyError),
    /// Tor refused a command.
    #[error("Tor refused {command}: {message}")]
    Refused {
        /// The command.
        command: &'static str,
        /// Tor's message.
        message: String,
    },
    /// Authentication failed.
    #[error("Tor's control port refused authentication: {0}")]
    AuthFailed(String),
    /// Tor wants a password we do not have.
    #[error(
        "Tor's control port requires a password: set tor.control_password in the \
         configuration (or enable CookieAuthentication in your torrc)"
    )]
    PasswordNeeded,
    /// The control port names a cookie file an impostor could have written.
    #[error(
        "refused Tor's control port: its cookie file {path} {why}. A program pretending to \
         be Tor could have written it, and p2pchat would have handed it your onion key. \
         p2pchat trusts cookie files of root, of the tor user or of you that nobody else \
         can write; check the torrc's CookieAuthFile and its permissions"
    )]
    UntrustedCookie {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The control port accepts anyone, and the user did not allow that.
    #[error(
        "refused Tor's control port {addr}: it asks for no authentication, so any program on \
         this machine can control it, or pretend to be it and take your onion key. Enable \
         CookieAuthentication 1 in the torrc, or set tor.allow_null_auth = true if you trust \
         every user and program on this machine"
    )]
    NullAuthRefused {
        /// Where.
        addr: SocketAddr,
    },
    /// The control port offers only plain COOKIE, and the user did not allow that.
    #[error(
        "refused Tor's control port {addr}: it offers only plain COOKIE authentication, which \
         would send Tor's cookie to whatever listens there. Use a tor that offers SAFECOOKIE \
         (every tor since 0.2.3 does, with CookieAuthentication 1), or set \
         tor.allow_plain_cookie = true"
    )]
    PlainCookieRefused {
        /// Where.
        addr: SocketAddr,
    },
    /// Tor offers no method we support.
    #[error("Tor's control port offers no authentication method p2pchat supports")]
    NoAuthMethod,
    /// The cookie file could not be read.
    #[error(
        "cannot read Tor's authentication cookie {path}: {why}. Run p2pchat as a user who \
         may read it (on Debian: add yourself to the debian-tor group; p2pchat trusts a \
         cookie its group can read only while nobody but tor and you is in that group), or \
         use --tor launch"
    )]
    Cookie {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// `tor` is not installed.
    #[error(
        "cannot start {0}: not found. Install tor (for example `sudo apt install tor`), set \
         tor.binary, or use --tor system with a running Tor Browser"
    )]
    TorNotInstalled(PathBuf),
    /// The tor we started exited.
    #[error("the tor p2pchat started has stopped ({status}). Its log ends with:\n{log_tail}")]
    TorExited {
        /// Exit status.
        status: String,
        /// Last lines of its log.
        log_tail: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {why}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// What the OS said.
        why: String,
    },
    /// The hidden service directory is not usable.
    #[error(
        "the hidden service directory {dir} is not usable: {why}. Check hidden_service.dir: \
         it must be the HiddenServiceDir of your torrc, and tor must have started with it"
    )]
    HiddenServiceDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// No Tor was found at all.
    #[error(
        "no Tor found: nothing answers on the control ports 9051/9151 and `tor` is not on \
         PATH. Install tor, start Tor Browser, or try it locally with --tor direct"
    )]
    NoTor,
    /// The OS RNG failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
}
