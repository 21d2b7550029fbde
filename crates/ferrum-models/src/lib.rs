//! Models: configs, weight sources (safetensors, GGUF, dummy), the architecture registry, the
//! components models are made of, the one causal-LM forward over the `Backend` trait, the runner.

pub mod arch;
pub mod config;
pub mod layers;
pub mod loader;
pub mod model;
pub mod params;
pub mod runner;
pub mod weights;

pub use config::{ModelConfig, MoeConfig};
pub use loader::{
    LoadFormat, LoadOptions, LoadedModel, ModelFiles, inspect, load, load_files, load_on,
};
pub use model::{CausalLm, Workspace};
pub use params::{ParamLoader, Split};
pub use runner::{Runner, RunnerLimits, graph_replays, kv_bytes_per_block};
