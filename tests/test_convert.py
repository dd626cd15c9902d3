"""Tests of the BridgeData v2 and Something-Something v2 converters and of mixed pretraining data.
Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_convert.py   (under a minute on CPU)

Tiny raw datasets are built here in the official layouts: BridgeData jpgs + pickles under
<date>/raw/traj_group0/traj<k>/, SSv2 clips encoded as real VP9 webm files with a train.json.
Frame t of every source is a flat colour that encodes t, action t is (t, -t, 0, 0, 0, 0, 1) and the
state at step t is (10 t, ...), so any misalignment of frames, actions and state shows up as a number.
"""
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import data
from episodes import DataError
from conftest import ENV, ROOT, read_episodes

S = 16  # converted image size


pytestmark = pytest.mark.usefixtures("lang_cache")  # a private embedding cache (conftest.py)


def colour(t):
    """The flat RGB colour planted in frame t (distinct, far apart, away from 0 and 255)."""
    return np.array([10 + 8 * t, 250 - 8 * t, 60 + 25 * (t % 7)], np.uint8)


def picture(t, h, w):
    return np.broadcast_to(colour(t), (h, w, 3)).copy()  # (h, w, 3)


def make_traj(folder, N, lang="put the spoon in the pot\nconfidence: 1.0\n", corrupt=None, dict_actions=True):
    os.makedirs(os.path.join(folder, "images0"))
    for t in range(N):
        Image.fromarray(picture(t, 24, 32)).save(os.path.join(folder, "images0", f"im_{t}.jpg"), quality=95)
    if corrupt is not None:
        with open(os.path.join(folder, "images0", f"im_{corrupt}.jpg"), "wb") as f:
            f.write(b"\xff\xd8not a jpeg")
    acts = [np.array([t, -t, 0, 0, 0, 0, 1], np.float64) for t in range(N - 1)]
    with open(os.path.join(folder, "policy_out.pkl"), "wb") as f:
        pickle.dump([{"actions": a, "new_robot_transform": np.eye(4)} for a in acts] if dict_actions else np.stack(acts), f)
    state = np.array([[10 * t, 1, 2, 3, 4, 5, 6] for t in range(N)], np.float64)
    with open(os.path.join(folder, "obs_dict.pkl"), "wb") as f:
        pickle.dump({"full_state": state, "qpos": np.zeros((N, 6)), "time_stamp": np.arange(N)}, f)
    if lang is not None:
        with open(os.path.join(folder, "lang.txt"), "w") as f:
            f.write(lang)


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    """raw/bridge_data_v2 with 5 trajectories: 2 good (new), 1 pre-latency-fix, 1 without lang.txt,
    1 with a corrupt jpg."""
    src = tmp_path_factory.mktemp("bdv2") / "bridge_data_v2"
    new = src / "toykitchen1" / "put_spoon_in_pot" / "00" / "2022-05-01_10-00-00" / "raw" / "traj_group0"
    old = src / "toykitchen1" / "put_spoon_in_pot" / "01" / "2021-06-01_10-00-00" / "raw" / "traj_group0"
    make_traj(str(new / "traj0"), 8)
    make_traj(str(new / "traj1"), 6, lang="confidence: 0.9\nwipe the table\n", dict_actions=False)
    make_traj(str(new / "traj2"), 7, lang=None)
    make_traj(str(new / "traj3"), 7, corrupt=3)
    make_traj(str(old / "traj0"), 9)
    return str(src)


def run_convert(*args, ok=True):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), *args], env=ENV, capture_output=True,
                       text=True, timeout=120)
    if ok:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def episodes(folder):
    return [ep for p in data.find_episode_files(str(folder)) for ep in read_episodes(p)]


