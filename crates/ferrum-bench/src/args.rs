//! `ferrum bench serve` options: vLLM's `vllm bench serve` names, defaults and meanings
//! (for the generative OpenAI-compatible backends and the text datasets ferrum supports).

use std::path::PathBuf;

use clap::Parser;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The type of backend or endpoint to use for the benchmark (`vllm` is the completions
    /// API, like `openai`).
    #[arg(long, default_value = "openai", value_parser = ["openai", "openai-chat", "vllm"])]
    pub backend: String,
    /// The label (prefix) of the benchmark results; defaults to --backend.
    #[arg(long)]
    pub label: Option<String>,
    /// Server or API base url if not using http host and port.
    #[arg(long)]
    pub base_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// API endpoint [default: /v1/completions, or /v1/chat/completions for openai-chat].
    #[arg(long)]
    pub endpoint: Option<String>,
    /// KEY=VALUE headers sent with each request.
    #[arg(long, num_args = 0.., value_name = "KEY=VALUE")]
    pub header: Vec<String>,
    /// Maximum number of concurrent requests (requests beyond it wait client-side).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Name of the model; defaults to the first model from the server's /v1/models.
    #[arg(long)]
    pub model: Option<String>,
    /// The model name used in the API; defaults to --model.
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// A HF tokenizer folder or a .gguf file [default: --model when it is such a path, else
    /// ferrum's default model].
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// General input length; maps to --random-input-len.
    #[arg(long)]
    pub input_len: Option<usize>,
    /// General output length; maps to each dataset's output length option.
    #[arg(long)]
    pub output_len: Option<usize>,
    /// Number of logprobs-per-token to request (completions API).
    #[arg(long)]
    pub logprobs: Option<u32>,
    /// Requests per second; inf sends all at time 0, otherwise arrivals follow a Poisson
    /// process or gamma distribution (see --burstiness).
    #[arg(long, default_value_t = f64::INFINITY)]
    pub request_rate: f64,
    /// Burstiness of the arrivals when --request-rate is finite: 1 is a Poisson process,
    /// lower is burstier, higher more uniform (gamma-distributed intervals).
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Specify to disable the progress bar.
    #[arg(long)]
    pub disable_tqdm: bool,
    /// Number of warmup requests.
    #[arg(long, default_value_t = 0)]
    pub num_warmups: usize,
    /// Save benchmark results to a json file.
    #[arg(long)]
    pub save_result: bool,
    /// Include per-request data (ttfts, itls, texts, errors, ...) in the saved results.
    #[arg(long)]
    pub save_detailed: bool,
    /// Append the benchmark result to an existing json file.
    #[arg(long)]
    pub append_result: bool,
    /// KEY=VALUE metadata saved in the result JSON.
    #[arg(long, num_args = 0.., value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// Directory for the result json (default: the current directory).
    #[arg(long)]
    pub result_dir: Option<PathBuf>,
    /// File name for the result json (default:
    /// {label}-{request_rate}qps[-concurrency{n}]-{model}-{date}.json).
    #[arg(long)]
    pub result_filename: Option<String>,
    /// Set ignore_eos in the requests (always set for the random dataset).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Comma-separated metrics to report percentiles for: ttft, tpot, itl, e2el,
    /// client_queue_time, e2el_including_client_queue [default: ttft,tpot,itl].
    #[arg(long)]
    pub percentile_metrics: Option<String>,
    /// Comma-separated percentiles for the selected metrics, e.g. "25,50,75".
    #[arg(long, default_value = "99")]
    pub metric_percentiles: String,
    /// Service level objectives for goodput as KEY:VALUE pairs in ms (ttft, tpot, e2el).
    #[arg(long, num_args = 1.., value_name = "KEY:VALUE")]
    pub goodput: Vec<String>,
    /// Prefix of the request ids [default: bench-<8 random hex digits>-].
    #[arg(long)]
    pub request_id_prefix: Option<String>,
    /// Seconds to wait for the endpoint to answer a test request (0 skips the check).
    #[arg(long, default_value_t = 0)]
    pub ready_check_timeout_sec: u64,
    /// A JSON object merged into every request body.
    #[arg(long)]
    pub extra_body: Option<String>,

    // Sampling parameters (sent only when given).
    #[arg(long, help_heading = "Sampling parameters")]
    pub top_p: Option<f64>,
    #[arg(
        long,
        help_heading = "Sampling parameters",
        allow_negative_numbers = true
    )]
    pub top_k: Option<i64>,
    #[arg(long, help_heading = "Sampling parameters")]
    pub min_p: Option<f64>,
    #[arg(long, help_heading = "Sampling parameters")]
    pub temperature: Option<f64>,
    #[arg(
        long,
        help_heading = "Sampling parameters",
        allow_negative_numbers = true
    )]
    pub frequency_penalty: Option<f64>,
    #[arg(
        long,
        help_heading = "Sampling parameters",
        allow_negative_numbers = true
    )]
    pub presence_penalty: Option<f64>,
    #[arg(long, help_heading = "Sampling parameters")]
    pub repetition_penalty: Option<f64>,

    // Dataset options.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of prompts to process.
    #[arg(long, default_value_t = 1000)]
    pub num_prompts: usize,
    /// Name of the dataset to benchmark on.
    #[arg(long, default_value = "random",
          value_parser = ["random", "sharegpt", "prefix_repetition", "custom"])]
    pub dataset_name: String,
    /// Path to the sharegpt json or the custom jsonl file.
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// Do not oversample if the dataset has fewer samples than --num-prompts.
    #[arg(long)]
    pub no_oversample: bool,
    /// Skip applying the chat template to the custom dataset's prompts.
    #[arg(long)]
    pub skip_chat_template: bool,
    /// Disable shuffling of dataset samples.
    #[arg(long)]
    pub disable_shuffle: bool,
    /// Output tokens per request for the custom dataset.
    #[arg(long, default_value_t = 256, help_heading = "Custom dataset")]
    pub custom_output_len: usize,
    /// Output length for each request, overriding ShareGPT's.
    #[arg(long, help_heading = "ShareGPT dataset")]
    pub sharegpt_output_len: Option<usize>,
    /// Input tokens per request.
    #[arg(long, default_value_t = 1024, help_heading = "Random dataset")]
    pub random_input_len: usize,
    /// Output tokens per request.
    #[arg(long, default_value_t = 128, help_heading = "Random dataset")]
    pub random_output_len: usize,
    /// Lengths are drawn from [len * (1 - r), len * (1 + r)]; r in [0, 1).
    #[arg(long, default_value_t = 0.0, help_heading = "Random dataset")]
    pub random_range_ratio: f64,
    /// Fixed random prefix tokens shared by all prompts (added to the input length).
    #[arg(long, default_value_t = 0, help_heading = "Random dataset")]
    pub random_prefix_len: usize,
    /// Prefix tokens per request.
    #[arg(
        long,
        default_value_t = 256,
        help_heading = "Prefix repetition dataset"
    )]
    pub prefix_repetition_prefix_len: usize,
    /// Suffix tokens per request (input length is prefix + suffix).
    #[arg(
        long,
        default_value_t = 256,
        help_heading = "Prefix repetition dataset"
    )]
    pub prefix_repetition_suffix_len: usize,
    /// Number of prefixes; prompts per prefix is num_prompts / num_prefixes.
    #[arg(long, default_value_t = 10, help_heading = "Prefix repetition dataset")]
    pub prefix_repetition_num_prefixes: usize,
    /// Output tokens per request.
    #[arg(
        long,
        default_value_t = 128,
        help_heading = "Prefix repetition dataset"
    )]
    pub prefix_repetition_output_len: usize,
}

