//! vLLM's custom dataset: JSONL prompts, chat-templated unless --skip-chat-template.

use ferrum_bench::ServeArgs;
use ferrum_bench::datasets::get_samples;

#[test]
fn jsonl_prompts_with_and_without_the_chat_template() {
    let model = ferrum_gguf::default_model_path();
    if !model.exists() {
        eprintln!(
            "skipping: {} missing (run scripts/setup.sh)",
            model.display()
        );
        return;
    }
    let tok = ferrum_bench::load_tokenizer(&model).unwrap();
    let path =
        std::env::temp_dir().join(format!("ferrum-bench-custom-{}.jsonl", std::process::id()));
    std::fs::write(
        &path,
        "{\"prompt\": \"What is the capital of India?\"}\n\n{\"prompt\": \"And of Iran?\"}\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let base = [
        "--dataset-name",
        "custom",
        "--dataset-path",
        p,
        "--num-prompts",
        "3",
    ];

    let args = ServeArgs::from_args(base.iter().copied().chain(["--disable-shuffle"])).unwrap();
    let got = get_samples(&args, &tok, "c-").unwrap();
    assert_eq!(got.len(), 3, "two lines, oversampled to three");
    let templated = tok
        .apply_chat_template(
            &serde_json::json!([{"role": "user", "content": "What is the capital of India?"}]),
            true,
            None,
        )
        .unwrap();
    assert_eq!(got[0].prompt, templated);
    assert_eq!(
        got[0].prompt_len,
        tok.encode(&templated, true).unwrap().len()
    );
    assert_eq!(got[0].expected_output_len, 256);
    let ids: Vec<_> = got.iter().map(|s| s.request_id.clone().unwrap()).collect();
    assert_eq!(ids, ["c-0", "c-1", "c-2"]);

    let args = ServeArgs::from_args(base.iter().copied().chain([
        "--skip-chat-template",
        "--no-oversample",
        "--custom-output-len",
        "9",
    ]))
    .unwrap();
    let got = get_samples(&args, &tok, "").unwrap();
    assert!(got.iter().all(|s| s.expected_output_len == 9));
    let mut prompts: Vec<String> = got.into_iter().map(|s| s.prompt).collect();
    prompts.sort();
    assert_eq!(prompts, ["And of Iran?", "What is the capital of India?"]);
    let _ = std::fs::remove_file(&path);
}
