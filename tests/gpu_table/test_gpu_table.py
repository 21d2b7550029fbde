"""scripts/gpu_table.py over real gpu-check logs (trimmed to the lines it reads): the H100 calls of
the thirteenth session (ceilings, decode; GLM-4.5-Air-FP8 whole failing to fit 80 GB) and the
eleventh (prefill 2048, the 8B's serve ready time and `bench serve` at concurrency 16)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = Path(__file__).with_name("logs")

spec = importlib.util.spec_from_file_location("gpu_table", ROOT / "scripts" / "gpu_table.py")
gpu_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_table)


def by_label():
    return {row[0]: row[1:] for row in gpu_table.rows(LOGS)}


def test_ceilings_and_device_kind():
    assert gpu_table.ceilings(LOGS) == (3.04, 793.0)
    assert gpu_table.device(LOGS) == ("NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04", "H100")


def test_decode_rows_carry_floor_ratio_and_peer():
    rows = by_label()
    ferrum, floor, peer = rows["8B batch-1 decode"]
    assert ferrum == "5.72 ms/token"
    # 15.01 GB ÷ 3.04 TB/s = 4.94 ms; 5.72 / 4.94 = 1.16
    assert floor == "15.01 GB ÷ 3.04 TB/s = 4.94 ms (1.16×)"
    assert peer == "6.12 ms"  # llama.cpp on an H100 (gpu_table.LLAMACPP)
    ferrum, floor, peer = rows["Qwen3-30B-A3B FP8 batch-1 decode"]
    assert (ferrum, floor) == ("3.10 ms/token", "3.35 GB ÷ 3.04 TB/s = 1.10 ms (2.81×)")
    assert peer == "—"  # llama.cpp's Qwen3 figures are an H200's only


def test_batched_prefill_and_serve_rows():
    rows = by_label()
    assert rows["8B decode, 128 sequences (512 in / 128 out)"][0] == "11143 tok/s (11.49 ms/step)"
    assert rows["8B decode, 128 sequences (512 in / 128 out)"][2] == "7558 tok/s"
    assert rows["Qwen3-30B-A3B FP8 decode, 128 sequences"][0] == "4157 tok/s (30.79 ms/step)"
    # 27815 tok/s × 16.1 GFLOP = 448 TFLOP/s of cuBLAS's 793
    assert rows["8B prefill 2048"][:2] == ("27815 tok/s", "448 TFLOP/s, 56 % of cuBLAS's 793")
    assert rows["8B: `ferrum serve` to ready"][0] == "5.88 s"
    assert rows["8B: `bench serve` c16"][0] == "1385.5 tok/s; TTFT 355.89 ms; TPOT 8.79 ms"


def test_missing_and_failed_steps_leave_no_row():
    rows = by_label()
    # GLM-4.5-Air-FP8 whole failed to load on 80 GB; no 8 / 32 / 64-sequence or c1 logs here
    assert not any(label.startswith("GLM") for label in rows)
    assert "8B decode, 8 sequences (512 in / 128 out)" not in rows
    assert "8B: `bench serve` c1" not in rows
    assert gpu_table.latency(LOGS, "bench_decode_glm45air_fp8") is None


def test_table_is_markdown_with_one_line_a_row():
    text = gpu_table.table(LOGS)
    lines = text.splitlines()
    assert lines[0].startswith("Device: NVIDIA H100")
    assert lines[2] == "| row | ferrum | floor | llama.cpp, same device kind |"
    assert len(lines) == 4 + len(gpu_table.rows(LOGS))


def test_steps_name_every_row_and_the_servers_to_start():
    steps = gpu_table.steps()
    for step in ["ceilings", "bench_decode_8b", "bench_decode_8b_b128", "bench_prefill_8b_2048",
                 "bench_decode_qwen3moe_fp8", "bench_decode_glm45air_fp8", "serve_8b_c16",
                 "serve_qwen3moe_fp8_c16_8000x1024"]:
        assert step in steps
    # ready-only rows ask gpu-check for their server's first `bench serve` step
    assert "serve_8b_cold_c1" in steps and "serve_smollm2_c1" in steps
    assert "gpu" not in steps and not any(s.endswith("-ready") for s in steps)
