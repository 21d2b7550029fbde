#!/usr/bin/env python3
"""The CUDA issues' benchmark tables from a `scripts/gpu-check.sh` log folder.

    python3 scripts/gpu_table.py /tmp/ferrum-gpu-logs
    python3 scripts/gpu_table.py --steps    # the steps it reads, as gpu-check's ONLY regex

gpu-check runs this at the end of every run, so one lease prints the rows that docs/BENCHMARKS.md
records: each number beside its floor (bytes a step must read ÷ the copy bandwidth measured in the
same run, or FLOPs ÷ the cuBLAS rate measured there) and the llama.cpp figure for the same device
kind. A step that did not run (ONLY=...) or failed leaves its row out; nothing is estimated.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Bytes a decode step must read at batch 1 (every weight but the embedding table, of which a step
# reads one row), as docs/BENCHMARKS.md counts them.
FLOOR_GB = {
    "8b": 15.01,  # Llama-3.1-8B, bf16
    "qwen3moe_fp8": 3.35,  # Qwen3-30B-A3B FP8: attention + 8 of 128 experts + bf16 router, LM head
    "qwen3moe_bf16": 6.09,  # the same model's bf16 config
    "glm45air_fp8": 13.4,  # GLM-4.5-Air-FP8, 46 layers
    "glm45air_fp8_24l": 7.60,  # its first 24 layers (what an 80 GB card holds)
}
# The 8B's forward FLOPs a token (2 × parameters but the embedding table), for prefill's floor.
GFLOP_8B = 16.1

# llama.cpp 0c1e570 on the same device kinds (../shared/GPU.md, measured 2026-11-21 and 12-02):
# the 8B in bf16; Qwen3-30B-A3B in Q8_0, H200 only.
LLAMACPP = {
    "H100": {
        "bench_decode_8b": ("ms", 6.12),
        "bench_prefill_8b_2048": ("tok/s", 25700),
        "bench_decode_8b_b8": ("tok/s", 934),
        "bench_decode_8b_b32": ("tok/s", 3299),
        "bench_decode_8b_b64": ("tok/s", 5363),
        "bench_decode_8b_b128": ("tok/s", 7558),
    },
    "H200": {
        "bench_decode_8b": ("ms", 4.79),
        "bench_prefill_8b_2048": ("tok/s", 27500),
        "bench_decode_8b_b8": ("tok/s", 1042),
        "bench_decode_8b_b32": ("tok/s", 3956),
        "bench_decode_8b_b64": ("tok/s", 6135),
        "bench_decode_8b_b128": ("tok/s", 9011),
        "bench_decode_qwen3moe_fp8": ("ms", 3.57),
        "bench_prefill_qwen3moe_fp8": ("tok/s", 11500),
        "bench_decode_qwen3moe_fp8_b128": ("tok/s", 2287),
    },
}

NUM = r"([0-9]+(?:\.[0-9]+)?)"


def read(logs: Path, name: str) -> str | None:
    p = logs / name
    return p.read_text(errors="replace") if p.is_file() else None


def find(text: str | None, pattern: str) -> float | None:
    """The first number `pattern` captures in `text` (None if either is missing)."""
    if text is None:
        return None
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def ceilings(logs: Path) -> tuple[float | None, float | None]:
    text = read(logs, "ceilings.log")
    return (
        find(text, r"copy bandwidth: " + NUM + " TB/s"),
        find(text, r"cuBLAS bf16 GEMM \S+: " + NUM + " TFLOP/s"),
    )


def latency(logs: Path, step: str) -> dict | None:
    """`ferrum bench latency`'s decode (ms a step, tok/s) and prefill (tok/s) from a step log."""
    text = read(logs, step + ".log")
    decode = find(text, r"Decode after the first token: [0-9.]+ tok/s \(" + NUM + " ms per step")
    rate = find(text, r"Decode after the first token: " + NUM + " tok/s")
    prefill = find(text, r"seconds = " + NUM + " prompt tok/s")
    if decode is None and prefill is None:
        return None
    return {"ms": decode, "tok/s": rate, "prefill": prefill}


def serve(logs: Path, step: str) -> dict | None:
    """`ferrum bench serve`'s output throughput, median TTFT and TPOT, failures."""
    text = read(logs, step + ".log")
    out = find(text, r"Output token throughput \(tok/s\):\s+" + NUM)
    if out is None:
        return None
    return {
        "tok/s": out,
        "ttft": find(text, r"Median TTFT \(ms\):\s+" + NUM),
        "tpot": find(text, r"Median TPOT \(ms\):\s+" + NUM),
        "failed": find(text, r"Failed requests:\s+" + NUM),
    }


def ready(logs: Path, name: str) -> float | None:
    return find(read(logs, name + "-ready.txt"), r"ready " + NUM + " s")


def device(logs: Path) -> tuple[str, str]:
    """The GPU's name (gpu.txt) and its kind for the peers' figures."""
    name = (read(logs, "gpu.txt") or "unknown GPU").strip().splitlines()[0]
    kind = "H200" if "H200" in name else "H100" if "H100" in name else ""
    return name, kind


