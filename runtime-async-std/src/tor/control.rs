//! A small async Tor control-port client: authenticate (none, cookie, safe cookie or
//! password), publish an onion service with our own key (`ADD_ONION ED25519-V3:`), and
//! read bootstrap progress and listeners. The reply parser is sans-IO (`reply.rs`).
//!
//! Why not the `tor-interface` crate: its control-port client is blocking and comes with
//! its own process management and Arti support; ours needs four commands on async-std,
//! and a reply parser we can fuzz. See docs/TOR.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use data_encoding::HEXUPPER;
use hmac::{Hmac, KeyInit, Mac};
use p2pchat_core::identity::{OnionAddress, OnionIdentity};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::TorError;
use super::reply::{Reply, ReplyParser, key_values};
use super::trust::ControlTrust;

/// An authenticated control-port connection. Onion services added through it live as
/// long as it stays open.
pub struct ControlConnection {
    stream: TcpStream,
    parser: ReplyParser,
    pending: std::collections::VecDeque<Reply>,
    /// Asynchronous events (status 650), kept apart from command replies.
    events: std::collections::VecDeque<Reply>,
    addr: SocketAddr,
}

/// Asynchronous events kept until read; older ones are dropped beyond this.
const MAX_QUEUED_EVENTS: usize = 256;

const SERVER_TO_CONTROLLER: &[u8] = b"Tor safe cookie authentication server-to-controller hash";
const CONTROLLER_TO_SERVER: &[u8] = b"Tor safe cookie authentication controller-to-server hash";

