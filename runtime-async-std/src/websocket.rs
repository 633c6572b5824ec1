//! WebSocket settings and the client side of the registry connection.

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use p2pchat_core::frame::{LENGTH_PREFIX, MAX_FRAME_BODY};
use p2pchat_core::registry::MAX_CLIENT_FRAME;

use crate::transport::{DialError, Transport};
use crate::wire::Wire;

/// The registry server's per-connection settings. tungstenite's defaults hold about
/// 130 KiB per idle connection. A client message carries one frame of at most
/// `MAX_CLIENT_FRAME` bytes, most under 1 KiB (a registration with a 2048-bit key is about
/// 700): a 1 KiB read chunk takes most in one read, and idle connections hold 3 KiB less
/// each than with 4 KiB. No write buffer: frames go out as they are written.
pub fn server_config() -> WebSocketConfig {
    let max = MAX_CLIENT_FRAME + LENGTH_PREFIX + 1;
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The client's settings: server messages carry frames of up to 64 KiB (pages of users).
pub fn client_config() -> WebSocketConfig {
    let max = MAX_FRAME_BODY + LENGTH_PREFIX + 1;
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Why the registry could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryDialError {
    /// The stream could not be opened.
    #[error("{0}")]
    Dial(#[from] DialError),
    /// Something answered, but not a WebSocket server.
    #[error(
        "the registry at {host}:{port} did not complete the WebSocket handshake ({why}): is \
         that the registry's address?"
    )]
    Handshake {
        /// Where.
        host: String,
        /// Which port.
        port: u16,
        /// What went wrong.
        why: String,
    },
}

/// Opens the registry connection: a stream through `transport`, then the WebSocket
/// handshake over it (`ws://host:port/`).
pub async fn open_registry(
    transport: &Transport,
    host: &str,
    port: u16,
) -> Result<Wire, RegistryDialError> {
    let stream = transport.dial(host, port).await?;
    let raw = stream.clone();
    let url = format!("ws://{host}:{port}/");
    match async_tungstenite::client_async_with_config(url, stream, Some(client_config())).await {
        Ok((ws, _response)) => Ok(Wire::Ws {
            ws: Box::new(ws),
            raw,
        }),
        Err(e) => Err(RegistryDialError::Handshake {
            host: host.to_owned(),
            port,
            why: e.to_string(),
        }),
    }
}
