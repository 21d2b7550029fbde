//! Tokenizers for ferrum: HF `tokenizer.json` directories and GGUF-embedded vocabularies,
//! chat templates (minijinja, rendering like transformers), incremental detokenization and
//! stop-string matching for streamed output.
//!
//! [`Tokenizer`] is a cheap handle (`Arc` inside): clone it into every thread that needs it.

mod chat_template;
mod detokenize;
mod gguf_vocab;
mod hf_config;
mod pretokenizers;
mod spm_decode;
mod stop;
mod strftime;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};

use chat_template::ChatTemplates;
pub use detokenize::IncrementalDetokenizer;
pub use gguf_vocab::{
    GgufVocab, TOKEN_TYPE_BYTE, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNKNOWN,
    TOKEN_TYPE_UNUSED, TOKEN_TYPE_USER_DEFINED,
};
pub use pretokenizers::supported_pre_tokenizers;
use spm_decode::SpmDecoder;
pub use stop::{StopCheck, StopStrings};

/// A model's tokenizer with its special tokens and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    tok: tokenizers::Tokenizer,
    bos_token_id: Option<u32>,
    eos_token_ids: Vec<u32>,
    /// Added by `encode(.., true)` on top of what the tokenizer's post-processor adds.
    prepend_bos: bool,
    append_eos: bool,
    /// Ids `decode(.., skip_special_tokens = true)` drops.
    special_ids: HashSet<u32>,
    chat: Option<ChatTemplates>,
    /// Set for GGUF SentencePiece vocabularies: decode bytes, not via `tokenizers`.
    spm_decoder: Option<SpmDecoder>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token_id", &self.inner.bos_token_id)
            .field("eos_token_ids", &self.inner.eos_token_ids)
            .field("chat", &self.inner.chat)
            .finish()
    }
}

fn tk_err(e: tokenizers::Error) -> anyhow::Error {
    anyhow!("{e}")
}

