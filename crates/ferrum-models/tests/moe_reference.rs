//! The architectures the backend layer brought to the CPU, against transformers (f32, so a
//! formula error cannot hide in bf16 tolerance): Qwen3-MoE (softmax router, top-4 of 8,
//! renormalized), GLM-4.5 MoE (partial rotary, q/k/v bias, sigmoid router with correction bias,
//! group-limited top-k, shared experts, a dense first layer), block-FP8 checkpoints (e4m3 weights
//! with 32×32 `weight_scale_inv` blocks, partial edge blocks), and llama.cpp's `qwen3moe` GGUF
//! layout (3-D expert tensors) written from the same weights. Fixtures: tests/fixtures/README.md.

mod common;
use common::*;
use ferrum_backend::{CpuBackend, Shard};
use ferrum_models::weights::SafetensorsSource;
use ferrum_models::{LoadFormat, ParamLoader, Split, Workspace, load};
use std::path::PathBuf;

fn gguf_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn check(name: &str) -> (f64, f64, f64) {
    let dir = hf_fixture(name);
    check_reference(name, &dir.join("model"), &dir.join("reference.json"))
}

fn assert_f32_match((max, mean, agree): (f64, f64, f64)) {
    assert!(
        max < 1e-4 && mean < 1e-5 && agree == 1.0,
        "{max} {mean} {agree}"
    );
}

#[test]
fn qwen3_moe_f32_matches_transformers() {
    assert_f32_match(check("qwen3_moe"));
}

#[test]
fn glm4_moe_f32_matches_transformers() {
    assert_f32_match(check("glm4_moe"));
}

/// The workspace holds the MLP buffers only the loaded layers use: Qwen3-MoE (every layer sparse,
/// no shared experts) none, though its config names an `intermediate_size`; GLM-4.5 (a dense
/// first layer, a shared expert the CPU runs as the model's own MLP) the widest of the two and
/// the shared experts' output.
#[test]
fn workspace_holds_the_mlp_buffers_the_layers_use() {
    let be = CpuBackend::new();
    let t = 5;
    let qwen = load(&hf_fixture("qwen3_moe").join("model"), LoadFormat::Auto, 0).unwrap();
    assert_eq!(qwen.config().intermediate_size, 128);
    let ws = Workspace::new(&be, &qwen.model, t, t).unwrap();
    assert_eq!((ws.gate_up.len(), ws.act.len(), ws.shared.len()), (0, 0, 0));
    let glm = load(&hf_fixture("glm4_moe").join("model"), LoadFormat::Auto, 0).unwrap();
    let c = glm.config();
    let moe = c.moe.as_ref().unwrap();
    // the dense layer (64) is wider than the shared expert (16 × 1)
    assert_eq!((c.intermediate_size, moe.inter * moe.n_shared), (64, 16));
    let ws = Workspace::new(&be, &glm.model, t, t).unwrap();
    assert_eq!(
        (ws.gate_up.len(), ws.act.len(), ws.shared.len()),
        (t * 2 * 64, t * 64, t * c.hidden_size)
    );
}

/// transformers' reference comes from the dequantized model, so an exact dequantizing loader
/// matches it as closely as a float model does.
#[test]
fn block_fp8_checkpoint_matches_transformers_dequantized() {
    let model = load(
        &hf_fixture("qwen3_moe_fp8").join("model"),
        LoadFormat::Auto,
        0,
    )
    .unwrap();
    assert_eq!(model.config().fp8_block, Some((32, 32)));
    assert_f32_match(check("qwen3_moe_fp8"));
}

/// The f32 GGUF holds exactly the safetensors values: its forward equals the HF path's bit for
/// bit, and so matches the same transformers reference.
#[test]
fn qwen3moe_gguf_f32_equals_the_hf_model() {
    let gguf = load(&gguf_fixture("qwen3moe-f32.gguf"), LoadFormat::Auto, 0).unwrap();
    let hf = load(&hf_fixture("qwen3_moe").join("model"), LoadFormat::Auto, 0).unwrap();
    assert_eq!(gguf.config().arch, "qwen3_moe");
    let prompt = [5u32, 17, 300, 42, 7, 511, 0, 99, 256, 3];
    assert_eq!(
        teacher_forced(&gguf.model, &prompt, 4),
        teacher_forced(&hf.model, &prompt, 4)
    );
    assert_f32_match(check_reference(
        "qwen3moe-f32.gguf",
        &gguf_fixture("qwen3moe-f32.gguf"),
        &hf_fixture("qwen3_moe").join("reference.json"),
    ));
}

/// Q8_0 experts stay packed (3-D tensors sliced per expert) and match transformers run on the
/// exactly dequantized weights, within the error of quantizing activations to 8 bits as
/// llama.cpp does for block-quantized weights (a wrong expert slice or layout is off by whole
/// nats, not hundredths).
#[test]
fn qwen3moe_gguf_q8_0_matches_transformers_on_its_dequantized_weights() {
    let (max, mean, agree) = check_reference(
        "qwen3moe-q8_0.gguf",
        &gguf_fixture("qwen3moe-q8_0.gguf"),
        &gguf_fixture("qwen3moe-q8_0.reference.json"),
    );
    assert!(
        max < 0.3 && mean < 0.02 && agree >= 0.95,
        "{max} {mean} {agree}"
    );
}

