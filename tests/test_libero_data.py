"""Tests of `python convert.py libero`: official LIBERO demo files -> lawm episode shards.
Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_libero_data.py   (about a minute on one CPU core)

Every fixture is written in the exact official schema by libero_sim.write_official. The synthetic one
plants row, column, step and demo numbers in its upside-down frames and its actions, so a missing
flip, a mirrored image or a shifted step shows up as a number. The other is recorded from the real
simulator, converted, and trained on for a few finetuning steps.
"""
from conftest import require_libero
require_libero()

import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import ENV, ROOT, read_episodes  # noqa: E402

import convert  # noqa: E402
import data  # noqa: E402
from episodes import DataError  # noqa: E402
import libero_sim  # noqa: E402

STEPS = (5, 3)  # steps of the two synthetic demos


pytestmark = pytest.mark.usefixtures("lang_cache")  # a private embedding cache (conftest.py)


def run(script, *args, ok=True, timeout=300):
    r = subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=timeout)
    if ok:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def episodes(folder):
    return [ep for p in data.find_episode_files(str(folder), role="demos") for ep in read_episodes(p)]


@pytest.fixture(scope="module")
def task():
    return libero_sim.suite_tasks("libero_object")[0]  # pick_up_the_alphabet_soup_and_place_it_in_the_basket


def synthetic_demo(d, T):
    """Demo d of T steps: agentview pixel (row r, col c) at step t = (2r, c, 40t + 100d), the wrist its
    negative; action t = (t, -t, d, 0.1, 0.2, 0.3, +-1) / 10 and proprio likewise numbered, in float64."""
    t = np.arange(T)[:, None, None]  # (T, 1, 1)
    r, c = np.arange(128)[None, :, None], np.arange(128)[None, None, :]  # (1, 128, 1), (1, 1, 128)
    img = np.stack(np.broadcast_arrays(2 * r, c, 40 * t + 100 * d), -1).astype(np.uint8)  # (T, 128, 128, 3)
    tt = np.arange(T, dtype=np.float64)[:, None]  # (T, 1)
    return {"actions": np.concatenate([tt, -tt, d + 0 * tt, 0 * tt + [[0.1, 0.2, 0.3]], (-1) ** tt], 1) / 10,
            "states": np.zeros((T, 10)), "model_file": "<mujoco model='synthetic'/>",
            "obs": {"agentview_rgb": img, "eye_in_hand_rgb": 255 - img, "ee_states": tt / 3 + np.arange(6) + d,
                    "gripper_states": tt / 7 + [0, 1], "joint_states": tt / 11 + np.arange(7) - d}}


@pytest.fixture(scope="module")
def official(task, tmp_path_factory):
    """An official file <task name>_demo.hdf5 with two synthetic demos; returns (path, demos)."""
    path = str(tmp_path_factory.mktemp("official") / f"{task['name']}_demo.hdf5")
    demos = [synthetic_demo(d, T) for d, T in enumerate(STEPS)]
    libero_sim.write_official(path, demos, task["bddl"])
    return path, demos


def test_language_rule_matches_libero():
    """libero_language(name) is what LIBERO's benchmark gives as task.language, for every task of every suite
    (LIBERO-90/10 names drop their upper-case scene prefix)."""
    tasks = [t for s in ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
             for t in libero_sim.suite_tasks(s)]
    assert len(tasks) == 130 and any(t["name"].startswith("KITCHEN_SCENE10_") for t in tasks)
    for t in tasks:
        assert convert.libero_language(t["name"]) == t["language"], t["name"]
    assert convert.libero_language("KITCHEN_SCENE3_turn_on_the_stove") == "turn on the stove"


def test_check_official_summary(official, task):
    s = convert.check_official(official[0])
    assert s["task"] == task["name"] and s["instruction"] == task["language"]
    assert [(d["key"], d["T"], d["cameras"]) for d in s["demos"]] == [
        (f"data/demo_{d}", T, ["agentview_rgb", "eye_in_hand_rgb"]) for d, T in enumerate(STEPS)]
    assert s["bddl_language"] != s["instruction"]  # the BDDL text is not what LIBERO trains with


