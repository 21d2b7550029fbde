"""Seeded fuzzing of every route: valid bodies, then mutated (fields dropped, every field set to
every kind of JSON value, huge / negative / non-finite numbers, strings for numbers, nested junk,
unicode, invalid UTF-8, truncated or empty JSON, huge `n` / `max_tokens` / `logprobs`, token ids
out of the vocabulary, empty `messages`...), plus wrong methods, unknown paths and bad keys.

Every answer must be a 2xx or a 4xx (never a 5xx, never a dropped connection), every 4xx must
carry OpenAI's error body, a normal completion must still work afterwards, and once everything
has drained `/metrics` must show nothing running, nothing waiting and no KV-cache block held.

FAULT_SEED picks another seed, FAULT_FUZZ_N another number of cases.
"""

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from faultlib import API_KEY, IDLE_GAUGES, error_body_problem, healthy, metrics, report, start_server, wait_idle

try:
    import httpx2 as httpx
except ImportError:  # the plain package name, where the venv has it
    import httpx

SEED = int(os.environ.get("FAULT_SEED", "20261204"))
N_CASES = int(os.environ.get("FAULT_FUZZ_N", "2200"))
CONCURRENCY = 16
# Client-side limit for one whole exchange (a mutation can make a valid request long, e.g.
# `max_tokens: null` in a chat, or it waits behind such ones): past it we hang up, which aborts
# the request, and the exchange only counts as a failure if the server then stops answering
# /health. A few of the timed-out bodies are sent again afterwards, alone, with a long limit:
# they must then be answered (a hang would not be hidden by the deadline).
DEADLINE_S = 10.0
RETRY_TIMED_OUT = 4
RETRY_DEADLINE_S = 120.0
MAX_MODEL_LEN = 256
AUTH = {"authorization": f"Bearer {API_KEY}"}

POST_ROUTES = ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"]
GET_ROUTES = ["/v1/models", "/health", "/version", "/metrics"]


@pytest.fixture(scope="module")
def fuzz_server():
    # A short context keeps every valid prompt cheap on a CPU and turns huge ones into 400s;
    # a small step budget keeps every engine step short.
    proc, base = start_server(
        "--api-key", API_KEY,
        "--max-model-len", str(MAX_MODEL_LEN),
        "--max-num-batched-tokens", str(MAX_MODEL_LEN),
        "--disable-log-stats",
        # Only max_new_tokens: 2, so a body whose mutation dropped `max_tokens` stays cheap.
        "--generation-config", str(Path(__file__).parent / "genconfig"),
    )
    yield base
    proc.terminate()
    assert proc.wait(timeout=60) == 0


def chat_texts(base: str) -> tuple[str, str]:
    """A user message, and a system message to go before it, whose rendered chats are 1 (mod 16)
    tokens long: after the first request every block but the last token's comes from the prefix
    cache, so valid chats cost the CPU little."""
    import urllib.request

    def count(messages):
        req = urllib.request.Request(base + "/tokenize", data=json.dumps({"messages": messages}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)["count"]

    text = next(
        (t for t in (" ".join(["Hi"] + ["there"] * k) for k in range(20)) if count([{"role": "user", "content": t}]) % 16 == 1),
        "Hi",
    )
    system = next(
        (s for s in (" ".join(["Be"] + ["brief"] * k) for k in range(20))
         if count([{"role": "system", "content": s}, {"role": "user", "content": text}]) % 16 == 1),
        "Be brief.",
    )
    return text, system


# ----------------------------------------------------------------------------------------------
# Values


def junk(rng: random.Random, depth: int = 0):
    """Any JSON value, biased to the edges."""
    atoms = [
        None, True, False, 0, 1, -1, 2, 3, 20, 21, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1,
        2**63, 2**64, 10**30, -(2**63), -(2**64), 1e308, -1e308, 1e-308, 5e-324, 0.5, -0.0, 1.5,
        -2.5, 3.14, "", " ", "0", "1", "-1", "2", "1e308", "NaN", "Infinity", "-Infinity", "null",
        "true", "smol", "text", "function", "auto", "none", "required", "user", "\u0000",
        "é\u0301", "🦀" * 5, "\u202eevil", "\ufeff", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
        "{{ messages }}", "{% for %}", "a" * 40, "\n\n\n", "\t\r", "%s%n%x", "../../etc/passwd",
    ]
    r = rng.random()
    if depth >= 3 or r < 0.55:
        return rng.choice(atoms)
    if r < 0.62:
        return rng.randint(-(2**70), 2**70)
    if r < 0.68:
        return rng.uniform(-1e6, 1e6)
    if r < 0.76:
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(rng.randint(1, 12)))
    if r < 0.88:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["a", "type", "text", "role", "content", "name", "", "🦀"]): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}


