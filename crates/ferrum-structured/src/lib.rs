//! ferrum-structured: structured output (JSON schema, JSON object, regex, choice, Lark grammar,
//! vLLM's structural tags) through llguidance.
//!
//! - [`StructuredOutputs`] holds the token trie built from our own tokenizer (a small
//!   [`toktrie::TokenizerEnv`] over `ferrum_tokenizer::Tokenizer`, for HF tokenizer.json and
//!   GGUF vocabularies alike), compiles a request's [`ConstraintSpec`] into a
//!   [`ferrum_engine::sampling::Constraint`] and caches compiled grammars by (kind, text).
//! - [`StructuredOutputs::compile`] runs the compilation on tokio's blocking pool with a time
//!   limit, so neither the engine thread nor the runtime's workers ever wait for a grammar.
//! - A schema or grammar llguidance refuses is a [`CompileError`] naming what is unsupported
//!   (the server answers 400 with it).

mod spec;
mod struct_tag;
mod tokenizer_env;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrum_engine::sampling::{Constraint, ConstraintFactory, ConstraintMatcher};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory, TokenParser};

pub use spec::ConstraintSpec;
pub use struct_tag::{StructuralTag, TagStructure};
pub use tokenizer_env::{FerrumTokEnv, token_bytes};

/// Why a constraint could not be compiled (the server's 400 message).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

/// The default wall-clock limit on compiling one grammar.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(10);

/// Cached compilations kept before the cache is emptied (a crude bound on memory).
const CACHE_CAPACITY: usize = 512;

type CacheKey = (&'static str, String);

/// Compiles constraints for one tokenizer.
pub struct StructuredOutputs {
    factory: ParserFactory,
    cache: Mutex<HashMap<CacheKey, Result<Arc<Compiled>, CompileError>>>,
    timeout: Duration,
    stats: Mutex<CompileStats>,
}

/// Compile-time figures (the cache's hits are not timed).
#[derive(Clone, Debug, Default)]
pub struct CompileStats {
    pub compiled: u64,
    pub cache_hits: u64,
    pub refused: u64,
    pub timed_out: u64,
    /// Seconds of every fresh compilation, in order.
    pub times: Vec<f64>,
}

impl StructuredOutputs {
    /// Builds the token trie from `tok` over `vocab_size` ids (the model's vocabulary, which may
    /// be larger than the tokenizer's; the extra ids are never allowed).
    pub fn new(tok: &ferrum_tokenizer::Tokenizer, vocab_size: usize) -> anyhow::Result<Self> {
        let env = FerrumTokEnv::new(tok, vocab_size)?;
        Self::from_tok_env(Arc::new(env))
    }

    /// Over any llguidance tokenizer environment (tests use a byte-level one).
    pub fn from_tok_env(tok_env: toktrie::TokEnv) -> anyhow::Result<Self> {
        let mut factory = ParserFactory::new_simple(&tok_env)?;
        factory.quiet();
        Ok(Self {
            factory,
            cache: Mutex::new(HashMap::new()),
            timeout: DEFAULT_COMPILE_TIMEOUT,
            stats: Mutex::new(CompileStats::default()),
        })
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn vocab_size(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    pub fn stats(&self) -> CompileStats {
        self.stats.lock().unwrap().clone()
    }

    /// Compiles `spec` on tokio's blocking pool, waiting at most the time limit; cached by
    /// (kind, text). Call from async code (the server).
    pub async fn compile(
        self: &Arc<Self>,
        spec: ConstraintSpec,
    ) -> Result<Constraint, CompileError> {
        let key = spec.cache_key()?;
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        let this = self.clone();
        let task = tokio::task::spawn_blocking(move || this.compile_uncached(key, &spec));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(CompileError(format!("grammar compilation failed: {e}"))),
            Err(_) => {
                self.stats.lock().unwrap().timed_out += 1;
                Err(CompileError(format!(
                    "grammar compilation took longer than {} s",
                    self.timeout.as_secs_f64()
                )))
            }
        }
    }

    /// Compiles `spec` on the calling thread (offline use, tests, benchmarks); cached.
    pub fn compile_blocking(&self, spec: &ConstraintSpec) -> Result<Constraint, CompileError> {
        let key = spec.cache_key()?;
        if let Some(hit) = self.cached(&key) {
            return hit;
        }
        self.compile_uncached(key, spec)
    }

    fn cached(&self, key: &CacheKey) -> Option<Result<Constraint, CompileError>> {
        let hit = self.cache.lock().unwrap().get(key).cloned()?;
        self.stats.lock().unwrap().cache_hits += 1;
        Some(hit.map(|c| Constraint::new(c)))
    }

    fn compile_uncached(
        &self,
        key: CacheKey,
        spec: &ConstraintSpec,
    ) -> Result<Constraint, CompileError> {
        let t0 = Instant::now();
        let result = spec.to_grammar().and_then(|g| self.build(g, spec.kind()));
        let secs = t0.elapsed().as_secs_f64();
        {
            let mut st = self.stats.lock().unwrap();
            match &result {
                Ok(_) => {
                    st.compiled += 1;
                    st.times.push(secs);
                }
                Err(_) => st.refused += 1,
            }
        }
        tracing::debug!(
            kind = spec.kind(),
            secs,
            ok = result.is_ok(),
            "grammar compiled"
        );
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, result.clone());
        result.map(|c| Constraint::new(c))
    }

    fn build(&self, g: TopLevelGrammar, kind: &'static str) -> Result<Arc<Compiled>, CompileError> {
        let parser = llguidance::panic_utils::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.factory.create_parser(g)
        }))
        .map_err(|e| CompileError(format!("unsupported {kind}: {e}")))?;
        // a matcher shows what the first step would hit (e.g. an unsatisfiable schema)
        let mut m = Matcher::new(Ok(parser.deep_clone()));
        if let Err(e) = m.compute_mask() {
            return Err(CompileError(format!("unsupported {kind}: {e}")));
        }
        Ok(Arc::new(Compiled {
            parser: Mutex::new(parser),
            kind,
        }))
    }
}

/// A compiled grammar: each sequence gets a deep copy of the parser.
pub struct Compiled {
    parser: Mutex<TokenParser>,
    kind: &'static str,
}

impl ConstraintFactory for Compiled {
    fn new_matcher(&self) -> Box<dyn ConstraintMatcher> {
        let parser = self.parser.lock().unwrap().deep_clone();
        Box::new(SeqMatcher(Matcher::new(Ok(parser))))
    }

    fn describe(&self) -> String {
        self.kind.to_string()
    }
}

/// One sequence's llguidance matcher.
pub struct SeqMatcher(Matcher);

impl ConstraintMatcher for SeqMatcher {
    fn fill_mask(&mut self, bits: &mut [u32]) -> Result<(), String> {
        let vob = self.0.compute_mask_or_eos().map_err(|e| e.to_string())?;
        let src = vob.as_slice();
        let n = src.len().min(bits.len());
        bits[..n].copy_from_slice(&src[..n]);
        bits[n..].fill(0);
        Ok(())
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        self.0.consume_token(token).map_err(|e| e.to_string())
    }

    fn rollback(&mut self, n: usize) -> Result<(), String> {
        self.0.rollback(n).map_err(|e| e.to_string())
    }

    fn is_finished(&self) -> bool {
        self.0.is_stopped()
    }
}

#[cfg(test)]
mod tests;
