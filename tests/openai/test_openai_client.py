"""The official `openai` client against a live `ferrum serve` of the default model
(SmolLM2-135M-Instruct Q4_1), with llama.cpp's greedy continuation as the oracle for text."""

import json
import math
import urllib.request

import openai
import pytest
from conftest import scrape_metrics, scrape_metrics_settled

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTION = "Explain what a hash table is in two sentences."
# llama.cpp's first greedy tokens for that chat (prompt 2 of the fixture) are decisive.
EXPECTED_START = "A hash table is a data structure used in computer science to store"


def chat(client, **kw):
    return client.chat.completions.create(
        model="smol",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        **kw,
    )


def test_models_lists_the_served_name_with_root_and_length(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["smol"]
    m = models[0].model_dump()
    assert m["max_model_len"] == 8192
    assert m["root"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_chat_matches_llamacpp_greedy_text_and_prompt_length(client, llamacpp):
    r = chat(client, temperature=0, max_tokens=24)
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert c.message.content.startswith(EXPECTED_START), c.message.content
    assert c.finish_reason == "length"
    # The chat template renders exactly the prompt llama.cpp was given.
    assert r.usage.prompt_tokens == len(llamacpp["prompts"][2]["prompt_ids"])
    assert r.usage.completion_tokens == 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + 24
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"


def test_completion_of_token_ids_gives_llamacpp_ids_and_logprobs(client, llamacpp):
    p = llamacpp["prompts"][2]
    r = client.completions.create(model="smol", prompt=p["prompt_ids"], max_tokens=8, temperature=0, logprobs=3)
    c = r.choices[0]
    lp = c.logprobs
    assert len(lp.tokens) == 8 and len(lp.token_logprobs) == 8
    assert "".join(lp.tokens) == c.text
    # Each chosen token is llama.cpp's top-1, with its logprob within quantization noise
    # (`positions[j]`: llama.cpp's top logprobs after token j of prompt + continuation).
    for k in range(8):
        ref = p["positions"][len(p["prompt_ids"]) - 1 + k]
        assert abs(lp.token_logprobs[k] - ref["top_logprobs"][0]) < 0.3, (k, lp.token_logprobs[k], ref)
        assert len(lp.top_logprobs[k]) >= 3
        assert max(lp.top_logprobs[k].values()) == pytest.approx(lp.token_logprobs[k], abs=1e-6)
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])


