//! `ferrum chat`: an interactive REPL that keeps the conversation and applies the model's chat
//! template each turn. `/reset` forgets the conversation; `/exit` or end of input quits.

use crate::generate::request;
use crate::runtime::Runtime;
use anyhow::{Result, bail};
use ferrum_engine::SamplingParams;
use ferrum_server::output::drive_blocking;
use serde_json::json;
use std::io::{BufRead, Write};

pub fn run(rt: &Runtime, params: SamplingParams, system: Option<String>) -> Result<()> {
    if !rt.tokenizer.has_chat_template() {
        bail!(
            "{} has no chat template: use `ferrum generate --prompt ...` instead",
            rt.model_name
        );
    }
    let fresh = || -> Vec<serde_json::Value> {
        system
            .iter()
            .map(|s| json!({"role": "system", "content": s}))
            .collect()
    };
    let mut messages = fresh();
    eprintln!(
        "chatting with {} (/reset to start over, /exit or Ctrl-D to quit)",
        rt.model_name
    );
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = fresh();
                continue;
            }
            _ => {}
        }
        messages.push(json!({"role": "user", "content": line}));
        let prompt = rt.tokenizer.apply_chat_template(
            &serde_json::Value::Array(messages.clone()),
            true,
            None,
        )?;
        // The template already holds the special tokens (BOS included): add none.
        let ids = rt.tokenizer.encode(&prompt, false)?;
        let stream = rt.engine.add_request(request(rt, ids, params.clone(), 0))?;
        let res = drive_blocking(&rt.engine, &rt.tokenizer, stream, &params, |_, t| {
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        })?;
        writeln!(out)?;
        let c = &res.completions[0];
        if let Some(e) = res.error() {
            eprintln!("error: {e}");
            messages.pop();
            continue;
        }
        messages.push(json!({"role": "assistant", "content": c.text}));
    }
    Ok(())
}