# Known-dangerous values per field, on top of the generic junk.
HAZARDS = {
    "n": [10**6, 2**63, 10**9, -1, 0, 1e308, "2", 2.5, 16385],
    "max_tokens": [10**9, 2**64, 1e308, -1, 0, "4", 1.5, MAX_MODEL_LEN, MAX_MODEL_LEN + 1],
    "max_completion_tokens": [10**9, -1, 0, 1e308],
    "min_tokens": [10**9, -1, 3, 1e308],
    "logprobs": [1000, 21, 20, -1, 1e308, True, "5"],
    "top_logprobs": [1000, 21, 20, -1, 1e308],
    "prompt_logprobs": [1000, -1, 21, 20, 1e308, -2],
    "temperature": [1e308, -1e308, -1, 0, 1e-308, 1e6, "0.5"],
    "top_p": [0, -1, 1.0000001, 1e308, 1e-308],
    "top_k": [-2, -1, 0, 2**31, 10**9, 2**31 - 1],
    "min_p": [-1, 2, 1e308],
    "repetition_penalty": [0, -1, 1e308, 1e-308],
    "presence_penalty": [-2.1, 2.1, 1e308, -1e308],
    "frequency_penalty": [-2.1, 2.1, 1e308],
    "seed": [-1, 2**63, 2**64, -(2**63) - 1, 1e308, "1"],
    "priority": [2**31, -(2**31) - 1, 10**30, -1],
    "stop": [[""], ["x"] * 1000, "", ["\u0000"], [None], "a" * 5000],
    "stop_token_ids": [[10**9], [-1], [2**32], list(range(1000))],
    "logit_bias": [{"1": 1e308}, {"999999999": 1}, {"-1": 1}, {"x": 1}, {"1": "x"}, {str(i): 100 for i in range(300)}],
    "allowed_token_ids": [[], [10**9], [-1], list(range(2000))],
    "prompt": [[10**9], [2**32], [-1], [], [[]], [[], [1]], "", [""], "hello " * 3000, [0] * (MAX_MODEL_LEN + 1), [1.5], [[10**9]]],
    "messages": [[], [{}], [{"role": "user"}], [{"content": "hi"}], [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], [{"role": "user", "content": "hello " * 3000}], [None], "hi"],
    "tokens": [[10**9], [-1], [2**32], [], [1.5], list(range(49150, 49160)), [[1]]],
    "stream_options": [{"include_usage": True}, {"nope": 1}, {"continuous_usage_stats": "x"}, []],
    "tools": [[{}], [{"type": "function"}], [{"type": "function", "function": {"name": 5}}], {"a": 1}],
    "tool_choice": ["required", {"type": "function"}, {"type": "function", "function": {"name": "f"}}, 5],
    "response_format": [{"type": "json_object"}, {"type": "json_schema"}, {}, "text"],
    "echo": [True, "yes"],
    "chat_template": ["{{ 1/0 }}", "{% for %}"],
    "chat_template_kwargs": [{"enable_thinking": True}, [], {"tools": 5}],
    "continue_final_message": [True],
    "add_generation_prompt": [False, "x"],
    "guided_json": [{"type": "object"}],
    "best_of": [2, 10**9],
    "use_beam_search": [True],
    "spaces_between_special_tokens": [False],
    "model": ["nope", "", 5, None, "smol\u0000"],
}

