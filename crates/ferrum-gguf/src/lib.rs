//! GGUF v2/v3 reader (spec: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>).
//!
//! - [`GgufFile::open`] memory-maps a file and parses header, metadata and tensor table;
//!   every read is bounds-checked and every count is checked against the bytes left before
//!   anything is allocated, so truncated or corrupt files give a [`GgufError`], never a panic
//!   or a huge allocation.
//! - `metadata` keeps keys in file order; typed getters return `None` when a key is absent or
//!   has an incompatible type.
//! - [`GgufFile::tensor_bytes`] / [`GgufFile::dequantize`] give a tensor's raw data and its f32
//!   values; [`dequantize`] converts a raw buffer.

mod cursor;
mod dequant;
mod dequant_k;
mod error;
mod file;
mod ggml_type;
mod header;
mod tensor;
mod value;

use std::path::PathBuf;

pub use dequant::dequantize;
pub use error::GgufError;
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use tensor::TensorInfo;
pub use value::Value;

/// Where the default model (SmolLM2-135M-Instruct, GGUF Q4_1) lives once `scripts/setup.sh`
/// fetched it: `$FERRUM_CACHE/models/...`, `FERRUM_CACHE` defaulting to `~/.cache/ferrum`.
/// The one place in Rust that knows this path (the setup script is the other side of it).
pub fn default_model_path() -> PathBuf {
    let cache = std::env::var_os("FERRUM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache").join("ferrum")
        });
    cache.join("models").join(DEFAULT_MODEL_FILE)
}

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