def test_synthetic_converts_upright(official, task, tmp_path):
    path, demos = official
    r = run("convert.py", "libero", "--src", os.path.dirname(path), "--out", tmp_path / "out")
    assert "1 files checked, 2 demos, 8 steps, 1 tasks" in r.stdout and "2 episodes kept, 0 skipped" in r.stdout, r.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["libero.json", "libero_00000.hdf5"]
    with h5py.File(tmp_path / "out" / "libero_00000.hdf5") as f:
        assert f["data"].attrs["source"] == "libero" and f["data"].attrs["fps"] == 20 and f["data"].attrs["image_size"] == 128
    eps = episodes(tmp_path / "out")
    assert len(eps) == 2
    for d, (ep, src) in enumerate(zip(eps, demos)):
        o = ep["obs"]
        # at the official size the conversion is exactly the row flip; row 0 now holds the last raw row
        np.testing.assert_array_equal(o["agentview_rgb"], src["obs"]["agentview_rgb"][:, ::-1])
        np.testing.assert_array_equal(o["eye_in_hand_rgb"], src["obs"]["eye_in_hand_rgb"][:, ::-1])
        assert o["agentview_rgb"][0, 0, 0, 0] == 2 * 127 and o["agentview_rgb"][0, 0, 5, 1] == 5  # flipped, not mirrored
        np.testing.assert_array_equal(o["agentview_rgb"][:, 0, 0, 2], 40 * np.arange(STEPS[d]) + 100 * d)  # step order
        assert ep["actions"].dtype == np.float32
        np.testing.assert_array_equal(ep["actions"], src["actions"].astype(np.float32))
        assert sorted(k for k in o if not k.endswith("_rgb")) == ["ee_states", "gripper_states", "joint_states"]
        for k in convert.LIBERO_LOWDIM:
            assert o[k].dtype == np.float32
            np.testing.assert_array_equal(o[k], src["obs"][k].astype(np.float32))
        assert ep["instruction"] == task["language"] == "pick up the alphabet soup and place it in the basket"
        assert ep["task"] == task["name"] and ep["task_type"] == "put"
    r = run("convert.py", "check", tmp_path / "out")
    assert "ok, 2 episodes, 8 steps, 128x128, actions [7], 1 tasks" in r.stdout, r.stdout


def test_resize_and_camera_choice(official, tmp_path):
    path, demos = official
    run("convert.py", "libero", "--src", path, "--out", tmp_path / "out", "--image_size", "64", "--cameras", "agentview")
    eps = episodes(tmp_path / "out")
    assert len(eps) == 2
    for d, (ep, src) in enumerate(zip(eps, demos)):
        assert sorted(k for k in ep["obs"] if k.endswith("_rgb")) == ["agentview_rgb"]  # wrist not asked for
        want = np.stack([libero_sim.upright(x, 64) for x in src["obs"]["agentview_rgb"]])  # (T, 64, 64, 3)
        np.testing.assert_array_equal(ep["obs"]["agentview_rgb"], want)  # the function evaluation uses
        # and by hand: output pixel j is centred on input coordinate 2j + 0.5, where the flipped gradients read
        # 254 - 2(2j + 0.5) (rows) and 2j + 0.5 (columns): a bilinear halving, upright, not mirrored or transposed
        x, j = ep["obs"]["agentview_rgb"].astype(float), np.arange(64)  # (T, 64, 64, 3)
        assert np.abs(x[:, :, :, 0] - (253 - 4 * j)[None, :, None]).max() <= 1
        assert np.abs(x[:, :, :, 1] - (2 * j + 0.5)[None, None, :]).max() <= 1
        np.testing.assert_array_equal(x[:, :, :, 2], np.broadcast_to((40 * np.arange(STEPS[d]) + 100 * d)[:, None, None],
                                                                    x.shape[:3]))


def test_resume_skips_finished_shards(official, tmp_path):
    path, _ = official
    out, args = tmp_path / "out", ["convert.py", "libero", "--src", path, "--shard_size", "1", "--workers", "2"]
    run(*args, "--out", out)
    shards = [out / "libero_00000.hdf5", out / "libero_00001.hdf5"]
    first = [x.read_bytes() for x in shards]
    mtimes = [os.stat(x).st_mtime_ns for x in shards]
    r = run(*args, "--out", out)
    assert "0 of 2 shards done now (2 already there), 0 episodes kept" in r.stdout, r.stdout
    assert [os.stat(x).st_mtime_ns for x in shards] == mtimes  # untouched
    os.remove(shards[1])  # as if the first run had died while writing it
    r = run(*args, "--out", out)
    assert "1 of 2 shards done now (1 already there), 1 episodes kept" in r.stdout, r.stdout
    assert [x.read_bytes() for x in shards][0] == first[0] and sorted(os.listdir(out)) == [
        "libero.json", "libero_00000.hdf5", "libero_00001.hdf5"]  # no .tmp left behind
    assert [e["actions"].shape[0] for e in episodes(out)] == list(STEPS)
    # a rerun with other options would mix shards of two conversions: it stops instead
    r = run(*args, "--out", out, "--image_size", "64", ok=False)
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert r.stderr.startswith(f"error: {out / 'libero.json'}: contents: expected the sources and options"), r.stderr