impl ControlConnection {
    /// Connects to the control port at `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, TorError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| TorError::ControlUnreachable {
                addr,
                why: e.to_string(),
            })?;
        Ok(Self {
            stream,
            parser: ReplyParser::new(),
            pending: Default::default(),
            events: Default::default(),
            addr,
        })
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, TorError> {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| self.lost(e))?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, TorError> {
        loop {
            if let Some(reply) = self.pending.pop_front() {
                return Ok(reply);
            }
            self.read_more().await?;
        }
    }

    /// Subscribes to asynchronous events (`SETEVENTS`), e.g. `HS_DESC`.
    pub async fn set_events(&mut self, events: &str) -> Result<(), TorError> {
        let reply = self.command(&format!("SETEVENTS {events}")).await?;
        if reply.is_ok() {
            Ok(())
        } else {
            Err(TorError::Refused {
                command: "SETEVENTS",
                message: reply.message().to_owned(),
            })
        }
    }

    /// The next asynchronous event (after [`ControlConnection::set_events`]): its text,
    /// e.g. `HS_DESC UPLOADED <service id> …`.
    pub async fn next_event(&mut self) -> Result<String, TorError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event.message().to_owned());
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> Result<(), TorError> {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.map_err(|e| self.lost(e))?;
        if n == 0 {
            return Err(TorError::ControlClosed(self.addr));
        }
        let replies = self
            .parser
            .push(buf.get(..n).unwrap_or_default())
            .map_err(TorError::ControlReply)?;
        for reply in replies {
            if reply.status() == 650 {
                // Events nobody reads must not pile up: keep the newest.
                if self.events.len() >= MAX_QUEUED_EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(reply);
            } else {
                self.pending.push_back(reply);
            }
        }
        Ok(())
    }

    fn lost(&self, e: std::io::Error) -> TorError {
        TorError::ControlUnreachable {
            addr: self.addr,
            why: e.to_string(),
        }
    }

    /// Authenticates, trusting the port only as far as `trust` allows: SAFECOOKIE with a
    /// cookie file that only tor (or we) could have written, a password only to a port that
    /// asks for one (`HASHEDPASSWORD`), and NULL or plain COOKIE only if `trust` allows them.
    /// Nothing secret (no cookie, no password, no onion key) goes to a port that fails this.
    pub async fn authenticate(&mut self, trust: &ControlTrust) -> Result<(), TorError> {
        let info = self.command("PROTOCOLINFO 1").await?;
        if !info.is_ok() {
            return Err(TorError::Refused {
                command: "PROTOCOLINFO",
                message: info.message().to_owned(),
            });
        }
        let auth = info
            .lines
            .iter()
            .find_map(|l| l.text.strip_prefix("AUTH "))
            .map(key_values)
            .unwrap_or_default();
        let get = |k: &str| {
            auth.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let methods: Vec<String> = get("METHODS")
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect();
        let has = |m: &str| methods.iter().any(|x| x == m);
        let addr = self.addr;
        let read_cookie = || -> Result<Zeroizing<Vec<u8>>, TorError> {
            let path = PathBuf::from(get("COOKIEFILE").ok_or(TorError::NoAuthMethod)?);
            trust.read_cookie(&path)
        };
        let command = if has("SAFECOOKIE") {
            let cookie = read_cookie()?;
            self.safe_cookie(&cookie).await?
        } else if let (true, Some(pw)) = (has("HASHEDPASSWORD"), trust.password.as_deref()) {
            format!(
                "AUTHENTICATE \"{}\"",
                pw.replace('\\', "\\\\").replace('"', "\\\"")
            )
        } else if has("COOKIE") && trust.allow_plain_cookie {
            format!("AUTHENTICATE {}", HEXUPPER.encode(&read_cookie()?))
        } else if has("NULL") && trust.allow_null {
            "AUTHENTICATE".to_owned()
        } else if has("HASHEDPASSWORD") {
            return Err(TorError::PasswordNeeded);
        } else if has("COOKIE") {
            return Err(TorError::PlainCookieRefused { addr });
        } else if has("NULL") {
            return Err(TorError::NullAuthRefused { addr });
        } else {
            return Err(TorError::NoAuthMethod);
        };
        let reply = self.command(&command).await?;
        if !reply.is_ok() {
            return Err(TorError::AuthFailed(reply.message().to_owned()));
        }
        Ok(())
    }

    /// The SAFECOOKIE exchange: proves we can read the cookie without sending it, and
    /// checks that the server can too. Returns the AUTHENTICATE command.
    async fn safe_cookie(&mut self, cookie: &[u8]) -> Result<String, TorError> {
        let mut client_nonce = [0u8; 32];
        getrandom::fill(&mut client_nonce).map_err(|e| TorError::Rng(e.to_string()))?;
        let reply = self
            .command(&format!(
                "AUTHCHALLENGE SAFECOOKIE {}",
                HEXUPPER.encode(&client_nonce)
            ))
            .await?;
        if !reply.is_ok() {
            return Err(TorError::AuthFailed(reply.message().to_owned()));
        }
        let fields = key_values(reply.message().trim_start_matches("AUTHCHALLENGE "));
        let field = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| data_encoding::HEXUPPER_PERMISSIVE.decode(v.as_bytes()).ok())
        };
        let (Some(server_hash), Some(server_nonce)) = (field("SERVERHASH"), field("SERVERNONCE"))
        else {
            return Err(TorError::AuthFailed(
                "tor's AUTHCHALLENGE answer lacks SERVERHASH or SERVERNONCE".into(),
            ));
        };
        let mac = |key: &[u8]| -> Result<Vec<u8>, TorError> {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .map_err(|_| TorError::AuthFailed("HMAC key".into()))?;
            m.update(cookie);
            m.update(&client_nonce);
            m.update(&server_nonce);
            Ok(m.finalize().into_bytes().to_vec())
        };
        let expected = mac(SERVER_TO_CONTROLLER)?;
        // Not secret: the server hash only proves the server knows the cookie.
        if expected != server_hash {
            return Err(TorError::AuthFailed(
                "the control port could not prove it knows the cookie (is it really tor?)".into(),
            ));
        }
        Ok(format!(
            "AUTHENTICATE {}",
            HEXUPPER.encode(&mac(CONTROLLER_TO_SERVER)?)
        ))
    }

    /// Publishes an onion service with `key` whose port `virtual_port` forwards to
    /// `target`. Returns its address (checked to be the key's).
    pub async fn add_onion(
        &mut self,
        key: &OnionIdentity,
        virtual_port: u16,
        target: SocketAddr,
    ) -> Result<OnionAddress, TorError> {
        let command = format!(
            "ADD_ONION {} Flags=DiscardPK Port={virtual_port},{target}",
            key.add_onion_key_arg().as_str()
        );
        let reply = self.command(&command).await?;
        if !reply.is_ok() {
            return Err(TorError::Refused {
                command: "ADD_ONION",
                message: reply.message().to_owned(),
            });
        }
        let expected = key.address();
        match reply.value("ServiceID") {
            Some(id) if id == expected.service_id() => Ok(expected),
            other => Err(TorError::Refused {
                command: "ADD_ONION",
                message: format!(
                    "tor created {:?} instead of {}",
                    other.unwrap_or("nothing"),
                    expected.service_id()
                ),
            }),
        }
    }

    /// Bootstrap progress: percentage and tor's summary.
    pub async fn bootstrap(&mut self) -> Result<(u8, String), TorError> {
        let reply = self.command("GETINFO status/bootstrap-phase").await?;
        let phase = reply.value("status/bootstrap-phase").unwrap_or("");
        let kv = key_values(phase);
        let progress = kv
            .iter()
            .find(|(k, _)| k.ends_with("PROGRESS"))
            .and_then(|(_, v)| v.parse::<u8>().ok())
            .unwrap_or(0);
        let summary = kv
            .iter()
            .find(|(k, _)| k == "SUMMARY")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Ok((progress.min(100), summary))
    }

    /// The SOCKS listeners tor has open.
    pub async fn socks_listeners(&mut self) -> Result<Vec<SocketAddr>, TorError> {
        let reply = self.command("GETINFO net/listeners/socks").await?;
        let value = reply.value("net/listeners/socks").unwrap_or("");
        Ok(value
            .split(' ')
            .filter_map(|a| a.trim_matches('"').parse().ok())
            .collect())
    }

    /// Makes tor exit when this connection closes (for a tor we launched).
    pub async fn take_ownership(&mut self) -> Result<(), TorError> {
        let reply = self.command("TAKEOWNERSHIP").await?;
        if reply.is_ok() {
            Ok(())
        } else {
            Err(TorError::Refused {
                command: "TAKEOWNERSHIP",
                message: reply.message().to_owned(),
            })
        }
    }
}
