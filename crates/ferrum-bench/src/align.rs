//! vLLM's `_align_prompts_to_server_tokenizer`: synthetic prompts are sized with the local
//! tokenizer; when the server's `/tokenize` counts the first prompt differently, every
//! prompt the server sees as too long is cut to its length with `/tokenize` +
//! `/detokenize`. A server without those endpoints is left alone (with a warning).

use anyhow::Result;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::datasets::SampleRequest;

async fn tokenize(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    prompt: &str,
) -> Result<Vec<Value>> {
    let body = json!({"model": model, "prompt": prompt, "add_special_tokens": false});
    let v: Value = client
        .post(format!("{base}/tokenize"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    match v.get("tokens").and_then(Value::as_array) {
        Some(t) => Ok(t.clone()),
        None => anyhow::bail!("/tokenize answered without tokens"),
    }
}

async fn detokenize(
    client: &reqwest::Client,
    base: &str,
    model: &str,
    tokens: &[Value],
) -> Result<String> {
    let body = json!({"model": model, "tokens": tokens});
    let v: Value = client
        .post(format!("{base}/detokenize"))
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    match v.get("prompt").and_then(Value::as_str) {
        Some(p) => Ok(p.to_string()),
        None => anyhow::bail!("/detokenize answered without a prompt"),
    }
}

/// Returns the requests, re-cut to the server's token counts where needed.
pub async fn align_prompts(
    client: &reqwest::Client,
    base_url: &str,
    model: &str,
    requests: Vec<SampleRequest>,
) -> Vec<SampleRequest> {
    let Some(first) = requests.first() else {
        return requests;
    };
    let first_tokens = match tokenize(client, base_url, model, &first.prompt).await {
        Ok(t) => t,
        Err(_) => {
            println!("WARNING: /tokenize unavailable, skipping alignment.");
            return requests;
        }
    };
    if first_tokens.len() == first.prompt_len {
        return requests;
    }
    println!(
        "WARNING: tokenizer mismatch (server={}, expected={}), re-aligning prompts.",
        first_tokens.len(),
        first.prompt_len
    );
    let fix = |req: SampleRequest| async move {
        let fixed = async {
            let tokens = tokenize(client, base_url, model, &req.prompt).await?;
            if tokens.len() <= req.prompt_len {
                return anyhow::Ok(None);
            }
            let prompt = detokenize(client, base_url, model, &tokens[..req.prompt_len]).await?;
            anyhow::Ok(Some(prompt))
        };
        match fixed.await {
            Ok(Some(prompt)) => SampleRequest { prompt, ..req },
            // Unchanged when already short enough, and (as in vLLM) when a call fails.
            _ => req,
        }
    };
    // At most 64 calls in flight, as vLLM's semaphore allows.
    futures::stream::iter(requests)
        .map(fix)
        .buffered(64)
        .collect()
        .await
}
