//! How connections leave this process: through Tor's SOCKS5 port (onion names handed to
//! the proxy as domain names, never resolved here), or, in `direct` mode, straight to
//! loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use async_socks5::{Error as SocksError, UnsuccessfulReply};
use async_std::net::TcpStream;
use tokio_util::compat::FuturesAsyncReadCompatExt;

/// How to reach onion services and the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// No Tor: loopback only. An onion address maps to 127.0.0.1 at the port of its
    /// registry record. Not anonymous; for the demo and tests.
    Direct,
    /// Through Tor's SOCKS5 proxy at this address.
    Socks(SocketAddr),
}

/// Why a connection could not be opened. Each says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// Nothing listens on the SOCKS port.
    #[error(
        "Tor is not running: nothing accepts connections on its SOCKS port {0}. Start tor \
         (or Tor Browser), or use --tor launch to let p2pchat start its own"
    )]
    TorNotRunning(SocketAddr),
    /// Tor answered with a general failure: usually a wrong address or a service down.
    #[error(
        "Tor could not reach {host}:{port} (SOCKS general failure): check the address, and \
         that the service is running"
    )]
    SocksGeneralFailure {
        /// Where to.
        host: String,
        /// Which port.
        port: u16,
    },
    /// Tor answered with another failure.
    #[error("Tor could not reach {host}:{port}: {why}")]
    SocksRefused {
        /// Where to.
        host: String,
        /// Which port.
        port: u16,
        /// Tor's reason.
        why: String,
    },
    /// The proxy broke the SOCKS5 protocol.
    #[error("the SOCKS proxy at {proxy} answered with something that is not SOCKS5: {why}")]
    NotSocks {
        /// The proxy.
        proxy: SocketAddr,
        /// What was wrong.
        why: String,
    },
    /// `direct` mode refuses anything but loopback.
    #[error(
        "direct mode only connects to loopback, and {0} is not a loopback address: use a Tor \
         mode (--tor launch or system) to reach other machines"
    )]
    NotLoopback(String),
    /// A direct connection was refused or failed.
    #[error("could not connect to {addr}: {source}")]
    Direct {
        /// Where to.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl Transport {
    /// Opens a byte stream to `host:port`: an onion hostname, or (direct mode, or a
    /// loopback registry) a loopback IP literal or `localhost`.
    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, DialError> {
        match self {
            Self::Direct => {
                let ip = direct_ip(host)?;
                let addr = SocketAddr::new(ip, port);
                TcpStream::connect(addr)
                    .await
                    .map_err(|source| DialError::Direct { addr, source })
            }
            Self::Socks(proxy) => socks_dial(*proxy, host, port).await,
        }
    }
}

/// The loopback address `host` stands for in direct mode. Onion hostnames map to
/// 127.0.0.1; names are never looked up.
fn direct_ip(host: &str) -> Result<IpAddr, DialError> {
    if host.ends_with(".onion") || host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(ip),
        _ => Err(DialError::NotLoopback(host.to_owned())),
    }
}

async fn socks_dial(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, DialError> {
    let stream = match TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(DialError::TorNotRunning(proxy));
        }
        Err(e) => {
            return Err(DialError::NotSocks {
                proxy,
                why: e.to_string(),
            });
        }
    };
    let mut compat = stream.compat();
    // A String target makes async-socks5 send ATYP 3 (domain): Tor resolves it.
    match async_socks5::connect(&mut compat, (host.to_owned(), port), None).await {
        Ok(_) => Ok(compat.into_inner()),
        Err(SocksError::Response(UnsuccessfulReply::GeneralFailure)) => {
            Err(DialError::SocksGeneralFailure {
                host: host.to_owned(),
                port,
            })
        }
        Err(SocksError::Response(reply)) => Err(DialError::SocksRefused {
            host: host.to_owned(),
            port,
            why: describe_reply(reply).to_owned(),
        }),
        Err(e) => Err(DialError::NotSocks {
            proxy,
            why: e.to_string(),
        }),
    }
}

