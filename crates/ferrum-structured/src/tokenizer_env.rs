//! The token trie llguidance needs, built from our own tokenizer (HF tokenizer.json and GGUF
//! vocabularies alike: both become a `tokenizers::Tokenizer`, byte-level BPE or
//! SentencePiece-style BPE with byte fallback).

use anyhow::{Context, Result};
use toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// A [`TokenizerEnv`] over `ferrum_tokenizer::Tokenizer`.
pub struct FerrumTokEnv {
    trie: TokTrie,
    tok: tokenizers::Tokenizer,
}

/// Every id's bytes as the model emits them, `vocab_size` entries (ids the tokenizer lacks are
/// empty, so never allowed). Special tokens start with [`TokTrie::SPECIAL_TOKEN_MARKER`], so no
/// grammar produces them as text. The decoding rules are llguidance's
/// (`token_bytes_from_tokenizer_json`, fed our tokenizer serialized to JSON).
pub fn token_bytes(tok: &ferrum_tokenizer::Tokenizer, vocab_size: usize) -> Result<Vec<Vec<u8>>> {
    let hf = tok.hf_tokenizer();
    let json: serde_json::Value = serde_json::from_str(
        &hf.to_string(false)
            .map_err(|e| anyhow::anyhow!("serializing the tokenizer: {e}"))?,
    )?;
    let mut words = std::panic::catch_unwind(|| llguidance::token_bytes_from_tokenizer_json(&json))
        .map_err(|_| anyhow::anyhow!("the tokenizer's vocabulary cannot be read as bytes"))?
        .context("reading the vocabulary's bytes for structured output")?;
    let n = vocab_size.max(words.len());
    words.resize(n, Vec::new());
    for (id, w) in words.iter_mut().enumerate() {
        let special = tok.is_special_id(id as u32);
        if special && w.first() != Some(&TokTrie::SPECIAL_TOKEN_MARKER) {
            if w.is_empty()
                && let Some(s) = tok.id_to_token(id as u32)
            {
                w.extend_from_slice(s.as_bytes());
            }
            w.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
        }
    }
    Ok(words)
}

impl FerrumTokEnv {
    pub fn new(tok: &ferrum_tokenizer::Tokenizer, vocab_size: usize) -> Result<Self> {
        let words = token_bytes(tok, vocab_size)?;
        let eos = tok.eos_token_ids();
        let info = TokRxInfo {
            vocab_size: words.len() as u32,
            tok_eos: eos.first().copied().unwrap_or(0),
            tok_bos: tok.bos_token_id(),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let mut trie = TokTrie::from(&info, &words);
        if eos.len() > 1 {
            trie = trie.with_eos_tokens(eos);
        }
        Ok(Self {
            trie,
            tok: hf_clone(tok),
        })
    }
}

fn hf_clone(tok: &ferrum_tokenizer::Tokenizer) -> tokenizers::Tokenizer {
    tok.hf_tokenizer().clone()
}

impl TokenizerEnv for FerrumTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let text = String::from_utf8_lossy(s);
        match self.tok.encode_fast(text.as_ref(), false) {
            Ok(enc) => enc.get_ids().to_vec(),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}
