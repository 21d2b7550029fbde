"""N-gram speculative decoding end to end: a second `ferrum serve` with
`--speculative-config` must give, under greedy sampling, exactly the text of the plain server
(the session's `server`), with and without a grammar: drafts the grammar refuses are rejected in
verification, never emitted. Its spec-decode metrics must show drafts proposed and accepted."""

import json
import re

import jsonschema
import pytest
from openai import OpenAI

from conftest import API_KEY, scrape_metrics, start_server

SPEC = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 1}

# Outputs that copy the prompt, where n-gram drafts match.
PASSAGE = (
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. "
    "The quick brown fox jumps over the lazy dog."
)
RECORD = {"name": "Ada Lovelace", "born": 1815, "field": "mathematics", "notes": ["analytical engine", "first program"]}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "born": {"type": "integer"},
        "field": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "born", "field", "notes"],
    "additionalProperties": False,
}

CASES = [
    ("plain", f"Repeat this text exactly: {PASSAGE}", {}),
    (
        "json_schema",
        f"Copy this record as JSON: {json.dumps(RECORD)}",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}},
    ),
    ("regex", f"Repeat the sentence: {PASSAGE}", {"extra_body": {"structured_outputs": {"regex": r"(The [a-z ]+\. ){1,3}"}}}),
    (
        "choice",
        "Is the fox quick or lazy? The fox is quick. The fox is quick.",
        {"extra_body": {"guided_choice": ["The fox is quick.", "The fox is lazy.", "The dog is lazy."]}},
    ),
]


@pytest.fixture(scope="module")
def spec_server():
    proc, base = start_server("--api-key", API_KEY, "--speculative-config", json.dumps(SPEC))
    yield base
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def ask(base, content, **kw):
    c = OpenAI(base_url=base + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
    r = c.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": content}], temperature=0, max_tokens=48, **kw
    )
    return r.choices[0].message.content, r.choices[0].finish_reason


@pytest.mark.parametrize("name,content,kw", CASES, ids=[c[0] for c in CASES])
def test_greedy_text_identical_with_speculation(server, spec_server, name, content, kw):
    plain = ask(server, content, **kw)
    spec = ask(spec_server, content, **kw)
    assert spec == plain, f"{name}: without {plain!r} vs with speculation {spec!r}"
    text, finish = spec
    print(f"spec {name}: {finish} {text!r}")
    if name == "json_schema" and finish == "stop":
        jsonschema.validate(json.loads(text), SCHEMA)
    if name == "regex" and finish == "stop":
        assert re.fullmatch(r"(The [a-z ]+\. ){1,3}", text), text
    if name == "choice":
        assert text in ("The fox is quick.", "The fox is lazy.", "The dog is lazy."), text


def test_drafts_proposed_and_accepted(spec_server):
    ask(spec_server, f"Repeat this text exactly: {PASSAGE}")
    m = scrape_metrics(spec_server)

    def total(name):
        return sum(v for k, v in m.items() if k.startswith(name + "{"))

    drafts = total("vllm:spec_decode_num_draft_tokens_total")
    accepted = total("vllm:spec_decode_num_accepted_tokens_total")
    print(f"spec: {drafts:.0f} draft tokens, {accepted:.0f} accepted ({accepted / drafts:.0%})")
    assert drafts > 0 and 0 < accepted <= drafts