# Optional fields a valid body may carry (all values valid).
COMPLETION_EXTRAS = {
    "temperature": [0, 0.7, 1.0],
    "top_p": [0.9, 1.0],
    "top_k": [-1, 1, 40],
    "min_p": [0.0, 0.1],
    "seed": [0, 7, 2**31],
    "n": [1, 2],
    "stream": [True, False],
    "stream_options": [{"include_usage": True}, {"include_usage": True, "continuous_usage_stats": True}],
    "logprobs": [0, 2],
    "echo": [True],
    "stop": ["\n", [".", "!"]],
    "stop_token_ids": [[2]],
    "ignore_eos": [True, False],
    "min_tokens": [1],
    "presence_penalty": [0.5],
    "frequency_penalty": [-0.5],
    "repetition_penalty": [1.1],
    "logit_bias": [{"28": -100}],
    "allowed_token_ids": [[28, 29, 30]],
    "prompt_logprobs": [1],
    "skip_special_tokens": [False],
    "include_stop_str_in_output": [True],
    "user": ["someone"],
    "priority": [0, 5],
    "add_special_tokens": [False],
    "unknown_field": [1],
}
CHAT_EXTRAS = {
    # prompt_logprobs makes the engine recompute the whole (cached) chat prompt: completions only.
    k: v for k, v in COMPLETION_EXTRAS.items() if k not in ("logprobs", "echo", "add_special_tokens", "prompt_logprobs")
} | {
    "logprobs": [True, False],
    "top_logprobs": [0, 2],
    "tools": [[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]],
    "tool_choice": ["none", "auto"],
    "response_format": [{"type": "text"}],
    "chat_template_kwargs": [{}],
    "add_generation_prompt": [True],
    "parallel_tool_calls": [True],
    "max_completion_tokens": [1],
}


def valid_body(rng: random.Random, route: str, texts: tuple[str, str]) -> dict:
    text, system = texts
    if route == "/v1/completions":
        prompt = rng.choice(["Hello", ["Hello", "Hi"], [19556], [[19556], [28]], "Hello"])
        body = {"model": "smol", "prompt": prompt, "max_tokens": 1}
        extras = COMPLETION_EXTRAS
    elif route == "/v1/chat/completions":
        messages = rng.choice([
            [{"role": "user", "content": text}],
            [{"role": "user", "content": text}],
            [{"role": "user", "content": [{"type": "text", "text": text}]}],
            [{"role": "system", "content": system}, {"role": "user", "content": text}],
        ])
        body = {"model": "smol", "messages": messages, "max_tokens": 1}
        extras = CHAT_EXTRAS
    elif route == "/tokenize":
        body = rng.choice([
            {"prompt": "Hello world"},
            {"model": "smol", "prompt": "Hello", "add_special_tokens": False, "return_token_strs": True},
            {"messages": [{"role": "user", "content": text}], "add_generation_prompt": True},
        ])
        return dict(body)
    else:
        return rng.choice([{"tokens": [19556, 28]}, {"model": "smol", "tokens": []}, {"tokens": [1, 2, 3]}])
    for k, vs in extras.items():
        if rng.random() < 0.12:
            body[k] = rng.choice(vs)
    if body.get("stream_options") and not body.get("stream"):
        body["stream"] = True
    return body


def mutate(rng: random.Random, body, route: str):
    """One structural mutation of a JSON value."""
    if not isinstance(body, dict):
        return junk(rng)
    body = dict(body)
    op = rng.random()
    keys = list(body)
    if op < 0.15 and keys:
        body.pop(rng.choice(keys))
    elif op < 0.45:
        k = rng.choice(keys + list(HAZARDS)) if keys else rng.choice(list(HAZARDS))
        body[k] = rng.choice(HAZARDS[k]) if k in HAZARDS and rng.random() < 0.6 else junk(rng)
    elif op < 0.65 and keys:
        k = rng.choice(keys)
        body[k] = junk(rng)
    elif op < 0.72:
        body[rng.choice(["x", "", "🦀", "prompt ", "MAX_TOKENS", "extra_body"])] = junk(rng)
    elif op < 0.85 and isinstance(body.get("messages"), list) and body["messages"]:
        msgs = [dict(m) if isinstance(m, dict) else m for m in body["messages"]]
        i = rng.randrange(len(msgs))
        if isinstance(msgs[i], dict) and rng.random() < 0.8:
            msgs[i][rng.choice(["role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content"])] = junk(rng)
        else:
            msgs[i] = junk(rng)
        body["messages"] = msgs
    elif op < 0.92 and isinstance(body.get("prompt"), list) and body["prompt"]:
        p = list(body["prompt"])
        p[rng.randrange(len(p))] = junk(rng)
        body["prompt"] = p
    elif op < 0.96:
        return junk(rng)
    else:
        body = {}
    return body


