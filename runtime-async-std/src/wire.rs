//! One connection's I/O: a reader task that forwards what arrives to the owning loop, and a
//! writer task fed by a bounded queue. The loop never blocks on a socket.

use core::time::Duration;
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Caps on bytes waiting to be written: per connection, and in total over every connection
/// of one loop (clone it to share the total). The queue bounds frames; these bound bytes,
/// so many large frames cannot pile up memory behind a slow reader.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    total: Arc<AtomicUsize>,
    max_total: usize,
    max_per_connection: usize,
}

impl WriteBudget {
    /// A budget of `max_per_connection` bytes per connection and `max_total` in all.
    pub fn new(max_per_connection: usize, max_total: usize) -> Self {
        Self {
            total: Arc::new(AtomicUsize::new(0)),
            max_total,
            max_per_connection,
        }
    }

    /// Bytes waiting over every connection of this budget.
    pub fn queued_total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// The sending side of a connection.
#[derive(Debug, Clone)]
pub struct WireWriter {
    tx: Sender<Vec<u8>>,
    counter: QueueCounter,
}

/// Bytes in one connection's queue, and in its budget's total.
#[derive(Debug, Clone)]
struct QueueCounter {
    queued: Arc<AtomicUsize>,
    budget: WriteBudget,
}

impl QueueCounter {
    fn added(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.budget.total.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes left the queue (taken by the writer, or never entered it).
    fn removed(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.budget.total.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The writer's queue is full, or holds its share of bytes: the other side does not read
/// fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;

impl WireWriter {
    /// Queues bytes without waiting. Refused when the queue has no free slot, when this
    /// connection would hold more than its bytes, or when the loop's total is spent and
    /// this connection already has something waiting (one that has nothing waiting is
    /// not the one holding memory up).
    pub fn send(&self, bytes: Vec<u8>) -> Result<(), TooSlow> {
        let n = bytes.len();
        let budget = &self.counter.budget;
        let own = self.counter.queued.load(Ordering::Relaxed);
        if own + n > budget.max_per_connection.max(n) {
            return Err(TooSlow);
        }
        if own > 0 && budget.queued_total() + n > budget.max_total {
            return Err(TooSlow);
        }
        self.counter.added(n);
        match self.tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.counter.removed(n);
                Err(TooSlow)
            }
            // The writer is gone: the connection ended and the loop will hear of it.
            Err(TrySendError::Closed(_)) => {
                self.counter.removed(n);
                Ok(())
            }
        }
    }
}

impl WireWriter {
    /// Queues bytes that may be dropped (presence): only while the queue is less than half
    /// full, in frames and in bytes, so that what must be sent always finds room.
    pub fn offer(&self, bytes: Vec<u8>) -> Result<(), TooSlow> {
        let own = self.counter.queued.load(Ordering::Relaxed);
        let half_frames = self.tx.capacity().map_or(usize::MAX, |c| c / 2);
        let half_bytes = self.counter.budget.max_per_connection / 2;
        if self.tx.len() >= half_frames || own + bytes.len() > half_bytes {
            return Err(TooSlow);
        }
        self.send(bytes)
    }
}

/// The writer task's end of a queue: what it takes out is no longer counted.
struct QueueOut {
    rx: Receiver<Vec<u8>>,
    counter: QueueCounter,
}

impl QueueOut {
    async fn recv(&self) -> Option<Vec<u8>> {
        let bytes = self.rx.recv().await.ok()?;
        self.counter.removed(bytes.len());
        Some(bytes)
    }

    fn try_recv(&self) -> Option<Vec<u8>> {
        let bytes = self.rx.try_recv().ok()?;
        self.counter.removed(bytes.len());
        Some(bytes)
    }