#[derive(Parser)]
#[command(name = "bench-serve")]
struct Standalone {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    /// Parses options given without the program name, e.g.
    /// `ServeArgs::from_args(["--port", "8080", "--num-prompts", "10"])`.
    pub fn from_args<I, T>(args: I) -> Result<ServeArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let argv = std::iter::once(std::ffi::OsString::from("bench-serve"))
            .chain(args.into_iter().map(Into::into));
        Standalone::try_parse_from(argv).map(|s| s.args)
    }
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs::from_args(std::iter::empty::<String>()).expect("defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_defaults_and_spellings() {
        let d = ServeArgs::default();
        assert_eq!(d.backend, "openai");
        assert_eq!((d.host.as_str(), d.port), ("127.0.0.1", 8000));
        assert_eq!((d.num_prompts, d.seed), (1000, 0));
        assert_eq!((d.random_input_len, d.random_output_len), (1024, 128));
        assert_eq!((d.random_range_ratio, d.random_prefix_len), (0.0, 0));
        assert!(d.request_rate.is_infinite() && d.burstiness == 1.0);
        assert_eq!(d.metric_percentiles, "99");
        assert_eq!(d.dataset_name, "random");
        assert_eq!(d.custom_output_len, 256);

        let a = ServeArgs::from_args([
            "--request-rate",
            "inf",
            "--goodput",
            "ttft:200",
            "tpot:50",
            "--header",
            "a=b",
            "--top-k",
            "-1",
            "--ignore-eos",
        ])
        .unwrap();
        assert!(a.request_rate.is_infinite());
        assert_eq!(a.goodput, ["ttft:200", "tpot:50"]);
        assert_eq!(a.header, ["a=b"]);
        assert_eq!(a.top_k, Some(-1));
        assert!(a.ignore_eos);
        assert!(ServeArgs::from_args(["--backend", "tgi"]).is_err());
    }
}