def to_bytes(rng: random.Random, body) -> bytes:
    """Serializes, then sometimes breaks the bytes."""
    raw = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    r = rng.random()
    if r < 0.80:
        return raw
    if r < 0.83:
        return raw[: rng.randrange(len(raw) + 1)]  # truncated
    if r < 0.85:
        return b""
    if r < 0.88:  # invalid UTF-8 inside the text
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]) + raw[at:]
    if r < 0.91:  # non-finite literals, lone surrogates, duplicate keys, a BOM
        return rng.choice([
            raw.replace(b": 1", b": NaN", 1),
            raw.replace(b": 2", b": Infinity", 1),
            raw.replace(b": 1", b": -Infinity", 1),
            raw.replace(b": 1", b": 1e999", 1),
            raw.replace(b'"Hello', b'"\\ud800Hello', 1),
            raw.replace(b"{", b'{"max_tokens": 1, "max_tokens": -5, ', 1),
            b"\xef\xbb\xbf" + raw,
        ])
    if r < 0.93:
        return b"[" * 100_000 + b"]" * 100_000  # deep nesting
    if r < 0.95:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if r < 0.97:
        return raw + b" trailing garbage"
    return raw + b"\x00"


# ----------------------------------------------------------------------------------------------
# Cases


def cases(rng: random.Random, texts: tuple[str, str], n: int) -> list[dict]:
    text = texts[0]
    out = []
    for i in range(n):
        r = rng.random()
        headers = {"content-type": "application/json"} | AUTH
        if r < 0.84:  # a POST body to a POST route
            route = rng.choices(POST_ROUTES, weights=[35, 35, 15, 15])[0]
            body = valid_body(rng, route, texts)
            for _ in range(rng.choices([0, 1, 2, 3], weights=[1, 8, 7, 4])[0]):
                body = mutate(rng, body, route)
            out.append({"method": "POST", "path": route, "body": to_bytes(rng, body), "headers": headers})
        elif r < 0.89:  # the read-only routes
            query = rng.choice(["", "", "?x=1", "?format=json&stream=true", "?%ff=%fe", "?" + "a=b&" * 200])
            out.append({"method": rng.choice(["GET", "GET", "GET", "HEAD"]), "path": rng.choice(GET_ROUTES) + query, "body": b"", "headers": headers})
        elif r < 0.95:  # wrong methods
            if rng.random() < 0.5:
                path, method = rng.choice(POST_ROUTES), rng.choice(["GET", "PUT", "DELETE", "PATCH"])
            else:
                path, method = rng.choice(GET_ROUTES), rng.choice(["POST", "PUT", "DELETE", "PATCH"])
            out.append({"method": method, "path": path, "body": to_bytes(rng, junk(rng)), "headers": headers})
        elif r < 0.975:  # unknown paths
            path = rng.choice(["/v1/nope", "/v1/completions/x", "/v1/embeddings", "/v2/completions", "/", "/v1", "/health/", "/metrics/x", "/%ff%fe", "/v1/chat/completions/../../health", "/tokenize/" + "a" * 2000])
            out.append({"method": rng.choice(["GET", "POST"]), "path": path, "body": b"{}", "headers": headers})
        else:  # authentication
            route = rng.choice(["/v1/completions", "/v1/chat/completions", "/v1/models"])
            bad = rng.choice([{}, {"authorization": "Bearer nope"}, {"authorization": "Basic " + API_KEY}, {"authorization": f"Bearer {API_KEY}x"}, {"authorization": "Bearer"}])
            body = json.dumps(valid_body(rng, route, texts)).encode() if route != "/v1/models" else b""
            out.append({"method": "POST" if route != "/v1/models" else "GET", "path": route, "body": body, "headers": {"content-type": "application/json"} | bad, "expect": 401})
    # Fixed hazards, once each: an oversized body, the documented dangerous values.
    big = b'{"prompt": "' + b"a" * (33 << 20) + b'", "max_tokens": 1}'
    # The server answers 413 without reading the rest and closes the connection; a client still
    # uploading may see that close (a reset) before the 413, as with any server without a
    # lingering close, so a transport error is tolerated here, and only here.
    out.append({"method": "POST", "path": "/v1/completions", "body": big, "headers": AUTH, "oversize": True})
    for route, body in [
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 1, "n": 10**6}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 10**9}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 1, "logprobs": 1000}),
        ("/v1/completions", {"prompt": [10**9], "max_tokens": 1}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 1e308}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": -1}),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": "2"}),
        ("/v1/chat/completions", {"messages": [], "max_tokens": 1}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": text}], "max_tokens": 1, "n": 10**6}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": text}], "max_tokens": 1, "logprobs": True, "top_logprobs": 1000}),
        ("/detokenize", {"tokens": [10**9]}),
    ]:
        out.append({"method": "POST", "path": route, "body": json.dumps(body).encode(), "headers": AUTH})
    return out


