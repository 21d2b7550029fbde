//! Logprobs in the shapes clients parse: the completions API's parallel lists, the chat API's
//! `content` entries, and vLLM's `prompt_logprobs` (per prompt position a map from token id to
//! logprob, rank and decoded token, `None` for the first position).

use ferrum_engine::TokenLogprobs;
use ferrum_tokenizer::Tokenizer;
use serde_json::{Map, Value, json};

/// A token as text (vLLM decodes each id alone; partial UTF-8 shows as U+FFFD).
pub fn token_text(tok: &Tokenizer, id: u32) -> String {
    tok.decode(&[id], false).unwrap_or_default()
}

/// `/v1/completions` `logprobs`: tokens, token_logprobs, top_logprobs (the top k plus the
/// chosen token, as vLLM), text_offset (from `offset`, the text before these tokens).
pub fn completion(tok: &Tokenizer, lps: &[TokenLogprobs], offset: usize) -> Value {
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top = Vec::new();
    let mut offsets = Vec::new();
    let mut at = offset;
    for l in lps {
        let t = token_text(tok, l.token_id);
        offsets.push(at);
        at += t.chars().count();
        let mut m = Map::new();
        for &(id, lp) in &l.top {
            m.insert(token_text(tok, id), json!(finite(lp)));
        }
        m.insert(t.clone(), json!(finite(l.logprob)));
        tokens.push(json!(t));
        token_logprobs.push(json!(finite(l.logprob)));
        top.push(Value::Object(m));
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top, "text_offset": offsets})
}

/// `/v1/chat/completions` `logprobs.content` entries.
pub fn chat_content(tok: &Tokenizer, lps: &[TokenLogprobs]) -> Vec<Value> {
    let entry = |id: u32, lp: f32| {
        let t = token_text(tok, id);
        json!({"token": t, "logprob": finite(lp), "bytes": t.as_bytes()})
    };
    lps.iter()
        .map(|l| {
            let mut e = entry(l.token_id, l.logprob);
            e["top_logprobs"] = l.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
            e
        })
        .collect()
}

/// vLLM's `prompt_logprobs`: `null` for position 0, then for each later prompt token a map
/// `{token_id: {logprob, rank, decoded_token}}` holding the actual token and the top k.
pub fn prompt(tok: &Tokenizer, lps: &[TokenLogprobs]) -> Value {
    let mut out = vec![Value::Null];
    for l in lps {
        let mut m = Map::new();
        let mut put = |id: u32, lp: f32, rank: usize| {
            m.insert(
                id.to_string(),
                json!({"logprob": finite(lp), "rank": rank, "decoded_token": token_text(tok, id)}),
            );
        };
        put(l.token_id, l.logprob, l.rank);
        for (k, &(id, lp)) in l.top.iter().enumerate() {
            if id != l.token_id {
                put(id, lp, k + 1);
            }
        }
        out.push(Value::Object(m));
    }
    Value::Array(out)
}

/// JSON has no -inf: vLLM clamps to the most negative float (`-9999.0`).
fn finite(x: f32) -> f32 {
    if x.is_finite() { x } else { -9999.0 }
}