def test_streaming_chat_with_usage_reassembles_the_whole_reply(client):
    whole = chat(client, temperature=0, max_tokens=16).choices[0].message.content
    chunks = list(chat(client, temperature=0, max_tokens=16, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
    assert all(ch.usage is None for ch in chunks[:-1])


def test_streaming_completion_continuous_usage(client):
    chunks = list(
        client.completions.create(
            model="smol", prompt="Once upon a time", max_tokens=5, temperature=0, stream=True,
            stream_options={"include_usage": True, "continuous_usage_stats": True},
        )
    )
    counted = [ch.usage.completion_tokens for ch in chunks if ch.choices]
    assert counted == sorted(counted) and counted[-1] == 5
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 5


def test_n_choices_and_list_of_prompts(client):
    r = client.completions.create(model="smol", prompt=["Hello", "The sky is"], n=2, max_tokens=4, temperature=0.8, seed=7)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    assert r.usage.completion_tokens == 16
    again = client.completions.create(model="smol", prompt=["Hello", "The sky is"], n=2, max_tokens=4, temperature=0.8, seed=7)
    assert [c.text for c in again.choices] == [c.text for c in r.choices], "seeded sampling reproduces"


def test_stop_string_ends_the_text_and_reports_it(client):
    free = client.completions.create(model="smol", prompt="1, 2, 3, 4,", max_tokens=12, temperature=0).choices[0].text
    assert " 7" in free, free
    r = client.completions.create(model="smol", prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[" 7"])
    c = r.choices[0]
    assert c.text == free[: free.index(" 7")]
    assert c.finish_reason == "stop" and c.model_extra["stop_reason"] == " 7"
    inc = client.completions.create(
        model="smol", prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[" 7"],
        extra_body={"include_stop_str_in_output": True},
    )
    assert inc.choices[0].text == c.text + " 7"


def test_chat_logprobs_shape(client):
    r = chat(client, temperature=0, max_tokens=4, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 2
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-6)  # greedy: chosen is top
        assert bytes(t.bytes).decode() == t.token


def test_prompt_logprobs_as_vllm_returns_them(client, llamacpp):
    p = llamacpp["prompts"][2]
    r = client.completions.create(
        model="smol", prompt=p["prompt_ids"], max_tokens=1, temperature=0, extra_body={"prompt_logprobs": 2}
    )
    plp = r.choices[0].model_extra["prompt_logprobs"]
    assert len(plp) == len(p["prompt_ids"]) and plp[0] is None
    deltas = []
    for pos in range(1, len(plp)):
        entry = plp[pos]
        actual = str(p["prompt_ids"][pos])
        assert actual in entry and entry[actual]["rank"] >= 1
        assert sorted(v["rank"] for v in entry.values())[:2] == [1, 2]
        # llama.cpp's logprob of the same prompt token, where it is in its top 5.
        ref = p["positions"][pos - 1]
        if p["prompt_ids"][pos] in ref["top_ids"]:
            want = ref["top_logprobs"][ref["top_ids"].index(p["prompt_ids"][pos])]
            deltas.append(abs(entry[actual]["logprob"] - want))
    # The bounds of the llama.cpp comparison in crates/ferrum-models/tests/llamacpp.rs (its
    # kernels quantize activations; ours do not).
    assert len(deltas) >= 10
    assert sum(deltas) / len(deltas) < 0.2 and max(deltas) < 2.0, deltas


def test_errors_and_status_codes(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="hi", max_tokens=1)
    assert "nope" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="smol", prompt="hi", max_tokens=1, temperature=-1)
    assert "temperature must be non-negative, got -1.0." in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="smol", prompt="hi " * 9000, max_tokens=10)
    assert "longer than the maximum model length of 8192" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=4, response_format={"type": "yaml"})
    assert "response_format" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=4, extra_body={"guided_json": "{not json"})
    assert e.value.body["param"] == "guided_json"
    bad = openai.OpenAI(base_url=server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    # Malformed JSON through raw HTTP: 400 with OpenAI's error body.
    req = urllib.request.Request(
        server + "/v1/completions", data=b"{not json", method="POST",
        headers={"Authorization": "Bearer test-key", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400
    body = json.loads(e.value.read())
    assert body["error"]["type"] == "BadRequestError" and "not valid JSON" in body["error"]["message"]


def test_tokenize_detokenize_roundtrip(server):
    def post(path, obj):
        req = urllib.request.Request(server + path, data=json.dumps(obj).encode(), method="POST")
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    t = post("/tokenize", {"prompt": "Hello world", "add_special_tokens": False})
    assert t["count"] == len(t["tokens"]) and t["max_model_len"] == 8192
    assert post("/detokenize", {"tokens": t["tokens"]})["prompt"] == "Hello world"
    m = post("/tokenize", {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]})
    assert m["count"] == 40


def test_metrics_count_what_was_served(server, client):
    before = scrape_metrics(server)
    client.completions.create(model="smol", prompt="Hi", max_tokens=3, temperature=0, extra_body={"ignore_eos": True})
    key = 'vllm:generation_tokens_total{engine="0",model_name="smol"}'
    after = scrape_metrics_settled(server, key, before[key] + 3)
    assert after[key] - before[key] == 3
    ok = 'vllm:request_success_total{engine="0",finished_reason="length",model_name="smol"}'
    assert after[ok] - before[ok] == 1
    assert after['vllm:num_requests_running{engine="0",model_name="smol"}'] == 0
    assert after['vllm:kv_cache_usage_perc{engine="0",model_name="smol"}'] == 0
    ttft = 'vllm:time_to_first_token_seconds_count{engine="0",model_name="smol"}'
    assert after[ttft] - before[ttft] == 1
