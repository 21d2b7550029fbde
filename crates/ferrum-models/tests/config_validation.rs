//! Impossible model shapes are refused at load with an error that names the key (or tensor) and
//! its values — never a panic later in the forward (a zero head count used to divide by zero).
//! The Hugging Face cases edit the tiny Qwen2 fixture's config.json and load it with
//! `--load-format dummy`, so the config alone decides; the GGUF cases build a minimal file.

use ferrum_models::{LoadFormat, load};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/qwen2/model")
}

fn base_config() -> Value {
    serde_json::from_slice(&std::fs::read(fixture_dir().join("config.json")).unwrap()).unwrap()
}

/// A fresh folder per case: the tests of this binary run in parallel.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ferrum-config-validation-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The full error chain of loading `path`, which must fail.
fn load_err(path: &Path, format: LoadFormat) -> String {
    match load(path, format, 0) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

/// The fixture's config.json with `edit` applied, loaded with dummy weights: the error text.
fn hf_err(tag: &str, edit: impl Fn(&mut serde_json::Map<String, Value>)) -> String {
    let d = scratch(tag);
    let mut cfg = base_config();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let e = load_err(&d, LoadFormat::Dummy);
    assert!(e.contains("config.json"), "{tag}: no file named in: {e}");
    std::fs::remove_dir_all(&d).unwrap();
    e
}

fn assert_mentions(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "expected {p:?} in: {e}");
    }
}

