"""Tests of data.py and episodes.py: episode files, validation errors, windows, normalisation,
embeddings, the toy converter. Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_data.py   (about a minute on CPU)

Synthetic episodes plant an index pattern: frame t is filled with the value t and action t is
(t, -t, 1), so any misalignment between frames, actions and masks shows up as a wrong number.
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import convert
import data
import episodes
from conftest import read_episodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = 16  # image size of the synthetic episodes
TEXTS = ("pick up the red block", "put the cube in the bowl")


pytestmark = pytest.mark.usefixtures("lang_cache")  # a private embedding cache (conftest.py)


def episode(T, instruction=TEXTS[0], actions=True, wrist=False, task_type="take"):
    frames = np.broadcast_to(np.arange(T, dtype=np.uint8)[:, None, None, None], (T, S, S, 3)).copy()
    ep = {"obs": {"agentview_rgb": frames}, "instruction": instruction, "task": f"task_{task_type}",
          "task_type": task_type}
    if actions:
        t = np.arange(T, dtype=np.float32)
        ep["actions"] = np.stack([t, -t, np.ones(T, np.float32)], 1)  # (T, 3); the last dim is constant
        ep["obs"]["state"] = np.stack([t, 2 * t], 1)  # (T, 2)
    if wrist:
        ep["obs"]["eye_in_hand_rgb"] = 255 - frames
    return ep


def write(path, episodes):
    convert.write_episodes(str(path), episodes, "toy", 10)
    return str(path)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "convert.py"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


# ----------------------------------------------------------------------------------------------
# writing and reading

def test_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    eps = [episode(7, wrist=True), episode(5, TEXTS[1], actions=False)]
    eps[0]["obs"]["agentview_rgb"] = rng.integers(0, 256, (7, S, S, 3), dtype=np.uint8)
    eps[0]["actions"] = rng.standard_normal((7, 3)).astype(np.float32)
    eps[0]["seed"] = 1_000_123
    path = write(tmp_path / "a.hdf5", eps)
    back = read_episodes(path)
    assert len(back) == 2 and "actions" not in back[1] and back[0]["seed"] == 1_000_123 and "seed" not in back[1]
    for a, b in zip(eps, back):
        assert a.keys() == b.keys() and a["obs"].keys() == b["obs"].keys()
        for k in a["obs"]:
            assert b["obs"][k].dtype == a["obs"][k].dtype and np.array_equal(b["obs"][k], a["obs"][k])
        if "actions" in a:
            assert b["actions"].dtype == np.float32 and np.array_equal(b["actions"], a["actions"])
        assert [b[k] for k in ("instruction", "task", "task_type")] == [a[k] for k in ("instruction", "task", "task_type")]
    with h5py.File(path) as f:
        attrs = dict(f["data"].attrs)
        assert attrs["source"] == "toy" and attrs["fps"] == 10 and attrs["image_size"] == S
        assert attrs["format_version"] == episodes.FORMAT_VERSION and f["data/demo_1"].attrs["num_samples"] == 5


def test_fingerprint_reads_contents_not_bytes(tmp_path):
    os.makedirs(tmp_path / "a")
    a = write(tmp_path / "a" / "x.hdf5", [episode(6), episode(4, TEXTS[1], actions=False)])
    print_a = episodes.fingerprint(a)
    assert re.fullmatch(r"[0-9a-f]{12}", print_a) and episodes.fingerprint(str(tmp_path / "a")) == print_a

    def copy(dst, data=lambda name, x: x, attr=lambda key, v: v):
        """The same groups, datasets and attributes written again, uncompressed (other bytes on disk), with
        data(name, array) and attr(key, value) in place of each dataset's and attribute's value."""
        os.makedirs(os.path.dirname(dst))
        with h5py.File(a) as f, h5py.File(dst, "w") as g:
            g.attrs.update(f.attrs)

            def one(name, obj):
                if isinstance(obj, h5py.Dataset):
                    g.create_dataset(name, data=data(name, obj[()]))
                else:
                    g.require_group(name)
                g[name].attrs.update({k: attr(k, v) for k, v in obj.attrs.items()})
            f.visititems(one)
        return dst
    b = copy(str(tmp_path / "b" / "x.hdf5"))
    assert open(a, "rb").read() != open(b, "rb").read() and episodes.fingerprint(b) == print_a

    def pixel(name, x):  # one pixel of one frame of the second episode one step brighter
        if name == "data/demo_1/obs/agentview_rgb":
            x = x.copy()
            x[2, 3, 4, 0] += 1
        return x
    assert episodes.fingerprint(copy(str(tmp_path / "c" / "x.hdf5"), data=pixel)) != print_a
    instruction = lambda key, v: "put the cube in the box" if key == "instruction" and v == TEXTS[1] else v
    assert episodes.fingerprint(copy(str(tmp_path / "d" / "x.hdf5"), attr=instruction)) != print_a
    os.rename(b, tmp_path / "b" / "y.hdf5")  # the file's name is part of what a stage reads
    assert episodes.fingerprint(str(tmp_path / "b")) != print_a


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "a.hdf5"

    def crashing():
        yield episode(5)
        raise RuntimeError("converter crashed mid-write")

    with pytest.raises(RuntimeError):
        convert.write_episodes(str(path), crashing(), "toy", 10)
    assert os.listdir(tmp_path) == []
    bad = episode(5)
    bad["obs"]["agentview_rgb"] = bad["obs"]["agentview_rgb"].astype(np.float32)
    with pytest.raises(episodes.DataError, match="demo_1/obs/agentview_rgb: expected uint8"):
        convert.write_episodes(str(path), [episode(5), bad], "toy", 10)
    with pytest.raises(episodes.DataError, match="data: expected at least one episode"):
        convert.write_episodes(str(path), [], "toy", 10)
    assert os.listdir(tmp_path) == []
    # a failed rewrite keeps the old complete file
    write(path, [episode(4)])
    with pytest.raises(RuntimeError):
        convert.write_episodes(str(path), crashing(), "toy", 10)
    assert os.listdir(tmp_path) == ["a.hdf5"] and len(read_episodes(str(path))) == 1


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _replace(f, key, value):
    del f[key]
    f[key] = value


BAD_FILES = {  # name -> (how to spoil a good file, the key the message must name, text it must contain)
    "missing file": (lambda p: os.remove(p) or p, "file", "no such file"),
    "not hdf5": (lambda p: open(p, "w").write("hello") and p, "file", "HDF5 signature"),
    "truncated": (lambda p: os.truncate(p, os.path.getsize(p) // 2) or p, "file", "complete HDF5 file"),
    "no agentview": (lambda p: _edit(p, lambda f: f["data/demo_1/obs"].pop("agentview_rgb")),
                     "data/demo_1/obs/agentview_rgb", "got nothing"),
    "wrong dtype": (lambda p: _edit(p, lambda f: _replace(f, "data/demo_0/obs/agentview_rgb", np.zeros((6, S, S, 3), np.float32))),
                    "data/demo_0/obs/agentview_rgb", "got float32 (6, 16, 16, 3)"),
    "wrong size": (lambda p: _edit(p, lambda f: _replace(f, "data/demo_0/obs/agentview_rgb", np.zeros((6, S, S + 1, 3), np.uint8))),
                   "data/demo_0/obs/agentview_rgb", "expected uint8 (6, 16, 16, 3)"),
    "zero episodes": (lambda p: _edit(p, lambda f: [f["data"].pop(k) for k in list(f["data"])]), "data", "got 0"),
    "nan action": (lambda p: _edit(p, lambda f: f["data/demo_1/actions"].__setitem__((2, 0), np.nan)),
                   "data/demo_1/actions", "finite values, got 1 NaN/inf"),
    "short actions": (lambda p: _edit(p, lambda f: _replace(f, "data/demo_1/actions", np.zeros((7, 3), np.float32))),
                      "data/demo_1/actions", "expected float32 (8, D)"),
    "num_samples off": (lambda p: _edit(p, lambda f: f["data/demo_0"].attrs.__setitem__("num_samples", 7)),
                        "data/demo_0/obs/agentview_rgb", "got uint8 (6, 16, 16, 3)"),
    "no data group": (lambda p: _edit(p, lambda f: f.pop("data")), "data", "got nothing"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_one_line(tmp_path, case):
    spoil, key, text = BAD_FILES[case]
    path = spoil(write(tmp_path / "bad.hdf5", [episode(6), episode(8)]))
    with pytest.raises(episodes.DataError) as e:
        read_episodes(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: expected ") and text in msg and "\n" not in msg, msg
    with pytest.raises(episodes.DataError, match=f"^{re.escape(msg)}$"):
        data.DemoWindows([path], chunk=2)  # the datasets validate on open the same way


def test_short_episode_for_pretrain_window(tmp_path):
    path = write(tmp_path / "a.hdf5", [episode(9), episode(6)])
    assert len(data.PretrainWindows([path], chunk=5)) == 4 + 1  # chunk 5 needs 6 frames: demo_1 fits
    with pytest.raises(episodes.DataError, match="^" + re.escape(f"{path}: data/demo_1: expected at least 7 frames for "
                                                           "chunk=3 frame_skip=2, got 6 ")):
        data.PretrainWindows([path], chunk=3, frame_skip=2)


def test_cli_prints_one_line_without_traceback(tmp_path):
    good = write(tmp_path / "good.hdf5", [episode(6), episode(4)])
    out = run_cli("check", good)
    assert out.returncode == 0 and "good.hdf5: ok, 2 episodes, 10 steps" in out.stdout, out.stderr
    trunc = write(tmp_path / "trunc.hdf5", [episode(6)])
    os.truncate(trunc, os.path.getsize(trunc) // 2)
    for path in (str(tmp_path / "missing.hdf5"), trunc):
        out = run_cli("check", path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and "Traceback" not in out.stderr and len(lines) == 1, out.stderr
        assert lines[0].startswith(f"error: {path}: file: expected ")


def test_find_episode_files(tmp_path):
    a, b = write(tmp_path / "v_000.hdf5", [episode(3)]), write(tmp_path / "v_001.hdf5", [episode(3)])
    (tmp_path / "notes.txt").write_text("not an episode file")
    assert data.find_episode_files(str(tmp_path)) == [a, b]
    assert data.find_episode_files(str(tmp_path / "v_*.hdf5")) == [a, b]
    assert data.find_episode_files(f"{b},{a}") == [b, a]
    with pytest.raises(episodes.DataError, match="nothing there"):
        data.find_episode_files(str(tmp_path / "w_*.hdf5"))


# ----------------------------------------------------------------------------------------------
# windows

@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("skip", [1, 2])
def test_pretrain_windows_line_up(tmp_path, skip, in_memory):
    paths = [write(tmp_path / "a.hdf5", [episode(9), episode(12, TEXTS[1], task_type="put")]),
             write(tmp_path / "b.hdf5", [episode(7, actions=False)])]
    chunk = 3
    ds = data.PretrainWindows(paths, chunk=chunk, frame_skip=skip, image_size=S, in_memory=in_memory)
    span = chunk * skip + 1
    assert ds.in_memory == in_memory and len(ds) == sum(T - span + 1 for T in (9, 12, 7))
    starts = [(T, t) for T in (9, 12, 7) for t in range(T - span + 1)]
    for i, (T, t) in enumerate(starts):
        item = ds[i]
        assert item["frames"].shape == (chunk + 1, 3, S, S) and item["frames"].dtype == torch.uint8
        assert item["frames"][:, :, 0, 0].tolist() == [[t + k * skip] * 3 for k in range(chunk + 1)]
    assert ds[len(ds) - 1]["frames"][-1, 0, 0, 0] == 6  # the last window ends exactly on the last frame
    assert ds[0]["task_type"] == "take" and ds[len(ds) - 1]["task_type"] == "take"
    assert torch.equal(ds[9 - span + 1]["lang"], torch.from_numpy(ds.lang[TEXTS[1]]))
    with pytest.raises(episodes.DataError, match=re.escape("data.attrs['image_size']: expected 32, got 16")):
        data.PretrainWindows(paths, chunk=chunk, image_size=32)


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("skip", [1, 2])
def test_demo_windows_line_up_and_mask(tmp_path, skip, in_memory):
    paths = [write(tmp_path / "a.hdf5", [episode(6, wrist=True), episode(9, TEXTS[1], wrist=True)])]
    chunk = 4
    ds = data.DemoWindows(paths, chunk=chunk, cameras=("agentview", "wrist"), state_keys=("state",),
                          frame_skip=skip, in_memory=in_memory)
    assert len(ds) == 6 + 9 and ds.stats == {"min": [0.0, -8.0, 1.0], "max": [8.0, 0.0, 1.0]}
    assert ds.action_dim == 3 and ds.state_dim == 2
    i = 0
    for e, T in enumerate((6, 9)):
        for t in range(T):
            item = ds[i]
            i += 1
            assert (item["episode"], item["t"]) == (e, t)
            assert item["agentview"].shape == (3, S, S) and int(item["agentview"][0, 0, 0]) == t
            assert int(item["wrist"][0, 0, 0]) == 255 - t and item["state"].tolist() == [t, 2 * t]
            steps = [t + k * skip for k in range(chunk)]
            want_mask = [s < T for s in steps]
            last = max(s for s in steps if s < T)
            want = [[s, -s, 1.0] if s < T else [last, -last, 1.0] for s in steps]  # padding repeats the last kept action
            a = data.unnormalize_actions(item["actions"], ds.stats)
            assert item["mask"].dtype == torch.bool and item["mask"].tolist() == want_mask
            assert item["actions"].dtype == torch.float32 and torch.allclose(a, torch.tensor(want), atol=1e-5)
            assert item["actions"].abs().max() <= 1 and (item["actions"][:, 2] == 0).all()  # constant dim -> 0
    assert not ds[5]["mask"][1:].any() and ds[len(ds) - 1]["mask"].tolist() == [True, False, False, False]


def test_demo_windows_errors_and_given_stats(tmp_path):
    demos = write(tmp_path / "demos.hdf5", [episode(5)])
    video = write(tmp_path / "video.hdf5", [episode(5, actions=False)])
    with pytest.raises(episodes.DataError, match="^" + re.escape(f"{video}: data/demo_0/actions: expected float32")):
        data.DemoWindows([demos, video], chunk=2)
    with pytest.raises(episodes.DataError, match="data/demo_0/obs/eye_in_hand_rgb: expected the wrist camera"):
        data.DemoWindows([demos], chunk=2, cameras=("agentview", "wrist"))
    with pytest.raises(episodes.DataError, match="data/demo_0/obs/ee_states: expected float32"):
        data.DemoWindows([demos], chunk=2, state_keys=("ee_states",))
    stats = {"min": [0.0, -10.0, 0.0], "max": [10.0, 0.0, 2.0]}
    ds = data.DemoWindows([demos], chunk=2, stats=stats)
    assert ds.stats == stats and ds[0]["actions"][1].tolist() == pytest.approx([-0.8, 0.8, 0.0])
    assert data.DemoWindows([demos], chunk=2).stats == {"min": [0.0, -4.0, 1.0], "max": [4.0, 0.0, 1.0]}  # over all actions


def test_lazy_reading_in_dataloader_workers(tmp_path):
    """Workers forked after the parent opened the file reopen it (handles keyed by pid): the same items."""
    paths = [write(tmp_path / "a.hdf5", [episode(10), episode(8, TEXTS[1])])]

    class Probe(data.PretrainWindows):  # also reports whether the worker read through its own handle
        def __getitem__(self, i):
            return super().__getitem__(i) | {"own_handle": (os.getpid(), paths[0]) in data._H5}

    lazy, ram = Probe(paths, chunk=2, in_memory=False), data.PretrainWindows(paths, chunk=2, in_memory=True)
    assert lazy[0]["own_handle"]  # opens the file in this process before the fork
    batches = list(torch.utils.data.DataLoader(lazy, batch_size=4, num_workers=2))
    assert all(b["own_handle"].all() for b in batches)
    got = torch.cat([b["frames"] for b in batches])
    assert torch.equal(got, torch.stack([ram[i]["frames"] for i in range(len(ram))]))


def test_step_batches_resume_and_ranks():
    full = data.StepBatches(10, 4, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(6)]
    resumed = iter(data.StepBatches(10, 4, seed=3, start_step=4))
    assert [next(resumed) for _ in range(2)] == first[4:]
    assert sorted(sum(first[:2], []) + first[2][:2]) == list(range(10))  # first epoch: each window once
    ranks = [data.StepBatches(10, 2, seed=3, rank=r, world=2).batch(1) for r in (0, 1)]
    assert ranks[0] + ranks[1] == first[1] and data.StepBatches(10, 4, seed=4).batch(0) != first[0]


def test_held_out_spans_tasks_and_is_fixed():
    ep = np.repeat(np.arange(500), 7)  # 500 episodes of 7 windows; the toy world's episode k has task k % 10
    mask = data.held_out(ep)
    held = np.unique(ep[mask])
    assert len(held) == 50 and mask.sum() == 350  # whole episodes, a tenth of them
    assert len(np.unique(held % 10)) >= 8  # many tasks; every 10th episode would be one task
    assert np.array_equal(mask, data.held_out(ep))  # fixed: the same episodes in every run
    assert data.held_out(np.zeros(5, int)).all() and data.held_out(np.repeat([3, 8], 2)).sum() == 2  # tiny sets: one


# Real instructions: BridgeData v2 lang.txt lines (as listed in ManifoldRG/MultiNet definitions/openx.py and
# the BridgeData collection configs) and LIBERO's task languages (libero.libero.benchmark, all five suites).
FAMILIES = {
    "put": ["put the spoon in the pot", "put eggplant into pot or pan", "place the croissant behind the yellow knife",
            "put eggplant on plate and spoon in pot or pan on stove", "take the egg and put it on the purple towel",
            "pick up the banana and put another side of the table", "pick up bowl and put in small 4-flap box",
            "Put carrot on plate.", "pick up the alphabet soup and place it in the basket",
            "pick up the yellow and white mug and place it to the right of the caddy", "put the bowl on the plate",
            "put both the alphabet soup and the tomato sauce in the basket", "pick up the butter and put it in the tray",
            "stack the left bowl on the right bowl and place them in the tray",
            "put the black bowl in the bottom drawer of the cabinet and close it"],
    "move": ["move the red block to the left", "move the red pot to the back of the table",
             "move the leg piece and put it in the kadai", "slide the towel to the back left corner of the table",
             "push the plate to the front of the stove"],
    "remove": ["remove the lid from the pot", "remove the spatula from the pan"],
    "take": ["take the carrot out of the bowl", "take lid off pot or pan", "take broccoli out of pan cardboardfence",
             "pick up pot from sink distractors", "pick up green mug", "lift bowl", "pick up the blue block"],
    "other": ["open the top drawer of the cabinet", "turn on the stove", "close the microwave",
              "turn on the stove and put the moka pot on it", "open the top drawer and put the bowl inside",
              "flip pot upright which is in sink", "wipe pot with sponge", "fold cloth in half",
              "video frames or not showing", "", "  "],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_task_family_of_real_instructions(family):
    for instruction in FAMILIES[family]:
        assert episodes.task_family(instruction) == family, instruction


def test_task_family_agrees_with_the_toy_world():
    import toyworld
    for task in toyworld.TASKS:  # "pick up the blue block" is the toy's take
        assert episodes.task_family(toyworld.instruction(task)) == toyworld.task_family(task), task


# ----------------------------------------------------------------------------------------------
# normalisation and embeddings

def test_normalize_round_trip_numpy_and_torch():
    stats = {"min": [-2.0, 0.0, 5.0], "max": [2.0, 10.0, 5.0]}
    a = np.array([[-2.0, 0.0, 5.0], [2.0, 10.0, 5.0], [1.0, 2.5, 5.0]], np.float32)
    n = data.normalize_actions(a, stats)
    assert isinstance(n, np.ndarray) and np.allclose(n, [[-1, -1, 0], [1, 1, 0], [0.5, -0.5, 0]])
    assert np.allclose(data.unnormalize_actions(n, stats), a)
    t = torch.from_numpy(a).double()
    nt = data.normalize_actions(t, stats)
    assert torch.is_tensor(nt) and nt.dtype == torch.float64 and torch.allclose(nt, torch.from_numpy(n).double())
    assert torch.allclose(data.unnormalize_actions(nt, stats), t)


def test_embeddings_offline_and_cached(tmp_path, monkeypatch):
    cache = tmp_path / "fresh_cache"
    code = ("import sys, numpy as np, data; np.save(sys.argv[1], data.embed_instructions(['pick up the red block', "
            "'put the cube in the bowl', 'pick up the red block']))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "e.npy")], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "LAWM_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
                         timeout=300)
    assert out.returncode == 0, out.stderr
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (3, 384) and e.dtype == np.float32 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.array_equal(e[0], e[2]) and not np.allclose(e[0], e[1]) and abs(e[0] @ e[1]) < 0.99
    assert len(os.listdir(cache / "lang")) == 2  # one file per distinct text, no temp files left
    # once cached, the model is never loaded again: same numbers without it
    monkeypatch.setenv("LAWM_CACHE", str(cache))
    monkeypatch.setattr(data, "_language_model", lambda: pytest.fail("loaded the language model"))
    assert np.array_equal(data.embed_instructions(["put the cube in the bowl", "pick up the red block"]), e[[1, 0]])


def test_datasets_expose_lang(tmp_path):
    path = write(tmp_path / "a.hdf5", [episode(4), episode(4, TEXTS[1]), episode(4)])
    ds = data.DemoWindows([path], chunk=2)
    assert sorted(ds.lang) == sorted(TEXTS)
    assert all(v.shape == (384,) and v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-5 for v in ds.lang.values())
    assert np.array_equal(ds.lang[TEXTS[0]], data.embed_instructions([TEXTS[0]])[0])
    assert torch.equal(ds[4]["lang"], torch.from_numpy(ds.lang[TEXTS[1]])) and not torch.equal(ds[0]["lang"], ds[4]["lang"])


# ----------------------------------------------------------------------------------------------
# the toy converter

def test_toy_subprocess_writes_three_valid_files(tmp_path, monkeypatch):
    import toyworld
    out = run_cli("toy", "--out", str(tmp_path / "data" / "toy"), "--source_episodes", "4", "--target_demos", "1",
                  "--source_demos", "3", "--image_size", "32", "--seed", "1", "--min_steps", "20")
    assert out.returncode == 0, out.stderr
    monkeypatch.chdir(tmp_path)  # "toy" names data/toy/... under the working folder
    assert data.find_episode_files("toy") == ["data/toy/source_video.hdf5"]
    assert data.find_episode_files("toy", role="demos") == ["data/toy/target_demos.hdf5"]
    tmp_path = tmp_path / "data" / "toy"
    assert sorted(os.listdir(tmp_path)) == ["source_demos.hdf5", "source_video.hdf5", "target_demos.hdf5"]
    files = {name: read_episodes(str(tmp_path / f"{name}.hdf5")) for name in ("source_video", "target_demos", "source_demos")}
    assert [len(v) for v in files.values()] == [4, len(toyworld.TASKS), 3]
    assert sorted(e["task"] for e in files["target_demos"]) == sorted(toyworld.TASKS)
    for name, eps in files.items():
        labeled, domain = name != "source_video", name.split("_")[0]
        for e in eps:
            assert ("actions" in e) == labeled and ("state" in e["obs"]) == labeled
            assert e["obs"]["agentview_rgb"].shape[1:] == (32, 32, 3) and e["seed"] >= 1_000_000  # never an eval seed
            assert e["instruction"] == toyworld.instruction(e["task"]) and e["task_type"] == toyworld.task_family(e["task"])
        e = eps[0]  # the recorded seed and domain reproduce the episode
        r = toyworld.rollout_expert(e["task"], e["seed"], domain=domain, image_size=32, min_steps=20)
        assert len(e["obs"]["agentview_rgb"]) >= 20  # --min_steps default pads short episodes
        assert np.array_equal(r["frames"], e["obs"]["agentview_rgb"])
        if labeled:
            assert r["success"] and np.array_equal(r["actions"], e["actions"])
    seeds = [{e["seed"] for e in eps} for eps in files.values()]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2])
