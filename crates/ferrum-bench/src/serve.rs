//! `ferrum bench serve` from options to printed report (vLLM's `main_async`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use crate::args::ServeArgs;
use crate::bench::{self, RunOptions};
use crate::client::{self, Api, Endpoint};
use crate::datasets;
use crate::metrics::{self, BenchResult, ReportConfig};
use crate::py::PyJson;
use crate::report;
use ferrum_tokenizer::Tokenizer;

/// Loads a tokenizer from a HF tokenizer folder or a GGUF file.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        Tokenizer::from_hf_dir(path)
    } else {
        let gguf = ferrum_gguf::GgufFile::open(path)
            .with_context(|| format!("opening tokenizer {}", path.display()))?;
        Tokenizer::from_gguf(&gguf)
    }
}

/// `--tokenizer`, else the model id when it names a local tokenizer folder or GGUF file
/// (vLLM loads the tokenizer of `--model`), else ferrum's default model.
fn tokenizer_path(args: &ServeArgs, model_id: &str) -> PathBuf {
    if let Some(t) = &args.tokenizer {
        return t.clone();
    }
    let m = Path::new(model_id);
    if m.join("tokenizer.json").is_file() || (m.is_file() && model_id.ends_with(".gguf")) {
        return m.to_path_buf();
    }
    ferrum_gguf::default_model_path()
}

/// `KEY=VALUE` items of --header / --metadata.
fn key_values(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => bail!("Invalid {what} format. Please use KEY=VALUE format."),
        })
        .collect()
}

/// Sampling options given on the command line, then --extra-body on top.
fn extra_body(args: &ServeArgs) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    let f = |v: Option<f64>| v.map(Value::from);
    for (k, v) in [
        ("top_p", f(args.top_p)),
        ("top_k", args.top_k.map(Value::from)),
        ("min_p", f(args.min_p)),
        ("temperature", f(args.temperature)),
        ("frequency_penalty", f(args.frequency_penalty)),
        ("presence_penalty", f(args.presence_penalty)),
        ("repetition_penalty", f(args.repetition_penalty)),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    }
    if let Some(extra) = &args.extra_body {
        let v: Value = serde_json::from_str(extra).context("--extra-body is not valid JSON")?;
        let Value::Object(obj) = v else {
            bail!("--extra-body must be a JSON object");
        };
        body.extend(obj);
    }
    Ok(body)
}

