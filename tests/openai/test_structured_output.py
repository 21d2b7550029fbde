"""Structured output against a live `ferrum serve` of the default model: the JSON Schema Test
Suite's draft-4 schemas (json_schema_suite/, see its README) through `response_format`, every
output parsed and validated with the `jsonschema` package; the schemas llguidance refuses get a
400; regex, choice, grammar, `json_object`, the older `guided_*` fields, vLLM's
`structured_outputs`, forced tool calls, and the `openai` client's Pydantic `parse`."""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import openai
import pydantic
import pytest

from conftest import TIME, WEATHER

SUITE = json.loads((Path(__file__).parent / "json_schema_suite" / "schemas.json").read_text())
ACCEPTED = [s for s in SUITE["schemas"] if s["expect"] == "accepted"]
REFUSED = [s for s in SUITE["schemas"] if s["expect"] == "refused"]


def ask(client, content, max_tokens=48, **kw):
    return client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": content}],
        temperature=0,
        max_tokens=max_tokens,
        **kw,
    )


def schema_case(client, s):
    # A 135M model rambles inside an open-ended schema; asked for the shortest value and
    # discouraged from repeating itself, it closes (nearly) every one within the token limit.
    r = ask(
        client,
        "Reply with the shortest valid JSON value, like {} or 1.",
        max_tokens=64,
        frequency_penalty=1.0,
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": s["schema"]}},
    )
    c = r.choices[0]
    text = c.message.content
    where = f"{s['file']} #{s['index']} ({s['description']}): {text!r} [{c.finish_reason}]"
    if c.finish_reason != "stop":
        return f"{UNFINISHED}{where}"
    try:
        value = json.loads(text)
    except ValueError as e:
        return f"not JSON ({e}): {where}"
    try:
        jsonschema.Draft4Validator(s["schema"]).validate(value)
    except jsonschema.ValidationError as e:
        return f"invalid ({e.message}): {where}"
    return None


def test_suite_is_big_enough():
    assert len(ACCEPTED) >= 50, len(ACCEPTED)


UNFINISHED = "did not finish: "


def test_json_schema_suite_outputs_validate(client):
    """Every output that finished parses and validates. A 135M model can loop inside an
    open-ended schema ("1.1111…", one key repeated) until max_tokens: such cut outputs are listed,
    and at most a tenth of the suite may end that way (none on 2026-12-04)."""
    with ThreadPoolExecutor(16) as pool:
        problems = [f for f in pool.map(lambda s: schema_case(client, s), ACCEPTED) if f]
    unfinished = [p for p in problems if p.startswith(UNFINISHED)]
    invalid = [p for p in problems if not p.startswith(UNFINISHED)]
    print(f"schema suite: {len(ACCEPTED)} schemas, {len(unfinished)} cut by max_tokens")
    print("\n".join(unfinished))
    assert not invalid, "\n".join(invalid)
    assert len(unfinished) <= len(ACCEPTED) // 10, "\n".join(unfinished)


@pytest.mark.parametrize("s", REFUSED, ids=lambda s: f"{s['file']}#{s['index']}")
def test_refused_schemas_get_400(client, s):
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "x", max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": s["schema"]}})
    assert e.value.body["param"] == "response_format"
    assert "json_schema" in e.value.message


def test_json_object(client):
    # a small object the 135M model closes in ~17 tokens, far from the limit (an open-ended
    # "describe a cat" rambles past any budget, and where it stops moves with the numerics)
    r = ask(client, "Describe a cat as a JSON object with a name and an age.",
            response_format={"type": "json_object"}, max_tokens=64)
    c = r.choices[0]
    assert c.finish_reason == "stop", c.message.content
    assert isinstance(json.loads(c.message.content), dict)


def test_regex_via_structured_outputs_and_guided_regex(client):
    pattern = r"(\d{3})-(\d{4})"
    for extra in ({"structured_outputs": {"regex": pattern}}, {"guided_regex": pattern}):
        r = client.completions.create(model="smol", prompt="My phone number is", max_tokens=16,
                                      temperature=0, extra_body=extra)
        assert re.fullmatch(pattern, r.choices[0].text), (extra, r.choices[0].text)
        assert r.choices[0].finish_reason == "stop"


def test_choice_via_both_fields(client):
    choices = ["positive", "negative", "neutral"]
    for extra in ({"structured_outputs": {"choice": choices}}, {"guided_choice": choices}):
        r = ask(client, "Classify the sentiment: 'I love this movie!'", extra_body=extra)
        assert r.choices[0].message.content in choices, r.choices[0].message.content
    # sampled, several children: each one of the choices
    r = ask(client, "Pick one.", n=4, extra_body={"guided_choice": choices, "temperature": 1.0, "seed": 1})
    assert all(c.message.content in choices for c in r.choices)


def test_lark_grammar(client):
    grammar = 'start: "SELECT " COL " FROM " TABLE\nCOL: /[a-z]{1,8}/\nTABLE: "users" | "orders"'
    for extra in ({"structured_outputs": {"grammar": grammar}}, {"guided_grammar": grammar}):
        r = ask(client, "Write an SQL query.", extra_body=extra)
        assert re.fullmatch(r"SELECT [a-z]{1,8} FROM (users|orders)", r.choices[0].message.content)


def test_guided_json_string_and_object(client):
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["age"], "additionalProperties": False}
    for v in (schema, json.dumps(schema)):
        r = ask(client, "How old is Alice? Answer in JSON.", extra_body={"guided_json": v})
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_refusals_name_what_is_unsupported(client):
    cases = [
        ({"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs", "structural_tag"),
        ({"guided_grammar": 'root ::= "a"'}, "guided_grammar", "GBNF"),
        ({"guided_regex": "("}, "guided_regex", "regex"),
        ({"guided_choice": []}, "guided_choice", "guided_choice"),
        ({"guided_regex": "a", "guided_choice": ["a"]}, None, "one kind of structured outputs"),
    ]
    for extra, param, words in cases:
        with pytest.raises(openai.BadRequestError) as e:
            ask(client, "x", max_tokens=4, extra_body=extra)
        assert words in e.value.message, e.value.message
        if param:
            assert e.value.body["param"] == param


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_pydantic_parse(client):
    r = client.beta.chat.completions.parse(
        model="smol",
        messages=[{"role": "user", "content": "Alice is 30 years old. Give her name and age."}],
        response_format=Person,
        temperature=0,
        max_tokens=48,
    )
    p = r.choices[0].message.parsed
    assert isinstance(p, Person), r.choices[0].message.content




def test_tool_choice_required_and_named(client):
    q = "What is the weather in Paris?"
    r = ask(client, q, max_tokens=64, tools=[WEATHER, TIME], tool_choice="required")
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert c.message.tool_calls, c
    for call in c.message.tool_calls:
        assert call.function.name in ("get_weather", "get_time")
        json.loads(call.function.arguments)
    r = ask(client, q, max_tokens=48, tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    c = r.choices[0]
    (call,) = c.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_disable_additional_properties_closes_objects(client):
    # vLLM's structured_outputs option: only the listed properties may appear
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}},
              "required": ["name"]}
    r = ask(client, "Describe a cat as JSON with its name, age and color.", max_tokens=48,
            extra_body={"structured_outputs": {"json": schema, "disable_additional_properties": True}})
    c = r.choices[0]
    assert c.finish_reason == "stop", c.message.content
    assert set(json.loads(c.message.content)) == {"name"}, c.message.content
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, "hi", extra_body={"structured_outputs": {"json": schema, "disable_additional_properties": "yes"}})
    assert e.value.body["param"] == "structured_outputs"
