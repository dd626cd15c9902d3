"""The toy world demos itself and bench.py reports every group: run them as a user would.

    python -m pytest -q tests/test_demos.py
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=ROOT)


def run(cwd, *args):
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_toyworld_demo_writes_gif_and_png(tmp_path):
    out = run(tmp_path, os.path.join(ROOT, "toyworld.py"), "--episodes", "2", "--image_size", "32",
              "--out", "demo.gif", "--png", "still.png")
    assert "target: expert success" in out and "source: expert success" in out
    assert (tmp_path / "demo.gif").stat().st_size > 0 and (tmp_path / "still.png").stat().st_size > 0


def test_bench_reports_every_group(tmp_path):
    run(tmp_path, os.path.join(ROOT, "bench.py"), "--iters", "1", "--threads", "1", "--device", "cpu", "--out", "b.json",
        "--only", "toyworld,data,wm,policy,pretrain,stage1", "--stage1_sizes", "1m")
    res = json.load(open(tmp_path / "b.json"))
    keys = ["toyworld_steps_per_s", "pretrain_windows_per_s", "demo_windows_per_s", "wm_1m_64px_b16_ms",
            "wm_12m_128px_b8_ms", "policy_baku_small_64px_b32_ms", "policy_diffusion_default_128px_b32_ms",
            "pretrain_step_small_baku_1m_64px_b32_ms", "stage1_1m_128px_b8_step_ms", "stage1_1m_64px_b8_backward_ms",
            "stage1_1m_128px_b8_decoder_openloop_ms", "stage1_1m_128px_b8_gflop", "stage1_1m_128px_b8_tflops"]
    assert all(res[k] > 0 for k in keys), res
    # the step's FLOPs are mostly convolutions, which grow with the pixels: 4x the pixels, > 2x the FLOPs
    assert res["stage1_1m_128px_b8_gflop"] > 2 * res["stage1_1m_64px_b8_gflop"] > 0, res
