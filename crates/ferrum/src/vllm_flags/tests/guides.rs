//! Command lines from the deployment guides, as users paste them.

use super::*;

#[test]
fn guide_qwen3_reasoning() {
    let cmd = guide("vllm serve Qwen/Qwen3-8B --enable-reasoning --reasoning-parser deepseek_r1");
    ok(
        &cmd,
        "Qwen/Qwen3-8B --reasoning-parser deepseek_r1",
        &[
            "`--enable-reasoning` was removed from vLLM; ignored (vLLM parses reasoning whenever --reasoning-parser is given)",
        ],
    );
}

#[test]
fn guide_qwen3_tools() {
    let cmd = guide("vllm serve Qwen/Qwen3-8B --enable-auto-tool-choice --tool-call-parser hermes");
    ok(
        &cmd,
        "Qwen/Qwen3-8B --enable-auto-tool-choice --tool-call-parser hermes",
        &[],
    );
}

#[test]
fn guide_glm45_air_tensor_parallel() {
    let cmd = guide(
        "vllm serve zai-org/GLM-4.5-Air --tensor-parallel-size 4 --tool-call-parser glm45 \
         --reasoning-parser glm45 --enable-auto-tool-choice",
    );
    err(
        &cmd,
        "not supported yet: --tensor-parallel-size 4 (ferrum runs a model on one device)",
    );
    // The same on one device runs.
    ok(
        &cmd.replace("--tensor-parallel-size 4", "--tensor-parallel-size 1"),
        "zai-org/GLM-4.5-Air --tool-call-parser glm45 --reasoning-parser glm45 --enable-auto-tool-choice",
        &[],
    );
}

#[test]
fn guide_long_context_fp8_kv_cache() {
    let cmd = guide(
        "vllm serve Qwen/Qwen3-8B --max-model-len 16k --kv-cache-dtype fp8 --gpu-memory-utilization 0.9",
    );
    ok(
        &cmd,
        "Qwen/Qwen3-8B --max-model-len 16000 --kv-cache-dtype fp8 --gpu-memory-utilization 0.9",
        &[],
    );
}

#[test]
fn guide_older_vllm_lines() {
    // A 2024 tool-calling guide (vLLM 0.5/0.6 era).
    ok(
        &guide(
            "vllm serve Qwen/Qwen2.5-7B-Instruct --enable-auto-tool-choice --tool-call-parser hermes \
             --disable-log-requests --swap-space 16 --max-num-seqs 64 --use-v2-block-manager",
        ),
        "Qwen/Qwen2.5-7B-Instruct --enable-auto-tool-choice --tool-call-parser hermes --max-num-seqs 64",
        &[
            "`--swap-space` was removed from vLLM; ignored",
            "`--use-v2-block-manager` was removed from vLLM; ignored",
        ],
    );
    // n-gram speculation, 0.6 spelling.
    ok(
        &guide(
            "vllm serve facebook/opt-6.7b --speculative-model [ngram] --num-speculative-tokens 5 \
             --ngram-prompt-lookup-max 4",
        ),
        r#"facebook/opt-6.7b --speculative-config {"method":"ngram","num_speculative_tokens":5,"prompt_lookup_max":4}"#,
        &[
            "`--speculative-model`, `--num-speculative-tokens`, `--ngram-prompt-lookup-max` were \
             removed from vLLM; mapped to --speculative-config \
             {\"method\":\"ngram\",\"num_speculative_tokens\":5,\"prompt_lookup_max\":4}",
        ],
    );
    // Llama with an API key and explicit dtype.
    ok(
        &guide("vllm serve meta-llama/Llama-3.1-8B-Instruct --dtype auto --api-key token-abc123"),
        "meta-llama/Llama-3.1-8B-Instruct --dtype auto --api-key token-abc123",
        &[],
    );
    // DeepSeek-R1 distill on two GPUs.
    err(
        &guide(
            "vllm serve deepseek-ai/DeepSeek-R1-Distill-Qwen-32B --tensor-parallel-size 2 \
             --max-model-len 32768 --enforce-eager",
        ),
        "not supported yet: --tensor-parallel-size 2 (ferrum runs a model on one device)",
    );
    // gpt-oss.
    err(
        &guide("vllm serve openai/gpt-oss-20b --async-scheduling"),
        "--async-scheduling is a vLLM flag that ferrum does not support yet",
    );
    // Served name, host and port, chat template, --model spelled out.
    ok(
        &guide(
            "vllm serve --model Qwen/Qwen3-8B --served-model-name qwen3 --host 0.0.0.0 --port 8000 \
             --chat-template ./template.jinja --trust-remote-code",
        ),
        "--model Qwen/Qwen3-8B --served-model-name qwen3 --host 0.0.0.0 --port 8000 --chat-template ./template.jinja",
        &[
            "`--trust-remote-code` accepted: ferrum runs no model code from the hub, so it has no effect",
        ],
    );
}

// -- robustness