# ----------------------------------------------------------------------------------------------
# Checks


def check(case: dict, status: int, body: bytes) -> str | None:
    """What is wrong with this answer, or None."""
    if "expect" in case and status != case["expect"]:
        return f"expected {case['expect']}, got {status}"
    if not (200 <= status < 300 or 400 <= status < 500):
        return f"status {status}"
    if case["method"] == "HEAD":
        return None
    if status >= 400:
        return error_body_problem(status, body)
    if case["path"] in ("/v1/completions", "/v1/chat/completions"):
        try:
            if body.startswith(b"data: "):
                events = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
                if events[-1] != "[DONE]":
                    return f"stream without [DONE]: {body[-200:]!r}"
                for e in events[:-1]:
                    if "error" in json.loads(e):
                        return f"error chunk in a 200 stream: {e[:300]}"
            else:
                v = json.loads(body)
                if not isinstance(v.get("choices"), list) or "usage" not in v:
                    return f"200 without choices/usage: {body[:300]!r}"
        except ValueError:
            return f"200 with a body that does not parse: {body[:300]!r}"
    return None


async def send(client: httpx.AsyncClient, base: str, case: dict, deadline: float = DEADLINE_S) -> tuple:
    async def exchange():
        async with client.stream(case["method"], base + case["path"], content=case["body"], headers=case["headers"]) as r:
            return r.status_code, await r.aread()

    t0 = time.time()
    try:
        status, body = await asyncio.wait_for(exchange(), deadline)
    except asyncio.TimeoutError:
        # We hung up; that only counts against the server if it stopped answering.
        try:
            async with httpx.AsyncClient(timeout=10) as fresh:
                alive = (await fresh.get(base + "/health")).status_code == 200
        except httpx.HTTPError:
            alive = False
        return ("timeout" if alive else "timeout, /health unanswered"), b"", time.time() - t0
    except httpx.HTTPError as e:
        return "transport", repr(e).encode(), time.time() - t0
    return status, body, time.time() - t0


async def resend(base: str, some: list[dict]) -> list:
    async with httpx.AsyncClient(timeout=httpx.Timeout(RETRY_DEADLINE_S)) as client:
        return await asyncio.gather(*(send(client, base, c, RETRY_DEADLINE_S) for c in some))


async def run_all(base: str, all_cases: list[dict]) -> list:
    results: list = [None] * len(all_cases)
    queue = list(enumerate(all_cases))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(DEADLINE_S + 5)) as client:

        async def worker():
            while queue:
                i, case = queue.pop()
                results[i] = await send(client, base, case)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