/// SOCKS5 reply codes, including Tor's onion-service extensions (0xF0–0xF7).
fn describe_reply(reply: UnsuccessfulReply) -> &'static str {
    match reply {
        UnsuccessfulReply::GeneralFailure => "general SOCKS server failure",
        UnsuccessfulReply::ConnectionNotAllowedByRules => "connection not allowed by Tor's rules",
        UnsuccessfulReply::NetworkUnreachable => "network unreachable",
        UnsuccessfulReply::HostUnreachable => "host unreachable",
        UnsuccessfulReply::ConnectionRefused => "connection refused by the service",
        UnsuccessfulReply::TtlExpired => "timed out (TTL expired)",
        UnsuccessfulReply::CommandNotSupported => "command not supported",
        UnsuccessfulReply::AddressTypeNotSupported => "address type not supported",
        UnsuccessfulReply::Unassigned(0xF0) => "onion service descriptor not found (is it online?)",
        UnsuccessfulReply::Unassigned(0xF1) => "onion service descriptor is invalid",
        UnsuccessfulReply::Unassigned(0xF2) => "onion service introduction failed",
        UnsuccessfulReply::Unassigned(0xF3) => "onion service rendezvous failed",
        UnsuccessfulReply::Unassigned(0xF4) => "onion service needs client authorization",
        UnsuccessfulReply::Unassigned(0xF5) => "onion service client authorization is wrong",
        UnsuccessfulReply::Unassigned(0xF6) => "not a valid onion address",
        UnsuccessfulReply::Unassigned(0xF7) => "onion service introduction timed out",
        UnsuccessfulReply::Unassigned(_) => "unknown SOCKS failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_std::io::{ReadExt, WriteExt};

    /// A scripted SOCKS5 server answering one connection with `reply`; returns the
    /// connect request it received.
    async fn socks_answering(reply: u8) -> (SocketAddr, async_std::task::JoinHandle<Vec<u8>>) {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = async_std::task::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut greeting = [0u8; 2];
            s.read_exact(&mut greeting).await.unwrap();
            let mut methods = vec![0u8; usize::from(greeting[1])];
            s.read_exact(&mut methods).await.unwrap();
            s.write_all(&[5, 0]).await.unwrap();
            let mut request = vec![0u8; 5];
            s.read_exact(&mut request).await.unwrap();
            let mut rest = vec![0u8; usize::from(request[4]) + 2];
            s.read_exact(&mut rest).await.unwrap();
            request.extend_from_slice(&rest);
            s.write_all(&[5, reply, 0, 1, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            request
        });
        (addr, task)
    }

    #[test]
    fn onion_names_go_to_the_proxy_as_names_and_failures_say_what_to_do() {
        async_std::task::block_on(async {
            let (proxy, fake) = socks_answering(1).await;
            let err = Transport::Socks(proxy)
                .dial("abcdef.onion", 5050)
                .await
                .unwrap_err();
            assert!(
                matches!(err, DialError::SocksGeneralFailure { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("check the address"), "{err}");
            let request = fake.await;
            // CONNECT with ATYP 3 (domain name): the name was not resolved here.
            assert_eq!(&request[..4], &[5, 1, 0, 3]);
            assert_eq!(&request[5..5 + 12], b"abcdef.onion");

            let (proxy, _fake) = socks_answering(0xF0).await;
            let err = Transport::Socks(proxy)
                .dial("abcdef.onion", 5050)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("descriptor not found"), "{err}");
        });
    }

    #[test]
    fn a_closed_socks_port_says_tor_is_not_running() {
        async_std::task::block_on(async {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let err = Transport::Socks(SocketAddr::from(([127, 0, 0, 1], port)))
                .dial("abcdef.onion", 5050)
                .await
                .unwrap_err();
            assert!(matches!(err, DialError::TorNotRunning(_)), "{err}");
        });
    }

    #[test]
    fn direct_mode_maps_onions_to_loopback_and_refuses_everything_else() {
        assert_eq!(
            direct_ip("abc.onion").unwrap(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert!(direct_ip("127.0.0.2").unwrap().is_loopback());
        assert!(direct_ip("[::1]").unwrap().is_loopback());
        assert!(matches!(
            direct_ip("10.0.0.1"),
            Err(DialError::NotLoopback(_))
        ));
        // A name other than localhost is never resolved: refused outright.
        assert!(matches!(
            direct_ip("example.com"),
            Err(DialError::NotLoopback(_))
        ));
    }
}
