//! One connection's I/O: a reader task that forwards what arrives to the owning loop, and a
//! writer task fed by a bounded queue. The loop never blocks on a socket.

use core::time::Duration;
use std::net::Shutdown;

use async_std::channel::{Receiver, Sender, TrySendError, bounded};
use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_util::{SinkExt, StreamExt};
use p2pchat_core::conn::ConnId;

/// Bytes or the end of a connection, for the loop that owns it.
#[derive(Debug)]
pub enum WireEvent {
    /// Bytes arrived (any split).
    Received(ConnId, Vec<u8>),
    /// The connection ended (closed by the other side, reset, or shut down by us).
    Closed(ConnId),
}

/// What a connection carries: a raw byte stream, or WebSocket binary messages.
pub enum Wire {
    /// Peer-to-peer: frames on a plain stream.
    Tcp(TcpStream),
    /// Registry: each frame in a binary WebSocket message. `raw` is the same socket, kept
    /// to shut it down when the WebSocket close handshake does not finish.
    Ws {
        /// The WebSocket (boxed: it is large, and moves through channels).
        ws: Box<WebSocketStream<TcpStream>>,
        /// The socket under it.
        raw: TcpStream,
    },
}

/// The sending side of a connection.
#[derive(Debug, Clone)]
pub struct WireWriter {
    tx: Sender<Vec<u8>>,
}

/// The writer's queue is full: the other side does not read fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

impl WireWriter {
    /// Queues bytes without waiting.
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), TooSlow> {
        match self.tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(TooSlow),
            // The writer is gone: the connection ended and the loop will hear of it.
            Err(TrySendError::Closed(_)) => Ok(()),
        }
    }
}

/// Accepts connections on `listener` and hands each to the loop as `wrap(stream)`, until
/// the loop is gone.
pub async fn accept_loop<T>(
    listener: async_std::net::TcpListener,
    to_loop: Sender<T>,
    wrap: fn(TcpStream) -> T,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if to_loop.send(wrap(stream)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors, for example: wait rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                async_std::task::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How long a WebSocket close handshake may take before the socket is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Starts the reader and writer tasks of `conn`. Dropping every [`WireWriter`] closes the
/// connection after what was queued is written.
pub fn spawn_wire<T>(conn: ConnId, wire: Wire, queue: usize, to_loop: Sender<T>) -> WireWriter
where
    T: From<WireEvent> + Send + 'static,
{
    let (tx, rx) = bounded::<Vec<u8>>(queue.max(1));
    match wire {
        Wire::Tcp(stream) => {
            async_std::task::spawn(tcp_reader(conn, stream.clone(), to_loop));
            async_std::task::spawn(tcp_writer(stream, rx));
        }
        Wire::Ws { ws, raw } => {
            let (sink, stream) = (*ws).split();
            async_std::task::spawn(ws_reader(conn, stream, to_loop));
            async_std::task::spawn(ws_writer(sink, raw, rx));
        }
    }
    WireWriter { tx }
}

async fn tcp_reader<T: From<WireEvent>>(conn: ConnId, mut stream: TcpStream, to_loop: Sender<T>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                if to_loop
                    .send(WireEvent::Received(conn, bytes).into())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = to_loop.send(WireEvent::Closed(conn).into()).await;
}

/// Most bytes gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

async fn tcp_writer(mut stream: TcpStream, rx: Receiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Ok(bytes) = rx.recv().await {
        // Whatever else is queued goes out in the same write: one system call, not one
        // per frame.
        batch.clear();
        batch.extend_from_slice(&bytes);
        while batch.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if stream.write_all(&batch).await.is_err() {
            break;
        }
    }
    let _ = stream.flush().await;
    // Both directions: the reader task wakes up and ends too.
    let _ = stream.shutdown(Shutdown::Both);
}

async fn ws_reader<T, S>(conn: ConnId, mut stream: S, to_loop: Sender<T>)
where
    T: From<WireEvent>,
    S: futures_util::Stream<Item = Result<Message, async_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = stream.next().await {
        let bytes = match message {
            Message::Binary(b) => b.to_vec(),
            // Not our protocol: hand it to the core, which refuses it as malformed.
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if to_loop
            .send(WireEvent::Received(conn, bytes).into())
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = to_loop.send(WireEvent::Closed(conn).into()).await;
}

async fn ws_writer<S>(mut sink: S, raw: TcpStream, rx: Receiver<Vec<u8>>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    'outer: while let Ok(bytes) = rx.recv().await {
        // Queue what is waiting, then flush once.
        if sink.feed(Message::binary(bytes)).await.is_err() {
            break;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(Message::binary(more)).await.is_err() {
                break 'outer;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    let _ = async_std::future::timeout(CLOSE_GRACE, sink.close()).await;
    let _ = raw.shutdown(Shutdown::Both);
}
