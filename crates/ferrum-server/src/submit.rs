//! From token ids to running engine requests: tokenization off the async runtime, submission
//! with the arrival time, and the per-prompt output streams merged into one.

use std::time::Instant;

use ferrum_engine::{EngineError, EngineRequest, SamplingParams};
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{ApiError, ApiResult};
use crate::output::{OutputStream, SeqDelta};
use crate::state::Shared;
use crate::track::Tracker;

/// Tokenizes on the blocking pool, never on the runtime's workers (a long prompt takes
/// milliseconds of CPU).
pub async fn tokenize(
    state: &Shared,
    text: String,
    add_special_tokens: bool,
) -> ApiResult<Vec<u32>> {
    let tok = state.tokenizer.clone();
    tokio::task::spawn_blocking(move || tok.encode(&text, add_special_tokens))
        .await
        .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
        .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e:#}")))
}

/// One prompt submitted to the engine, with what its replies need.
pub struct Running {
    pub prompt_ids: Vec<u32>,
    pub out: OutputStream,
    pub tracker: Tracker,
}

/// Submits one prompt. Refusals come back as 400 with the engine's message.
pub fn submit(
    state: &Shared,
    prompt_ids: Vec<u32>,
    params: &SamplingParams,
    priority: i32,
    arrival: Instant,
) -> ApiResult<Running> {
    let req = EngineRequest {
        prompt_token_ids: prompt_ids.clone(),
        params: params.clone(),
        priority,
        eos_token_ids: state.tokenizer.eos_token_ids().to_vec(),
        arrival_time: Some(arrival),
    };
    let stream = state.engine.add_request(req).map_err(|e| match e {
        EngineError::InvalidRequest(m) => ApiError::bad_request(m),
        EngineError::Dead => ApiError::internal(
            state
                .engine
                .death()
                .unwrap_or("the engine is not running")
                .to_string(),
        ),
    })?;
    let tracker = Tracker::new(state, &prompt_ids, params, arrival);
    Ok(Running {
        out: OutputStream::new(state.engine.clone(), &state.tokenizer, stream, params),
        prompt_ids,
        tracker,
    })
}

/// Every prompt's deltas as one stream of `(prompt index, delta)`, in arrival order. Metrics
/// are recorded as deltas pass. Dropping the stream aborts every request still running.
pub fn merged(runs: Vec<Running>) -> BoxStream<'static, (usize, anyhow::Result<SeqDelta>)> {
    let streams = runs.into_iter().enumerate().map(|(i, r)| {
        stream::unfold(r, move |mut r| async move {
            let d = r.out.next().await?;
            if let Ok(d) = &d {
                r.tracker.observe(d);
            }
            Some(((i, d), r))
        })
        .boxed()
    });
    stream::select_all(streams).boxed()
}