    /// The connection ended: nothing more enters, and what waits is no longer counted.
    fn close(&self) {
        self.rx.close();
        while self.try_recv().is_some() {}
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
pub fn spawn_wire<T>(
    conn: ConnId,
    wire: Wire,
    queue: usize,
    budget: &WriteBudget,
    to_loop: Sender<T>,
) -> WireWriter
where
    T: From<WireEvent> + Send + 'static,
{
    let (writer, out) = queue_with_budget(queue, budget);
    match wire {
        Wire::Tcp(stream) => {
            async_std::task::spawn(tcp_reader(conn, stream.clone(), to_loop));
            async_std::task::spawn(tcp_writer(stream, out));
        }
        Wire::Ws { ws, raw } => {
            let (sink, stream) = (*ws).split();
            async_std::task::spawn(ws_reader(conn, stream, to_loop));
            async_std::task::spawn(ws_writer(sink, raw, out));
        }
    }
    writer
}

/// A queue of `slots` frames whose bytes count against `budget`.
fn queue_with_budget(slots: usize, budget: &WriteBudget) -> (WireWriter, QueueOut) {
    let (tx, rx) = bounded::<Vec<u8>>(slots.max(1));
    let counter = QueueCounter {
        queued: Arc::new(AtomicUsize::new(0)),
        budget: budget.clone(),
    };
    let out = QueueOut {
        rx,
        counter: counter.clone(),
    };
    (WireWriter { tx, counter }, out)
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

async fn tcp_writer(mut stream: TcpStream, out: QueueOut) {
    let mut batch = Vec::new();
    while let Some(bytes) = out.recv().await {
        // Whatever else is queued goes out in the same write: one system call, not one
        // per frame.
        batch.clear();
        batch.extend_from_slice(&bytes);
        while batch.len() < WRITE_BATCH {
            match out.try_recv() {
                Some(more) => batch.extend_from_slice(&more),
                None => break,
            }
        }
        if stream.write_all(&batch).await.is_err() {
            break;
        }
    }
    out.close();
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

async fn ws_writer<S>(mut sink: S, raw: TcpStream, out: QueueOut)
where
    S: futures_util::Sink<Message> + Unpin,
{
    'outer: while let Some(bytes) = out.recv().await {
        // Queue what is waiting, then flush once.
        if sink.feed(Message::binary(bytes)).await.is_err() {
            break;
        }
        while let Some(more) = out.try_recv() {
            if sink.feed(Message::binary(more)).await.is_err() {
                break 'outer;
            }
        }
        if sink.flush().await.is_err() {
            break;
        }
    }
    out.close();
    let _ = async_std::future::timeout(CLOSE_GRACE, sink.close()).await;
    let _ = raw.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_capped_per_connection_and_in_total_not_only_frames() {
        let budget = WriteBudget::new(1000, 1500);
        let (a, a_out) = queue_with_budget(64, &budget);
        let (b, b_out) = queue_with_budget(64, &budget);
        // Slots to spare, but a's bytes are spent.
        assert_eq!(a.send(vec![0; 600]), Ok(()));
        assert_eq!(a.send(vec![0; 600]), Err(TooSlow));
        assert_eq!(a.send(vec![0; 400]), Ok(()));
        // The total is spent: b, with something waiting, is refused; the first frame of
        // a connection with nothing waiting still goes.
        assert_eq!(b.send(vec![0; 400]), Ok(()));
        assert_eq!(budget.queued_total(), 1400);
        assert_eq!(b.send(vec![0; 200]), Err(TooSlow));
        // The writer takes frames out: their bytes no longer count.
        assert_eq!(a_out.try_recv().map(|f| f.len()), Some(600));
        assert_eq!(budget.queued_total(), 800);
        assert_eq!(b.send(vec![0; 200]), Ok(()));
        // A connection that ends gives its bytes back, and later sends queue nothing.
        b_out.close();
        a_out.close();
        assert_eq!(budget.queued_total(), 0);
        assert_eq!(b.send(vec![0; 10]), Ok(()));
        assert_eq!(budget.queued_total(), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_counts_nothing() {
        let budget = WriteBudget::new(1 << 20, 1 << 20);
        let (a, _out) = queue_with_budget(2, &budget);
        assert_eq!(a.send(vec![0; 10]), Ok(()));
        assert_eq!(a.send(vec![0; 10]), Ok(()));
        assert_eq!(a.send(vec![0; 10]), Err(TooSlow));
        assert_eq!(budget.queued_total(), 20);
    }

    #[test]
    fn droppable_frames_fill_at_most_half_a_queue_and_what_must_be_sent_still_fits() {
        let budget = WriteBudget::new(1000, 1 << 20);
        let (a, _out) = queue_with_budget(4, &budget);
        assert_eq!(a.offer(vec![0; 10]), Ok(()));
        assert_eq!(a.offer(vec![0; 10]), Ok(()));
        // Half the slots are taken: presence waits, replies do not.
        assert_eq!(a.offer(vec![0; 10]), Err(TooSlow));
        assert_eq!(a.send(vec![0; 10]), Ok(()));
        assert_eq!(a.send(vec![0; 10]), Ok(()));
        let (b, _out) = queue_with_budget(64, &budget);
        // Half the bytes.
        assert_eq!(b.offer(vec![0; 400]), Ok(()));
        assert_eq!(b.offer(vec![0; 200]), Err(TooSlow));
        assert_eq!(b.send(vec![0; 500]), Ok(()));
    }
}
