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

/// Where `scripts/setup.sh` puts what it fetches: `$FERRUM_CACHE`, defaulting to
/// `~/.cache/ferrum`. This and the two functions below are the one place in Rust that knows this
/// layout (the setup script is the other side of it).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FERRUM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache").join("ferrum")
        })
}

/// A model file: `$FERRUM_CACHE/models/NAME`.
pub fn cached_model_path(file: &str) -> PathBuf {
    cache_dir().join("models").join(file)
}

/// A Hugging Face tokenizer folder (`tokenizer.json`, `tokenizer_config.json`) that
/// `scripts/setup.sh --test-models` fetches for the tests: `$FERRUM_CACHE/tokenizers/NAME`.
pub fn cached_tokenizer_dir(name: &str) -> PathBuf {
    cache_dir().join("tokenizers").join(name)
}

/// The default model: SmolLM2-135M-Instruct, GGUF Q4_1.
pub fn default_model_path() -> PathBuf {
    cached_model_path(DEFAULT_MODEL_FILE)
}

/// A second, real GGUF for the tests (`scripts/setup.sh --test-models`): Qwen2.5-0.5B-Instruct
/// Q4_K_M — qwen2 architecture, K-quants, the qwen2 pre-tokenizer.
pub const QWEN25_TEST_MODEL_FILE: &str = "qwen2.5-0.5b-instruct-q4_k_m.gguf";

pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
