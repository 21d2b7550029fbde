//! Per-request sampling parameters with vLLM's names, defaults and validation messages
//! (`vllm/sampling_params.py::_verify_args` and the v1 input processor's logprob and
//! logit-bias checks), so the server can return the same 400 bodies vLLM does.

/// vLLM's cap on `n` (`VLLM_MAX_N_SEQUENCES`, default 16384), read once from the environment.
pub fn max_n_sequences() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("VLLM_MAX_N_SEQUENCES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16384)
    })
}

/// Temperatures below this are greedy (vLLM's `_SAMPLING_EPS`).
pub const SAMPLING_EPS: f32 = 1e-5;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Number of output sequences for the prompt; each is its own child sequence.
    pub n: usize,
    /// 0 (or below [`SAMPLING_EPS`]) means greedy.
    pub temperature: f32,
    pub top_p: f32,
    /// 0 or -1 disables.
    pub top_k: i32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
    /// `None` means "until `max_model_len`".
    pub max_tokens: Option<usize>,
    pub min_tokens: usize,
    /// Stop strings: matched by the output side after detokenization; carried here only.
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub include_stop_str_in_output: bool,
    pub ignore_eos: bool,
    pub logit_bias: Vec<(u32, f32)>,
    /// Only these ids may be sampled (vLLM's `allowed_token_ids`).
    pub allowed_token_ids: Option<Vec<u32>>,
    pub logprobs: Option<usize>,
    pub prompt_logprobs: Option<usize>,
    pub skip_special_tokens: bool,
    /// Structured output: a compiled grammar whose matchers restrict every sampled token
    /// (see [`super::constraint`]).
    pub constraint: Option<super::constraint::Constraint>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            max_tokens: None,
            min_tokens: 0,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            include_stop_str_in_output: false,
            ignore_eos: false,
            logit_bias: Vec::new(),
            allowed_token_ids: None,
            logprobs: None,
            prompt_logprobs: None,
            skip_special_tokens: true,
            constraint: None,
        }
    }
}

/// Whether top-k keeps fewer than all of `vocab` tokens (`apply_top_k`'s rule).
pub(crate) fn top_k_applies(top_k: i32, vocab: usize) -> bool {
    top_k >= 1 && (top_k as usize) < vocab
}

impl SamplingParams {
    /// Defaults with temperature 0.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature < SAMPLING_EPS
    }

    /// Whether min-p, top-k or top-p can drop a token from a row of `vocab` (the rules the
    /// filters in `processors` apply: min-p above 0, top-k from 1 to below the vocabulary,
    /// top-p below 1). `false`: the draw is over the whole temperature-scaled row, which a GPU
    /// backend spreads over many blocks.
    pub fn truncates(&self, vocab: usize) -> bool {
        self.min_p > 0.0 || top_k_applies(self.top_k, vocab) || self.top_p < 1.0
    }

    /// `Some(k)` when top-k filtering is on (`top_k >= 1`).
    pub fn top_k_limit(&self) -> Option<usize> {
        (self.top_k >= 1).then_some(self.top_k as usize)
    }

    /// Checks in vLLM's order, with vLLM's wording; the first failure wins.
    /// NaN is rejected everywhere (vLLM lets a NaN temperature through by accident).
    pub fn validate(&self, vocab_size: usize, max_logprobs: usize) -> Result<(), String> {
        let f = py_float;
        if self.n < 1 {
            return Err(format!("n must be at least 1, got {}.", self.n));
        }
        let max_n = max_n_sequences();
        if self.n > max_n {
            return Err(format!("n must be at most {max_n}, got {}.", self.n));
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return Err(format!(
                "presence_penalty must be in [-2, 2], got {}.",
                f(self.presence_penalty)
            ));
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return Err(format!(
                "frequency_penalty must be in [-2, 2], got {}.",
                f(self.frequency_penalty)
            ));
        }
        if self.repetition_penalty.is_nan()
            || self.repetition_penalty <= 0.0
            || self.repetition_penalty.is_infinite()
        {
            return Err(format!(
                "repetition_penalty must be greater than zero, got {}.",
                f(self.repetition_penalty)
            ));
        }
        if self.temperature.is_nan() || self.temperature < 0.0 || self.temperature.is_infinite() {
            return Err(format!(
                "temperature must be non-negative, got {}.",
                f(self.temperature)
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p must be in (0, 1], got {}.", f(self.top_p)));
        }
        if self.top_k < -1 {
            return Err(format!(
                "top_k must be 0 (disable), or at least 1, got {}.",
                self.top_k
            ));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}.", f(self.min_p)));
        }
        if let Some(max) = self.max_tokens {
            if max < 1 {
                return Err(format!("max_tokens must be at least 1, got {max}."));
            }
            if self.min_tokens > max {
                return Err(format!(
                    "min_tokens must be less than or equal to max_tokens={max}, got {}.",
                    self.min_tokens
                ));
            }
        }
        if self.stop.iter().any(String::is_empty) {
            return Err("stop cannot contain an empty string.".to_string());
        }
        if let Some(k) = self.logprobs
            && k > max_logprobs
        {
            return Err(format!(
                "Requested sample logprobs of {k}, which is greater than max allowed: {max_logprobs}"
            ));
        }
        if let Some(k) = self.prompt_logprobs
            && k > max_logprobs
        {
            return Err(format!(
                "Requested prompt logprobs of {k}, which is greater than max allowed: {max_logprobs}"
            ));
        }
        let bad: Vec<u32> = self
            .logit_bias
            .iter()
            .map(|&(id, _)| id)
            .filter(|&id| id as usize >= vocab_size)
            .collect();
        if !bad.is_empty() {
            return Err(format!(
                "token_id(s) {bad:?} in logit_bias contain out-of-vocab token ids. Vocabulary size: {vocab_size}"
            ));
        }
        if let Some(ids) = &self.allowed_token_ids {
            if ids.is_empty() {
                return Err("allowed_token_ids is not allowed to be empty.".to_string());
            }
            if ids.iter().any(|&id| id as usize >= vocab_size) {
                return Err("allowed_token_ids contains out-of-vocab token id!".to_string());
            }
        }
        if self.logit_bias.iter().any(|&(_, b)| !b.is_finite()) {
            return Err("logit_bias values must be finite numbers.".to_string());
        }
        Ok(())
    }
}

/// Formats a float the way Python's `str(float)` does for the values users type
/// (`-1.0`, `0.5`, `1e-07`, `inf`, `nan`), so messages read exactly like vLLM's.
pub fn py_float(x: f32) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Shortest round-trip representation of the f32, as the user wrote it.
    let s = format!("{x}");
    let abs = x.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python switches to exponent notation here: 1e-05, 1e+16.
        let e = format!("{x:e}"); // e.g. "1e-5" or "1.5e16"
        let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    if s.contains('.') { s } else { format!("{s}.0") }
}
