//! The timed run (vLLM's `benchmark()`): optional readiness check and warmups, then every
//! request sent at its arrival time, at most --max-concurrency in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;

use crate::arrivals::arrival_offsets;
use crate::client::{self, Endpoint, RequestInput};
use crate::datasets::SampleRequest;
use crate::metrics::RequestOutcome;
use crate::py::float_repr;

/// Traffic shape and client-side options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub request_rate: f64,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub disable_tqdm: bool,
    /// Seeds the arrival intervals.
    pub seed: u64,
    pub num_warmups: usize,
    /// 0 skips the readiness check.
    pub ready_check_timeout_sec: u64,
}

fn input_of(r: &SampleRequest) -> RequestInput {
    RequestInput {
        prompt: r.prompt.clone(),
        prompt_len: r.prompt_len,
        output_len: r.expected_output_len,
        request_id: r.request_id.clone(),
    }
}

fn progress_bar(n: usize, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed}<{eta}]")
    {
        pb.set_style(style);
    }
    pb
}

/// Retries the first request until it succeeds or the timeout passes (vLLM's
/// `wait_for_endpoint`).
async fn wait_until_ready(
    client: &reqwest::Client,
    ep: &Endpoint,
    input: &RequestInput,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = client::send(client, ep, input).await;
        if out.success {
            println!("Initial test run completed.");
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "Initial test run failed - Please make sure benchmark arguments are correctly \
                 specified. Error: {}",
                out.error
            );
        }
        tokio::time::sleep(Duration::from_secs(5).min(deadline - Instant::now())).await;
    }
}

/// Sends every request; returns the outcomes in request order and the run's duration in
/// seconds (first dispatch to last completion).
pub async fn run(
    client: &reqwest::Client,
    ep: &Arc<Endpoint>,
    requests: &[SampleRequest],
    opts: &RunOptions,
) -> Result<(Vec<RequestOutcome>, f64)> {
    let Some(first) = requests.first() else {
        bail!("No requests provided.");
    };
    let test_input = input_of(first);
    if opts.ready_check_timeout_sec > 0 {
        println!("Starting initial single prompt test run...");
        let timeout = Duration::from_secs(opts.ready_check_timeout_sec);
        wait_until_ready(client, ep, &test_input, timeout).await?;
    } else {
        println!("Skipping endpoint ready check.");
    }
    let semaphore = opts.max_concurrency.map(|n| Arc::new(Semaphore::new(n)));

    if opts.num_warmups > 0 {
        println!("Warming up with {} requests...", opts.num_warmups);
        let pb = progress_bar(opts.num_warmups, opts.disable_tqdm);
        let warmups = (0..opts.num_warmups).map(|_| {
            let (client, ep, input) = (client.clone(), ep.clone(), test_input.clone());
            let (sem, pb) = (semaphore.clone(), pb.clone());
            tokio::spawn(async move {
                let _permit = match &sem {
                    Some(s) => Some(s.acquire().await),
                    None => None,
                };
                client::send(&client, &ep, &input).await;
                pb.inc(1);
            })
        });
        futures::future::join_all(warmups.collect::<Vec<_>>()).await;
        pb.finish_and_clear();
        println!("Warmup run completed.");
    }

    println!("Starting main benchmark run...");
    let distribution = if opts.burstiness == 1.0 {
        "Poisson process"
    } else {
        "Gamma distribution"
    };
    println!("Traffic request rate: {}", float_repr(opts.request_rate));
    println!(
        "Burstiness factor: {} ({distribution})",
        float_repr(opts.burstiness)
    );
    match opts.max_concurrency {
        Some(n) => println!("Maximum request concurrency: {n}"),
        None => println!("Maximum request concurrency: None"),
    }

    let pb = progress_bar(requests.len(), opts.disable_tqdm);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let offsets = arrival_offsets(requests.len(), opts.request_rate, opts.burstiness, &mut rng);
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (req, offset) in requests.iter().zip(offsets) {
        if offset > 0.0 {
            tokio::time::sleep_until((t0 + Duration::from_secs_f64(offset)).into()).await;
        }
        let arrival = client::now();
        let (client, ep, input) = (client.clone(), ep.clone(), input_of(req));
        let (sem, pb) = (semaphore.clone(), pb.clone());
        tasks.push(tokio::spawn(async move {
            let permit = match &sem {
                Some(s) => Some(s.acquire().await),
                None => None,
            };
            let mut out = client::send(&client, &ep, &input).await;
            drop(permit);
            // The wait for a concurrency slot, kept apart from the request's own latency.
            out.client_queue_time = out.start_time - arrival;
            pb.inc(1);
            out
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for t in tasks {
        outcomes.push(t.await?);
    }
    pb.finish();
    Ok((outcomes, t0.elapsed().as_secs_f64()))
}
