//! Tor control-port replies (control-spec §2.3), parsed sans-IO: bytes in, whole replies
//! out. Tor is outside the process, so its bytes are bounded and checked like any other
//! input: a line is at most 64 KiB, a reply at most 1,024 lines, and nothing panics.

/// One line of a reply: `XYZ` status, then `-` (more), `+` (data follows) or ` ` (last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The three-digit status.
    pub status: u16,
    /// The text after the separator.
    pub text: String,
    /// For `+` lines: the data block (dot-unstuffed), one string per line.
    pub data: Option<Vec<String>>,
}

/// A whole reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The lines, the last one first-class (`XYZ text`).
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// The status of the final line.
    pub fn status(&self) -> u16 {
        self.lines.last().map_or(0, |l| l.status)
    }

    /// Whether the status is 250 (OK).
    pub fn is_ok(&self) -> bool {
        self.status() == 250
    }

    /// The text of the final line (Tor's message for errors).
    pub fn message(&self) -> &str {
        self.lines.last().map_or("", |l| l.text.as_str())
    }

    /// The value of `key=value` from any line (the first), for GETINFO and ADD_ONION.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            l.text
                .strip_prefix(key)
                .and_then(|rest| rest.strip_prefix('='))
        })
    }
}

/// The bytes were not a control-port reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line is longer than the limit.
    #[error("a control-port reply line is longer than {0} bytes")]
    LineTooLong(usize),
    /// A reply has more lines than the limit.
    #[error("a control-port reply has more than {0} lines")]
    TooManyLines(usize),
    /// A line does not start with a three-digit status and a separator.
    #[error("malformed control-port reply line: {0:?}")]
    Malformed(String),
    /// A multi-line reply changed status midway.
    #[error("control-port reply lines disagree on the status")]
    StatusChanged,
}

/// Longest line accepted.
pub const MAX_LINE: usize = 64 * 1024;
/// Most lines (including data lines) in one reply.
pub const MAX_LINES: usize = 1024;

/// Incremental parser: feed bytes with [`ReplyParser::push`], take whole replies.
#[derive(Debug, Default)]
pub struct ReplyParser {
    partial: Vec<u8>,
    lines: Vec<ReplyLine>,
    /// Collecting the data block of the last line.
    in_data: bool,
    line_count: usize,
    failed: Option<ReplyError>,
}

