"""The HTTP layer's flags through `ferrum serve`, as vLLM's uvicorn applies them:

- `--root-path /proxy`: behind a proxy that forwards the prefix, the API answers under it, and
  still without it (Starlette routes a path that starts with the root path);
- the access log: one uvicorn-style line per answered request at `--uvicorn-log-level info` (the
  default), none above it or with `--disable-uvicorn-access-log`.
"""

import os
import subprocess
import urllib.error
import urllib.request

import pytest
from openai import OpenAI

from conftest import API_KEY, ROOT, start_server


@pytest.fixture(scope="module")
def prefixed():
    proc, base = start_server("--api-key", API_KEY, "--root-path", "/proxy/", "--uvicorn-log-level", "warning")
    yield base
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def log_of(base: str) -> str:
    port = base.rsplit(":", 1)[1]
    return (ROOT / "target" / f"serve-{port}.log").read_text()


def test_root_path_serves_the_api_with_and_without_the_prefix(prefixed):
    for prefix in ["/proxy", ""]:
        c = OpenAI(base_url=prefixed + prefix + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        assert [m.id for m in c.models.list().data] == ["smol"]
    c = OpenAI(base_url=prefixed + "/proxy/v1", api_key=API_KEY, max_retries=0, timeout=120)
    r = c.completions.create(model="smol", prompt="1, 2, 3,", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens == 4
    with urllib.request.urlopen(prefixed + "/proxy/health") as h:
        assert h.status == 200
    # a path that is not a route, under the prefix too: OpenAI's 404 body
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(prefixed + "/proxy/v2/models")
    assert e.value.code == 404
    # the key is still asked for under the prefix
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(prefixed + "/proxy/v1/models")
    assert e.value.code == 401


def test_access_log_follows_the_http_log_level(server, prefixed):
    c = OpenAI(base_url=server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    c.models.list()
    lines = [line for line in log_of(server).splitlines() if "ferrum::access" in line]
    assert any('"GET /v1/models HTTP/1.1" 200 OK' in line and "127.0.0.1:" in line for line in lines), lines
    # `--uvicorn-log-level warning`: the requests above left no access line
    assert "ferrum::access" not in log_of(prefixed)


def test_a_root_path_without_a_leading_slash_is_refused():
    binary = os.environ.get("FERRUM_BIN", str(ROOT / "target/release/ferrum"))
    r = subprocess.run([binary, "serve", "--root-path", "api"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "--root-path api: expected a path that starts with '/'" in r.stderr, r.stderr