def _no_problem_info(f):
    del f["data"].attrs["problem_info"]


def _bad_json(f):
    f["data"].attrs["problem_info"] = "{'problem_name': single quotes}"


def _replace(key, x):
    def edit(f):
        del f[key]
        f[key] = x
    return edit


def _no_demos(f):
    for k in list(f["data"]):
        del f["data"][k]


BAD = {  # name -> (edit of the good file, or None for a text file, key the error must name)
    "no_problem_info": (_no_problem_info, "data.attrs['problem_info']"),
    "problem_info_not_json": (_bad_json, "data.attrs['problem_info']"),
    "image_without_channels": (_replace("data/demo_0/obs/agentview_rgb", np.zeros((5, 128, 128), np.uint8)),
                               "data/demo_0/obs/agentview_rgb"),
    "image_4_channels": (_replace("data/demo_1/obs/agentview_rgb", np.zeros((3, 128, 128, 4), np.uint8)),
                         "data/demo_1/obs/agentview_rgb"),
    "image_float": (_replace("data/demo_0/obs/agentview_rgb", np.zeros((5, 128, 128, 3), np.float32)),
                    "data/demo_0/obs/agentview_rgb"),
    "wrist_wrong_T": (_replace("data/demo_1/obs/eye_in_hand_rgb", np.zeros((2, 128, 128, 3), np.uint8)),
                      "data/demo_1/obs/eye_in_hand_rgb"),
    "actions_6": (_replace("data/demo_1/actions", np.zeros((3, 6))), "data/demo_1/actions"),
    "proprio_nan": (_replace("data/demo_0/obs/gripper_states", np.full((5, 2), np.nan)), "data/demo_0/obs/gripper_states"),
    "joints_wrong_T": (_replace("data/demo_0/obs/joint_states", np.zeros((4, 7))), "data/demo_0/obs/joint_states"),
    "no_demos": (_no_demos, "data: expected at least one demo_<i>"),
    "not_hdf5": (None, "file: expected an HDF5 file"),
}


def make_bad(official, task, folder, name):
    """folder/<task>_demo.hdf5: the good file with the edit BAD[name]."""
    edit, _ = BAD[name]
    bad = folder / f"{task['name']}_demo.hdf5"
    if edit is None:
        bad.write_text("not an HDF5 file\n")
    else:
        shutil.copy(official[0], bad)
        with h5py.File(bad, "a") as f:
            edit(f)
    return bad


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_official_names_file_and_key(official, task, tmp_path, name):
    bad = make_bad(official, task, tmp_path, name)
    with pytest.raises(DataError) as e:
        convert.check_official(str(bad))
    assert str(e.value).startswith(f"{bad}: {BAD[name][1]}") and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("name", ["no_problem_info", "image_without_channels", "image_4_channels", "no_demos", "not_hdf5"])
def test_malformed_file_fails_in_one_line(official, task, tmp_path, name):
    """A bad file next to a good one: the whole conversion stops before writing anything, with one line
    naming the file and the key."""
    key = BAD[name][1]
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    shutil.copy(official[0], src / "a_good_file_demo.hdf5")  # sorts first: it alone would convert fine
    bad = make_bad(official, task, src, name)
    r = run("convert.py", "libero", "--src", src, "--out", out, ok=False)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(f"error: {bad}: {key}"), r.stderr
    assert not out.exists()  # nothing written, not even the folder


def test_corrupt_pixels_fail_without_a_shard(official, tmp_path):
    """check_official does not read pixels, so a corrupt image chunk is found while converting: it must stop
    the run with one error line and no traceback, and leave no shard of it, no .tmp and no .empty marker,
    even when another worker is writing a shard at the time."""
    bad = tmp_path / "src" / os.path.basename(official[0])
    bad.parent.mkdir()
    shutil.copy(official[0], bad)
    with h5py.File(bad, "r") as f:
        chunk = f["data/demo_1/obs/agentview_rgb"].id.get_chunk_info(1)  # frame 1's gzip stream
    with open(bad, "r+b") as f:
        f.seek(chunk.byte_offset)
        f.write(b"\xff" * chunk.size)
    convert.check_official(str(bad))  # shapes and dtypes are fine
    r = run("convert.py", "libero", "--src", bad, "--out", tmp_path / "out", "--shard_size", "1", "--workers", "2", ok=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].startswith(
        f"error: {bad}: data/demo_1: expected readable data, got a read error"), r.stderr
    # demo_0's shard may or may not have been finished; with none, neither the manifest nor the folder stays
    left = set(os.listdir(tmp_path / "out")) if (tmp_path / "out").exists() else set()
    assert left in (set(), {"libero.json", "libero_00000.hdf5"}), left


