//! The trace digest: a running SHA-256 over every event the world processes, so that two
//! runs can be compared by one hash; and an optional human-readable trace file.

use std::io::Write;

use sha2::{Digest, Sha256};

/// Running digest of the event trace.
pub(crate) struct Trace {
    hasher: Sha256,
    file: Option<Box<dyn Write>>,
    /// The first error writing the trace file, reported once in the summary.
    pub(crate) file_error: Option<String>,
}

impl Trace {
    pub(crate) fn new(file: Option<Box<dyn Write>>) -> Self {
        Self {
            hasher: Sha256::new(),
            file,
            file_error: None,
        }
    }

    /// Adds one event: its time, sequence number, kind, two small fields and its payload.
    pub(crate) fn record(&mut self, at: u64, seq: u64, kind: u8, a: u64, b: u64, payload: &[u8]) {
        self.hasher.update(at.to_le_bytes());
        self.hasher.update(seq.to_le_bytes());
        self.hasher.update([kind]);
        self.hasher.update(a.to_le_bytes());
        self.hasher.update(b.to_le_bytes());
        self.hasher.update((payload.len() as u64).to_le_bytes());
        self.hasher.update(payload);
    }

    /// Whether a trace file is being written (callers skip formatting otherwise).
    pub(crate) fn wants_lines(&self) -> bool {
        self.file.is_some()
    }

    /// Writes one line to the trace file, if there is one.
    pub(crate) fn line(&mut self, at_micros: u64, text: &str) {
        let Some(file) = &mut self.file else { return };
        let secs = at_micros / 1_000_000;
        let micros = at_micros % 1_000_000;
        if let Err(e) = writeln!(file, "{secs}.{micros:06} {text}") {
            self.file_error.get_or_insert_with(|| e.to_string());
            self.file = None;
        }
    }

    /// Flushes the trace file.
    pub(crate) fn flush(&mut self) {
        if let Some(file) = &mut self.file
            && let Err(e) = file.flush()
        {
            self.file_error.get_or_insert_with(|| e.to_string());
        }
    }

    /// The digest so far, in hex.
    pub(crate) fn digest_hex(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}
