//! The components models are made of, each loading its own parameters under a prefix and running
//! its forward over the `Backend` trait: attention, dense MLP, MoE block, decoder layer.

mod attention;
mod layer;
mod mlp;
mod moe;

pub use attention::Attention;
pub use layer::{DecoderLayer, Ffn};
pub use mlp::Mlp;
pub use moe::MoeBlock;