def test_bdv2_frames_actions_latency_and_skips(bridge, tmp_path):
    r = run_convert("bdv2", "--src", bridge, "--out", str(tmp_path / "out"), "--image_size", str(S),
                 "--min_frames", "2", "--shard_size", "2", "--workers", "2")
    assert "3 episodes kept, 2 skipped" in r.stdout, r.stdout
    assert "1 no instruction" in r.stdout and "1 unreadable image" in r.stdout
    eps = episodes(tmp_path / "out")  # sorted paths: 00/2022-05-01 traj0, traj1, then 01/2021-06-01 traj0
    assert [e["instruction"] for e in eps] == ["put the spoon in the pot", "wipe the table", "put the spoon in the pot"]
    assert [e["task_type"] for e in eps] == ["put", "other", "put"]  # episodes.task_family, the paper's CCA groups
    with data.h5py.File(data.find_episode_files(str(tmp_path / "out"))[0]) as f:
        assert f["data"].attrs["source"] == "bdv2" and f["data"].attrs["image_size"] == S
    for ep, N, shift in zip(eps, (8, 6, 9), (0, 0, 1)):
        T = N - 1 - shift  # one more image than actions; the last image is dropped, and the first before 2021-07-23
        frames, acts, state = ep["obs"]["agentview_rgb"], ep["actions"], ep["obs"]["state"]
        assert frames.shape == (T, S, S, 3) and acts.shape == (T, 7) and state.shape == (T, 7)
        for t in range(T):  # obs t is image t + shift; action t is the t-th action: image t+1 shows action t's scene
            assert np.abs(frames[t].astype(int) - colour(t + shift)).max() <= 6, (N, t)
        np.testing.assert_array_equal(acts[:, 0], np.arange(T))
        np.testing.assert_array_equal(state[:, 0], 10 * (np.arange(T) + shift))


def test_bdv2_kill_and_rerun_equals_one_run(bridge, tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    run_convert("bdv2", "--src", bridge, "--out", str(whole), "--image_size", str(S), "--min_frames", "2", "--shard_size", "1")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "convert.py"), "bdv2", "--src", bridge, "--out", str(part),
                          "--image_size", str(S), "--min_frames", "2", "--shard_size", "1"], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not (part.exists() and any(n.endswith(".hdf5") for n in os.listdir(part))) and time.time() - t0 < 60:
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(os.listdir(whole)) == 5  # 3 shards + 2 .empty markers (every input of the shard skipped)
    r = run_convert("bdv2", "--src", bridge, "--out", str(part), "--image_size", str(S), "--min_frames", "2", "--shard_size", "1")
    done_now, there = map(int, re.search(r"(\d+) of 5 shards done now \((\d+) already there\)", r.stdout).groups())
    assert done_now >= 1 and there >= 1 and done_now + there == 5, r.stdout  # the kill left work to resume
    assert sorted(n for n in os.listdir(part)) == sorted(os.listdir(whole))  # no .tmp left behind
    a, b = episodes(whole), episodes(part)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        assert x["instruction"] == y["instruction"]
        for k in x["obs"]:
            np.testing.assert_array_equal(x["obs"][k], y["obs"][k])
        np.testing.assert_array_equal(x["actions"], y["actions"])
    r = run_convert("bdv2", "--src", bridge, "--out", str(part), "--image_size", str(S), "--min_frames", "2", "--shard_size", "1")
    assert "0 of 5 shards done now (5 already there)" in r.stdout


def write_webm(path, frames, fps=12):
    import av
    with av.open(path, "w") as c:
        s = c.add_stream("libvpx-vp9", rate=fps)
        s.height, s.width, s.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        s.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
        for x in frames:
            c.mux(s.encode(__import__("av").VideoFrame.from_ndarray(x, format="rgb24")))
        c.mux(s.encode())


@pytest.fixture(scope="module")
def something(tmp_path_factory):
    """20 webm clips (ids 1..20, clip k has 6 + k % 4 frames), one id listed without a video, train.json."""
    root = tmp_path_factory.mktemp("ssv2")
    (root / "videos").mkdir()
    labels = []
    for k in range(1, 21):
        T = 6 + k % 4
        write_webm(str(root / "videos" / f"{k}.webm"), np.stack([picture(t + k, 32, 48) for t in range(T)]))
        labels.append({"id": str(k), "label": f"Pushing box {k} from left to right",
                       "template": "Pushing [something] from left to right", "placeholders": [f"box {k}"]})
    labels.append({"id": "99", "label": "Moving a ghost", "template": "Moving [something]", "placeholders": ["ghost"]})
    (root / "train.json").write_text(json.dumps(labels))
    return root