impl ReplyParser {
    /// A fresh parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns every reply they complete. After an error every call returns it
    /// again (the connection must be dropped).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let (chunk, rest, complete) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if self.partial.len() + chunk.len() > MAX_LINE {
                return Err(self.fail(ReplyError::LineTooLong(MAX_LINE)));
            }
            self.partial.extend_from_slice(chunk);
            if !complete {
                break;
            }
            let mut line = core::mem::take(&mut self.partial);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(reply) = self.line(line).map_err(|e| self.fail(e))? {
                out.push(reply);
            }
        }
        Ok(out)
    }

    fn fail(&mut self, e: ReplyError) -> ReplyError {
        self.failed = Some(e.clone());
        e
    }

    fn line(&mut self, line: String) -> Result<Option<Reply>, ReplyError> {
        self.line_count += 1;
        if self.line_count > MAX_LINES {
            return Err(ReplyError::TooManyLines(MAX_LINES));
        }
        if self.in_data {
            if line == "." {
                self.in_data = false;
            } else if let Some(last) = self.lines.last_mut().and_then(|l| l.data.as_mut()) {
                // Dot-stuffing: a data line starting with "." was sent with one more.
                let line = match line.strip_prefix('.') {
                    Some(rest) => rest.to_owned(),
                    None => line,
                };
                last.push(line);
            }
            return Ok(None);
        }
        let bytes = line.as_bytes();
        let status = match (bytes.first(), bytes.get(1), bytes.get(2)) {
            (Some(a), Some(b), Some(c))
                if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
            {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(ReplyError::Malformed(truncate(&line))),
        };
        let sep = bytes.get(3).copied().unwrap_or(b' ');
        let text = line.get(4..).unwrap_or("").to_owned();
        if let Some(first) = self.lines.first()
            && first.status != status
        {
            return Err(ReplyError::StatusChanged);
        }
        match sep {
            b'-' => self.lines.push(ReplyLine {
                status,
                text,
                data: None,
            }),
            b'+' => {
                self.lines.push(ReplyLine {
                    status,
                    text,
                    data: Some(Vec::new()),
                });
                self.in_data = true;
            }
            b' ' => {
                self.lines.push(ReplyLine {
                    status,
                    text,
                    data: None,
                });
                self.line_count = 0;
                return Ok(Some(Reply {
                    lines: core::mem::take(&mut self.lines),
                }));
            }
            _ => return Err(ReplyError::Malformed(truncate(&line))),
        }
        Ok(None)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Splits `KEY=VALUE KEY="quoted \"value\""` pairs (PROTOCOLINFO's format).
pub fn key_values(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_owned();
        let after = &rest[eq + 1..];
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, quoted.get(end..).unwrap_or(""))
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.push((key, value));
        rest = remaining.trim_start();
    }
    out
}

/// Fuzzing entry point: arbitrary bytes in arbitrary chunks; every reply within the caps,
/// every line's `KEY=VALUE` pairs split without panicking.
#[cfg(fuzzing)]
pub fn fuzz(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut parser = ReplyParser::new();
    for chunk in rest.chunks(usize::from(split).max(1)) {
        match parser.push(chunk) {
            Ok(replies) => {
                for reply in replies {
                    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
                    for line in &reply.lines {
                        assert!(line.text.len() <= MAX_LINE);
                        let _ = key_values(&line.text);
                    }
                    let _ = reply.value("ServiceID");
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        ReplyParser::new().push(bytes)
    }

    #[test]
    fn single_and_multi_line_replies_split_anywhere() {
        let input = b"250-ServiceID=abc\r\n250-PrivateKey=x\r\n250 OK\r\n250 OK\r\n";
        for split in 0..input.len() {
            let mut p = ReplyParser::new();
            let mut replies = p.push(&input[..split]).unwrap();
            replies.extend(p.push(&input[split..]).unwrap());
            assert_eq!(replies.len(), 2, "split at {split}");
            assert_eq!(replies[0].value("ServiceID"), Some("abc"));
            assert!(replies[1].is_ok());
        }
    }

    #[test]
    fn data_blocks_are_collected_and_unstuffed() {
        let r = parse_all(b"250+info=\r\nline one\r\n..dotted\r\n.\r\n250 OK\r\n").unwrap();
        assert_eq!(
            r[0].lines[0].data.as_deref(),
            Some(&["line one".to_owned(), ".dotted".to_owned()][..])
        );
    }

    #[test]
    fn errors_carry_tors_message() {
        let r = parse_all(b"515 Authentication failed: Wrong length\r\n").unwrap();
        assert_eq!(r[0].status(), 515);
        assert_eq!(r[0].message(), "Authentication failed: Wrong length");
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        assert!(matches!(
            parse_all(b"garbage\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"25\r\n"),
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"250-a\r\n550 b\r\n"),
            Err(ReplyError::StatusChanged)
        ));
        let long = vec![b'2'; MAX_LINE + 1];
        assert!(matches!(parse_all(&long), Err(ReplyError::LineTooLong(_))));
        let many = "250-x\r\n".repeat(MAX_LINES + 1);
        assert!(matches!(
            parse_all(many.as_bytes()),
            Err(ReplyError::TooManyLines(_))
        ));
        // Every prefix of every byte pattern parses or errors.
        for b in 0u8..=255 {
            let _ = parse_all(&[b, b'\n', b, b, b, b' ', b, b'\n']);
        }
    }

    #[test]
    fn protocolinfo_values_are_split_with_quotes_and_escapes() {
        let kv = key_values(
            r#"METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/run/tor/control \"x\".authcookie""#,
        );
        assert_eq!(kv[0], ("METHODS".into(), "COOKIE,SAFECOOKIE".into()));
        assert_eq!(
            kv[1],
            (
                "COOKIEFILE".into(),
                r#"/var/run/tor/control "x".authcookie"#.into()
            )
        );
    }
}
