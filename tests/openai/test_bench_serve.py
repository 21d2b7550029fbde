"""`ferrum bench serve` against the live server: its totals must equal what the server counted
in `/metrics` over the same run."""

import json
import os
import subprocess

from conftest import API_KEY, ROOT, scrape_metrics, scrape_metrics_settled


def test_bench_serve_totals_match_server_metrics(server, tmp_path):
    labels = '{engine="0",model_name="smol"}'
    before = scrape_metrics(server)
    binary = os.environ.get("FERRUM_BIN", str(ROOT / "target/release/ferrum"))
    out = subprocess.run(
        [binary, "bench", "serve", "--base-url", server, "--model", "smol", "--dataset-name", "random",
         "--random-input-len", "24", "--random-output-len", "6", "--num-prompts", "6",
         "--max-concurrency", "3", "--save-result", "--result-dir", str(tmp_path), "--disable-tqdm"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OPENAI_API_KEY": API_KEY},
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "============ Serving Benchmark Result ============" in out.stdout
    (result,) = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    gen = "vllm:generation_tokens_total" + labels
    after = scrape_metrics_settled(server, gen, before.get(gen, 0) + result["total_output_tokens"])
    delta = lambda name: after[name + labels] - before.get(name + labels, 0)
    assert result["completed"] == 6 and result["failed"] == 0
    assert result["total_output_tokens"] == 6 * 6  # ignore_eos: every request runs to its length
    assert delta("vllm:generation_tokens_total") == result["total_output_tokens"]
    assert delta("vllm:prompt_tokens_total") == result["total_input_tokens"]
    ok = 'vllm:request_success_total{engine="0",finished_reason="length",model_name="smol"}'
    assert after[ok] - before.get(ok, 0) == 6
    assert delta("vllm:e2e_request_latency_seconds_count") == 6
