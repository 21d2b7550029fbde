"""vLLM's `structural_tag` against a live `ferrum serve` of the default model: free text, with a
tag (begin, JSON valid against the structure's schema, end) wherever a trigger appears, through
`response_format` and `structured_outputs.structural_tag` (a JSON string, as vLLM takes it, or an
object); malformed tags and xgrammar's newer `format` form get a 400 naming the field.

What a 135M model chooses to write is not guaranteed, so the outputs are checked for what the
constraint guarantees: every trigger in the output opens a complete, valid tag, unless the output
was cut by `max_tokens` inside the last one."""

import json

import jsonschema
import openai
import pytest

TRIGGER = "<function="
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
           "required": ["city"], "additionalProperties": False}
TIME = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
        "required": ["zone"], "additionalProperties": False}
STRUCTURES = [
    {"begin": "<function=get_weather>", "schema": WEATHER, "end": "</function>"},
    {"begin": "<function=get_time>", "schema": TIME, "end": "</function>"},
]
TAG = {"type": "structural_tag", "structures": STRUCTURES, "triggers": [TRIGGER]}

SYSTEM = ("You call tools by writing <function=NAME>{JSON arguments}</function>. Tools: get_weather "
          '(arguments {"city": CITY}) and get_time (arguments {"zone": "UTC" or "CET"}). Example: '
          '<function=get_weather>{"city": "Paris"}</function>')
# earlier turns invite the model to answer with a tag (the output is checked, not its choice)
SHOTS = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": '<function=get_weather>{"city": "Paris"}</function>'},
    {"role": "user", "content": "What time is it in UTC?"},
    {"role": "assistant", "content": '<function=get_time>{"zone": "UTC"}</function>'},
    {"role": "user", "content": "What is the weather in Rome?"},
]
FEW_SHOT = ('Q: What is the weather in Paris?\nA: <function=get_weather>{"city": "Paris"}</function>\n'
            'Q: What time is it in UTC?\nA: <function=get_time>{"zone": "UTC"}</function>\n'
            "Q: What is the weather in Rome?\nA:")


def check_tags(text: str, finish_reason: str) -> list:
    """The tags in `text` as (begin, arguments); fails unless every trigger opens a complete tag
    whose JSON validates, or `text` was cut by max_tokens inside the last one."""
    tags, pos = [], 0
    cut = f"cut inside a tag but finish_reason={finish_reason!r}: {text!r}"
    while (i := text.find(TRIGGER, pos)) != -1:
        rest = text[i:]
        s = next((s for s in STRUCTURES if rest.startswith(s["begin"])), None)
        if s is None:
            assert any(s["begin"].startswith(rest) for s in STRUCTURES), f"no begin after the trigger: {text!r}"
            assert finish_reason == "length", cut
            return tags
        body = rest[len(s["begin"]):]
        try:
            args, n = json.JSONDecoder().raw_decode(body)
        except ValueError:
            assert finish_reason == "length", cut
            return tags
        jsonschema.validate(args, s["schema"])
        after = body[n:]
        if not after.startswith(s["end"]):
            assert s["end"].startswith(after), f"no end after the JSON: {text!r}"
            assert finish_reason == "length", cut
            return tags
        tags.append((s["begin"], args))
        pos = i + len(s["begin"]) + n + len(s["end"])
    return tags


def test_check_tags_itself():
    ok = 'a <function=get_time>{"zone": "CET"}</function> b <function=get_weather>{"city": "X"}</function>'
    assert check_tags(ok, "stop") == [("<function=get_time>", {"zone": "CET"}),
                                      ("<function=get_weather>", {"city": "X"})]
    for cut in ("a <function=get_w", '<function=get_time>{"zo', '<function=get_time>{"zone": "UTC"}</fu'):
        assert check_tags(cut, "length") == []
        with pytest.raises(AssertionError):
            check_tags(cut, "stop")
    for bad in ("<function=nope>", '<function=get_time>{"zone": "PST"}</function>',
                '<function=get_time>{"zone": "UTC"} </function>'):
        with pytest.raises((AssertionError, jsonschema.ValidationError)):
            check_tags(bad, "length")


def chat(client, max_tokens=40, **kw):
    return client.chat.completions.create(
        model="smol",
        messages=SHOTS,
        temperature=0,
        max_tokens=max_tokens,
        **kw,
    )


def test_response_format_structural_tag(client):
    r = chat(client, response_format=TAG)
    c = r.choices[0]
    tags = check_tags(c.message.content, c.finish_reason)
    print(f"{len(tags)} tag(s): {c.message.content!r}")
    # streamed: the same text, chunk by chunk
    text, finish = "", None
    for chunk in chat(client, response_format=TAG, stream=True):
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert text == c.message.content and finish == c.finish_reason
    # cut by max_tokens, possibly inside a tag
    c = chat(client, max_tokens=6, response_format=TAG).choices[0]
    check_tags(c.message.content, c.finish_reason)


def test_structured_outputs_string_and_object(client):
    for tag in (json.dumps(TAG), TAG):
        r = client.completions.create(model="smol", prompt=FEW_SHOT, max_tokens=32, temperature=0,
                                      stop=["\nQ:"], extra_body={"structured_outputs": {"structural_tag": tag}})
        c = r.choices[0]
        tags = check_tags(c.text, c.finish_reason)
        print(f"{len(tags)} tag(s): {c.text!r}")


def test_sampled_outputs_keep_the_tags_valid(client):
    r = client.completions.create(model="smol", prompt=FEW_SHOT, max_tokens=32, n=4, temperature=1.0,
                                  seed=7, extra_body={"structured_outputs": {"structural_tag": TAG}})
    for c in r.choices:
        check_tags(c.text, c.finish_reason)


def refused(client, **kw) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=4, **kw)
    return e.value


def test_newer_format_form_is_refused(client):
    fmt = {"type": "triggered_tags", "triggers": [TRIGGER], "tags": []}
    e = refused(client, response_format={"type": "structural_tag", "format": fmt})
    assert e.body["param"] == "response_format"
    assert "`response_format.format`" in e.message and "`structures`/`triggers`" in e.message, e.message
    e = refused(client, extra_body={"structured_outputs": {
        "structural_tag": json.dumps({"type": "structural_tag", "format": fmt})}})
    assert e.body["param"] == "structured_outputs"
    assert "`structured_outputs.structural_tag.format`" in e.message, e.message


def test_begin_without_a_trigger_is_refused(client):
    tag = {**TAG, "structures": [*STRUCTURES, {"begin": "<tool>", "schema": TIME, "end": "</tool>"}]}
    e = refused(client, response_format=tag)
    assert e.body["param"] == "response_format"
    assert "`response_format.structures[2]`" in e.message and "<tool>" in e.message, e.message


def test_missing_or_malformed_fields_are_refused(client):
    cases = [
        ({"type": "structural_tag", "triggers": [TRIGGER]}, "`structures`"),
        ({"type": "structural_tag", "structures": STRUCTURES}, "`triggers`"),
        ({**TAG, "structures": [{"begin": TRIGGER, "end": ""}]}, "`response_format.structures[0]` needs `schema`"),
        ({**TAG, "triggers": [1]}, "`response_format.triggers[0]`"),
    ]
    for rf, words in cases:
        e = refused(client, response_format=rf)
        assert e.body["param"] == "response_format"
        assert words in e.message, e.message
    e = refused(client, extra_body={"structured_outputs": {"structural_tag": "{not json"}})
    assert e.body["param"] == "structured_outputs" and "not valid JSON" in e.message, e.message
