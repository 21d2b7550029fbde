//! Incremental detokenization: the deltas of `IncrementalDetokenizer` (plus `finish`) must
//! concatenate to exactly `decode(all ids)`, for random id sequences, and for real text whose
//! emoji / CJK characters are split across byte tokens (where no delta may show U+FFFD).

mod common;

use common::{Rng, hf, smollm2};
use ferrum_tokenizer::{GgufVocab, Tokenizer};

const TEXTS: &[&str] = &[
    "Hello, world! 😀👍🏽🎉 你好，世界。日本語のテキスト 한국어 🇫🇷 👨‍👩‍👧‍👦",
    "def f(x):\n    return x ** 2  # 平方\n",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 ℝ∀∑ naïve café",
];

fn stream(tok: &Tokenizer, ids: &[u32], skip: bool) -> (String, Vec<String>) {
    let mut d = tok.detokenizer(skip);
    let mut deltas: Vec<String> = ids.iter().map(|&id| d.push(id).unwrap()).collect();
    deltas.push(d.finish().unwrap());
    (deltas.concat(), deltas)
}

fn check_text(tok: &Tokenizer, name: &str) {
    for text in TEXTS {
        let ids = tok.encode(text, false).unwrap();
        for skip in [false, true] {
            let (joined, deltas) = stream(tok, &ids, skip);
            assert_eq!(joined, tok.decode(&ids, skip).unwrap(), "{name} {text:?}");
            assert_eq!(joined, *text, "{name}");
            for d in &deltas {
                assert!(
                    !d.contains('\u{FFFD}'),
                    "{name}: partial character leaked in {d:?}"
                );
            }
        }
        // Multi-byte characters really were split across tokens, or the test proves little.
        let split = ids
            .iter()
            .filter(|&&id| tok.decode(&[id], false).unwrap().contains('\u{FFFD}'))
            .count();
        assert!(
            split > 0 || name == "spm",
            "{name}: no byte-split characters in {text:?}"
        );
    }
}

fn check_random(tok: &Tokenizer, name: &str, seed: u64) {
    let mut rng = Rng::new(seed);
    let n = tok.vocab_size();
    // Byte-ish tokens (low ids in byte-level vocabularies) make incomplete characters likely.
    for round in 0..300 {
        let len = 1 + rng.below(40);
        let ids: Vec<u32> = (0..len)
            .map(|_| {
                if rng.below(2) == 0 {
                    rng.below(n.min(300)) as u32
                } else {
                    rng.below(n) as u32
                }
            })
            .collect();
        for skip in [false, true] {
            let (joined, _) = stream(tok, &ids, skip);
            assert_eq!(
                joined,
                tok.decode(&ids, skip).unwrap(),
                "{name} round {round} skip={skip} ids {ids:?}"
            );
        }
    }
}

#[test]
fn smollm2_gguf_byte_level() {
    let tok = smollm2();
    check_text(&tok, "smollm2");
    check_random(&tok, "smollm2", 1);
}

#[test]
fn qwen3_hf_byte_level() {
    let tok = hf("qwen3");
    check_text(&tok, "qwen3");
    check_random(&tok, "qwen3", 2);
}

/// A small SentencePiece vocabulary (byte fallback, `▁` spaces, prefix space) in GGUF form.
fn spm() -> Tokenizer {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for t in ["▁", "a", "b", "c", "▁a", "▁b", "ab", "▁ab", "▁c", "é"] {
        tokens.push(t.into());
        types.push(1);
    }
    let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
    let vocab = GgufVocab {
        model: "llama".into(),
        tokens,
        scores,
        token_types: types,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        unknown_token_id: Some(0),
        ..GgufVocab::default()
    };
    Tokenizer::from_gguf_vocab(&vocab).unwrap()
}

#[test]
fn sentencepiece_byte_fallback_and_spaces() {
    let tok = spm();
    let ids = tok.encode("ab c 中é😀", false).unwrap();
    // "中" and "😀" are not in the vocabulary: they fall back to their UTF-8 bytes.
    assert!(ids.contains(&(3 + 0xE4)), "{ids:?}");
    assert_eq!(tok.decode(&ids, false).unwrap(), "ab c 中é😀");
    assert_eq!(
        tok.encode("ab", true).unwrap()[0],
        1,
        "SentencePiece adds bos"
    );
    check_text(&tok, "spm");
    check_random(&tok, "spm", 3);
}

#[test]
fn prompt_context_keeps_the_first_space() {
    let tok = spm();
    let prompt = tok.encode("a", true).unwrap();
    let generated = tok.encode("a b", false).unwrap(); // ▁a ▁b
    let generated = &generated[1..]; // ▁b, as generated after the prompt
    let mut d = tok.detokenizer_with_prompt(true, &prompt);
    let mut out: String = generated.iter().map(|&id| d.push(id).unwrap()).collect();
    out += &d.finish().unwrap();
    assert_eq!(out, " b");
    // Without the prompt, decode strips the first space, as a full decode would.
    let mut d = tok.detokenizer(true);
    assert_eq!(d.push(generated[0]).unwrap(), "b");
}
