"""Streamed forced tool calls (`tool_choice` "required" or a named function) against a live
`ferrum serve`, with the official `openai` client: the deltas, assembled as a client does,
give the same tool calls as the same greedy request without streaming."""

import json
import re

from conftest import TIME, WEATHER

TOOLS = [WEATHER, TIME]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
# One worked turn makes the 135M model answer with two calls, so index 1 streams too.
TWO = '[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "get_time", "parameters": {"zone": "UTC"}}]'
MESSAGES = [
    {"role": "user", "content": "Weather in Paris and time in UTC?"},
    {"role": "assistant", "content": TWO},
    {"role": "user", "content": "Again: weather in Rome and time in CET?"},
]
ID = re.compile(r"chatcmpl-tool-[0-9a-f]{32}")


def ask(client, tool_choice, stream, max_tokens=100, n=1):
    return client.chat.completions.create(
        model="smol", messages=MESSAGES, tools=TOOLS, tool_choice=tool_choice, temperature=0,
        seed=0, max_tokens=max_tokens, n=n, stream=stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    )


def assemble(chunks, n):
    """Per choice: ([{id, name, arguments}], finish_reason, content), checking the delta shapes
    on the way (a call's id, type and name once, in its first delta; later deltas only add
    argument text)."""
    calls = [[] for _ in range(n)]
    finish = [None] * n
    content = [""] * n
    for ch in chunks:
        for c in ch.choices:
            assert finish[c.index] is None, "nothing after a choice's finish_reason"
            content[c.index] += c.delta.content or ""
            for d in c.delta.tool_calls or []:
                mine = calls[c.index]
                if d.id is not None:
                    assert d.index == len(mine), "calls come in index order"
                    assert ID.fullmatch(d.id) and d.type == "function" and d.function.name, d
                    mine.append({"id": d.id, "name": d.function.name, "arguments": d.function.arguments or ""})
                else:
                    assert d.index == len(mine) - 1 and d.function.name is None and d.type is None, d
                    mine[d.index]["arguments"] += d.function.arguments
            if c.finish_reason is not None:
                finish[c.index] = c.finish_reason
    return calls, finish, content


def check_same(chunks, whole):
    n = len(whole.choices)
    calls, finish, content = assemble(chunks, n)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    for i, c in enumerate(whole.choices):
        assert content[i] == "", "a forced call streams no content"
        assert finish[i] == c.finish_reason
        expected = c.message.tool_calls
        assert [k["name"] for k in calls[i]] == [t.function.name for t in expected]
        for k, t in zip(calls[i], expected):
            assert json.loads(k["arguments"]) == json.loads(t.function.arguments)
        assert len({k["id"] for k in calls[i]}) == len(calls[i])
    return calls


def test_named_stream_matches_whole(client):
    whole = ask(client, NAMED, stream=False, max_tokens=48)
    assert whole.choices[0].finish_reason == "stop", whole
    calls = check_same(list(ask(client, NAMED, stream=True, max_tokens=48)), whole)
    # a named call's arguments are the generated text itself, streamed or not
    assert calls[0][0]["arguments"] == whole.choices[0].message.tool_calls[0].function.arguments


def test_required_stream_matches_whole(client):
    whole = ask(client, "required", stream=False)
    c = whole.choices[0]
    assert c.finish_reason == "tool_calls" and len(c.message.tool_calls) == 2, c
    calls = check_same(list(ask(client, "required", stream=True)), whole)
    assert [k["name"] for k in calls[0]] == ["get_weather", "get_time"]


def test_n2_each_choice_streams_its_own_calls(client):
    for tool_choice in (NAMED, "required"):
        whole = ask(client, tool_choice, stream=False, n=2)
        calls = check_same(list(ask(client, tool_choice, stream=True, n=2)), whole)
        assert len(calls) == 2 and all(calls)
        # greedy: both choices are the same calls (with their own ids)
        strip = [[(k["name"], json.loads(k["arguments"])) for k in cs] for cs in calls]
        assert strip[0] == strip[1]
        assert calls[0][0]["id"] != calls[1][0]["id"]


def test_cut_by_length_streams_the_same_text(client):
    whole = ask(client, NAMED, stream=False, max_tokens=4)
    calls, finish, _ = assemble(list(ask(client, NAMED, stream=True, max_tokens=4)), 1)
    assert finish == ["length"] == [whole.choices[0].finish_reason]
    assert calls[0][0]["arguments"] == whole.choices[0].message.tool_calls[0].function.arguments
    # "required" cut mid-array: the whole reply keeps the raw text as content (not a valid
    # array); the stream has already sent the calls begun so far, with the same text
    whole = ask(client, "required", stream=False, max_tokens=12)
    calls, finish, _ = assemble(list(ask(client, "required", stream=True, max_tokens=12)), 1)
    assert finish == ["length"] == [whole.choices[0].finish_reason]
    text = whole.choices[0].message.content
    assert calls[0] and all(k["name"] in text and k["arguments"] in text for k in calls[0])