@pytest.fixture(scope="module")
def recorded(task, tmp_path_factory):
    """12 steps recorded from the real simulator (agentview + wrist) from LIBERO's first fixed init state,
    written in the official schema exactly as LIBERO's replay would: obs t, then action t."""
    env = libero_sim.make_env(task["bddl"], cameras=("agentview", "wrist"))
    rng = np.random.default_rng(0)
    rec = {k: [] for k in ("agentview_rgb", "eye_in_hand_rgb", *convert.LIBERO_LOWDIM, "actions", "states")}
    try:
        env.reset()
        raw = env.set_init_state(libero_sim.init_states("libero_object", 0)[0])
        for _ in range(libero_sim.SETTLE_STEPS):
            raw, _, _, _ = env.step(libero_sim.IDLE)
        for t in range(12):
            action = np.concatenate([rng.uniform(-0.3, 0.3, 6), [1.0 if t >= 6 else -1.0]])  # (7,)
            rec["agentview_rgb"].append(raw["agentview_image"].copy())  # raw: upside down, as the files keep it
            rec["eye_in_hand_rgb"].append(raw["robot0_eye_in_hand_image"].copy())
            for k, v in libero_sim.proprio(raw).items():
                rec[k].append(v)
            rec["states"].append(env.get_sim_state())
            rec["actions"].append(action)
            raw, _, _, _ = env.step(action)
        model_file = env.env.sim.model.get_xml()
    finally:
        env.close()
    rec = {k: np.stack(v) for k, v in rec.items()}
    demo = {"actions": rec.pop("actions"), "states": rec.pop("states"), "obs": rec, "model_file": model_file}
    path = str(tmp_path_factory.mktemp("recorded") / f"{task['name']}_demo.hdf5")
    libero_sim.write_official(path, [demo], task["bddl"])
    return path, demo


def test_recorded_from_simulator_converts_and_finetunes(recorded, task, tmp_path):
    path, demo = recorded
    assert demo["obs"]["agentview_rgb"].shape == (12, 128, 128, 3) and demo["states"].shape[0] == 12
    assert demo["obs"]["agentview_rgb"].std() > 10 and np.abs(np.diff(demo["obs"]["joint_states"], axis=0)).max() > 1e-3
    assert convert.check_official(path)["demos"][0]["T"] == 12
    out = tmp_path / "libero64"
    run("convert.py", "libero", "--src", path, "--out", out, "--image_size", "64")
    run("convert.py", "check", out)
    (ep,) = episodes(out)
    for k, cam in (("agentview_rgb", "agentview"), ("eye_in_hand_rgb", "wrist")):
        want = np.stack([libero_sim.upright(x, 64) for x in demo["obs"][k]])  # (12, 64, 64, 3)
        np.testing.assert_array_equal(ep["obs"][k], want)  # what libero_sim.policy_obs gives evaluation
    np.testing.assert_array_equal(ep["actions"], demo["actions"].astype(np.float32))
    for k in convert.LIBERO_LOWDIM:
        np.testing.assert_array_equal(ep["obs"][k], demo["obs"][k].astype(np.float32))
    assert ep["instruction"] == task["language"] and ep["task_type"] == "put"

    run_dir = tmp_path / "run"
    r = run("finetune.py", "--data", out, "--cameras", "agentview,wrist", "--state_keys",
            "ee_states,gripper_states,joint_states", "--policy_size", "small", "--max_steps", "3", "--batch_size", "4",
            "--warmup", "1", "--eval_every", "1000", "--log_every", "1", "--device", "cpu", "--out_dir", run_dir)
    assert "12 windows from 1 file(s)" in r.stdout + r.stderr, r.stdout + r.stderr
    rows = [json.loads(line) for line in open(run_dir / "log.jsonl")]
    losses = [row["bc"] for row in rows if "bc" in row] + [row["eval"]["train_batch_loss"] for row in rows
                                                           if "eval" in row]  # finetune's fixed training batch
    assert len(losses) == 5 and np.isfinite(losses).all(), rows  # 3 training steps, evals at steps 0 and 3
    ckpt = torch.load(run_dir / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["obs_spec"] == {"cameras": ["agentview", "wrist"], "image_size": 64,
                                                      "state_keys": ["ee_states", "gripper_states", "joint_states"]}
    assert list(ckpt["lang"]) == [task["language"]]