impl Tokenizer {
    /// Loads `tokenizer.json` plus the side files of a HF checkpoint directory: special tokens
    /// and `add_bos_token`/`add_eos_token` from `tokenizer_config.json`, extra end-of-generation
    /// ids from `generation_config.json`, and the chat template (`chat_template.jinja` /
    /// `chat_template.json` win over `tokenizer_config.json`'s).
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let mut tok = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow!("loading {path:?}: {e}"))?;
        // Some tokenizer.json files carry truncation/padding settings meant for training.
        tok.with_truncation(None).map_err(tk_err)?;
        tok.with_padding(None);
        let cfg = hf_config::read(dir)?;

        let id = |t: &Option<String>| t.as_deref().and_then(|t| tok.token_to_id(t));
        let bos_token_id = id(&cfg.bos_token);
        let mut eos_token_ids: Vec<u32> = id(&cfg.eos_token).into_iter().collect();
        for e in &cfg.generation_eos_ids {
            if !eos_token_ids.contains(e) {
                eos_token_ids.push(*e);
            }
        }

        // tokenizer.json's post-processor is authoritative (it is what transformers saved);
        // tokenizer_config's flags only add what it does not already add.
        let with = tok.encode_fast("", true).map_err(tk_err)?;
        let pp_ids = with.get_ids();
        let prepend_bos = cfg.add_bos_token == Some(true)
            && bos_token_id.is_some_and(|b| pp_ids.first() != Some(&b));
        let eos = id(&cfg.eos_token);
        let append_eos =
            cfg.add_eos_token == Some(true) && eos.is_some_and(|e| pp_ids.last() != Some(&e));

        let special_tokens = [
            ("bos_token", &cfg.bos_token),
            ("eos_token", &cfg.eos_token),
            ("unk_token", &cfg.unk_token),
            ("pad_token", &cfg.pad_token),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
        .collect();
        let chat = ChatTemplates::new(cfg.chat_templates, special_tokens)?;
        Ok(Tokenizer::assemble(
            tok,
            bos_token_id,
            eos_token_ids,
            prepend_bos,
            append_eos,
            chat,
            None,
        ))
    }

    /// Builds the tokenizer a GGUF file embeds (`tokenizer.ggml.*`, `tokenizer.chat_template`).
    pub fn from_gguf(file: &ferrum_gguf::GgufFile) -> Result<Tokenizer> {
        let vocab = GgufVocab::from_gguf(file)?;
        Tokenizer::from_gguf_vocab(&vocab)
    }

    /// Builds a tokenizer from GGUF tokenizer metadata held as plain data.
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Tokenizer> {
        let built = gguf_vocab::build(v).context("building tokenizer from GGUF metadata")?;
        let text = |id: Option<u32>| id.and_then(|i| v.tokens.get(i as usize).cloned());
        let special_tokens = [
            ("bos_token", text(built.bos_token_id)),
            ("eos_token", text(built.eos_token_ids.first().copied())),
            ("unk_token", text(v.unknown_token_id)),
        ]
        .into_iter()
        .filter_map(|(k, t)| Some((k.to_string(), t?)))
        .collect();
        let chat = ChatTemplates::new(v.chat_templates.clone(), special_tokens)?;
        Ok(Tokenizer::assemble(
            built.tokenizer,
            built.bos_token_id,
            built.eos_token_ids,
            built.add_bos,
            built.add_eos,
            chat,
            built.spm_decoder,
        ))
    }

    fn assemble(
        tok: tokenizers::Tokenizer,
        bos_token_id: Option<u32>,
        eos_token_ids: Vec<u32>,
        prepend_bos: bool,
        append_eos: bool,
        chat: Option<ChatTemplates>,
        spm_decoder: Option<SpmDecoder>,
    ) -> Tokenizer {
        let special_ids = tok
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        Tokenizer {
            inner: Arc::new(Inner {
                tok,
                bos_token_id,
                eos_token_ids,
                prepend_bos,
                append_eos,
                special_ids,
                chat,
                spm_decoder,
            }),
        }
    }

    /// Token ids for `text`. Text spelling an added/special token (e.g. `<|im_start|>`) is
    /// that token, as in HF and llama.cpp with `parse_special`. With `add_special_tokens`,
    /// bos/eos are added as the model's configuration says.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let inner = &self.inner;
        let enc = inner
            .tok
            .encode_fast(text, add_special_tokens)
            .map_err(tk_err)?;
        let ids = enc.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 2);
        if add_special_tokens && inner.prepend_bos {
            out.extend(inner.bos_token_id);
        }
        out.extend_from_slice(ids);
        if add_special_tokens && inner.append_eos {
            out.extend(inner.eos_token_ids.first());
        }
        Ok(out)
    }

    /// Text for `ids`; ids outside the vocabulary are ignored (models often have padded
    /// embedding rows past the tokenizer's last id).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let inner = &self.inner;
        if let Some(d) = &inner.spm_decoder {
            let keep = |id: u32| !(skip_special_tokens && inner.special_ids.contains(&id));
            return Ok(d.decode(ids, keep));
        }
        inner.tok.decode(ids, skip_special_tokens).map_err(tk_err)
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.tok.get_vocab_size(true)
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos_token_id
    }

    /// Every id that ends generation: the eos token first, then `generation_config.json`'s
    /// list (HF) or the eot/eom ids and llama.cpp's end-of-generation tokens (GGUF).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.inner.eos_token_ids
    }

    pub fn token_to_id(&self, s: &str) -> Option<u32> {
        self.inner.tok.token_to_id(s)
    }

    /// The token's vocabulary string (byte-level tokens as stored, e.g. `Ġthe`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.tok.id_to_token(id)
    }

    /// Whether `decode(.., skip_special_tokens = true)` drops this id.
    pub fn is_special_id(&self, id: u32) -> bool {
        self.inner.special_ids.contains(&id)
    }

    /// The underlying `tokenizers` tokenizer (e.g. for grammar engines that need the vocab).
    pub fn hf_tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.inner.tok
    }

    pub fn has_chat_template(&self) -> bool {
        self.inner.chat.is_some()
    }

    /// The chat template's source (the default one when there are several).
    pub fn chat_template(&self) -> Option<&str> {
        self.inner.chat.as_ref().and_then(ChatTemplates::source)
    }

    /// Renders the chat template as transformers' `apply_chat_template(tokenize=False)` does.
    /// `messages` is passed to the template as is (an OpenAI-style array); `extra` is an
    /// object whose keys join the context (`tools`, `documents`, ...), and the keys of its
    /// `chat_template_kwargs` object are flattened in (e.g. `enable_thinking`).
    pub fn apply_chat_template(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        extra: Option<&serde_json::Value>,
    ) -> Result<String> {
        let chat = self
            .inner
            .chat
            .as_ref()
            .ok_or_else(|| anyhow!("this model has no chat template"))?;
        chat.render(messages, add_generation_prompt, extra)
    }

    /// This tokenizer with `source` as its only chat template (vLLM's `--chat-template`).
    pub fn with_chat_template(&self, source: &str) -> Result<Tokenizer> {
        let special = match &self.inner.chat {
            Some(c) => c.special_tokens().to_vec(),
            None => {
                let name = |id: Option<u32>| id.and_then(|id| self.id_to_token(id));
                [
                    ("bos_token", name(self.inner.bos_token_id)),
                    ("eos_token", name(self.inner.eos_token_ids.first().copied())),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect()
            }
        };
        let chat = ChatTemplates::new(vec![("default".into(), source.to_string())], special)?;
        let i = &self.inner;
        Ok(Tokenizer::assemble(
            i.tok.clone(),
            i.bos_token_id,
            i.eos_token_ids.clone(),
            i.prepend_bos,
            i.append_eos,
            chat,
            i.spm_decoder.clone(),
        ))
    }

    /// Fresh incremental detokenizer state for one generated sequence.
    pub fn detokenizer(&self, skip_special_tokens: bool) -> IncrementalDetokenizer {
        IncrementalDetokenizer::new(self.clone(), skip_special_tokens, &[])
    }

    /// Like [`Tokenizer::detokenizer`], with the prompt's last tokens as context, so the first
    /// generated token decodes as it would after the prompt (e.g. SentencePiece's `▁word`
    /// keeps its space). Deltas then cover only the generated ids.
    pub fn detokenizer_with_prompt(
        &self,
        skip_special_tokens: bool,
        prompt_ids: &[u32],
    ) -> IncrementalDetokenizer {
        IncrementalDetokenizer::new(self.clone(), skip_special_tokens, prompt_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
        check::<IncrementalDetokenizer>();
        check::<StopStrings>();
    }
}
