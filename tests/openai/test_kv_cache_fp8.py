"""`--kv-cache-dtype fp8` through `ferrum serve`: the cache holds 4× the blocks of the f32 cache
in the same memory (vLLM's `cache_config_info` says so, with `cache_dtype` as given), and greedy
answers still come out (the accuracy cost is measured in crates/ferrum-models/tests/kv_fp8.rs)."""

import re

import pytest
from openai import OpenAI

from conftest import API_KEY, scrape_metrics, start_server


@pytest.fixture(scope="module")
def fp8_server():
    proc, base = start_server("--api-key", API_KEY, "--kv-cache-dtype", "fp8")
    yield base
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def cache_info(base):
    (key,) = [k for k in scrape_metrics(base) if k.startswith("vllm:cache_config_info{")]
    return dict(re.findall(r'(\w+)="([^"]*)"', key))


def test_fp8_cache_holds_four_times_the_blocks(server, fp8_server):
    f32, fp8 = cache_info(server), cache_info(fp8_server)
    assert (f32["cache_dtype"], fp8["cache_dtype"]) == ("auto", "fp8")
    # the same bytes in blocks a quarter the size (each count rounded down)
    n32, n8 = int(f32["num_gpu_blocks"]), int(fp8["num_gpu_blocks"])
    assert 4 * n32 <= n8 < 4 * (n32 + 1), (n32, n8)


def test_fp8_cache_answers(fp8_server):
    c = OpenAI(base_url=fp8_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    r = c.chat.completions.create(model="smol", temperature=0, max_tokens=16,
                                  messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in r.choices[0].message.content
