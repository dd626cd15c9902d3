"""label.py: an inverse-dynamics model trained on labeled demos labels action-free video (the vpt arm).

    python -m pytest -q tests/test_label.py
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def run(cwd, *cmd, ok=True):
    r = subprocess.run([sys.executable, os.path.join(ROOT, cmd[0]), *cmd[1:]], cwd=cwd, env=ENV, capture_output=True,
                       text=True, timeout=900)
    assert not ok or r.returncode == 0, r.stderr[-3000:]
    return r


def test_label_writes_predicted_actions_close_to_the_true_ones(tmp_path):
    """The labels of demos whose true actions are known: each episode one frame shorter with its frames, proprio and
    instruction unchanged, the file marked as predicted, the labels correlated with the true actions; a rerun does
    nothing; finetune.py trains on them and says they are predicted."""
    run(tmp_path, "convert.py", "toy", "--out", "toy", "--target_demos", "8", "--source_demos", "1", "--source_episodes",
        "1")
    demos = tmp_path / "toy" / "target_demos.hdf5"
    with h5py.File(demos, "r+") as f:  # actions in units other than [-1, 1] (the toy's), so the labels must be mapped back
        for k in f["data"]:
            f["data"][k]["actions"][...] = 3 * f["data"][k]["actions"][()] + 5
    r = run(tmp_path, "label.py", "--demos", str(demos), "--video", str(demos), "--out", "lab", "--steps", "300")
    assert "held-out R^2" in r.stdout
    rep = json.load(open(tmp_path / "lab" / "labels.json"))
    with h5py.File(demos) as f:
        n = len(f["data"])
    assert len(rep["heldout_r2"]) == 3 and rep["heldout_episodes"] == n // 5 and rep["train_episodes"] == n - n // 5
    assert rep["heldout_r2_pooled"] > 0.3  # 300 steps at 64 px read the toy's motion from a frame pair (~0.8 at 200)
    true, pred = [], []
    with h5py.File(demos) as f, h5py.File(tmp_path / "lab" / "target_demos_labeled.hdf5") as g:
        assert g["data"].attrs["actions_source"].startswith("predicted: label.py")
        assert g["data"].attrs["source"] == f["data"].attrs["source"]
        assert len(g["data"]) == len(f["data"])
        for k in f["data"]:
            a, b = f["data"][k], g["data"][k]
            T = a.attrs["num_samples"]
            assert b.attrs["num_samples"] == T - 1 and b["actions"].shape == (T - 1, 3)  # the last frame: no action
            assert np.array_equal(b["obs/agentview_rgb"][()], a["obs/agentview_rgb"][:T - 1])
            assert np.array_equal(b["obs/state"][()], a["obs/state"][:T - 1])
            assert all(b.attrs[x] == a.attrs[x] for x in ("instruction", "task", "task_type"))
            true.append(a["actions"][:T - 1])
            pred.append(b["actions"][()])
    true, pred = np.concatenate(true), np.concatenate(pred)
    corr = [np.corrcoef(true[:, i], pred[:, i])[0, 1] for i in range(3)]
    assert min(corr) > 0.6, corr  # dx, dy, grip, in sample (the IDM's last fit saw these demos)
    assert abs(pred.mean(0) - true.mean(0)).max() < 0.5 * true.std(0).min() and pred.min() > 1  # the demos' units
    assert np.all((pred.std(0) > 0.5 * true.std(0)) & (pred.std(0) < 1.5 * true.std(0))), (pred.std(0), true.std(0))
    # the video records actions here, so they score the labels: R^2 per dimension (min-max normalising changes none)
    ref = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    assert np.allclose(rep["files"][0]["video_r2"], ref, atol=1e-4), (rep["files"][0]["video_r2"], ref)
    assert "its recorded actions (never used) score the labels" in r.stdout
    r = run(tmp_path, "label.py", "--demos", str(demos), "--video", str(demos), "--out", "lab", "--steps", "300")
    assert "labeled already" in r.stdout
    r = run(tmp_path, "label.py", "--demos", str(demos), "--video", str(demos), "--out", "lab", ok=False)  # other flags
    assert r.returncode != 0 and "--steps 300 (now 2000)" in r.stderr and "Traceback" not in r.stderr
    r = run(tmp_path, "finetune.py", "--data", "lab", "--max_steps", "2", "--batch_size", "4", "--eval_every", "2",
            "--out_dir", "ft")
    assert "its actions are predicted: label.py" in r.stdout + r.stderr
    # predicted actions are no reference: labeling a labeled file scores nothing
    r = run(tmp_path, "label.py", "--demos", str(demos), "--video", "lab", "--out", "lab2", "--steps", "20")
    assert "score the labels" not in r.stdout
    assert "video_r2" not in json.load(open(tmp_path / "lab2" / "labels.json"))["files"][0]
    # bad input: one line naming the flag or the file, nothing written
    r = run(tmp_path, "label.py", "--demos", str(demos), "--video", str(demos), "--out", "bad", "--size", "128", ok=False)
    assert r.returncode != 0 and "--size" in r.stderr and "Traceback" not in r.stderr and not (tmp_path / "bad").exists()
    r = run(tmp_path, "label.py", "--demos", str(tmp_path / "toy" / "source_video.hdf5"), "--video", str(demos), "--out",
            "bad", ok=False)
    assert r.returncode != 0 and "actions" in r.stderr and "Traceback" not in r.stderr
    run(tmp_path, "convert.py", "toy", "--out", "toy32", "--image_size", "32", "--target_demos", "1", "--source_demos",
        "1", "--source_episodes", "2")
    r = run(tmp_path, "label.py", "--demos", str(demos), "--video", "toy32/source_video.hdf5", "--out", "bad", ok=False)
    assert r.returncode != 0 and "image_size" in r.stderr and "64" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()