#[test]
fn the_unedited_fixture_loads() {
    // so that each failure below is caused by its edit alone
    let d = scratch("ok");
    std::fs::write(d.join("config.json"), base_config().to_string()).unwrap();
    assert!(load(&d, LoadFormat::Dummy, 0).is_ok());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn zero_sizes_are_refused() {
    for key in [
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_size",
        "num_hidden_layers",
        "vocab_size",
        "intermediate_size",
    ] {
        let e = hf_err(&format!("zero-{key}"), |c| {
            c.insert(key.into(), json!(0));
        });
        assert_mentions(&e, &[&format!("`{key}` is 0")]);
    }
}

#[test]
fn absent_sizes_are_refused() {
    for key in [
        "hidden_size",
        "num_attention_heads",
        "num_hidden_layers",
        "vocab_size",
    ] {
        let e = hf_err(&format!("absent-{key}"), |c| {
            c.remove(key);
        });
        assert_mentions(&e, &[&format!("missing integer `{key}`")]);
    }
}

#[test]
fn sizes_of_the_wrong_type_are_refused_not_defaulted() {
    let e = hf_err("string-hidden", |c| {
        c.insert("hidden_size".into(), json!("64"));
    });
    assert_mentions(
        &e,
        &["`hidden_size` must be a non-negative integer", "\"64\""],
    );
    // an optional key with a bad value must not silently fall back to its default
    let e = hf_err("negative-kv", |c| {
        c.insert("num_key_value_heads".into(), json!(-2));
    });
    assert_mentions(
        &e,
        &["`num_key_value_heads` must be a non-negative integer", "-2"],
    );
    let e = hf_err("float-head-dim", |c| {
        c.insert("head_dim".into(), json!(16.5));
    });
    assert_mentions(&e, &["`head_dim` must be a non-negative integer", "16.5"]);
}

#[test]
fn heads_must_be_a_multiple_of_kv_heads() {
    let e = hf_err("gqa", |c| {
        c.insert("num_key_value_heads".into(), json!(3));
    });
    assert_mentions(
        &e,
        &["`num_attention_heads` (4) is not a multiple of `num_key_value_heads` (3)"],
    );
    // more kv heads than query heads is the same mistake
    let e = hf_err("gqa-more-kv", |c| {
        c.insert("num_key_value_heads".into(), json!(8));
    });
    assert_mentions(
        &e,
        &["`num_attention_heads` (4) is not a multiple of `num_key_value_heads` (8)"],
    );
}

#[test]
fn head_size_must_follow_from_the_config() {
    // no head_dim: hidden_size must split evenly over the heads
    let e = hf_err("head-split", |c| {
        c.insert("num_attention_heads".into(), json!(6));
        c.insert("num_key_value_heads".into(), json!(3));
    });
    assert_mentions(
        &e,
        &[
            "`hidden_size` (64) is not a multiple of `num_attention_heads` (6)",
            "`head_dim`",
        ],
    );
    // an explicit head_dim may differ from hidden_size / heads (Qwen3 does this) ...
    let d = scratch("explicit-head-dim");
    let mut cfg = base_config();
    cfg["num_attention_heads"] = json!(6);
    cfg["num_key_value_heads"] = json!(3);
    cfg["head_dim"] = json!(16);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    let m = load(&d, LoadFormat::Dummy, 0).unwrap();
    assert_eq!((m.config().head_dim, m.config().q_dim()), (16, 96));
    let _ = std::fs::remove_dir_all(&d);
    // ... but must be a positive, even number for rotary embeddings
    for bad in [0, 15] {
        let e = hf_err(&format!("head-dim-{bad}"), |c| {
            c.insert("head_dim".into(), json!(bad));
        });
        assert_mentions(&e, &[&format!("`head_dim` is {bad}"), "even"]);
    }
    // a derived head size that is odd: 4 heads over 36 dims = 9
    let e = hf_err("derived-odd", |c| {
        c.insert("hidden_size".into(), json!(36));
    });
    assert_mentions(
        &e,
        &[
            "head size `hidden_size` / `num_attention_heads` is 9",
            "even",
        ],
    );
}

#[test]
fn sizes_too_large_to_address_are_refused() {
    let e = hf_err("huge-vocab", |c| {
        c.insert("vocab_size".into(), json!(1u64 << 62));
    });
    assert_mentions(
        &e,
        &[
            "embedding weights",
            &format!("`vocab_size` ({})", 1u64 << 62),
            "`hidden_size` (64)",
            "too large",
        ],
    );
}

/// The error of loading the fixture with weight `name` given `shape` (same element count, so the
/// file stays valid).
fn reshaped_err(tag: &str, name: &str, shape: Vec<usize>) -> String {
    let d = scratch(tag);
    std::fs::copy(fixture_dir().join("config.json"), d.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = st
        .names()
        .into_iter()
        .map(|n| {
            let t = st.tensor(n).unwrap();
            let t = if n == name {
                safetensors::tensor::TensorView::new(t.dtype(), shape.clone(), t.data()).unwrap()
            } else {
                t
            };
            (n.to_string(), t)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &d.join("model.safetensors")).unwrap();
    let e = load_err(&d, LoadFormat::Auto);
    std::fs::remove_dir_all(&d).unwrap();
    e
}

#[test]
fn tensors_of_the_wrong_rank_name_the_tensor_and_both_shapes() {
    assert_mentions(
        &reshaped_err(
            "rank1-matrix",
            "model.layers.0.self_attn.q_proj.weight",
            vec![64 * 64],
        ),
        &[
            "`model.layers.0.self_attn.q_proj.weight`",
            "expects [64, 64]",
            "has [4096]",
            "rank 1",
        ],
    );
    assert_mentions(
        &reshaped_err(
            "rank2-norm",
            "model.layers.0.input_layernorm.weight",
            vec![8, 8],
        ),
        &[
            "`model.layers.0.input_layernorm.weight`",
            "expects [64]",
            "has [8, 8]",
        ],
    );
    // same rank, wrong sizes: a transposed projection
    assert_mentions(
        &reshaped_err(
            "transposed",
            "model.layers.0.mlp.down_proj.weight",
            vec![128, 64],
        ),
        &[
            "`model.layers.0.mlp.down_proj.weight`",
            "expects [64, 128]",
            "has [128, 64]",
        ],
    );
}

/// A value in a hand-made GGUF's metadata.
enum Meta {
    Str(&'static str),
    U32(u32),
}

/// A minimal GGUF v3 file (spec: ggml's docs/gguf.md): the metadata, then F32 tensors filled
/// with 1.0 (`dims` fastest-first, as GGUF stores them), data aligned to the default 32 bytes.
fn gguf_bytes(meta: &[(&str, Meta)], tensors: &[(&str, &[u64])]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (key, value) in meta {
        string(&mut out, key);
        match value {
            Meta::U32(x) => {
                out.extend(4u32.to_le_bytes()); // GGUF_TYPE_UINT32
                out.extend(x.to_le_bytes());
            }
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes()); // GGUF_TYPE_STRING
                string(&mut out, s);
            }
        }
    }
    let mut data = Vec::new();
    for (name, dims) in tensors {
        string(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(0u32.to_le_bytes()); // GGML_TYPE_F32
        out.extend((data.len() as u64).to_le_bytes());
        let n: u64 = dims.iter().product();
        for _ in 0..n {
            data.extend(1f32.to_le_bytes());
        }
        data.resize(data.len().next_multiple_of(32), 0);
    }
    out.resize(out.len().next_multiple_of(32), 0);
    out.extend(data);
    out
}

/// A small valid qwen2 GGUF (16 wide, 2 heads of 8, 1 kv head, vocab 32) with `edit` applied to
/// its metadata and `tensors` in place of the bare embedding; loaded with dummy weights.
fn gguf_load(
    tag: &str,
    edit: impl Fn(&mut Vec<(&'static str, Meta)>),
    tensors: &[(&str, &[u64])],
) -> anyhow::Result<ferrum_models::LoadedModel> {
    let mut meta = vec![
        ("general.architecture", Meta::Str("qwen2")),
        ("qwen2.embedding_length", Meta::U32(16)),
        ("qwen2.attention.head_count", Meta::U32(2)),
        ("qwen2.attention.head_count_kv", Meta::U32(1)),
        ("qwen2.feed_forward_length", Meta::U32(32)),
        ("qwen2.block_count", Meta::U32(1)),
        ("qwen2.context_length", Meta::U32(64)),
    ];
    edit(&mut meta);
    let d = scratch(tag);
    let path = d.join("model.gguf");
    std::fs::write(&path, gguf_bytes(&meta, tensors)).unwrap();
    let result = load(&path, LoadFormat::Dummy, 0);
    std::fs::remove_dir_all(&d).unwrap();
    result
}

const EMBEDDING: (&str, &[u64]) = ("token_embd.weight", &[16, 32]);

fn set(meta: &mut [(&'static str, Meta)], key: &str, value: u32) {
    meta.iter_mut().find(|(k, _)| *k == key).unwrap().1 = Meta::U32(value);
}

fn gguf_err(
    tag: &str,
    edit: impl Fn(&mut Vec<(&'static str, Meta)>),
    tensors: &[(&str, &[u64])],
) -> String {
    match gguf_load(tag, edit, tensors) {
        Ok(_) => panic!("{tag}: loaded"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn the_minimal_gguf_loads() {
    let m = gguf_load("gguf-ok", |_| {}, &[EMBEDDING]).unwrap();
    let c = m.config();
    assert_eq!((c.hidden_size, c.head_dim, c.vocab_size), (16, 8, 32));
}

#[test]
fn gguf_head_counts_are_checked_under_their_gguf_names() {
    let e = gguf_err(
        "gguf-zero-heads",
        |m| set(m, "qwen2.attention.head_count", 0),
        &[EMBEDDING],
    );
    assert_mentions(&e, &["GGUF metadata", "`qwen2.attention.head_count` is 0"]);
    let e = gguf_err(
        "gguf-zero-kv",
        |m| set(m, "qwen2.attention.head_count_kv", 0),
        &[EMBEDDING],
    );
    assert_mentions(&e, &["`qwen2.attention.head_count_kv` is 0"]);
    let e = gguf_err(
        "gguf-gqa",
        |m| set(m, "qwen2.attention.head_count_kv", 3),
        &[EMBEDDING],
    );
    assert_mentions(
        &e,
        &[
            "`qwen2.attention.head_count` (2) is not a multiple of `qwen2.attention.head_count_kv` (3)",
        ],
    );
    let e = gguf_err(
        "gguf-zero-layers",
        |m| set(m, "qwen2.block_count", 0),
        &[EMBEDDING],
    );
    assert_mentions(&e, &["`qwen2.block_count` is 0"]);
    let e = gguf_err(
        "gguf-split",
        |m| set(m, "qwen2.attention.head_count", 3),
        &[EMBEDDING],
    );
    assert_mentions(
        &e,
        &["`qwen2.embedding_length` (16) is not a multiple of `qwen2.attention.head_count` (3)"],
    );
}

#[test]
fn gguf_tensors_of_the_wrong_rank_or_length_are_named() {
    // the vocabulary size is read off the embedding's second dimension
    let e = gguf_err(
        "gguf-embd-rank",
        |_| {},
        &[("token_embd.weight", &[16 * 32])],
    );
    assert_mentions(&e, &["`token_embd.weight` has rank 1", "[512]"]);
    // one frequency factor per rotated pair: 8 / 2 = 4
    let e = gguf_err(
        "gguf-rope-freqs",
        |_| {},
        &[EMBEDDING, ("rope_freqs.weight", &[5])],
    );
    assert_mentions(
        &e,
        &["`rope_freqs.weight` has 5 values", "head_dim / 2 = 4"],
    );
    assert!(
        gguf_load(
            "gguf-rope-ok",
            |_| {},
            &[EMBEDDING, ("rope_freqs.weight", &[4])]
        )
        .is_ok()
    );
}
