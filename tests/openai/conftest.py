"""A live `ferrum serve` of the default model for the tests, on a free port."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key"


# Two tools the tool-call tests share.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": False},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*extra: str, env: dict | None = None):
    binary = os.environ.get("FERRUM_BIN", str(ROOT / "target/release/ferrum"))
    port = free_port()
    log = open(ROOT / "target" / f"serve-{port}.log", "w")
    proc = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "smol", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": "info", **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ferrum serve did not start: {(ROOT / 'target' / f'serve-{port}.log').read_text()}")
        time.sleep(0.1)
    return proc, base


def scrape_metrics(base: str) -> dict[str, float]:
    """`/metrics` as {series with labels: value}."""
    with urllib.request.urlopen(base + "/metrics") as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def scrape_metrics_settled(base: str, key: str, at_least: float, timeout: float = 5.0) -> dict[str, float]:
    """`/metrics` once `key` has reached `at_least`. The engine publishes its counters right
    after the step whose outputs a client has just received (as vLLM's output processor records
    its stats after handing the outputs on), so a scrape the instant a response ends may miss
    that last step; waiting for the expected count, then comparing every series, keeps the test
    exact without racing it."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape_metrics(base)
        if m.get(key, 0) >= at_least or time.monotonic() > deadline:
            return m
        time.sleep(0.02)


@pytest.fixture(scope="session")
def server():
    proc, base = start_server("--api-key", API_KEY)
    yield base
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "ferrum serve did not exit 0 on SIGTERM"


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def llamacpp():
    """llama.cpp's teacher-forced reference for the default model (see scripts/fixtures)."""
    p = ROOT / "crates/ferrum-models/tests/fixtures/llamacpp_smollm2_logprobs.json"
    return json.loads(p.read_text())