def rows(logs: Path) -> list[tuple[str, str, str, str]]:
    """(row, ferrum, floor, llama.cpp) for every measured row."""
    _, kind = device(logs)
    copy, gemm = ceilings(logs)
    peers = LLAMACPP.get(kind, {})
    out = []

    def peer(step: str) -> str:
        unit, v = peers.get(step, (None, None))
        return "—" if v is None else f"{v:g} {unit}"

    def decode_row(label: str, step: str, model: str | None) -> None:
        r = latency(logs, step)
        if not r or r["ms"] is None:
            return
        floor = "—"
        if model and copy:
            f = FLOOR_GB[model] / copy
            floor = f"{FLOOR_GB[model]} GB ÷ {copy} TB/s = {f:.2f} ms ({r['ms'] / f:.2f}×)"
        out.append((label, f"{r['ms']:.2f} ms/token", floor, peer(step)))

    def rate_row(label: str, step: str) -> None:
        r = latency(logs, step)
        if r and r["tok/s"] is not None:
            out.append((label, f"{r['tok/s']:.0f} tok/s ({r['ms']:.2f} ms/step)", "—", peer(step)))

    def prefill_row(label: str, step: str, gflop: float | None) -> None:
        r = latency(logs, step)
        if not r or r["prefill"] is None:
            return
        floor = "—"
        if gflop and gemm:
            tflops = r["prefill"] * gflop / 1e3
            floor = f"{tflops:.0f} TFLOP/s, {100 * tflops / gemm:.0f} % of cuBLAS's {gemm:g}"
        out.append((label, f"{r['prefill']:.0f} tok/s", floor, peer(step)))

    def serve_rows(label: str, name: str, shapes: list[str]) -> None:
        t = ready(logs, name)
        if t is not None:
            out.append((f"{label}: `ferrum serve` to ready", f"{t:.2f} s", "—", "—"))
        for shape in shapes:
            r = serve(logs, f"{name}_{shape}")
            if r:
                failed = "" if not r["failed"] else f", {r['failed']:.0f} failed"
                what = f"{r['tok/s']:.1f} tok/s; TTFT {r['ttft']:g} ms; TPOT {r['tpot']:g} ms{failed}"
                out.append((f"{label}: `bench serve` {shape}", what, "—", "—"))

    if copy:
        out.append(("copy bandwidth (read + write)", f"{copy} TB/s", "—", "—"))
    if gemm:
        out.append(("cuBLAS bf16 GEMM", f"{gemm:g} TFLOP/s", "—", "—"))
    # issue 8: Llama-3.1-8B, bf16, dummy weights
    decode_row("8B batch-1 decode", "bench_decode_8b", "8b")
    prefill_row("8B prefill 512", "bench_prefill_8b_512", GFLOP_8B)
    prefill_row("8B prefill 2048", "bench_prefill_8b_2048", GFLOP_8B)
    # (a long prompt's chunk: its attention is a large share, which the GEMM floor leaves out)
    prefill_row("8B prefill 8192", "bench_prefill_8b_8192", None)
    for b in (8, 32, 64, 128):
        rate_row(f"8B decode, {b} sequences (512 in / 128 out)", f"bench_decode_8b_b{b}")
    serve_rows("8B", "serve_8b", ["c1", "c16", "c64", "c256"])
    serve_rows("8B, an empty kernel cache (the first start)", "serve_8b_cold", [])
    t = ready(logs, "serve_smollm2")
    if t is not None:
        out.append(("SmolLM2 GGUF: `ferrum serve` to ready", f"{t:.2f} s", "—", "—"))
    # issue 9: Qwen3-30B-A3B FP8 (fp8 KV, 16k), its bf16 config, GLM-4.5-Air-FP8
    decode_row("Qwen3-30B-A3B FP8 batch-1 decode", "bench_decode_qwen3moe_fp8", "qwen3moe_fp8")
    prefill_row("Qwen3-30B-A3B FP8 prefill 2048", "bench_prefill_qwen3moe_fp8", None)
    rate_row("Qwen3-30B-A3B FP8 decode, 128 sequences", "bench_decode_qwen3moe_fp8_b128")
    serve_rows(
        "Qwen3-30B-A3B FP8",
        "serve_qwen3moe_fp8",
        ["c1", "c16", "c64", "c256", "c16_8000x1024"],
    )
    decode_row("Qwen3-30B-A3B bf16 batch-1 decode", "bench_decode_qwen3moe_bf16", "qwen3moe_bf16")
    decode_row("GLM-4.5-Air-FP8 batch-1 decode", "bench_decode_glm45air_fp8", "glm45air_fp8")
    decode_row(
        "GLM-4.5-Air-FP8, 24 of 46 layers, batch-1 decode",
        "bench_decode_glm45air_fp8_24l",
        "glm45air_fp8_24l",
    )
    serve_rows("GLM-4.5-Air-FP8", "serve_glm45air_fp8", ["c1", "c16"])
    serve_rows("GLM-4.5-Air-FP8, 24 layers", "serve_glm45air_fp8_24l", ["c1", "c16"])
    return out


def table(logs: Path) -> str:
    name, _ = device(logs)
    lines = [
        f"Device: {name}",
        "",
        "| row | ferrum | floor | llama.cpp, same device kind |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(logs)]
    return "\n".join(lines) + "\n"


class _Asked:
    """A log folder with nothing in it that notes every file the table asks for."""

    def __init__(self):
        self.names: list[str] = []

    def __truediv__(self, name: str) -> Path:
        self.names.append(name)
        return Path("/nonexistent") / name


def steps() -> list[str]:
    """The gpu-check steps whose logs the table reads (`ONLY=table` runs just these)."""
    asked = _Asked()
    rows(asked)  # type: ignore[arg-type]
    logs = {n[: -len(".log")] for n in asked.names if n.endswith(".log")}
    # a ready time comes with a server, which gpu-check starts for a `bench serve` step of it
    ready = {n[: -len("-ready.txt")] + "_c1" for n in asked.names if n.endswith("-ready.txt")}
    return sorted(logs | ready)


if __name__ == "__main__":
    if sys.argv[1:] == ["--steps"]:
        print("|".join(steps()))
    elif len(sys.argv) == 2:
        sys.stdout.write(table(Path(sys.argv[1])))
    else:
        sys.exit("usage: gpu_table.py LOG_FOLDER | --steps")
