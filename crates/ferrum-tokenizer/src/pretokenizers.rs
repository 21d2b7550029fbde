//! Pre-tokenizers for byte-level BPE vocabularies stored in GGUF (`tokenizer.ggml.model = gpt2`),
//! keyed by `tokenizer.ggml.pre`.
//!
//! llama.cpp chooses a list of regexes per `pre` value (`llm_tokenizer_bpe` in
//! `src/llama-vocab.cpp`) and splits the text with each in turn, keeping both matches and the
//! text between them. A HF `Split(regex, Isolated)` does exactly that, so each llama.cpp regex
//! becomes one `Split` and the chain ends with a `ByteLevel` that only maps bytes to chars.
//! Where the model's own `tokenizer.json` spells the same split differently (SmolLM2's
//! `Digits(individual)` instead of `\p{N}`), we use the HF spelling: same pieces, and the GGUF
//! path then builds the very pipeline the HF checkpoint ships.

use anyhow::{Result, bail};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// The GPT-2 regex, as `tokenizers`' `ByteLevel(use_regex = true)` applies it.
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama-3's split (also GLM-4's): numbers in groups of up to three digits.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2/Qwen3's split: like Llama-3's but every digit on its own.
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one `tokenizer.ggml.pre` value tokenizes, plus the llama.cpp defaults tied to it.
pub(crate) struct PreTokenizerSpec {
    pub normalizer: Option<NormalizerWrapper>,
    pub pre_tokenizer: PreTokenizerWrapper,
    /// Emit a pre-token as one token when the whole of it is in the vocabulary, before merging
    /// (Llama-3's `ignore_merges`; llama.cpp sets it for the same `pre` values).
    pub ignore_merges: bool,
    /// llama.cpp's `add_bos` default for this `pre` (metadata `add_bos_token` overrides it).
    pub default_add_bos: bool,
}

/// Groups of `tokenizer.ggml.pre` values that share one pipeline (names as llama.cpp reads them).
const GPT2_NAMES: &[&str] = &["gpt-2", "phi-2", "mpt", "olmo"];
const SMOLLM_NAMES: &[&str] = &[
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
];
const QWEN2_NAMES: &[&str] = &["qwen2", "deepseek-r1-qwen"];
const LLAMA3_NAMES: &[&str] = &["llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"];
const GLM4_NAMES: &[&str] = &["glm4", "chatglm-bpe"];
const DEFAULT_NAMES: &[&str] = &["default"];

/// Every `tokenizer.ggml.pre` value this crate knows, for error messages.
pub fn supported_pre_tokenizers() -> Vec<&'static str> {
    [
        GPT2_NAMES,
        SMOLLM_NAMES,
        QWEN2_NAMES,
        LLAMA3_NAMES,
        GLM4_NAMES,
        DEFAULT_NAMES,
    ]
    .concat()
}

fn split(regex: &str) -> Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| anyhow::anyhow!("bad pre-tokenizer regex {regex:?}: {e}"))?;
    Ok(split.into())
}

/// Byte-to-char mapping only; the splitting was done before it.
fn bytes_only() -> PreTokenizerWrapper {
    ByteLevel::new(false, false, false).into()
}

fn spec(pre_tokenizer: PreTokenizerWrapper) -> PreTokenizerSpec {
    PreTokenizerSpec {
        normalizer: None,
        pre_tokenizer,
        ignore_merges: false,
        default_add_bos: false,
    }
}

/// The pipeline for a byte-level BPE vocabulary with this `tokenizer.ggml.pre` value.
/// A missing value means `default`, as in llama.cpp (which warns that quality suffers).
pub(crate) fn byte_level_spec(pre: Option<&str>) -> Result<PreTokenizerSpec> {
    let pre = pre.unwrap_or("default");
    let is = |names: &[&str]| names.contains(&pre);
    if is(GPT2_NAMES) {
        // GPT-2's regex, exactly as tokenizers' ByteLevel applies it.
        Ok(spec(ByteLevel::new(false, true, true).into()))
    } else if is(SMOLLM_NAMES) {
        // llama.cpp: ["\p{N}", gpt-2 regex]; HF SmolLM2: Sequence[Digits(individual), ByteLevel].
        let seq = Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ]);
        Ok(spec(seq.into()))
    } else if is(QWEN2_NAMES) {
        // Qwen's tokenizer.json (and transformers' GGUF converter) normalize to NFC first;
        // llama.cpp does not, which only matters for text that is not already NFC.
        let seq = Sequence::new(vec![split(QWEN2_REGEX)?, bytes_only()]);
        Ok(PreTokenizerSpec {
            normalizer: Some(NFC.into()),
            ..spec(seq.into())
        })
    } else if is(LLAMA3_NAMES) {
        let seq = Sequence::new(vec![split(LLAMA3_REGEX)?, bytes_only()]);
        Ok(PreTokenizerSpec {
            ignore_merges: true,
            default_add_bos: true,
            ..spec(seq.into())
        })
    } else if is(GLM4_NAMES) {
        let seq = Sequence::new(vec![split(LLAMA3_REGEX)?, bytes_only()]);
        Ok(spec(seq.into()))
    } else if is(DEFAULT_NAMES) {
        // llama.cpp's fallback list (LLAMA_VOCAB_PRE_TYPE_DEFAULT), applied in order.
        let seq = Sequence::new(vec![
            split(r"[\p{P}\$\+<=>\^~\|]+")?,
            split(GPT2_REGEX)?,
            split(r"\p{N}+")?,
            split(r"[0-9][0-9][0-9]")?,
            bytes_only(),
        ]);
        Ok(spec(seq.into()))
    } else {
        bail!(
            "unsupported GGUF pre-tokenizer tokenizer.ggml.pre = {pre:?}; supported: {}",
            supported_pre_tokenizers().join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pre_names_itself_and_the_supported_ones() {
        let err = byte_level_spec(Some("martian")).err().unwrap().to_string();
        assert!(err.contains("\"martian\""), "{err}");
        assert!(err.contains("smollm") && err.contains("qwen2") && err.contains("llama-bpe"));
    }

    #[test]
    fn every_supported_name_builds() {
        for name in supported_pre_tokenizers() {
            byte_level_spec(Some(name)).unwrap();
        }
        byte_level_spec(None).unwrap();
    }
}
