//! `ferrum bench serve`: vLLM's `vllm bench serve` online serving benchmark, against any
//! OpenAI-compatible server (ferrum's, vLLM's, ...).
//!
//! - [`ServeArgs`] carries vLLM's option names and defaults; [`run_serve`] runs the whole
//!   benchmark, prints vLLM's result block and saves vLLM's result JSON when asked.
//! - The pieces are public for tests and other tools: datasets ([`datasets`]), arrival
//!   times ([`arrivals`]), the streamed request ([`client`]) and the arithmetic and report
//!   ([`metrics::compute_result`], [`BenchResult`]).

mod align;
pub mod args;
pub mod arrivals;
pub mod bench;
pub mod client;
pub mod datasets;
pub mod metrics;
pub mod py;
pub mod report;
mod serve;
pub mod sse;
pub mod stats;

pub use args::ServeArgs;
pub use metrics::{BenchResult, MetricStats, ReportConfig, RequestOutcome, compute_result};
pub use serve::{load_tokenizer, run_serve};
