//! The `ferrum` command line: wiring only; the work lives in the library crates.

mod args;
mod bench;
mod chat;
mod generate;
mod output;
mod request_json;
mod runtime;

use anyhow::Result;
use args::{EngineArgs, ModelArgs, SamplingArgs};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ferrum",
    version,
    about = "ferrum: an LLM inference and serving engine (vLLM-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text for one prompt (streamed to stdout) or a JSON-lines file of prompts.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// The prompt; text that spells a special token (e.g. `<|im_start|>`) is that token.
        #[arg(
            long,
            conflicts_with = "prompts_file",
            required_unless_present = "prompts_file"
        )]
        prompt: Option<String>,
        /// JSON lines, one request each: {"prompt": "...", "max_tokens": 64, "temperature": 0, ...};
        /// writes one JSON line per prompt, in input order.
        #[arg(long)]
        prompts_file: Option<PathBuf>,
    },
    /// Chat with the model in the terminal, applying its chat template.
    Chat {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// A system message to start the conversation with.
        #[arg(long)]
        system: Option<String>,
    },
    /// Offline benchmarks (vLLM's `bench latency` / `bench throughput`).
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Latency of one batch of fixed input/output lengths, over several iterations.
    Latency {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        bench: bench::LatencyArgs,
    },
    /// Requests/s and tokens/s for N prompts submitted at once.
    Throughput {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        bench: bench::ThroughputArgs,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Starts model + engine, runs `f`, and shuts the engine down whatever `f` returned.
fn with_runtime(
    model: &ModelArgs,
    engine: &EngineArgs,
    f: impl FnOnce(&runtime::Runtime) -> Result<()>,
) -> Result<()> {
    let rt = runtime::start(model, engine)?;
    let result = f(&rt);
    rt.engine.shutdown();
    result
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate {
            model,
            engine,
            sampling,
            prompt,
            prompts_file,
        } => with_runtime(&model, &engine, |rt| match (prompt, prompts_file) {
            (Some(p), _) => {
                let mut params = sampling.to_params(&rt.defaults);
                params.max_tokens = params.max_tokens.or(Some(generate::DEFAULT_MAX_TOKENS));
                generate::single(rt, &p, params)
            }
            (None, Some(f)) => generate::batch(rt, &f),
            (None, None) => unreachable!("clap requires one of them"),
        }),
        Command::Chat {
            model,
            engine,
            sampling,
            system,
        } => with_runtime(&model, &engine, |rt| {
            chat::run(rt, sampling.to_params(&rt.defaults), system)
        }),
        Command::Bench {
            kind:
                BenchKind::Latency {
                    model,
                    engine,
                    bench,
                },
        } => with_runtime(&model, &engine, |rt| bench::latency(rt, &bench)),
        Command::Bench {
            kind:
                BenchKind::Throughput {
                    model,
                    engine,
                    bench,
                },
        } => with_runtime(&model, &engine, |rt| bench::throughput(rt, &bench)),
    }
}