/// Runs the benchmark: prints vLLM's progress lines and result block, saves the result
/// JSON when --save-result / --append-result ask for it, and returns the totals.
pub async fn run_serve(args: &ServeArgs) -> Result<BenchResult> {
    let mut args = args.clone();
    if args.max_concurrency == Some(0) {
        bail!("--max-concurrency must be greater than 0");
    }
    if matches!(args.dataset_name.as_str(), "random" | "prefix_repetition")
        && let Some(p) = &args.dataset_path
    {
        bail!(
            "Cannot use '{}' dataset with --dataset-path. Please specify the appropriate \
             --dataset-name (e.g., 'sharegpt', 'custom') for your dataset file: {}",
            args.dataset_name,
            p.display()
        );
    }
    // NaN fails these too.
    let positive = |x: f64| x.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater);
    if !positive(args.request_rate) || !positive(args.burstiness) {
        bail!("--request-rate and --burstiness must be positive");
    }
    let api = if args.backend == "openai-chat" {
        Api::Chat
    } else {
        Api::Completions
    };
    let endpoint = args.endpoint.clone().unwrap_or_else(|| {
        match api {
            Api::Chat => "/v1/chat/completions",
            Api::Completions => "/v1/completions",
        }
        .to_string()
    });
    let (base_url, api_url) = match &args.base_url {
        Some(b) => (b.clone(), format!("{b}{endpoint}")),
        None => {
            // IPv6 literals need brackets in a URL.
            let host = if args.host.contains(':') && !args.host.starts_with('[') {
                format!("[{}]", args.host)
            } else {
                args.host.clone()
            };
            let base = format!("http://{host}:{}", args.port);
            (base.clone(), format!("{base}{endpoint}"))
        }
    };
    let (suffix, api_name) = match api {
        Api::Chat => ("chat/completions", "OpenAI Chat Completions API"),
        Api::Completions => ("completions", "OpenAI Completions API"),
    };
    if !api_url.ends_with(suffix) && !api_url.ends_with("profile") {
        bail!("{api_name} URL must end with one of: {{'{suffix}', 'profile'}}.");
    }
    let headers = key_values(&args.header, "header")?;
    let metadata = key_values(&args.metadata, "metadata")?;
    let goodput = metrics::parse_goodput(&args.goodput)?;
    let metric_percentiles = args
        .metric_percentiles
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<Vec<f64>, _>>()
        .context("--metric-percentiles must be comma-separated numbers")?;
    let percentile_metrics: Vec<String> = args
        .percentile_metrics
        .as_deref()
        .unwrap_or("ttft,tpot,itl")
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(6 * 60 * 60))
        .build()?;
    let (model_name, model_id) = match &args.model {
        Some(m) => (args.served_model_name.clone(), m.clone()),
        None => {
            println!("Model not specified, fetching first model from server...");
            let (name, id) = client::first_model(&http, &base_url).await?;
            println!("First model name: {name}, first model id: {id}");
            (Some(name), id)
        }
    };
    let tok_path = tokenizer_path(&args, &model_id);
    let tok = load_tokenizer(&tok_path)?;

    // General length options map onto the dataset-specific ones.
    if let Some(n) = args.input_len {
        args.random_input_len = n;
    }
    if let Some(n) = args.output_len {
        args.random_output_len = n;
        args.sharegpt_output_len = Some(n);
        args.custom_output_len = n;
        args.prefix_repetition_output_len = n;
    }
    // Random prompts ask for exact output lengths, so generation must not stop at EOS.
    if args.dataset_name == "random" {
        args.ignore_eos = true;
    }
    let id_prefix = args
        .request_id_prefix
        .clone()
        .unwrap_or_else(|| format!("bench-{:08x}-", rand::random::<u32>()));
    let requests = {
        let (args, tok, prefix) = (args.clone(), tok.clone(), id_prefix.clone());
        tokio::task::spawn_blocking(move || datasets::get_samples(&args, &tok, &prefix)).await??
    };
    let send_model = model_name.clone().unwrap_or_else(|| model_id.clone());
    let requests = if matches!(args.dataset_name.as_str(), "random" | "prefix_repetition") {
        crate::align::align_prompts(&http, &base_url, &send_model, requests).await
    } else {
        requests
    };

    let body = extra_body(&args)?;
    if args.temperature.is_none() {
        println!(
            "WARNING: vllm bench serve no longer sets temperature==0 (greedy) in requests by \
             default. The default will be determined on the server side and can be \
             model/API specific. For the old behavior, include --temperature=0."
        );
    }
    let ep = Arc::new(Endpoint {
        api,
        api_url,
        model: send_model,
        headers,
        ignore_eos: args.ignore_eos,
        logprobs: args.logprobs,
        extra_body: body,
    });
    let opts = RunOptions {
        request_rate: args.request_rate,
        burstiness: args.burstiness,
        max_concurrency: args.max_concurrency,
        disable_tqdm: args.disable_tqdm,
        seed: args.seed,
        num_warmups: args.num_warmups,
        ready_check_timeout_sec: args.ready_check_timeout_sec,
    };
    let (outcomes, duration) = bench::run(&http, &ep, &requests, &opts).await?;

    let cfg = ReportConfig {
        max_concurrency: args.max_concurrency,
        request_rate: args.request_rate,
        percentile_metrics,
        metric_percentiles,
        goodput,
    };
    let count = |text: &str| tok.encode(text, false).map_or(0, |ids| ids.len());
    let result = metrics::compute_result(&outcomes, duration, &cfg, &count);
    if let Some(s) = metrics::failure_summary(&outcomes) {
        print!("{s}");
    }
    print!("{}", result.report);
    std::io::stdout().flush().ok();

    if args.save_result || args.append_result {
        let date = report::timestamp_now();
        let rate = if args.request_rate.is_finite() {
            PyJson::Float(args.request_rate)
        } else {
            PyJson::from("inf")
        };
        let mut json: Vec<(String, PyJson)> = vec![
            ("date".into(), date.as_str().into()),
            ("endpoint_type".into(), args.backend.as_str().into()),
            ("backend".into(), args.backend.as_str().into()),
            ("label".into(), args.label.clone().into()),
            ("model_id".into(), model_id.as_str().into()),
            ("tokenizer_id".into(), tok_path.display().to_string().into()),
            ("num_prompts".into(), args.num_prompts.into()),
        ];
        json.extend(metadata.into_iter().map(|(k, v)| (k, PyJson::Str(v))));
        json.push(("request_rate".into(), rate));
        json.push(("burstiness".into(), args.burstiness.into()));
        json.push(("max_concurrency".into(), args.max_concurrency.into()));
        json.extend(report::benchmark_json(&result, args.save_detailed));
        let label = args.label.clone().unwrap_or_else(|| args.backend.clone());
        let path = report::result_path(
            &label,
            args.request_rate,
            args.max_concurrency,
            &model_id,
            &date,
            args.result_filename.as_deref(),
            args.result_dir.as_deref(),
        );
        save_json(&path, &PyJson::Dict(json).dumps(), args.append_result)?;
    }
    Ok(result)
}

/// Writes (or, appending, adds a line to) the result file.
fn save_json(path: &Path, text: &str, append: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    if append && f.metadata()?.len() != 0 {
        f.write_all(b"\n")?;
    }
    f.write_all(text.as_bytes())?;
    Ok(())
}
