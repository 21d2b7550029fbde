//! The engine's own host time per decode step (schedule, the step's batch, applying its outputs,
//! sending each request its token), with an executor that does nothing but answer one token a
//! sequence: what a GPU waits on between two steps when the runner's work is left out.
//! `cargo bench -p ferrum-engine --bench host_step` (µs a decode step, each batch size several
//! rounds; 512-token prompts, 128 tokens out).

use std::time::{Duration, Instant};

use ferrum_engine::{
    EngineConfig, EngineCore, EngineRequest, Executor, Sampled, SamplingParams, SeqStepOutput,
    StepBatch, output_channel,
};

/// One token a sampled sequence, nothing computed.
struct Answer;

impl Executor for Answer {
    fn execute(&mut self, batch: &StepBatch<'_>) -> anyhow::Result<Vec<SeqStepOutput>> {
        Ok(batch
            .seqs
            .iter()
            .map(|s| SeqStepOutput {
                tokens: if s.sample {
                    vec![Sampled {
                        id: 7,
                        logprobs: None,
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            })
            .collect())
    }
}

/// Mean host time of the decode steps that ran all `b` sequences.
fn decode_step(b: usize) -> Duration {
    let mut core = EngineCore::new(EngineConfig::new(20_000, 4096, 128_256), Box::new(Answer));
    let mut outputs = Vec::new();
    for i in 0..b {
        let params = SamplingParams {
            max_tokens: Some(128),
            ignore_eos: true,
            ..Default::default()
        };
        let prompt = (0..512)
            .map(|t| (t * 31 + i as u32 * 7919) % 128_000)
            .collect();
        let (tx, rx) = output_channel();
        core.add_request(i as u64, EngineRequest::new(prompt, params), tx)
            .expect("a valid request");
        outputs.push(rx);
    }
    let (mut steps, mut spent) = (0u32, Duration::ZERO);
    while core.has_work() {
        let t = Instant::now();
        let report = core.step();
        let took = t.elapsed();
        let out = &report.output.scheduled;
        if out.len() == b && out.iter().all(|s| s.num_new == 1) {
            steps += 1;
            spent += took;
        }
        for rx in &mut outputs {
            while rx.try_recv().is_ok() {}
        }
    }
    spent / steps.max(1)
}

fn main() {
    for b in [1, 8, 64, 128, 256] {
        let rounds: Vec<String> = (0..3)
            .map(|_| format!("{:.1}", decode_step(b).as_secs_f64() * 1e6))
            .collect();
        println!(
            "{b:>3} sequences: {} µs a decode step (3 rounds)",
            rounds.join(" / ")
        );
    }
}
