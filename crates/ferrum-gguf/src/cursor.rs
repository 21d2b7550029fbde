//! A bounds-checked little-endian reader over the file bytes.
//!
//! Every read goes through [`Cursor::take`], which compares the requested length with what is
//! left *before* slicing, so a corrupt length can never cause an out-of-bounds read or a huge
//! allocation: the caller only ever gets a sub-slice of the file.

use crate::GgufError;

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// File name for error messages (`<memory>` for `from_bytes`).
    file: &'a str,
}

/// Lazily built description of what is being read; only evaluated on error, so the hot path
/// (e.g. 50k tokenizer strings) formats nothing.
pub(crate) type What<'w> = &'w dyn Fn() -> String;

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], file: &'a str) -> Self {
        Cursor { buf, pos: 0, file }
    }

    /// Absolute offset of the next byte to read.
    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    pub(crate) fn file(&self) -> &'a str {
        self.file
    }

    /// The error for "`what` needs `needed` bytes here but the file ends first".
    pub(crate) fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_string(),
            what,
            offset: self.pos(),
            needed,
            available: self.remaining(),
        }
    }

    /// The next `n` bytes, or `Truncated` if fewer remain.
    pub(crate) fn take(&mut self, n: u64, what: What) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what(), n));
        }
        let start = self.pos;
        // `n <= remaining <= usize::MAX`, so the cast and the addition cannot overflow.
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: What) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: What) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: What) -> Result<u16, GgufError> {
        self.array(what).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, what: What) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: What) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then that many bytes (no terminator).
    pub(crate) fn string(&mut self, what: What) -> Result<&'a [u8], GgufError> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        self.take(len, what)
    }
}