/// Tensor parallelism changes no loader: each of two ranks loads its half of a column-parallel
/// (rows) and a row-parallel (columns) weight, dense and block-FP8, and the halves concatenate
/// to the unsharded weight.
#[test]
fn shards_of_two_concatenate_to_the_whole() {
    let be = CpuBackend::new();
    for (fixture, block) in [("qwen2", None), ("qwen3_moe_fp8", Some((32, 32)))] {
        let src = SafetensorsSource::open(&hf_fixture(fixture).join("model")).unwrap();
        let loader =
            |rank, world| ParamLoader::new(&be, &src, Shard { rank, world }, false, block, &|_| {});
        let p = "model.layers.0.self_attn";
        let cfg = load(&hf_fixture(fixture).join("model"), LoadFormat::Auto, 0)
            .unwrap()
            .config()
            .clone();
        let (h, q) = (cfg.hidden_size, cfg.q_dim());
        let whole = |name: &str, rows, k| {
            let w = loader(0, 1).linear(name, rows, k, Split::Whole).unwrap();
            let mut buf = vec![0f32; k];
            (0..rows)
                .map(|r| w.row(r, &mut buf).to_vec())
                .collect::<Vec<_>>()
        };
        let part = |name: &str, rows, k, split, rank| {
            let w = loader(rank, 2).linear(name, rows, k, split).unwrap();
            let (pr, pk) = if split == Split::Rows {
                (rows / 2, k)
            } else {
                (rows, k / 2)
            };
            assert_eq!((w.rows(), w.k), (pr, pk), "{fixture} {name} {split:?}");
            let mut buf = vec![0f32; pk];
            (0..pr)
                .map(|r| w.row(r, &mut buf).to_vec())
                .collect::<Vec<_>>()
        };
        let qn = format!("{p}.q_proj");
        let rows: Vec<Vec<f32>> = [0, 1]
            .iter()
            .flat_map(|&r| part(&qn, q, h, Split::Rows, r))
            .collect();
        assert_eq!(rows, whole(&qn, q, h), "{fixture}: q_proj rows");
        let on = format!("{p}.o_proj");
        let (a, b) = (
            part(&on, h, q, Split::Cols, 0),
            part(&on, h, q, Split::Cols, 1),
        );
        let cols: Vec<Vec<f32>> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| [&x[..], y].concat())
            .collect();
        assert_eq!(cols, whole(&on, h, q), "{fixture}: o_proj columns");
    }
}

fn real_config(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/fixtures/configs")
        .join(name)
}

/// The real configs read as the deployments need them, and `--hf-overrides` + dummy weights
/// shrink one into something that runs here (vLLM's meaning of both).
#[test]
fn real_moe_configs_read_and_run_shrunk_with_overrides() {
    use ferrum_models::{LoadOptions, inspect, load_on};
    let opts = LoadOptions::new(LoadFormat::Dummy, 0);
    let glm = inspect(&real_config("glm-4.5-air"), &opts).unwrap().cfg;
    assert_eq!(
        (glm.arch, glm.head_dim, glm.rotary_dim),
        ("glm4_moe", 128, 64)
    );
    let moe = glm.moe.as_ref().unwrap();
    assert_eq!((moe.n_experts, moe.top_k, moe.n_shared), (128, 8, 1));
    assert_eq!(&moe.sparse_layers[..3], &[false, true, true]);
    assert!(glm.qkv_bias && !glm.qk_norm);
    let fp8 = inspect(&real_config("qwen3-30b-a3b-instruct-2507-fp8"), &opts)
        .unwrap()
        .cfg;
    assert_eq!((fp8.arch, fp8.fp8_block), ("qwen3_moe", Some((128, 128))));
    assert_eq!(fp8.moe.as_ref().unwrap().top_k, 8);

    let mut opts = LoadOptions::new(LoadFormat::Dummy, 0);
    opts.hf_overrides = Some(serde_json::json!({
        "num_hidden_layers": 2, "n_routed_experts": 8, "hidden_size": 64, "head_dim": 16,
        "num_attention_heads": 4, "num_key_value_heads": 2, "moe_intermediate_size": 32,
        "intermediate_size": 96, "vocab_size": 300
    }));
    let m = load_on(&real_config("glm-4.5-air"), &opts, &CpuBackend::new()).unwrap();
    assert_eq!((m.config().num_layers, m.config().rotary_dim), (2, 8));
    let lp = teacher_forced(&m.model, &[1, 2, 3, 4, 5], 5);
    assert!(lp.iter().flatten().all(|x| x.is_finite()));

    let mut bad = LoadOptions::new(LoadFormat::Dummy, 0);
    bad.hf_overrides = Some(serde_json::json!({"num_experts_per_tok": 200}));
    let e = inspect(&real_config("glm-4.5-air"), &bad).err().unwrap();
    assert!(format!("{e:#}").contains("num_experts_per_tok"), "{e:#}");
}

/// A model too large for the machine (GLM-4.5-Air in f32: about 440 GB) is refused before any
/// weight is generated or read, with both numbers, instead of being killed by the kernel.
#[test]
fn a_model_that_cannot_fit_is_refused_before_loading() {
    let opts = ferrum_models::LoadOptions::new(LoadFormat::Dummy, 0);
    let e = ferrum_models::load_on(&real_config("glm-4.5-air"), &opts, &CpuBackend::new())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not fit") && e.contains("available"), "{e}");
}
