"""SIGTERM with requests in flight, `--shutdown-timeout 5`.

Right after the signal new connections are refused (or answered 503 with OpenAI's error body);
streams that can finish within the timeout finish normally (`[DONE]`, full usage); streams that
cannot keep receiving tokens until the timeout and are then cut (an error chunk or a closed
connection), not earlier and not much later; the process exits with code 0 within the timeout
+ 10 s.
"""

import asyncio
import json
import signal
import time

import pytest

from faultlib import error_body_problem, report, start_server

try:
    import httpx2 as httpx
except ImportError:  # the plain package name, where the venv has it
    import httpx

SHUTDOWN_TIMEOUT = 5.0
PROMPT = [19556, 28, 253, 5356]  # a few token ids: no tokenizer in the way
SHORT_TOKENS = 6  # finishes well within the timeout
LONG_TOKENS = 2000  # cannot finish within it on any machine this runs on


@pytest.fixture
def server():
    proc, base = start_server(
        "--shutdown-timeout", str(int(SHUTDOWN_TIMEOUT)), "--max-num-seqs", "8", "--disable-log-stats"
    )
    yield proc, base
    if proc.poll() is None:  # the test failed before the server exited
        proc.kill()
        proc.wait()


async def stream(client: httpx.AsyncClient, base: str, max_tokens: int, started: asyncio.Event) -> dict:
    body = {
        "model": "smol",
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = {"max_tokens": max_tokens, "events": [], "times": []}
    try:
        async with client.stream("POST", base + "/v1/completions", json=body) as r:
            out["status"] = r.status_code
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    out["events"].append(line[6:])
                    out["times"].append(time.time())
                    started.set()
        out["ended"] = "eof"
    except httpx.HTTPError as e:
        out["ended"] = f"transport error: {e!r}"
    out["end"] = time.time()
    return out


async def probe(base: str) -> str:
    """One new connection: 'refused', '503' (with OpenAI's body) or what else happened."""
    try:
        async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            r = await c.post(base + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 1})
    except httpx.ConnectError:
        return "refused"
    except httpx.HTTPError as e:
        return f"error {e!r}"
    if r.status_code == 503 and error_body_problem(503, r.content) is None:
        return "503"
    return f"{r.status_code} {r.content[:200]!r}"


async def scenario(proc, base: str) -> dict:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, connect=10)) as client:
        # Warm-up, so the streams below start at once.
        r = await client.post(base + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2})
        assert r.status_code == 200, r.text
        flags = [asyncio.Event() for _ in range(5)]
        sizes = [SHORT_TOKENS, SHORT_TOKENS, LONG_TOKENS, LONG_TOKENS, LONG_TOKENS]
        tasks = [asyncio.ensure_future(stream(client, base, n, f)) for n, f in zip(sizes, flags)]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), 60)  # all are streaming

        t_sig = time.time()
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        probes = []
        for _ in range(5):
            probes.append(await probe(base))
            await asyncio.sleep(0.2)

        exit_deadline = t_sig + SHUTDOWN_TIMEOUT + 10
        while proc.poll() is None and time.time() < exit_deadline:
            await asyncio.sleep(0.05)
        t_exit = time.time() if proc.poll() is not None else None
        done, pending = await asyncio.wait(tasks, timeout=max(0.1, exit_deadline - time.time()))
        for t in pending:
            t.cancel()
        results = [t.result() if t in done else {"max_tokens": n, "ended": "still open"} for t, n in zip(tasks, sizes)]
    return {"t_sig": t_sig, "t_exit": t_exit, "rc": proc.poll(), "probes": probes, "streams": results}


def test_sigterm_with_requests_in_flight(server):
    proc, base = server
    s = asyncio.run(scenario(proc, base))
    t_sig = s["t_sig"]
    if s["t_exit"]:
        report(f"shutdown: probes after SIGTERM {s['probes']}; exit code {s['rc']} {s['t_exit'] - t_sig:.1f}s after SIGTERM")
    else:
        report("shutdown: the process did not exit within the timeout + 10 s")
    for st in s["streams"]:
        if "end" in st:
            after = [t for t in st["times"] if t > t_sig]
            last = json.loads(st["events"][-3]) if len(st["events"]) >= 3 else {}
            if "error" in last:
                how = "cut: error chunk '" + last["error"]["message"] + "', usage, [DONE]"
            elif st["ended"] == "eof" and st["events"] and st["events"][-1] == "[DONE]":
                how = "finished: [DONE]"
            else:
                how = st["ended"][:100]
            report(
                f"shutdown:   max_tokens {st['max_tokens']}: {len(st['events'])} events ({len(after)} after SIGTERM), "
                f"ended {st['end'] - t_sig:.1f}s after SIGTERM ({how})"
            )

    # The process exits, with 0, within the timeout + 10 s.
    assert s["t_exit"] is not None, "ferrum serve did not exit within the shutdown timeout + 10 s"
    assert s["rc"] == 0, f"exit code {s['rc']}"
    # New connections are refused (or get 503) once the signal is in.
    assert all(p in ("refused", "503") for p in s["probes"]), s["probes"]

    for st in s["streams"]:
        assert "end" in st, f"a stream was still open after the process exited: {st}"
        assert st.get("status") == 200
        if st["max_tokens"] == SHORT_TOKENS:
            # Finished normally during the drain.
            assert st["ended"] == "eof" and st["events"][-1] == "[DONE]", st
            chunks = [json.loads(e) for e in st["events"][:-1]]
            assert all("error" not in c for c in chunks), chunks
            assert chunks[-1]["usage"]["completion_tokens"] == SHORT_TOKENS
        else:
            # Kept streaming through the drain, then cut (an error chunk or a closed connection),
            # not before the timeout and not long after it.
            errors = [t for e, t in zip(st["events"], st["times"]) if e != "[DONE]" and "error" in json.loads(e)]
            assert errors or st["ended"] != "eof", f"a long stream ended without being cut: {st['events'][-3:]}"
            cut_at = errors[0] if errors else st["end"]
            assert cut_at >= t_sig + SHUTDOWN_TIMEOUT - 0.5, f"cut {cut_at - t_sig:.1f}s after SIGTERM, before the timeout"
            assert cut_at <= t_sig + SHUTDOWN_TIMEOUT + 10, f"cut {cut_at - t_sig:.1f}s after SIGTERM"
            assert [t for t in st["times"] if t_sig + 1 < t < cut_at], "no tokens streamed during the drain"
