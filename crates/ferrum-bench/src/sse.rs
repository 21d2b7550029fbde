//! Splits a streamed HTTP body into server-sent-event payloads. Network chunks do not line
//! up with events, so bytes are buffered until a blank line ends an event. Like vLLM's
//! `StreamedResponseHandler`, a trailing `data: ...` whose payload is already a complete
//! JSON value (or `[DONE]`) is released without waiting for its blank line.

#[derive(Debug, Default)]
pub struct SseBuffer {
    buf: Vec<u8>,
}

impl SseBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the `data` payloads of the events they complete, in order.
    /// Comment events (`: ping`) and events without a data field yield nothing.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        // CR never occurs inside a JSON payload (it must be escaped there), so dropping it
        // turns CRLF framing into LF framing.
        self.buf
            .extend(bytes.iter().copied().filter(|&b| b != b'\r'));
        let mut out = Vec::new();
        while let Some(pos) = find(&self.buf, b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..pos + 2).collect();
            out.extend(event_data(&event[..pos]));
        }
        if self.buf.starts_with(b"data:")
            && !self.buf.contains(&b'\n')
            && let Some(data) = event_data(&self.buf)
        {
            let t = data.trim();
            if t == "[DONE]" || serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok() {
                self.buf.clear();
                out.push(data);
            }
        }
        out
    }

    /// Whatever is left when the body ends (an unterminated last event).
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        event_data(&rest)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The event's data lines joined by '\n' (the SSE rule), or None without any.
fn event_data(event: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(event);
    let mut data: Option<String> = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("data:") else {
            continue; // comments (":"), event:, id:, retry:
        };
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match &mut data {
            Some(d) => {
                d.push('\n');
                d.push_str(rest);
            }
            None => data = Some(rest.to_string()),
        }
    }
    data.filter(|d| !d.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunks() {
        let mut b = SseBuffer::new();
        assert!(b.push(b"data: {\"a\":").is_empty());
        assert_eq!(b.push(b"1}\n\ndata: {\"b\""), vec!["{\"a\":1}"]);
        assert_eq!(b.push(b":2}"), vec!["{\"b\":2}"]); // complete JSON, no blank line yet
        assert!(b.push(b"\n\n: ping\n\n").is_empty());
        assert_eq!(b.push(b"data: [DONE]\r\n\r\n"), vec!["[DONE]"]);
        assert_eq!(b.finish(), None);
    }
}
