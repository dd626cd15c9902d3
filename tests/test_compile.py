"""`--compile` (torch.compile) in both training stages: the compiled step trains and checkpoints.

    python -m pytest -q tests/test_compile.py

A file of its own because it is the suite's slowest test (inductor writes and builds C++ kernels: about 4 CPU-minutes
on a cold cache); `make test` runs each file on one of two workers, so it runs beside test_stages.py, not after it.
Only that it runs is checked: compiled random ops (the RSSM's samples, BAKU's dropout) draw from inductor's own
generator, so the compiled losses differ from eager ones by design, not by a bug.
"""
import json

import pytest

from test_stages import TINY_WM, load, run


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("compile")
    run(d, "convert.py", "toy", "--image_size", "32", "--source_episodes", "6", "--target_demos", "2",
        "--source_demos", "2")
    return d


def test_compile_flag(work):
    run(work, "finetune.py", "--compile", "--max_steps", "2", "--out_dir", "ft_compile", "--batch_size", "4", "--chunk", "4")
    run(work, "pretrain.py", *TINY_WM, "--compile", "--chunk", "2", "--max_steps", "1", "--out_dir", "pt_compile")
    for folder, steps in (("ft_compile", 2), ("pt_compile", 1)):
        assert load(work / folder / "ckpt.pt")["step"] == steps
        rows = [json.loads(r) for r in open(work / folder / "log.jsonl")]
        assert [r["step"] for r in rows if "eval" not in r] == list(range(steps))  # a row for every compiled step
