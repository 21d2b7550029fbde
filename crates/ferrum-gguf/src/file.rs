//! `GgufFile`: a parsed header plus the file bytes (memory-mapped or owned), with typed
//! metadata getters and bounds-checked tensor access.

use std::fmt;
use std::path::Path;

use memmap2::Mmap;

use crate::{GgufError, TensorInfo, Value, header};

/// A parsed GGUF file. Tensor data stays in the file bytes until asked for, so opening a
/// multi-GB model costs only the header parse.
pub struct GgufFile {
    pub version: u32,
    /// Key/value pairs in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensor table in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Bytes,
    /// Absolute offset of the data section.
    data_offset: u64,
    alignment: u64,
    /// Path (or `<memory>`) for error messages.
    source: String,
}

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let name = path.display().to_string();
        let io_err = |e: std::io::Error, doing: &str| {
            GgufError::Io(std::io::Error::new(
                e.kind(),
                format!("{doing} {name}: {e}"),
            ))
        };
        let file = std::fs::File::open(path).map_err(|e| io_err(e, "cannot open"))?;
        // SAFETY: the map is read-only and private to this value. As with every mmap-based
        // model loader, another process truncating or rewriting the file while it is mapped
        // is outside what we can guard against (it would fault or change bytes under us);
        // model files are treated as immutable while in use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| io_err(e, "cannot memory-map"))?;
        Self::parse(Bytes::Mapped(map), name)
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(Bytes::Owned(bytes), "<memory>".to_string())
    }

    fn parse(bytes: Bytes, source: String) -> Result<GgufFile, GgufError> {
        let h = header::parse(bytes.as_slice(), &source)?;
        Ok(GgufFile {
            version: h.version,
            metadata: h.metadata,
            tensors: h.tensors,
            bytes,
            data_offset: h.data_offset,
            alignment: h.alignment,
            source,
        })
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Any integer type, converted; `None` if absent, not an integer, or negative.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// Any float or integer type, converted.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// The elements of an array-valued key.
    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key)?.as_array()
    }

    /// An array of strings (e.g. `tokenizer.ggml.tokens`); `None` if absent, not an array, or
    /// any element is not a string.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get_array(key)?.iter().map(Value::as_str).collect()
    }

    /// `general.architecture` (e.g. `llama`), the prefix of the model's hyperparameter keys.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Alignment of the data section and tensor offsets (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where the data section (tensor offset 0) starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The raw bytes of tensor `t`. `t` need not come from this file's table: its offset and
    /// size are checked against the file either way.
    pub fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8], GgufError> {
        let n_bytes = t.n_bytes().map_err(|e| self.in_file(e))?;
        let bytes = self.bytes.as_slice();
        let start = self.data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= bytes.len() as u64 => {
                Ok(&bytes[start as usize..end as usize])
            }
            (start, _) => {
                let start = start.unwrap_or(u64::MAX);
                Err(GgufError::Truncated {
                    file: self.source.clone(),
                    what: format!("data of tensor '{}' ({} {:?})", t.name, t.ggml_type, t.dims),
                    offset: start,
                    needed: n_bytes,
                    available: (bytes.len() as u64).saturating_sub(start),
                })
            }
        }
    }

    /// Tensor `t` as f32 values, in ggml element order (`dims[0]` fastest). Large tensors are
    /// converted in parallel on the rayon pool.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        if !t.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedType {
                tensor: t.name.clone(),
                ty: t.ggml_type.to_string(),
            });
        }
        let data = self.tensor_bytes(t)?;
        // `tensor_bytes` proved the data is in memory; the f32 output is at most 16x its size
        // (BF16/F16 -> f32: 2x; Q2_K: 84 bytes -> 1 KiB), so this allocation is bounded by the
        // file, and the count fits in usize.
        let n = usize::try_from(t.n_elements()).map_err(|_| {
            GgufError::Corrupt(format!(
                "{}: tensor '{}' is too large to dequantize",
                self.source, t.name
            ))
        })?;
        let mut out = vec![0f32; n];
        crate::dequantize(t.ggml_type, data, &mut out).map_err(|e| match e {
            GgufError::InvalidInput(msg) => {
                GgufError::Corrupt(format!("{}: tensor '{}': {msg}", self.source, t.name))
            }
            e => e,
        })?;
        Ok(out)
    }

    /// Prefixes `Corrupt` messages from `TensorInfo` with this file's name.
    fn in_file(&self, e: GgufError) -> GgufError {
        match e {
            GgufError::Corrupt(msg) => GgufError::Corrupt(format!("{}: {msg}", self.source)),
            e => e,
        }
    }
}

impl fmt::Debug for GgufFile {
    /// Summary only: the metadata of a real model (50k-token vocabularies) is far too long to
    /// print, and the bytes are never useful.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("source", &self.source)
            .field("version", &self.version)
            .field("metadata_entries", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}
