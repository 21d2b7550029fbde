//! A tokenizer built from a GGUF file's `tokenizer.*` metadata, the way llama.cpp reads it.
//!
//! `tokenizer.ggml.model = gpt2`: byte-level BPE from `tokens` + `merges`, pre-tokenized per
//! `tokenizer.ggml.pre` (see `pretokenizers.rs`).
//! `tokenizer.ggml.model = llama`: SentencePiece BPE. GGUF keeps only tokens and scores, so the
//! merges are rebuilt from the scores the way transformers' GGUF converter does (a merge for
//! every split of a token into two tokens, ranked by the merged token's score), with byte
//! fallback to `<0xXX>` tokens and spaces turned into `▁`.
//! Control (3), unknown (2) and user-defined (4) tokens become added tokens, so their text in
//! the input maps to them (llama.cpp's `parse_special`); control and unknown ones are special.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, anyhow, bail};
use ferrum_gguf::{GgufFile, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper};

use crate::pretokenizers::byte_level_spec;
use crate::spm_decode::SpmDecoder;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub const TOKEN_TYPE_NORMAL: i32 = 1;
pub const TOKEN_TYPE_UNKNOWN: i32 = 2;
pub const TOKEN_TYPE_CONTROL: i32 = 3;
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
pub const TOKEN_TYPE_UNUSED: i32 = 5;
pub const TOKEN_TYPE_BYTE: i32 = 6;

/// Token texts llama.cpp treats as end-of-generation whatever the metadata says
/// (`special_eog_ids` in `llama-vocab.cpp`); models rely on it, e.g. SmolLM2's `<|endoftext|>`.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
];

