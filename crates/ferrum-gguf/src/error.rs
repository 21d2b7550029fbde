//! The one error type of this crate. Every variant's message says what was being read and
//! where (file, key, tensor, byte offset), because the usual reader of these messages is a
//! person holding a broken or unexpected model file.

/// Why a GGUF file could not be read, or a tensor could not be returned.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening or mapping the file failed; the message names the path.
    #[error("{0}")]
    Io(std::io::Error),

    /// The file ends (or the data section ends) before something it declares.
    #[error(
        "{file}: truncated GGUF: {what} needs {needed} bytes at offset {offset}, \
         but only {available} remain (file cut short or corrupt; re-download it)"
    )]
    Truncated {
        /// The file path, or `<memory>` for `from_bytes`.
        file: String,
        /// What was being read, e.g. `value of key 'general.name'`.
        what: String,
        /// Absolute byte offset in the file where the read starts.
        offset: u64,
        /// Bytes the read needs (a lower bound for arrays of variable-sized items).
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: the first 4 bytes are not the magic \"GGUF\"")]
    BadMagic,

    /// A GGUF version other than 2 or 3 (v1 used 32-bit counts and is not supported).
    #[error("{}", version_message(*.0))]
    UnsupportedVersion(u32),

    /// Structurally invalid content; the message names file, key or tensor and the offset.
    #[error("corrupt GGUF: {0}")]
    Corrupt(String),

    /// The tensor's type is known to ggml but this crate cannot dequantize it (or the type id
    /// is unknown altogether, so not even its byte size is known).
    #[error(
        "tensor '{tensor}' has type {ty}, which ferrum-gguf cannot dequantize \
         (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"
    )]
    UnsupportedType { tensor: String, ty: String },

    /// A caller passed buffers that do not fit together (e.g. to [`crate::dequantize`]).
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

fn version_message(v: u32) -> String {
    if v == 1 {
        "unsupported GGUF version 1 (32-bit counts; supported: 2 and 3): re-convert the model \
         with a current llama.cpp"
            .to_string()
    } else if v.swap_bytes() == 2 || v.swap_bytes() == 3 {
        format!(
            "unsupported GGUF version field {v:#010x}: this is a big-endian GGUF file \
             (version {}), only little-endian files are supported",
            v.swap_bytes()
        )
    } else {
        format!("unsupported GGUF version {v} (supported: 2 and 3)")
    }
}
