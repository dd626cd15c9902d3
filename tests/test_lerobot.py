"""Tests of `python convert.py lerobot` (convert_lerobot.py): LeRobot datasets -> lawm episode shards.
Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_lerobot.py   (about a minute on one CPU core)

The fixtures are tiny LeRobot datasets written here with pyarrow and PyAV in the v2.1 layout (a parquet file
and an H.264 MP4 per episode) and the v3.0 layout (one parquet file for all episodes, two AV1 MP4 files, the
first holding episodes 0 and 1 one after the other), each with a second camera stored as PNG images inside
the parquet. Frame t of episode e is a flat colour that encodes (e, t) with a marked top-left quadrant, so a
frame from the wrong episode or step, or a flip, shows up as a number. tests/lerobot_written/ holds two more,
written by LeRobot's own dataset writer (v2.1 and v3.0; its write.py says how).
"""
import fractions
import io
import json
import os
import re
import shutil
import subprocess
import sys

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import data
from conftest import ENV, ROOT, read_episodes
from episodes import task_family

S, FPS = 32, 10
STEPS = (5, 4, 6, 5)  # frames of episodes 0..3
TASKS = {0: "put the bowl on the plate", 1: "pick up the cup", 2: ""}  # task_index -> text; episode 2's is empty
TASK_OF = (0, 1, 2, 0)  # each episode's task_index
VIDEO, WRIST = "observation.images.image", "observation.images.wrist_image"
MAP = ["--camera", f"{VIDEO}=agentview", "--camera", f"{WRIST}=wrist", "--action", "action", "--state", "observation.state",
       "--image_size", str(S), "--min_frames", "1"]


pytestmark = pytest.mark.usefixtures("lang_cache")  # a private embedding cache (conftest.py)


