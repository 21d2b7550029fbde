#!/usr/bin/env bash
# CPU benchmarks of n-gram speculative decoding and of structured output on the default model
# (docs/BENCHMARKS.md), ROUNDS rounds (default 2), ours with and without each feature taken side
# by side in every round. Run on a quiet machine: ./scripts/bench-spec-structured-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
cargo build --release --quiet -p ferrum
f=./target/release/ferrum
py=${PYTHON:-python3}
export RUST_LOG=warn
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT
SPEC='{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4, "prompt_lookup_min": 2}'

# Repetitive workload: a paragraph, then "repeat it" (the model copies and loops on phrases).
"$py" - "$tmp" <<'EOF'
import json, sys
paras = [
    "The history of computing is a story of abstraction layered upon abstraction. Early machines were programmed by rewiring panels; later, stored programs let the same hardware run many tasks.",
    "A river starts as a spring in the mountains, gathers streams as it descends, cuts a valley through the rock, and finally spreads into a delta where it meets the sea.",
    "To bake bread, mix flour, water, salt and yeast, knead the dough until it is smooth, let it rise for an hour, shape it, let it rise again, and bake it in a hot oven.",
    "The committee met on Tuesday to review the budget, discuss the new hiring plan, approve the travel policy, and schedule the next quarterly review for the end of March.",
]
for n in (128, 1):
    with open(f"{sys.argv[1]}/rep{n}.jsonl", "w") as out:
        for p in paras:
            out.write(json.dumps({"prompt": p + "\n\nRepeat the text above exactly:\n\n", "max_tokens": n, "temperature": 0, "ignore_eos": True}) + "\n")
EOF

now() { date +%s.%N; }
# seconds to generate the file's prompts, batched (B=4) or one at a time (B=1)
gen() { # file batch [spec]
    local t0 t1; t0=$(now)
    if [ "$2" = 1 ]; then
        while read -r line; do echo "$line" > "$tmp/one.jsonl"
            $f generate --prompts-file "$tmp/one.jsonl" ${3:+--speculative-config "$3"} > /dev/null 2>> "$tmp/stats.log"
        done < "$1"
    else
        $f generate --prompts-file "$1" ${3:+--speculative-config "$3"} > /dev/null 2>> "$tmp/stats.log"
    fi
    t1=$(now); echo "$t1 - $t0" | bc -l
}

for r in $(seq "${ROUNDS:-2}"); do
    echo "== round $r (load average $(cut -d' ' -f1 /proc/loadavg))"
    for b in 1 4; do
        base=$(gen "$tmp/rep1.jsonl" "$b")
        for mode in plain spec; do
            s=""; [ $mode = spec ] && s="$SPEC"
            : > "$tmp/stats.log"
            full=$(gen "$tmp/rep128.jsonl" "$b" "$s")
            tpot=$(echo "($full - $base) * 1000 / 127 / (4 / $b)" | bc -l)
            printf "n-gram repetitive, batch %s, %-5s: %.1f ms per step of 127 decode steps (load+prefill %.2fs subtracted)\n" "$b" "$mode" "$tpot" "$base"
            if [ $mode = spec ]; then "$py" - "$tmp/stats.log" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
d = sum(r["spec_decode_num_drafts"] for r in rows)
t = sum(r["spec_decode_num_draft_tokens"] for r in rows)
a = sum(r["spec_decode_num_accepted_tokens"] for r in rows)
pos = [sum(x) for x in zip(*(r["spec_decode_num_accepted_tokens_per_pos"] for r in rows))]
if d:
    print(f"    drafts {d}, draft tokens {t}, accepted {a}: acceptance {a / t:.1%}, mean acceptance length {1 + a / d:.2f}, per position {', '.join(f'{x / d:.3f}' for x in pos)}")
else:
    print("    no draft proposed")
EOF
            fi
        done
    done
    for mode in plain spec; do
        extra=(); [ $mode = spec ] && extra=(--speculative-config "$SPEC")
        echo -n "random (bench latency 1 x 128 in / 64 out), $mode: "
        $f bench latency --batch-size 1 --input-len 128 --output-len 64 --num-iters 2 --num-iters-warmup 1 \
            "${extra[@]}" 2>/dev/null | grep -E "Decode" || true
    done
done

echo "== grammar compile time over the JSON Schema Test Suite"
model="${FERRUM_CACHE:-$HOME/.cache/ferrum}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
cargo run --release --quiet -p ferrum-structured --example schema_suite -- "$model" tests/openai/json_schema_suite/schemas.json "$tmp/out.json" 2>&1 | tail -5

echo "== time per output token with and without structured output"
port=18123
$f serve --port $port --served-model-name smol > "$tmp/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
for r in $(seq "${ROUNDS:-2}"); do
    echo "-- round $r (load average $(cut -d' ' -f1 /proc/loadavg))"
    "$py" tests/openai/json_schema_suite/bench_tpot.py "http://127.0.0.1:$port" 1 32
done