def test_ssv2_frames_labels_fraction_and_skip(something, tmp_path):
    base = ["ssv2", "--src", str(something / "videos"), "--labels", str(something / "train.json"),
            "--image_size", str(S), "--min_frames", "2"]
    r = run_convert(*base, "--out", str(tmp_path / "all"), "--frame_skip", "2", "--workers", "2", "--shard_size", "4")
    assert "20 episodes kept, 1 skipped, 1 no video" in r.stdout, r.stdout
    eps = episodes(tmp_path / "all")
    assert [e["instruction"] for e in eps] == [f"Pushing box {k} from left to right" for k in range(1, 21)]
    assert eps[0]["task"] == "Pushing [something] from left to right" and "actions" not in eps[0]
    for k, ep in enumerate(eps, 1):
        frames = ep["obs"]["agentview_rgb"]
        T = 6 + k % 4
        assert frames.shape == ((T + 1) // 2, S, S, 3)
        for i, x in enumerate(frames):  # frame_skip 2: kept frames 0, 2, 4, ...
            assert np.abs(x.astype(int) - colour(2 * i + k)).mean() <= 6, (k, i)
    # a seeded random half, not the first half; the same seed gives the same clips, another seed others
    picks = []
    for seed, out in ((0, "a"), (0, "b"), (1, "c")):
        run_convert(*base, "--out", str(tmp_path / out), "--fraction", "0.5", "--seed", str(seed))
        picks.append([e["instruction"] for e in episodes(tmp_path / out)])
    first = [f"Pushing box {k} from left to right" for k in range(1, 11)]  # what "the first 10%" would take
    assert 9 <= len(picks[0]) <= 11 and picks[0] == picks[1] and picks[0] != picks[2] and picks[0] != first


@pytest.mark.parametrize("args, message", [
    (["bdv2"], "--src"),
    (["bdv2", "--src", "EMPTY"], "trajectories"),
    (["ssv2", "--src", "EMPTY", "--labels", "nope.json"], "no such file"),
    (["ssv2", "--src", "EMPTY", "--labels", "BAD"], "invalid JSON"),
])
def test_bad_input_gives_one_line(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    args = [str(tmp_path / "empty") if a == "EMPTY" else str(tmp_path / "bad.json") if a == "BAD" else a for a in args]
    r = run_convert(*args, "--out", str(tmp_path / "out"), ok=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_mixture_samples_each_set_at_its_weight():
    sizes, weights = [1000, 30], [0.3, 0.7]
    sampler = data.MixtureBatches(sizes, weights, batch_size=50, seed=3)
    idx = np.concatenate([sampler.batch(s) for s in range(40)])  # 2,000 draws
    assert idx.min() >= 0 and idx.max() < sum(sizes)
    share = (idx >= sizes[0]).mean()  # drawn from the second set
    assert abs(share - 0.7) < 0.05, share
    assert len(set(idx[idx >= sizes[0]].tolist())) == 30  # uniform within a set: all of the small one appear
    # a pure function of (seed, step, rank): a resumed sampler draws the same batches; ranks differ
    again = data.MixtureBatches(sizes, weights, batch_size=50, seed=3, start_step=7)
    assert next(iter(again)) == sampler.batch(7)
    assert data.MixtureBatches(sizes, weights, 50, seed=3, rank=1).batch(7) != sampler.batch(7)
    with pytest.raises(DataError):
        data.MixtureBatches(sizes, [1.0], 50)


def test_mixture_over_converted_shards(bridge, something, tmp_path):
    """PretrainWindows reads the converted shards; pretrain.py --data bdv2,ssv2 --mix trains on both
    ("bdv2"/"ssv2" name data/bdv2, data/ssv2 in the working folder)."""
    import torch
    size = "32"  # the smallest the world model's encoder takes
    run_convert("bdv2", "--src", bridge, "--out", str(tmp_path / "data" / "bdv2"), "--image_size", size, "--min_frames", "2")
    run_convert("ssv2", "--src", str(something / "videos"), "--labels", str(something / "train.json"), "--image_size",
             size, "--min_frames", "2", "--out", str(tmp_path / "data" / "ssv2"))
    sets = [data.PretrainWindows(str(tmp_path / "data" / n), chunk=2, in_memory=False) for n in ("bdv2", "ssv2")]
    cat = torch.utils.data.ConcatDataset(sets)
    sampler = data.MixtureBatches([len(s) for s in sets], [0.5, 0.5], batch_size=8, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(cat, batch_sampler=sampler)))
    assert batch["frames"].shape == (8, 3, 3, 32, 32) and batch["frames"].dtype == torch.uint8
    assert set(batch["task_type"]) <= {"put", "other", "ssv2"}  # bdv2: episodes.task_family(instruction)
    cmd = [sys.executable, os.path.join(ROOT, "pretrain.py"), "--data", "bdv2,ssv2", "--chunk", "2", "--wm_size", "1m",
           "--batch_size", "4", "--max_steps", "1", "--warmup", "1", "--device", "cpu", "--out_dir", "pt"]
    r = subprocess.run(cmd + ["--mix", "0.25,0.75"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "weight 0.25" in r.stdout + r.stderr and (tmp_path / "pt" / "ckpt.pt").exists()
    r = subprocess.run(cmd + ["--mix", "1"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == ["error: --mix: expected 2 weights, one per --data set, got 1"]


def one_line_error(r, says):
    """A fault found while converting: exit code 1, no traceback, and one error line, the last on stderr
    (the progress bar, which started before the fault could be known, writes to stderr too)."""
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == errors[0] and says in errors[0], r.stderr


def test_bdv2_with_every_input_skipped_leaves_nothing(bridge, tmp_path):
    """No episode converted: one line, and no folder (nor parent) made for it; a folder given that
    exists stays as it was."""
    for out in (tmp_path / "new" / "bdv2", tmp_path):
        r = run_convert("bdv2", "--src", bridge, "--out", str(out), "--min_frames", "100", ok=False)
        one_line_error(r, "inputs: expected at least one usable bdv2 input")
    assert os.listdir(tmp_path) == []


def official_file(path, T=3):
    """A minimal official LIBERO demo file (what check_official reads), written with h5py alone: one demo
    of T steps, its frames stored one gzip chunk each, so a frame can be corrupted alone."""
    with data.h5py.File(path, "w") as f:
        f.create_group("data").attrs["problem_info"] = json.dumps(
            {"problem_name": "libero_tabletop_manipulation", "language_instruction": "pick up the soup"})
        g = f.create_group("data/demo_0")
        g.create_dataset("actions", data=np.zeros((T, 7)))
        g.create_dataset("obs/agentview_rgb", data=np.zeros((T, 128, 128, 3), np.uint8), chunks=(1, 128, 128, 3),
                         compression="gzip")
    return path


def test_libero_unreadable_chunk_leaves_no_manifest(tmp_path):
    """A chunk that cannot be decompressed is found while converting, after libero.json was written: the run
    stops with one line and takes libero.json and the folder it made away again (a libero.json describing
    no shard would refuse a rerun with other sources or options into that folder)."""
    bad = official_file(str(tmp_path / "pick_up_the_soup_demo.hdf5"))
    with data.h5py.File(bad, "r") as f:
        chunk = f["data/demo_0/obs/agentview_rgb"].id.get_chunk_info(1)  # frame 1's gzip stream
    with open(bad, "r+b") as f:
        f.seek(chunk.byte_offset)
        f.write(b"\xff" * chunk.size)
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "new" / "libero", tmp_path / "kept"):
        r = run_convert("libero", "--src", bad, "--out", str(out), "--image_size", str(S), ok=False)
        one_line_error(r, f"{bad}: data/demo_0: expected readable data, got a read error")
    assert sorted(os.listdir(tmp_path)) == ["kept", "pick_up_the_soup_demo.hdf5"] and os.listdir(tmp_path / "kept") == []
    good = official_file(str(tmp_path / "kept" / "pick_up_the_soup_demo.hdf5"))  # the same run converts a good file
    run_convert("libero", "--src", good, "--out", str(tmp_path / "out"), "--image_size", str(S))
    assert sorted(os.listdir(tmp_path / "out")) == ["libero.json", "libero_00000.hdf5"]
