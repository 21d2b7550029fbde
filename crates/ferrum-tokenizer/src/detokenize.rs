//! Incremental detokenization: turning a stream of generated ids into text deltas.
//!
//! Decoding one token at a time is wrong in general: a character can span several byte tokens
//! (emoji, CJK under byte-level BPE or `<0xXX>` byte fallback), and SentencePiece decoders drop
//! the leading space only at the very start. So, as vLLM and `tokenizers`' `DecodeStream` do,
//! we decode a short window twice, without and with the new token, and emit the difference,
//! holding it back while it ends in U+FFFD (an incomplete character). The window restarts at
//! the last point where the text was complete, so each step decodes only a few tokens.
//!
//! Skipped special tokens are dropped before they enter the window: a window that starts with
//! one would otherwise let a decoder's "strip the first space" rule hit the wrong token.

use anyhow::Result;

use crate::Tokenizer;

/// How many prompt tokens to keep as context (vLLM keeps 5 before the read offset).
const PROMPT_CONTEXT: usize = 6;

/// Drop consumed ids once this many pile up before the window, to bound memory.
const COMPACT_AFTER: usize = 256;

/// Per-sequence detokenization state; create one per request with
/// [`Tokenizer::detokenizer`] or [`Tokenizer::detokenizer_with_prompt`].
#[derive(Debug, Clone)]
pub struct IncrementalDetokenizer {
    tokenizer: Tokenizer,
    skip_special_tokens: bool,
    /// Visible ids; only `ids[prefix_offset..]` matters for what comes next.
    ids: Vec<u32>,
    /// Start of the decode window.
    prefix_offset: usize,
    /// End of the text already emitted (as an index into `ids`).
    read_offset: usize,
}

impl IncrementalDetokenizer {
    pub(crate) fn new(
        tokenizer: Tokenizer,
        skip_special_tokens: bool,
        prompt_ids: &[u32],
    ) -> IncrementalDetokenizer {
        let visible: Vec<u32> = prompt_ids
            .iter()
            .copied()
            .filter(|&id| !(skip_special_tokens && tokenizer.is_special_id(id)))
            .collect();
        let ids = visible[visible.len().saturating_sub(PROMPT_CONTEXT)..].to_vec();
        IncrementalDetokenizer {
            tokenizer,
            skip_special_tokens,
            read_offset: ids.len(),
            prefix_offset: 0,
            ids,
        }
    }

    /// Adds one generated id and returns the text it completes (often empty while a
    /// multi-byte character is still incomplete).
    pub fn push(&mut self, id: u32) -> Result<String> {
        if self.skip_special_tokens && self.tokenizer.is_special_id(id) {
            return Ok(String::new());
        }
        self.ids.push(id);
        self.emit(false)
    }

    /// Returns whatever is still held back (an incomplete character at the very end decodes
    /// to U+FFFD, as in `decode`). Call once when the sequence ends.
    pub fn finish(&mut self) -> Result<String> {
        self.emit(true)
    }

    fn emit(&mut self, at_end: bool) -> Result<String> {
        let skip = self.skip_special_tokens;
        let window = &self.ids[self.prefix_offset..];
        let split = self.read_offset - self.prefix_offset;
        let prefix_text = self.tokenizer.decode(&window[..split], skip)?;
        let new_text = self.tokenizer.decode(window, skip)?;
        if new_text.len() <= prefix_text.len() || (!at_end && new_text.ends_with('\u{FFFD}')) {
            return Ok(String::new());
        }
        let delta = match new_text.strip_prefix(prefix_text.as_str()) {
            Some(d) => d.to_string(),
            // Not expected from byte-level or SentencePiece decoders; vLLM's rule then.
            None => new_text.chars().skip(prefix_text.chars().count()).collect(),
        };
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        if self.prefix_offset >= COMPACT_AFTER {
            self.ids.drain(..self.prefix_offset);
            self.read_offset -= self.prefix_offset;
            self.prefix_offset = 0;
        }
        Ok(delta)
    }
}
