"""Time per output token with and without structured output against a running `ferrum serve`
(docs/BENCHMARKS.md). Every request generates exactly MAX_TOKENS tokens: unconstrained with
`ignore_eos`, constrained by a JSON schema whose shortest document is longer than that.

    python bench_tpot.py http://127.0.0.1:8000 [concurrency ...]
"""

import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MAX_TOKENS = 64
SCHEMA = {
    "type": "array",
    "minItems": 40,
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
}


def one(base, structured, i):
    body = {
        "model": "smol",
        "messages": [{"role": "user", "content": f"List people with their ages ({i})."}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    if structured:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
    else:
        body["ignore_eos"] = True
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = None
    n = 0
    with urllib.request.urlopen(req) as r:
        for line in r:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                n += 1
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    return (end - first) / (MAX_TOKENS - 1)


def main():
    base = sys.argv[1]
    for c in [int(x) for x in sys.argv[2:]] or [1, 32]:
        for structured in (False, True):
            with ThreadPoolExecutor(c) as p:
                tpots = list(p.map(lambda i: one(base, structured, i), range(c)))
            print(f"concurrency {c:3} structured {structured!s:5}: mean TPOT {statistics.mean(tpots) * 1e3:.1f} ms")


main()
