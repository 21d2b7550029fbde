//! The random dataset with the default model's (SmolLM2) GGUF tokenizer: prompts re-encode
//! to the token counts reported, which are the requested lengths (vLLM's decode/re-encode
//! loop may leave a small mismatch after ten rounds; with this tokenizer it converges).

use ferrum_bench::ServeArgs;
use ferrum_bench::datasets::get_samples;
use ferrum_bench::datasets::random::sample_prefix_repetition;

fn tokenizer() -> Option<ferrum_tokenizer::Tokenizer> {
    let model = ferrum_gguf::default_model_path();
    if !model.exists() {
        eprintln!(
            "skipping: {} missing (run scripts/setup.sh)",
            model.display()
        );
        return None;
    }
    Some(ferrum_bench::load_tokenizer(&model).unwrap())
}

#[test]
fn prompts_have_the_requested_token_lengths() {
    let Some(tok) = tokenizer() else { return };
    let args = ServeArgs::from_args([
        "--num-prompts",
        "20",
        "--random-input-len",
        "100",
        "--random-output-len",
        "16",
        "--seed",
        "3",
    ])
    .unwrap();
    let reqs = get_samples(&args, &tok, "id-").unwrap();
    assert_eq!(reqs.len(), 20);
    for (i, r) in reqs.iter().enumerate() {
        let ids = tok.encode(&r.prompt, false).unwrap();
        assert_eq!(
            ids.len(),
            r.prompt_len,
            "prompt {i} re-encodes to its reported length"
        );
        assert!(
            r.prompt_len.abs_diff(100) <= 2,
            "prompt {i}: {} tokens",
            r.prompt_len
        );
        assert_eq!(r.expected_output_len, 16);
        assert_eq!(r.request_id.as_deref(), Some(format!("id-{i}").as_str()));
    }
    let exact = reqs.iter().filter(|r| r.prompt_len == 100).count();
    assert!(
        exact >= 18,
        "only {exact} of 20 prompts hit 100 tokens exactly"
    );
    // Distinct prompts (each starts at its own offset), identical for the same seed.
    assert_ne!(reqs[0].prompt, reqs[1].prompt);
    assert_eq!(reqs, get_samples(&args, &tok, "id-").unwrap());
}

#[test]
fn range_ratio_and_prefix() {
    let Some(tok) = tokenizer() else { return };
    let args = ServeArgs::from_args([
        "--num-prompts",
        "30",
        "--random-input-len",
        "64",
        "--random-output-len",
        "32",
        "--random-range-ratio",
        "0.5",
        "--random-prefix-len",
        "10",
    ])
    .unwrap();
    let reqs = get_samples(&args, &tok, "").unwrap();
    // Input: prefix 10 + [32, 96]; output: [16, 48].
    for r in &reqs {
        assert_eq!(tok.encode(&r.prompt, false).unwrap().len(), r.prompt_len);
        assert!((40..=108).contains(&r.prompt_len), "{}", r.prompt_len);
        assert!((16..=48).contains(&r.expected_output_len));
    }
    let lens: std::collections::HashSet<usize> = reqs.iter().map(|r| r.prompt_len).collect();
    assert!(lens.len() > 5, "lengths vary with the range ratio");
}

#[test]
fn prefix_repetition_shares_prefixes() {
    let Some(tok) = tokenizer() else { return };
    let args = ServeArgs::from_args([
        "--dataset-name",
        "prefix_repetition",
        "--num-prompts",
        "12",
        "--prefix-repetition-prefix-len",
        "40",
        "--prefix-repetition-suffix-len",
        "20",
        "--prefix-repetition-num-prefixes",
        "3",
    ])
    .unwrap();
    let reqs = sample_prefix_repetition(&tok, &args).unwrap();
    assert_eq!(reqs.len(), 12);
    assert!(
        reqs.iter()
            .all(|r| r.prompt_len == 60 && r.request_id.is_none())
    );
    // Three distinct 40-token prefixes, four prompts each.
    let mut groups = std::collections::HashMap::new();
    for r in &reqs {
        let head: String = r.prompt.chars().take(12).collect();
        *groups.entry(head).or_insert(0) += 1;
    }
    assert_eq!(groups.len(), 3, "{groups:?}");
    assert!(groups.values().all(|&n| n == 4));
}