def frame(e, t):
    """Episode e's frame t: a flat colour numbering (e, t), blue 230 in the top-left quadrant."""
    x = np.empty((S, S, 3), np.uint8)
    x[:] = (20 + 9 * (6 * e + t), 200 - 9 * t - 30 * e, 40)
    x[:S // 2, :S // 2, 2] = 230
    return x  # (S, S, 3)


def action(e, t):
    return np.array([t, -t, e, 0.5, 0, 0, 1], np.float32)


def state(e, t):
    return np.array([10 * t, e, 0, 0, 0, 0, 0.25, 1], np.float32)


def write_mp4(path, frames, codec):
    """frames at FPS with pts = 0, 1, ... in 1/FPS units; LeRobot's pixel format, a keyframe every 2 frames."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height, s.pix_fmt = S, S, "yuv420p"
        s.options = {"crf": "10", "g": "2", **({"preset": "12"} if codec == "libsvtav1" else {"preset": "ultrafast"})}
        for i, x in enumerate(frames):
            f = av.VideoFrame.from_ndarray(x, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, FPS)
            c.mux(s.encode(f))
        c.mux(s.encode())


def png(x):
    b = io.BytesIO()
    Image.fromarray(x).save(b, format="PNG")
    return b.getvalue()


def rows(episodes, start=0):
    """The parquet rows of some episodes (every feature but the video), as LeRobot stores them."""
    r = {k: [] for k in (WRIST, "observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index")}
    for e in episodes:
        for t in range(STEPS[e]):
            for k, v in ((WRIST, {"bytes": png(255 - frame(e, t)), "path": f"frame_{t:06d}.png"}),
                         ("observation.state", state(e, t)), ("action", action(e, t)), ("timestamp", t / FPS),
                         ("frame_index", t), ("episode_index", e), ("index", sum(STEPS[:e]) + t), ("task_index", TASK_OF[e])):
                r[k].append(v)
    return pa.table({WRIST: pa.array(r[WRIST], pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                     "observation.state": pa.array(r["observation.state"], pa.list_(pa.float32(), 8)),
                     "action": pa.array(r["action"], pa.list_(pa.float32(), 7)),
                     "timestamp": pa.array(r["timestamp"], pa.float32()),
                     **{k: pa.array(r[k], pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")}})


def info(version, data_path, video_path):
    feat = {VIDEO: {"dtype": "video", "shape": [S, S, 3], "names": ["height", "width", "channel"]},
            WRIST: {"dtype": "image", "shape": [S, S, 3], "names": ["height", "width", "channel"]},
            "observation.state": {"dtype": "float32", "shape": [8], "names": None},
            "action": {"dtype": "float32", "shape": [7], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            **{k: {"dtype": "int64", "shape": [1], "names": None} for k in ("frame_index", "episode_index", "index", "task_index")}}
    return {"codebase_version": version, "robot_type": None, "total_episodes": len(STEPS), "total_frames": sum(STEPS),
            "total_tasks": len(TASKS), "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(STEPS)}"},
            "data_path": data_path, "video_path": video_path, "features": feat}


def write_v2(root, version):
    """v2.0 and v2.1 differ only in stats files, which are not read."""
    os.makedirs(f"{root}/meta")
    for e, T in enumerate(STEPS):
        os.makedirs(f"{root}/data/chunk-000", exist_ok=True)
        pq.write_table(rows([e]), f"{root}/data/chunk-000/episode_{e:06d}.parquet")
        write_mp4(f"{root}/videos/chunk-000/{VIDEO}/episode_{e:06d}.mp4", [frame(e, t) for t in range(T)], "libx264")
    with open(f"{root}/meta/info.json", "w") as f:
        json.dump(info(version, "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                       "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"), f)
    with open(f"{root}/meta/episodes.jsonl", "w") as f:
        f.writelines(json.dumps({"episode_index": e, "tasks": [TASKS[TASK_OF[e]]], "length": T}) + "\n" for e, T in enumerate(STEPS))
    with open(f"{root}/meta/tasks.jsonl", "w") as f:
        f.writelines(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in TASKS.items())


def write_v30(root):
    """Video file 0 holds episodes 0 and 1 back to back, file 1 episodes 2 and 3; one data file holds all."""
    os.makedirs(f"{root}/meta/episodes/chunk-000")
    os.makedirs(f"{root}/data/chunk-000")
    pq.write_table(rows(range(len(STEPS))), f"{root}/data/chunk-000/file-000.parquet")
    files = ((0, 1), (2, 3))
    for i, eps in enumerate(files):
        write_mp4(f"{root}/videos/{VIDEO}/chunk-000/file-{i:03d}.mp4", [frame(e, t) for e in eps for t in range(STEPS[e])], "libsvtav1")
    with open(f"{root}/meta/info.json", "w") as f:
        json.dump(info("v3.0", "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                       "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"), f)
    ep = {k: [] for k in ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                          "dataset_to_index", *(f"videos/{VIDEO}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")))}
    for e, T in enumerate(STEPS):
        i = next(i for i, eps in enumerate(files) if e in eps)
        start = sum(STEPS[d] for d in files[i] if d < e) / FPS  # the episode's start in its video file
        for k, v in (("episode_index", e), ("tasks", [TASKS[TASK_OF[e]]]), ("length", T), ("data/chunk_index", 0),
                     ("data/file_index", 0), ("dataset_from_index", sum(STEPS[:e])), ("dataset_to_index", sum(STEPS[:e + 1])),
                     (f"videos/{VIDEO}/chunk_index", 0), (f"videos/{VIDEO}/file_index", i),
                     (f"videos/{VIDEO}/from_timestamp", start), (f"videos/{VIDEO}/to_timestamp", start + T / FPS),
                     ("stats/action/mean", [0.0] * 7)):  # a stats column, as LeRobot writes many: never read
            ep.setdefault(k, []).append(v)
    pq.write_table(pa.table(ep), f"{root}/meta/episodes/chunk-000/file-000.parquet")
    # the text is the pandas index, named "task" (LeRobot >= 0.5; 0.4 wrote __index_level_0__: tests/lerobot_written)
    tasks = pa.table({"task_index": list(TASKS), "task": list(TASKS.values())})
    pq.write_table(tasks.replace_schema_metadata({"pandas": json.dumps({"index_columns": ["task"]})}), f"{root}/meta/tasks.parquet")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot")
    for version in ("v2.0", "v2.1"):
        write_v2(str(root / version), version)
    write_v30(str(root / "v3.0"))
    return root


def run_convert(*args, ok=True):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), *map(str, args)], env=ENV, capture_output=True,
                       text=True, timeout=120)
    if ok:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def episodes(folder):
    return [ep for p in data.find_episode_files(str(folder), role="any") for ep in read_episodes(p)]


def one_line_error(r, says):
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == errors[0] and says in errors[0], r.stderr


def close(x, y):
    """Decoded within the codec's error: the mean, and each quadrant's centre pixel (chroma bleeds at edges)."""
    d = np.abs(x.astype(int) - y.astype(int))
    return d.mean() <= 4 and max(d[r, c].max() for r in (S // 4, 3 * S // 4) for c in (S // 4, 3 * S // 4)) <= 6


@pytest.mark.parametrize("version", ["v2.0", "v2.1", "v3.0"])
def test_converts_exactly(datasets, tmp_path, version):
    r = run_convert("lerobot", "--src", datasets / version, "--out", tmp_path / "out", *MAP, "--shard_size", "3")
    assert f"{version}, 10 fps, 4 episodes, 20 frames, 3 tasks" in r.stdout, r.stdout
    assert "4 episodes kept, 0 skipped" in r.stdout and "1 episodes with an empty instruction" in r.stdout, r.stdout
    assert "episode_000002" in r.stdout  # the one with the empty instruction is named
    assert sorted(os.listdir(tmp_path / "out")) == ["lerobot.json", "lerobot_00000.hdf5", "lerobot_00001.hdf5"]
    with data.h5py.File(tmp_path / "out" / "lerobot_00000.hdf5") as f:
        assert f["data"].attrs["source"] == "lerobot" and f["data"].attrs["fps"] == FPS
    eps = episodes(tmp_path / "out")
    assert len(eps) == len(STEPS)
    for e, ep in enumerate(eps):  # boundaries: episode e holds exactly its own STEPS[e] frames, in order
        T, o = STEPS[e], ep["obs"]
        assert ep["instruction"] == ep["task"] == TASKS[TASK_OF[e]] and ep["task_type"] == task_family(TASKS[TASK_OF[e]])
        np.testing.assert_array_equal(ep["actions"], [action(e, t) for t in range(T)])
        np.testing.assert_array_equal(o["state"], [state(e, t) for t in range(T)])
        np.testing.assert_array_equal(o["eye_in_hand_rgb"], [255 - frame(e, t) for t in range(T)])  # PNG: exact
        assert o["agentview_rgb"].shape == (T, S, S, 3)
        for t in range(T):
            assert close(o["agentview_rgb"][t], frame(e, t)), (e, t)
    assert ep["task_type"] == "put" and eps[1]["task_type"] == "take"
    r = run_convert("check", tmp_path / "out")
    assert "lerobot_00000.hdf5: ok, 3 episodes, 15 steps, 32x32, actions [7], 3 tasks" in r.stdout, r.stdout


def test_video_flip_resize_and_state_split(datasets, tmp_path):
    """No --action: action-free video. --flip: columns mirrors, both rotates 180 degrees; --image_size squashes;
    --state KEY=NAME:D,...: consecutive columns under their own names."""
    base = ["lerobot", "--src", datasets / "v3.0", "--camera", f"{VIDEO}=agentview", "--min_frames", "1"]
    run_convert(*base, "--out", tmp_path / "cols", "--flip", "columns", "--image_size", S,
                "--state", "observation.state=ee_states:6,gripper_states:2")
    run_convert(*base, "--out", tmp_path / "both", "--flip", "both", "--image_size", S // 2)
    cols, both = episodes(tmp_path / "cols"), episodes(tmp_path / "both")
    assert "actions" not in cols[0] and set(cols[0]["obs"]) == {"agentview_rgb", "ee_states", "gripper_states"}
    np.testing.assert_array_equal(cols[3]["obs"]["ee_states"], [state(3, t)[:6] for t in range(STEPS[3])])
    np.testing.assert_array_equal(cols[3]["obs"]["gripper_states"], [state(3, t)[6:] for t in range(STEPS[3])])
    assert set(both[0]["obs"]) == {"agentview_rgb"}
    q = S // 4  # a quadrant's centre; blue marks the top-left quadrant of the source frames
    assert cols[3]["obs"]["agentview_rgb"][2, q, 3 * q, 2] > 200 and cols[3]["obs"]["agentview_rgb"][2, q, q, 2] < 60
    x = both[3]["obs"]["agentview_rgb"]
    assert x.shape == (5, S // 2, S // 2, 3) and x[2, 3 * q // 2, 3 * q // 2, 2] > 200 and x[2, q // 2, q // 2, 2] < 60


def test_broken_episodes_are_skipped(datasets, tmp_path):
    """A truncated video, timestamps off by half a step, a length the episodes table disagrees with, a video span
    that holds one frame too few, a short episode: each skipped with a line naming it, counted, never padded."""
    v21, v30 = tmp_path / "v2.1", tmp_path / "v3.0"
    shutil.copytree(datasets / "v2.1", v21)
    shutil.copytree(datasets / "v3.0", v30)
    video = v21 / "videos" / "chunk-000" / VIDEO / "episode_000001.mp4"
    video.write_bytes(video.read_bytes()[:video.stat().st_size // 2])
    t = pq.read_table(v21 / "data" / "chunk-000" / "episode_000002.parquet")
    ts = t.column("timestamp").to_numpy().copy()
    ts[3:] += 0.05
    pq.write_table(t.set_column(t.column_names.index("timestamp"), "timestamp", pa.array(ts)), v21 / "data" / "chunk-000" / "episode_000002.parquet")
    lines = (v21 / "meta" / "episodes.jsonl").read_text().splitlines()
    lines[3] = lines[3].replace('"length": 5', '"length": 6')
    (v21 / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    r = run_convert("lerobot", "--src", v21, "--out", tmp_path / "out21", *MAP)
    assert "1 episodes kept, 3 skipped" in r.stdout and "1 length" in r.stdout and "1 timestamps" in r.stdout, r.stdout
    assert re.search(r"skipped episode_000001: (unreadable video|frames): ", r.stdout), r.stdout  # where the cut fell
    assert "skipped episode_000002: timestamps" in r.stdout, r.stdout
    assert "skipped episode_000003: length: 5 rows" in r.stdout, r.stdout
    assert [len(e["actions"]) for e in episodes(tmp_path / "out21")] == [5]

    path = v30 / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(path)
    to = t.column(f"videos/{VIDEO}/to_timestamp").to_pylist()
    to[0] -= 1 / FPS  # episode 0's span now ends before its last frame
    pq.write_table(t.set_column(t.column_names.index(f"videos/{VIDEO}/to_timestamp"), f"videos/{VIDEO}/to_timestamp",
                                pa.array(to)), path)
    r = run_convert("lerobot", "--src", v30, "--out", tmp_path / "out30", *MAP, "--min_frames", "5")
    assert "2 episodes kept, 2 skipped, 1 frames, 1 too short" in r.stdout, r.stdout
    assert "skipped episode_000000: frames: 4 decoded in [0.000, 0.400) s" in r.stdout, r.stdout
    assert [len(e["actions"]) for e in episodes(tmp_path / "out30")] == [6, 5]  # episodes 2 and 3
    assert sorted(os.listdir(tmp_path / "out30")) == ["lerobot.json", "lerobot_00000.hdf5"]  # nothing half-written


@pytest.mark.parametrize("change, args, says", [
    ("version", MAP, "meta/info.json: codebase_version: expected v2.0 or v2.1 or v3.0, got 'v1.6'"),
    (None, ["--camera", "observation.images.top=agentview"], "features['observation.images.top']: expected a video or "
     f"image feature for --camera (the dataset has: {VIDEO} (video [32, 32, 3]), {WRIST} (image [32, 32, 3]), "
     "observation.state (float32 [8]), action (float32 [7])), got nothing"),
    (None, ["--camera", f"{VIDEO}=agentview", "--action", "actions"], "features['actions']: expected a float (D,) feature"),
    (None, ["--action", "action"], "--camera: expected KEY=agentview once"),
    ("no tasks", MAP, "meta/tasks.parquet: file: expected the v3.0 tasks table, got no such file"),
], ids=["unknown version", "missing camera key", "missing action key", "no agentview", "no tasks table"])
def test_bad_input_gives_one_line_and_writes_nothing(datasets, tmp_path, change, args, says):
    src = tmp_path / "src"
    shutil.copytree(datasets / "v3.0", src)
    if change == "version":
        i = json.loads((src / "meta" / "info.json").read_text())
        (src / "meta" / "info.json").write_text(json.dumps({**i, "codebase_version": "v1.6"}))
    elif change == "no tasks":
        os.remove(src / "meta" / "tasks.parquet")
    one_line_error(run_convert("lerobot", "--src", src, "--out", tmp_path / "new" / "out", *args, ok=False), says)
    assert not (tmp_path / "new").exists()


def test_rerun_skips_finished_shards(datasets, tmp_path):
    args = ["lerobot", "--src", datasets / "v3.0", "--out", tmp_path / "out", *MAP, "--shard_size", "1"]
    run_convert(*args, "--workers", "2")
    r = run_convert(*args)
    assert "0 of 4 shards done now (4 already there)" in r.stdout, r.stdout
    os.remove(tmp_path / "out" / "lerobot_00002.hdf5")
    r = run_convert(*args)
    assert "1 of 4 shards done now (3 already there)" in r.stdout, r.stdout
    one_line_error(run_convert(*args, "--flip", "rows", ok=False), "lerobot.json: contents: expected the sources and options of this run")


def test_lerobot_written_datasets(tmp_path):
    """Datasets written by LeRobot's own writer (v0.3.3: v2.1, v0.4.4: v3.0, AV1 videos; tests/lerobot_written/write.py
    has their contents: frame(e, t) with a blue left half, actions, states, tasks)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("lerobot_written", os.path.join(ROOT, "tests", "lerobot_written", "write.py"))
    written = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(written)  # its constants and frame(); it imports lerobot only under __main__
    for version in ("v2.1", "v3.0"):
        r = run_convert("lerobot", "--src", os.path.join(ROOT, "tests", "lerobot_written", version), "--out",
                        tmp_path / version, *MAP)
        assert f"{version}, 10 fps, 3 episodes, 15 frames, 2 tasks" in r.stdout and "3 episodes kept, 0 skipped" in r.stdout
        for e, ep in enumerate(episodes(tmp_path / version)):
            T, o = written.STEPS[e], ep["obs"]
            assert ep["instruction"] == written.TASKS[e] and len(o["agentview_rgb"]) == T
            np.testing.assert_array_equal(ep["actions"], [[t, -t, e, 0, 0, 0, 1] for t in range(T)])
            np.testing.assert_array_equal(o["state"], [[10 * t, e, 0, 0, 0, 0, 0, 1] for t in range(T)])
            np.testing.assert_array_equal(o["eye_in_hand_rgb"], [255 - written.frame(e, t) for t in range(T)])
            for t in range(T):  # columns 4 and S - 5, away from the blue edge at S / 2: within a few levels
                d = np.abs(o["agentview_rgb"][t].astype(int) - written.frame(e, t))
                assert d.mean() <= 4 and d[:, [4, S - 5]].max() <= 8, (version, e, t, d.mean(), d[:, [4, S - 5]].max())


def test_pretrain_and_finetune_on_converted(datasets, tmp_path):
    """pretrain.py reads the action-free conversion as video, finetune.py the labeled one as demos."""
    run_convert("lerobot", "--src", datasets / "v3.0", "--out", tmp_path / "video", "--camera", f"{VIDEO}=agentview",
                "--image_size", S, "--min_frames", "3")
    run_convert("lerobot", "--src", datasets / "v2.1", "--out", tmp_path / "demos", *MAP)
    for cmd in (["pretrain.py", "--data", tmp_path / "video", "--chunk", "2", "--wm_size", "1m"],
                ["finetune.py", "--data", tmp_path / "demos", "--cameras", "agentview,wrist", "--state_keys", "state"]):
        r = subprocess.run([sys.executable, os.path.join(ROOT, cmd[0]), *map(str, cmd[1:]), "--batch_size", "4",
                            "--max_steps", "2", "--warmup", "1", "--device", "cpu", "--out_dir", tmp_path / cmd[0][:-3]],
                           env=ENV, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert (tmp_path / cmd[0][:-3] / "ckpt.pt").exists()
