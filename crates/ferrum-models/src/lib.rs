//! Models: configs, weight loading (safetensors, GGUF, dummy), the architectures, the runner.

pub mod batch;
pub mod config;
pub mod decoder;
pub mod kv_cache;
pub mod loader;
pub mod runner;
pub mod weights;

pub use batch::{ForwardBatch, SeqSpan};
pub use config::{Arch, ModelConfig};
pub use decoder::Decoder;
pub use kv_cache::KvCache;
pub use loader::{LoadFormat, LoadedModel, load};
pub use runner::CpuRunner;
