//! The `ferrum` command line: wiring only; the work lives in the library crates.

mod args;
mod bench;
mod chat;
mod generate;
mod request_json;
mod runtime;
mod serve;
mod speculative;
mod vllm_flags;

use anyhow::Result;
use args::{RuntimeArgs, SamplingArgs};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "ferrum",
    version,
    // a flag given twice takes its last value, as vLLM's argparse does (scripts that append an
    // override to a base command line work unchanged)
    args_override_self = true,
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
        runtime: RuntimeArgs,
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
        runtime: RuntimeArgs,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// A system message to start the conversation with.
        #[arg(long)]
        system: Option<String>,
    },
    /// The OpenAI-compatible server (vLLM's `serve`).
    Serve(Box<serve::ServeArgs>),
    /// Offline benchmarks (vLLM's `bench latency` / `bench throughput`).
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Online serving benchmark against a running OpenAI-compatible server (vLLM's
    /// `bench serve`: same options, same result block).
    Serve(Box<ferrum_bench::ServeArgs>),
    /// Latency of one batch of fixed input/output lengths, over several iterations.
    Latency {
        #[command(flatten)]
        runtime: RuntimeArgs,
        #[command(flatten)]
        bench: bench::LatencyArgs,
    },
    /// Requests/s and tokens/s for N prompts submitted at once.
    Throughput {
        #[command(flatten)]
        runtime: RuntimeArgs,
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
    let argv = match vllm_serve_argv(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(Cli::parse_from(argv)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `serve` takes `vllm serve`'s command lines: vLLM's flag spellings, `--config FILE.yaml`,
/// removed flags (a warning each) and flags ferrum lacks (refused by name) are settled here,
/// before clap sees the rest.
fn vllm_serve_argv(argv: Vec<String>) -> Result<Vec<String>, String> {
    if argv.get(1).map(String::as_str) != Some("serve") {
        return Ok(argv);
    }
    let cmd = Cli::command();
    let ours: Vec<String> = cmd
        .find_subcommand("serve")
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let n = vllm_flags::normalize_serve_argv(argv[2..].to_vec(), &ours)?;
    for w in &n.warnings {
        tracing::warn!("{w}");
    }
    Ok(argv[..2].iter().cloned().chain(n.argv).collect())
}

/// Starts model + engine, runs `f`, and shuts the engine down whatever `f` returned.
fn with_runtime(args: &RuntimeArgs, f: impl FnOnce(&runtime::Runtime) -> Result<()>) -> Result<()> {
    let rt = runtime::start(&args.model, &args.engine)?;
    let result = f(&rt);
    rt.engine.shutdown();
    result
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate {
            runtime,
            sampling,
            prompt,
            prompts_file,
        } => with_runtime(&runtime, |rt| match (prompt, prompts_file) {
            (Some(p), _) => {
                let mut params = sampling.to_params(&rt.defaults);
                params.max_tokens = params.max_tokens.or(Some(generate::DEFAULT_MAX_TOKENS));
                generate::single(rt, &p, params)
            }
            (None, Some(f)) => generate::batch(rt, &f),
            (None, None) => unreachable!("clap requires one of them"),
        }),
        Command::Chat {
            runtime,
            sampling,
            system,
        } => with_runtime(&runtime, |rt| {
            chat::run(rt, sampling.to_params(&rt.defaults), system)
        }),
        Command::Serve(args) => serve::run(*args),
        Command::Bench {
            kind: BenchKind::Serve(args),
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(ferrum_bench::run_serve(&args)).map(|_| ())
        }
        Command::Bench {
            kind: BenchKind::Latency { runtime, bench },
        } => with_runtime(&runtime, |rt| bench::latency(rt, &bench)),
        Command::Bench {
            kind: BenchKind::Throughput { runtime, bench },
        } => with_runtime(&runtime, |rt| bench::throughput(rt, &bench)),
    }
}

#[cfg(test)]
mod tests {
    use super::{BenchKind, Cli, Command};
    use clap::Parser;

    #[test]
    fn a_flag_given_twice_takes_its_last_value_as_vllm_does() {
        let argv = "ferrum bench latency --output-len 3 --batch-size 2 --output-len 4";
        let cli = Cli::try_parse_from(argv.split_whitespace()).expect("parses");
        let Command::Bench {
            kind: BenchKind::Latency { bench, .. },
        } = cli.command
        else {
            panic!("bench latency");
        };
        assert_eq!((bench.output_len, bench.batch_size), (4, 2));
    }
}
