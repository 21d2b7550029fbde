"""Shared helpers of the fault tests: a server of our own (tests/openai's `start_server`,
loaded under another module name so the two conftest files never collide), Prometheus
gauges, the process's resident memory, and OpenAI's error-body check."""

import importlib.util
import re
import time
import urllib.request
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "ferrum_openai_conftest", Path(__file__).resolve().parents[1] / "openai" / "conftest.py"
)
_openai_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_openai_conftest)

start_server = _openai_conftest.start_server
ROOT = _openai_conftest.ROOT
API_KEY = "fault-key"

# Lines the tests want shown even when they pass (conftest.py prints them in the summary).
REPORT: list[str] = []


def report(line: str) -> None:
    print(line)
    REPORT.append(line)


# Gauges that must all read 0 once every request is done (nothing running, nothing queued,
# no KV-cache block still held).
IDLE_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")


def metrics(base: str) -> dict[str, float]:
    """`/metrics` as {name: value} (labels dropped; the server has one engine and one model),
    plus {"name{label=value}": value} for the one label that tells series apart, where there is
    one (e.g. `vllm:request_success_total{finished_reason=abort}`)."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(3))
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            labels.pop("engine", None)
            labels.pop("model_name", None)
            if len(labels) == 1:
                (k, v), = labels.items()
                out[f"{m.group(1)}{{{k}={v}}}"] = float(m.group(3))
    return out


def wait_idle(base: str, timeout: float = 60.0) -> dict[str, float]:
    """Polls `/metrics` until every idle gauge reads 0; returns the last reading either way."""
    deadline = time.time() + timeout
    while True:
        m = metrics(base)
        if all(m.get(g) == 0 for g in IDLE_GAUGES) or time.time() > deadline:
            return {g: m.get(g) for g in IDLE_GAUGES}
        time.sleep(0.2)


def rss_kib(pid: int) -> int:
    """VmRSS of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def kv_cache_rss_kib(pid: int) -> int:
    """Resident KiB of the process's largest anonymous mapping: the KV cache, which the CPU
    backend reserves whole at start-up and the kernel commits page by page as blocks are first
    written."""
    best = (0, 0)  # (size, rss)
    size = anon = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+$", head[0]):
            anon = len(head) < 6
            size = None
        elif head[0] == "Size:":
            size = int(head[1])
        elif head[0] == "Rss:" and anon and size is not None and size > best[0]:
            best = (size, int(head[1]))
    return best[1]


def healthy(base: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def error_body_problem(status: int, body: bytes) -> str | None:
    """None when `body` is OpenAI's error body for `status`, else what is wrong with it."""
    import json

    try:
        v = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:200]!r}"
    e = v.get("error") if isinstance(v, dict) else None
    if not isinstance(e, dict):
        return f"no `error` object: {body[:200]!r}"
    if set(e) != {"message", "type", "param", "code"}:
        return f"error keys {sorted(e)}: {body[:200]!r}"
    if not isinstance(e["message"], str) or not isinstance(e["type"], str):
        return f"message/type not strings: {body[:200]!r}"
    if type(e["code"]) is not int or e["code"] != status:
        return f"code {e['code']!r} is not the status {status}: {body[:200]!r}"
    if e["param"] is not None and not isinstance(e["param"], str):
        return f"param {e['param']!r} is neither null nor a string"
    return None
