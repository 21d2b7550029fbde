//! Decoding for SentencePiece vocabularies from GGUF, done on bytes as llama.cpp does: each
//! token is its bytes (`▁` → space, `<0xXX>` → that byte), the whole sequence is read as UTF-8
//! with invalid parts replaced by U+FFFD, and the prefix space is dropped.
//!
//! Why not `tokenizers`' ByteFallback decoder: it turns a whole run of byte tokens into U+FFFD
//! when any byte of the run is invalid, so one bad byte at the end can change text decoded
//! earlier (even plain ASCII bytes). Decoding would then not be prefix-stable, and streamed
//! deltas could not add up to the full decode. On valid text both agree.

/// Per-id bytes, precomputed once.
#[derive(Clone)]
pub(crate) struct SpmDecoder {
    pieces: Vec<Box<[u8]>>,
    strip_prefix_space: bool,
}

/// `<0xXX>` → the byte, exactly the pattern HF's ByteFallback accepts.
fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl SpmDecoder {
    pub(crate) fn new(tokens: &[String], strip_prefix_space: bool) -> SpmDecoder {
        let pieces = tokens
            .iter()
            .map(|t| match byte_token(t) {
                Some(b) => Box::from([b].as_slice()),
                None => t.replace('▁', " ").into_bytes().into_boxed_slice(),
            })
            .collect();
        SpmDecoder {
            pieces,
            strip_prefix_space,
        }
    }

    /// `keep(id)` says whether an id is shown (skipped special tokens are not); ids outside
    /// the vocabulary are ignored, as `tokenizers` does.
    pub(crate) fn decode(&self, ids: &[u32], keep: impl Fn(u32) -> bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(p) = self.pieces.get(id as usize)
                && keep(id)
            {
                bytes.extend_from_slice(p);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        match text.strip_prefix(' ') {
            Some(rest) if self.strip_prefix_space => rest.to_string(),
            _ => text.into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_spaces_and_prefix() {
        let tokens: Vec<String> = ["▁a", "<0xE4>", "<0xB8>", "<0xAD>", "<0x41>", "b▁c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let d = SpmDecoder::new(&tokens, true);
        assert_eq!(d.decode(&[0, 1, 2, 3, 5], |_| true), "a中b c");
        // An invalid byte at the end does not touch the valid ones before it.
        assert_eq!(d.decode(&[4, 1], |_| true), "A\u{FFFD}");
        assert_eq!(d.decode(&[0, 0], |id| id != 0), "");
        assert_eq!(SpmDecoder::new(&tokens, false).decode(&[0], |_| true), " a");
    }
}
