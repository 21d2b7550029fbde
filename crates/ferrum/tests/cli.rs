//! The `ferrum` binary as a user runs it, on the default model, checked against llama.cpp's
//! greedy continuation (crates/ferrum-models/tests/fixtures/llamacpp_smollm2_logprobs.json).

use std::process::{Command, Output};

fn ferrum(args: &[&str]) -> Output {
    let model = ferrum_gguf::default_model_path();
    assert!(
        model.exists(),
        "default model missing at {}: run scripts/setup.sh",
        model.display()
    );
    Command::new(env!("CARGO_BIN_EXE_ferrum"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn fixture() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ferrum-models/tests/fixtures/llamacpp_smollm2_logprobs.json"
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn generate_prints_llamacpp_greedy_text_alone_on_stdout() {
    // Prompt 2 ("Explain what a hash table is"): llama.cpp's first 24 greedy tokens are decisive
    // (top-2 gap ≥ 0.3). The prompt text spells <|im_start|> etc., which must become special tokens.
    let p = &fixture()["prompts"][2];
    let prompt = p["prompt"].as_str().unwrap();
    let out = ferrum(&[
        "generate",
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("A hash table is a data structure used in computer science to store"),
        "{stdout:?}"
    );
    assert!(
        stdout.ends_with('\n') && !stdout.contains("INFO"),
        "{stdout:?}"
    );
}

#[test]
fn prompts_file_answers_in_input_order_with_counters() {
    let dir = std::env::temp_dir().join(format!("ferrum-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompts.jsonl");
    let system = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
    let lines = [
        serde_json::json!({"prompt": format!("{system}<|im_start|>user\nExplain what a hash table is in two sentences.<|im_end|>\n<|im_start|>assistant\n"), "max_tokens": 24, "temperature": 0}),
        serde_json::json!({"prompt": format!("{system}<|im_start|>user\nExplain what a hash table is in two sentences.<|im_end|>\n<|im_start|>assistant\n"), "max_tokens": 40, "temperature": 0, "stop": [" data"]}),
        serde_json::json!({"prompt_token_ids": [1, 2, 3, 4], "max_tokens": 5, "temperature": 0.7, "seed": 3, "ignore_eos": true, "logprobs": 2, "prompt_logprobs": 1}),
    ];
    std::fs::write(
        &file,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let out = ferrum(&["generate", "--prompts-file", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(
            r["completion_tokens"],
            r["token_ids"].as_array().unwrap().len()
        );
    }
    assert!(
        rows[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("A hash table is a data structure")
    );
    assert_eq!(rows[0]["finish_reason"], "length");
    assert_eq!(rows[0]["prompt_tokens"], rows[1]["prompt_tokens"]);
    // stop string: cut before " data", excluded from the text
    assert_eq!(rows[1]["text"], "A hash table is a");
    assert_eq!(rows[1]["finish_reason"], "stop");
    assert_eq!(rows[2]["completion_tokens"], 5);
    assert_eq!(rows[2]["logprobs"].as_array().unwrap().len(), 5);
    assert_eq!(rows[2]["logprobs"][0]["top"].as_array().unwrap().len(), 2);
    // prompt logprobs: one per prompt token after the first, each of the token actually there
    let plp = rows[2]["prompt_logprobs"].as_array().unwrap();
    assert_eq!(
        plp.iter()
            .map(|e| e["token_id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(
        plp.iter().all(
            |e| e["logprob"].as_f64().unwrap() < 0.0 && e["top"].as_array().unwrap().len() == 1
        )
    );
    // the engine counters, last line of stderr; the second prompt shares the first's blocks
    let stderr = String::from_utf8(out.stderr).unwrap();
    let counters: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(counters["preemptions"], 0);
    assert!(
        counters["prefix_cache_hits"].as_u64().unwrap() >= 32,
        "{counters}"
    );
    assert!(
        counters["prefix_cache_queries"].as_u64().unwrap()
            > counters["prefix_cache_hits"].as_u64().unwrap()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("ferrum-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.jsonl");
    std::fs::write(&file, "{\"prompt\": \"hi\", \"temprature\": 0}\n").unwrap();
    let out = ferrum(&["generate", "--prompts-file", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 1") && stderr.contains("unknown field `temprature`"),
        "{stderr}"
    );
    let out = ferrum(&["generate", "--prompt", "hi", "--temperature", "-1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("temperature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferrum(&["generate", "--model", "/nonexistent.gguf", "--prompt", "hi"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.gguf does not exist"));
    let _ = std::fs::remove_dir_all(&dir);
}