/// The tokenizer part of a GGUF file's metadata, as plain data. `Tokenizer::from_gguf` reads it
/// from the file; tests build it from a HF `tokenizer.json` to check the GGUF path.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`; empty when absent.
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type`; empty when absent (all normal).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`, each `"left right"`.
    pub merges: Vec<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub eot_token_id: Option<u32>,
    pub eom_token_id: Option<u32>,
    pub unknown_token_id: Option<u32>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`, then named ones (`tokenizer.chat_template.<name>`).
    pub chat_templates: Vec<(String, String)>,
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    let arr = v
        .as_array()
        .ok_or_else(|| anyhow!("{key} is not an array"))?;
    arr.iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{key} holds a non-string"))
        })
        .collect()
}

impl GgufVocab {
    /// Reads the `tokenizer.*` keys of a GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<GgufVocab> {
        let get = |key: &str| file.get(key);
        let str_of = |key: &str| get(key).and_then(Value::as_str).map(str::to_string);
        let id_of = |key: &str| {
            get(key)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let bool_of = |key: &str| get(key).and_then(Value::as_bool);

        let model = str_of("tokenizer.ggml.model")
            .context("GGUF has no tokenizer.ggml.model: no tokenizer in this file")?;
        let tokens = strings(
            get("tokenizer.ggml.tokens").context("GGUF has no tokenizer.ggml.tokens")?,
            "tokenizer.ggml.tokens",
        )?;
        let scores = match get("tokenizer.ggml.scores") {
            Some(v) => v
                .as_array()
                .context("tokenizer.ggml.scores is not an array")?
                .iter()
                .map(|s| s.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .context("tokenizer.ggml.scores holds a non-number")?,
            None => Vec::new(),
        };
        let token_types = match get("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .context("tokenizer.ggml.token_type is not an array")?
                .iter()
                .map(|t| t.as_i64().and_then(|t| i32::try_from(t).ok()))
                .collect::<Option<Vec<i32>>>()
                .context("tokenizer.ggml.token_type holds a non-integer")?,
            None => Vec::new(),
        };
        let merges = match get("tokenizer.ggml.merges") {
            Some(v) => strings(v, "tokenizer.ggml.merges")?,
            None => Vec::new(),
        };
        let mut chat_templates = Vec::new();
        if let Some(t) = str_of("tokenizer.chat_template") {
            chat_templates.push(("default".to_string(), t));
        }
        if let Some(names) = get("tokenizer.chat_templates").and_then(Value::as_array) {
            for name in names.iter().filter_map(Value::as_str) {
                if let Some(t) = str_of(&format!("tokenizer.chat_template.{name}")) {
                    chat_templates.push((name.to_string(), t));
                }
            }
        }
        Ok(GgufVocab {
            model,
            pre: str_of("tokenizer.ggml.pre"),
            tokens,
            scores,
            token_types,
            merges,
            bos_token_id: id_of("tokenizer.ggml.bos_token_id"),
            eos_token_id: id_of("tokenizer.ggml.eos_token_id"),
            eot_token_id: id_of("tokenizer.ggml.eot_token_id"),
            eom_token_id: id_of("tokenizer.ggml.eom_token_id"),
            unknown_token_id: id_of("tokenizer.ggml.unknown_token_id"),
            add_bos_token: bool_of("tokenizer.ggml.add_bos_token"),
            add_eos_token: bool_of("tokenizer.ggml.add_eos_token"),
            add_space_prefix: bool_of("tokenizer.ggml.add_space_prefix"),
            chat_templates,
        })
    }

    fn token_type(&self, id: usize) -> i32 {
        self.token_types
            .get(id)
            .copied()
            .unwrap_or(TOKEN_TYPE_NORMAL)
    }

    /// An id from metadata, dropped when out of range (llama.cpp warns and ignores it too).
    fn valid(&self, id: Option<u32>) -> Option<u32> {
        id.filter(|&i| (i as usize) < self.tokens.len())
    }
}

/// What `Tokenizer` needs from a GGUF vocabulary.
pub(crate) struct BuiltVocab {
    pub tokenizer: tokenizers::Tokenizer,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// Byte-wise decoding for SentencePiece vocabularies (see `spm_decode.rs`).
    pub spm_decoder: Option<SpmDecoder>,
}

pub(crate) fn build(v: &GgufVocab) -> Result<BuiltVocab> {
    if !v.token_types.is_empty() && v.token_types.len() < v.tokens.len() {
        bail!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            v.token_types.len(),
            v.tokens.len()
        );
    }
    let vocab = vocab_map(&v.tokens)?;
    let (mut tokenizer, default_add_bos) = match v.model.as_str() {
        "gpt2" => byte_level_bpe(v, vocab)?,
        "llama" => (sentencepiece_bpe(v, vocab)?, true),
        other => bail!(
            "unsupported GGUF tokenizer model tokenizer.ggml.model = {other:?}; supported: gpt2, llama"
        ),
    };
    add_special_tokens(v, &mut tokenizer)?;

    // SentencePiece vocabularies default to <s>=1, </s>=2 in llama.cpp when metadata is silent.
    let spm = v.model == "llama";
    let bos = v
        .valid(v.bos_token_id)
        .or(if spm { v.valid(Some(1)) } else { None });
    let eos = v
        .valid(v.eos_token_id)
        .or(if spm { v.valid(Some(2)) } else { None });
    let add_bos = v.add_bos_token.unwrap_or(default_add_bos);
    let add_eos = v.add_eos_token.unwrap_or(false);
    if add_bos && bos.is_none() {
        bail!("tokenizer.ggml.add_bos_token is true but there is no valid bos_token_id");
    }
    if add_eos && eos.is_none() {
        bail!("tokenizer.ggml.add_eos_token is true but there is no valid eos_token_id");
    }

    let mut eos_token_ids: Vec<u32> = Vec::new();
    let candidates = [eos, v.valid(v.eot_token_id), v.valid(v.eom_token_id)];
    let by_text = v
        .tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| EOG_TEXTS.contains(&t.as_str()))
        .map(|(i, _)| Some(i as u32));
    for id in candidates.into_iter().chain(by_text).flatten() {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }
    let spm_decoder = spm.then(|| SpmDecoder::new(&v.tokens, v.add_space_prefix.unwrap_or(true)));
    Ok(BuiltVocab {
        tokenizer,
        bos_token_id: bos,
        eos_token_ids,
        add_bos,
        add_eos,
        spm_decoder,
    })
}

fn vocab_map(tokens: &[String]) -> Result<Vocab> {
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        if let Some(prev) = vocab.insert(t.clone(), i as u32) {
            // llama.cpp refuses such files too: one of the two ids could never be produced.
            bail!("duplicate token in GGUF vocabulary: {t:?} has ids {prev} and {i}");
        }
    }
    Ok(vocab)
}

fn byte_level_bpe(v: &GgufVocab, vocab: Vocab) -> Result<(tokenizers::Tokenizer, bool)> {
    let spec = byte_level_spec(v.pre.as_deref())?;
    let merges = v
        .merges
        .iter()
        .map(|m| {
            // Split at the first space after the first byte, as llama.cpp does (`find(' ', 1)`).
            // (A byte offset: the first char may be multi-byte, e.g. `Ġ`.)
            let pos = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            match pos {
                Some(p) => Ok((m[..p].to_string(), m[p + 1..].to_string())),
                None => Err(anyhow!("malformed merge {m:?} in tokenizer.ggml.merges")),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(spec.ignore_merges)
        .build()
        .map_err(|e| anyhow!("building BPE from GGUF vocabulary: {e}"))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    if let Some(n) = spec.normalizer {
        tok.with_normalizer(Some(n)).map_err(|e| anyhow!("{e}"))?;
    }
    tok.with_pre_tokenizer(Some(spec.pre_tokenizer));
    tok.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));
    Ok((tok, spec.default_add_bos))
}

fn sentencepiece_bpe(v: &GgufVocab, vocab: Vocab) -> Result<tokenizers::Tokenizer> {
    if v.scores.len() < v.tokens.len() {
        bail!(
            "SentencePiece GGUF vocabulary needs tokenizer.ggml.scores ({} scores for {} tokens)",
            v.scores.len(),
            v.tokens.len()
        );
    }
    let merges = spm_merges(&v.tokens, &v.scores);
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .fuse_unk(true)
        .byte_fallback(true);
    if let Some(unk) = v.valid(v.unknown_token_id.or(Some(0))) {
        builder = builder.unk_token(v.tokens[unk as usize].clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| anyhow!("building SentencePiece BPE from GGUF vocabulary: {e}"))?;
    let mut tok = tokenizers::Tokenizer::new(bpe);

    // llama.cpp prefixes a space to the text and to every fragment that follows a special
    // token; transformers' "legacy" Prepend normalizer does the same (it runs per fragment).
    let add_space_prefix = v.add_space_prefix.unwrap_or(true);
    let replace = |from: &str, to: &str| -> Result<Replace> {
        Replace::new(from, to).map_err(|e| anyhow!("{e}"))
    };
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new("▁".to_string()).into());
    }
    normalizers.push(replace(" ", "▁")?.into());
    tok.with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| anyhow!("{e}"))?;

    let mut decoders: Vec<DecoderWrapper> = vec![
        replace("▁", " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        // After Fuse there is one string, so this drops only the prefix space added above.
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tok.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tok)
}

/// Merges for a SentencePiece BPE vocabulary that only has scores, as transformers'
/// `GGUFTokenizerSkeleton` builds them: every split of a token into two tokens, ranked by the
/// merged token's score (highest first; stable, so ties keep id order). SentencePiece merges
/// the adjacent pair whose result scores highest, which this ranking reproduces.
fn spm_merges(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let index: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f32, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        let mut local: Vec<(usize, usize)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let l = *index.get(&piece[..at])?;
                let r = *index.get(&piece[at..])?;
                Some((l, r))
            })
            .collect();
        // transformers orders one token's splits by the halves' scores, highest first.
        local.sort_by(|a, b| {
            (scores[b.0], scores[b.1])
                .partial_cmp(&(scores[a.0], scores[a.1]))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        merges.extend(local.into_iter().map(|(l, r)| (scores[id], l, r)));
    }
    merges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    merges
        .into_iter()
        .map(|(_, l, r)| (tokens[l].clone(), tokens[r].clone()))
        .collect()
}

fn add_special_tokens(v: &GgufVocab, tok: &mut tokenizers::Tokenizer) -> Result<()> {
    let mut special = Vec::new();
    let mut user = Vec::new();
    let mut seen = HashSet::new();
    for (id, text) in v.tokens.iter().enumerate() {
        let added = |special: bool| {
            // Matched on the raw input, never normalized: llama.cpp splits them out first.
            AddedToken::from(text.clone(), special).normalized(false)
        };
        match v.token_type(id) {
            TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => special.push(added(true)),
            TOKEN_TYPE_USER_DEFINED => user.push(added(false)),
            _ => continue,
        }
        seen.insert(id);
    }
    tok.add_special_tokens(special)
        .map_err(|e| anyhow!("adding special tokens: {e}"))?;
    tok.add_tokens(user)
        .map_err(|e| anyhow!("adding user-defined tokens: {e}"))?;
    // Each added token must keep the id it has in the GGUF vocabulary.
    for &id in &seen {
        let text = &v.tokens[id];
        if tok.token_to_id(text) != Some(id as u32) {
            bail!("added token {text:?} did not keep its GGUF id {id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spm_merges_rank_by_merged_score() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let m = spm_merges(&tokens, &scores);
        let want: Vec<(String, String)> = [("a", "bc"), ("ab", "c"), ("a", "b"), ("b", "c")]
            .iter()
            .map(|(l, r)| (l.to_string(), r.to_string()))
            .collect();
        assert_eq!(m, want);
    }

    #[test]
    fn duplicate_tokens_are_refused() {
        let err = vocab_map(&["a".into(), "b".into(), "a".into()]).unwrap_err();
        assert!(err.to_string().contains("ids 0 and 2"), "{err}");
    }
}
