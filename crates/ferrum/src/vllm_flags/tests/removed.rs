//! Flags vLLM removed: warned and dropped, mapped to their successors, or refused.

use super::*;

#[test]
fn removed_flags_warn_and_consume_their_values() {
    ok(
        "m --use-v2-block-manager --port 1",
        "m --port 1",
        &["`--use-v2-block-manager` was removed from vLLM; ignored"],
    );
    ok(
        "m --num-scheduler-steps 8 --port 1",
        "m --port 1",
        &["`--num-scheduler-steps` was removed from vLLM; ignored"],
    );
    ok(
        "m --swap-space=16",
        "m",
        &["`--swap-space` was removed from vLLM; ignored"],
    );
    ok(
        "m --swap_space 16",
        "m",
        &["`--swap-space` was removed from vLLM; ignored"],
    );
    ok(
        "m --guided-decoding-backend xgrammar",
        "m",
        &[
            "`--guided-decoding-backend` was removed from vLLM; ignored (vLLM now reads it from --structured-outputs-config)",
        ],
    );
    ok(
        "m --enable-reasoning",
        "m",
        &[
            "`--enable-reasoning` was removed from vLLM; ignored (vLLM parses reasoning whenever --reasoning-parser is given)",
        ],
    );
    // vLLM dropped `--device`; ferrum has it, so it is passed on
    ok("m --device cpu", "m --device cpu", &[]);
    ok("m --device cuda", "m --device cuda", &[]);
    err(
        "m --device tpu",
        "not supported yet: --device tpu (ferrum runs on CUDA GPUs or the CPU)",
    );
    ok(
        "m --task generate",
        "m",
        &["`--task` was removed from vLLM; ignored"],
    );
    err(
        "m --task embed",
        "not supported yet: --task embed (ferrum serves text generation only)",
    );
    ok(
        "m --no-calculate-kv-scales",
        "m",
        &["`--no-calculate-kv-scales` was removed from vLLM; ignored"],
    );
    ok(
        "m -spec-draft-tp 1",
        "m",
        &[
            "`-spec-draft-tp (--speculative-draft-tensor-parallel-size)` was removed from vLLM; ignored",
        ],
    );
}

#[test]
fn removed_flags_mapped_or_refused() {
    err(
        "m --worker-use-ray",
        "not supported yet: --worker-use-ray (vLLM's earlier spelling of \
         --distributed-executor-backend ray; ferrum runs a model in one process)",
    );
    ok(
        "m --speculative-model [ngram] --num-speculative-tokens 5",
        r#"m --speculative-config {"method":"ngram","num_speculative_tokens":5}"#,
        &[
            "`--speculative-model`, `--num-speculative-tokens` were removed from vLLM; mapped to \
             --speculative-config {\"method\":\"ngram\",\"num_speculative_tokens\":5}",
        ],
    );
    ok(
        "m --ngram-prompt-lookup-min 2 --speculative-model ngram --num-speculative-tokens 3 \
         --ngram-prompt-lookup-max 4",
        r#"m --speculative-config {"method":"ngram","num_speculative_tokens":3,"prompt_lookup_max":4,"prompt_lookup_min":2}"#,
        &[
            "`--ngram-prompt-lookup-min`, `--speculative-model`, `--num-speculative-tokens`, \
             `--ngram-prompt-lookup-max` were removed from vLLM; mapped to --speculative-config \
             {\"method\":\"ngram\",\"num_speculative_tokens\":3,\"prompt_lookup_max\":4,\"prompt_lookup_min\":2}",
        ],
    );
    err(
        "m --speculative-model facebook/opt-125m --num-speculative-tokens 5",
        "not supported yet: --speculative-model facebook/opt-125m (vLLM's earlier spelling of \
         --speculative-config with a draft model; ferrum implements the \"ngram\" method only)",
    );
    err(
        "m --num-speculative-tokens 5",
        "--num-speculative-tokens without --speculative-model [ngram] (vLLM's earlier spelling of \
         --speculative-config '{\"method\": \"ngram\", ...}')",
    );
    err(
        "m --rope-scaling {\"type\":\"yarn\"}",
        "--rope-scaling was removed from vLLM: pass --hf-overrides '{\"rope_scaling\": {...}}' instead",
    );
}

// -- partly supported values