def test_fuzz_every_route(fuzz_server):
    base = fuzz_server
    rng = random.Random(SEED)
    all_cases = cases(rng, chat_texts(base), N_CASES)
    t0 = time.time()
    results = asyncio.run(run_all(base, all_cases))
    elapsed = time.time() - t0

    hist: Counter = Counter()
    per_route: Counter = Counter()
    problems = []
    timeouts = 0
    busy: Counter = Counter()
    for case, (status, body, secs) in zip(all_cases, results):
        hist[status] += 1
        busy[status] += secs
        path = case["path"].split("?")[0]
        per_route[(case["method"], path if path in POST_ROUTES + GET_ROUTES else "other", status)] += 1
        if status == "timeout, /health unanswered":
            problems.append((status, case["method"], case["path"], case["body"][:300]))
            continue
        if status == "timeout":
            timeouts += 1
            if os.environ.get("FAULT_VERBOSE"):
                print("timeout:", case["path"], case["body"][:300])
            continue
        if status == "transport" and case.get("oversize"):
            report(f"fuzz: the oversize body got {body[:120]!r} instead of a 413 (tolerated)")
            continue
        if status == "transport":
            problems.append(("dropped connection", case["method"], case["path"], case["body"][:300], body[:300]))
            continue
        why = check(case, status, body)
        if why:
            problems.append((why, case["method"], case["path"], case["body"][:300]))

    report(f"fuzz: seed {SEED}, {len(all_cases)} requests in {elapsed:.1f}s ({CONCURRENCY} in flight)")
    report("fuzz: status histogram: " + ", ".join(f"{k}: {v}" for k, v in sorted(hist.items(), key=lambda kv: str(kv[0]))))
    routes = sorted({(m, p) for m, p, _ in per_route}, key=lambda mp: (mp[1], mp[0]))
    for method, path in routes:
        counts = ", ".join(f"{st}: {n}" for (m, p, st), n in sorted(per_route.items(), key=lambda kv: str(kv[0][2])) if (m, p) == (method, path))
        print(f"  {method:7} {path:22} {counts}")
    print("client-seconds by status:", {k: round(v, 1) for k, v in sorted(busy.items(), key=lambda kv: str(kv[0]))})
    if timeouts:
        report(f"fuzz: {timeouts} exchanges hit the {DEADLINE_S}s client deadline (we hung up; /health answered after each)")
    assert healthy(base), "the server stopped answering /health"
    # Timed-out bodies, alone on the server now, are answered.
    timed_out = [c for c, r in zip(all_cases, results) if r[0] == "timeout"][:RETRY_TIMED_OUT]
    if timed_out:
        again = asyncio.run(resend(base, timed_out))
        report(f"fuzz: {len(timed_out)} timed-out bodies sent again alone: " + ", ".join(f"{st} in {secs:.1f}s" for st, _, secs in again))
        for case, (status, body, _) in zip(timed_out, again):
            why = f"still {status} alone" if isinstance(status, str) else check(case, status, body)
            if why:
                problems.append((why, case["method"], case["path"], case["body"][:300]))
    # A normal completion still works.
    r = httpx.post(base + "/v1/completions", json={"model": "smol", "prompt": "Hello", "max_tokens": 2}, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] >= 1
    idle = wait_idle(base, 60)
    m = metrics(base)
    report(
        f"fuzz: after drain {idle}; prompt tokens {m.get('vllm:prompt_tokens_total')} "
        f"(prefix-cache hits {m.get('vllm:prefix_cache_hits_total')} of {m.get('vllm:prefix_cache_queries_total')}), "
        f"generation tokens {m.get('vllm:generation_tokens_total')}"
    )
    assert idle == {g: 0 for g in IDLE_GAUGES}, f"requests or KV blocks leaked: {idle}"
    kinds = Counter(p[0].split(":")[0] for p in problems)
    shown = []
    for kind in kinds:  # the first few of each kind
        shown += [p for p in problems if p[0].split(":")[0] == kind][:4]
    assert not problems, f"{len(problems)} bad answers {dict(kinds)}:\n" + "\n".join(map(repr, shown))
    assert len(all_cases) >= 2000
