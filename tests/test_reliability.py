"""Bad input as a new user gives it: every case stops with exit code 1 and one line on stderr, no
traceback, and leaves nothing behind; run folders are never lost or shared.

    python -m pytest -q tests/test_reliability.py

Most cases fail on their flags, before a model is built, so each costs one interpreter start.
"""
import fcntl
import os
import shutil
import subprocess
import sys
import time

import h5py
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=ROOT)
TINY = ["--wm_size", "1m", "--batch_size", "4", "--chunk", "4", "--log_every", "1", "--warmup", "1", "--device", "cpu"]


def run(cwd, script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=cwd, env=env or ENV,
                          capture_output=True, text=True, timeout=300)


def refused(cwd, script, *args, says="", env=None):
    """The script must stop with one 'error: ...' line naming `says`, and no traceback."""
    r = run(cwd, script, *args, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-2000:])
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory, lang_cache):
    """Tiny toy data, a finished 2-step pretraining run in pt/ and a finetuned checkpoint in ft/."""
    d = tmp_path_factory.mktemp("reliability")
    assert run(d, "convert.py", "toy", "--image_size", 32, "--source_episodes", 12, "--target_demos", 2,
               "--source_demos", 12).returncode == 0
    assert run(d, "pretrain.py", *TINY, "--max_steps", 2, "--out_dir", "pt").returncode == 0
    assert run(d, "finetune.py", "--batch_size", 4, "--max_steps", 0, "--out_dir", "ft").returncode == 0
    return d


FLAGS = [  # (script, flags, what the line must name); each run gets a fresh --out_dir that must stay absent
    ("pretrain.py", ["--batch_size", 0], "--batch_size"),
    ("pretrain.py", ["--max_steps", -5], "--max_steps"),
    ("pretrain.py", ["--eval_every", 0], "--eval_every"),
    ("pretrain.py", ["--chunk", 0], "--chunk"),
    ("pretrain.py", ["--data", "toy,toy", "--mix", "nan,1"], "--mix"),
    ("pretrain.py", ["--device", "gpu0"], "--device"),
    ("pretrain.py", ["--cameras", "agentview,lidar"], "--cameras"),
    ("pretrain.py", ["--wm_image_size", 24], "--wm_image_size"),
    ("pretrain.py", ["--data", "bdv2"], "python convert.py bdv2 --src"),
    ("pretrain.py", ["--data", "data/toy"], "convert.py toy` folder"),
    ("finetune.py", ["--frame_skip", 0], "--frame_skip"),
    ("finetune.py", ["--aug_shift", -3], "--aug_shift"),
    ("finetune.py", ["--cameras", "agentview,wrist"], "eye_in_hand_rgb"),  # the toy demos have no wrist camera
    ("finetune.py", ["--resume"], "--resume"),
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--episodes", 0], "--episodes"),
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--envs", -1], "--envs"),  # used to spin forever
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--max_steps", -1], "--max_steps"),
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--out_dir", "ft/ckpt.pt/x"], "--out_dir"),  # found before any episode
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--first_init", -1], "--first_init: expected 0 on the toy"),  # a seed error
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--first_init", 1000], "--seed"),  # used to shift the toy's seeds silently
    ("cca.py", ["--ckpt", "pt/ckpt.pt", "--batch_size", 0], "--batch_size"),
    ("cca.py", ["--ckpt", "pt/ckpt.pt", "--out_dir", "pt/ckpt.pt/x"], "--out_dir"),
    ("convert.py", ["toy", "--image_size", 24], "--image_size"),
    ("convert.py", ["toy", "--target_demos", -1], "--target_demos"),
    ("compare.py", ["--seeds", 0], "--seeds"),
    ("compare.py", ["--env", "libero_object", "--first_init", 45], "--first_init"),
    ("compare.py", ["--env", "libero_object", "--arms", "scratch,dp_wm"], "--arms"),
    ("pretrain.py", ["--latents", "idm", "--idm_pairs", 11], "--idm_pairs"),
    ("pretrain.py", ["--latents", "idm", "--detach_latents"], "--detach_latents"),
]
if not torch.cuda.is_available():
    FLAGS.append(("pretrain.py", ["--device", "cuda"], "CUDA"))


@pytest.mark.parametrize("script,flags,says", FLAGS, ids=[f"{s[:-3]}{' '.join(map(str, f))}" for s, f, _ in FLAGS])
def test_bad_flags_one_line_nothing_written(work, script, flags, says):
    out = {"convert.py": "--out", "compare.py": "--out"}.get(script, "--out_dir")
    refused(work, script, *flags, *([] if out in flags else [out, "fresh"]), says=says)
    assert not (work / "fresh").exists()


def test_run_folder_refused_overwritten_resumed_and_locked(work):
    # a folder holding a run: refused, and nothing in it changes
    before = sorted(os.listdir(work / "pt"))
    refused(work, "pretrain.py", *TINY, "--max_steps", 2, "--out_dir", "pt", says="--overwrite")
    # --resume with flags that change the model or the data order, or past --max_steps
    line = refused(work, "pretrain.py", *TINY, "--max_steps", 4, "--out_dir", "pt", "--resume", "--chunk", 5,
                   "--seed", 1, says="--chunk 4 -> 5")
    assert "--seed 0 -> 1" in line
    refused(work, "pretrain.py", *TINY, "--max_steps", 1, "--out_dir", "pt", "--resume", says="--max_steps")
    refused(work, "finetune.py", "--max_steps", 1, "--out_dir", "ft", "--resume", "--batch_size", 8,
            says="--batch_size 4 -> 8")
    assert sorted(os.listdir(work / "pt")) == before
    # --overwrite clears the old run's files (and stale temporary files of a killed one) before starting
    shutil.copytree(work / "pt", work / "ow")
    for junk in ("ckpt.pt.999.tmp", "rollout_000001.png.999.tmp.png"):
        (work / "ow" / junk).write_bytes(b"")
    os.makedirs(work / "ow" / "eval_toy")
    assert run(work, "pretrain.py", *TINY, "--max_steps", 1, "--out_dir", "ow", "--overwrite").returncode == 0
    assert sorted(os.listdir(work / "ow")) == ["ckpt.pt", "log.jsonl", "rollout_000000.png", "rollout_000001.png"]
    # a second run on a folder in use fails at once (the first holds the lock from its start)
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "pretrain.py"), *TINY, "--max_steps", "10000",
                              "--eval_every", "10000", "--out_dir", "ow", "--resume"], cwd=work, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fd = os.open(work / "ow", os.O_RDONLY)
        for _ in range(300):  # until the first run holds the folder's lock
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                time.sleep(0.1)
            except BlockingIOError:
                break
        os.close(fd)
        refused(work, "pretrain.py", *TINY, "--max_steps", 1, "--out_dir", "ow", "--overwrite", says="another run")
        assert first.poll() is None and (work / "ow" / "ckpt.pt").exists()
    finally:
        first.kill(); first.wait()


def _corrupt(src, dst, where):
    """A copy of src with 16 bytes overwritten inside an image chunk or an object header."""
    shutil.copy(src, dst)
    with h5py.File(src, "r") as f:
        at = (f["data/demo_0/obs/agentview_rgb"].id.get_chunk_info(0).byte_offset if where == "chunk" else
              h5py.h5o.get_info(f["data/demo_1"].id).addr)
    with open(dst, "r+b") as g:
        g.seek(at + 8)
        g.write(b"\xff" * 16)


@pytest.mark.parametrize("where", ["chunk", "header"])
def test_corrupt_files_one_line_naming_file_and_key(work, where):
    bad = work / f"bad_{where}.hdf5"
    _corrupt(work / "data" / "toy" / "target_demos.hdf5", bad, where)
    key = "data/demo_0/obs/agentview_rgb" if where == "chunk" else "data/demo_1"
    refused(work, "convert.py", "check", bad, says=f"{bad}: {key}")
    # --quick reads headers only: a bad chunk passes it, a bad header does not
    assert (run(work, "convert.py", "check", "--quick", bad).returncode == 0) == (where == "chunk")
    refused(work, "finetune.py", "--data", bad, "--out_dir", "fresh", says=key)
    assert not (work / "fresh").exists()


def test_convert_with_nothing_usable_is_an_error_not_empty_markers(tmp_path):
    # --src one folder too high: every listed clip is "no video"; nothing may be marked done
    (tmp_path / "top" / "videos").mkdir(parents=True)
    (tmp_path / "train.json").write_text('[{"id": "1", "label": "Pushing a box", "template": "Pushing [something]", '
                                         '"placeholders": ["a box"]}]')
    refused(tmp_path, "convert.py", "ssv2", "--src", tmp_path / "top", "--labels", tmp_path / "train.json",
            "--out", "out", says="--src")
    assert not (tmp_path / "out").exists()


def test_check_validates_every_file_of_a_toy_folder(work):
    # the command in convert.py's docstring: a toy folder is checked whole, not refused as --data would refuse it
    for spec in ("data/toy", "toy"):
        r = run(work, "convert.py", "check", spec)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert [line.split(":")[0] for line in r.stdout.splitlines()] == [
            f"data/toy/{name}.hdf5" for name in ("source_demos", "source_video", "target_demos")], r.stdout
    line = refused(work, "convert.py", "check", "data/nothing", says="data/nothing: file: expected an episode file")
    assert "--data" not in line


OUT_DIRS = [  # (script, flags that would run, the flag of its output folder)
    ("convert.py", ["toy", "--image_size", 32], "--out"),
    ("convert.py", ["bdv2", "--src", "nowhere"], "--out"),
    ("pretrain.py", [*TINY, "--max_steps", 1], "--out_dir"),
    ("finetune.py", ["--batch_size", 4, "--max_steps", 1, "--device", "cpu"], "--out_dir"),
    ("evaluate.py", ["--ckpt", "ft/ckpt.pt", "--device", "cpu"], "--out_dir"),
    ("cca.py", ["--ckpt", "pt/ckpt.pt", "--device", "cpu"], "--out_dir"),
]


@pytest.fixture
def read_only(work):
    """work/ro: an empty folder no file can be made in. As root, whom os.access and chmod do not stop,
    that takes chattr +i (immutable); the test is skipped where that is not allowed (a container without
    CAP_LINUX_IMMUTABLE, a file system without the attribute)."""
    ro = work / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        ro.rmdir()
        pytest.skip("running as root, and `chattr +i` (the only way to make a folder root cannot write) fails here")
    try:
        yield ro
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True) if os.geteuid() == 0 else ro.chmod(0o755)
        ro.rmdir()


@pytest.mark.parametrize("script,flags,flag", OUT_DIRS, ids=[s[:-3] for s, _, _ in OUT_DIRS])
def test_unwritable_output_folder_one_message_everywhere(work, read_only, script, flags, flag):
    """Every script checks its output folder before any work, with one message for each fault that names
    the path as the user wrote it (relative stays relative), and writes nothing anywhere."""
    (work / "blocker").write_text("a file where a folder would go\n")
    before = sorted(os.listdir(work))
    try:
        for out, got in (("blocker/x", "a path through the file blocker"), ("blocker", "a file"),
                         ("ro", "a read-only folder"), ("ro/x", "a path under the read-only folder ro")):
            line = refused(work, script, *flags, flag, out)
            assert line == f"error: {flag} {out}: expected a folder this user can write, got {got}", line
            assert sorted(os.listdir(work)) == before and os.listdir(read_only) == []
            assert (work / "blocker").read_text() == "a file where a folder would go\n"
    finally:
        (work / "blocker").unlink()


def test_pickle_checkpoint_refused_in_one_line(work):
    """A file torch.load(weights_only=True) refuses: the refusal is the only line, without torch's warning
    about the pickle protocol of a plain pickle file first."""
    import argparse
    import pickle
    with open(work / "plain.pkl", "wb") as f:
        pickle.dump({"x": argparse.Namespace(a=1)}, f, protocol=4)
    torch.save({"x": argparse.Namespace(a=1)}, work / "object.pt")
    for bad in ("plain.pkl", "object.pt"):
        for script, flags in (("evaluate.py", ["--ckpt", bad]), ("cca.py", ["--ckpt", bad]),
                              ("finetune.py", ["--init", bad])):
            refused(work, script, *flags, "--device", "cpu", "--out_dir", "fresh",
                    says=f"{bad}: not a readable torch checkpoint")
            assert not (work / "fresh").exists()


def test_wandb_without_a_key_one_line_before_any_work(tmp_path):
    """--wandb where wandb is installed but has no API key and is not offline (a fresh machine): every script
    that logs to wandb says what to do before any work (evaluate.py and compare.py used to find out only at the
    end, after every episode), and writes nothing. Offline needs no key (tests/test_tracking.py logs offline)."""
    (tmp_path / "home").mkdir()  # no ~/.netrc, no wandb settings
    env = {k: v for k, v in ENV.items() if not k.startswith("WANDB_") and k != "NETRC"}
    env |= {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    for script, flags in (("pretrain.py", ["--out_dir", "o"]), ("finetune.py", ["--out_dir", "o"]),
                          ("evaluate.py", ["--ckpt", "nope/ckpt.pt", "--out_dir", "o"]), ("compare.py", ["--out", "o"])):
        line = refused(tmp_path, script, *flags, "--wandb", says="--wandb: wandb has no API key here", env=env)
        assert "`wandb login`" in line and "WANDB_MODE=offline" in line, line
        assert sorted(os.listdir(tmp_path)) == ["home"], script  # nothing written


def _record(arm="scratch", seed=0, k=3):
    """A unit record as compare.py writes it, with what its tables read: one task, 20 episodes."""
    return {"arm": arm, "seed": seed, "commands": [], "success": {"successes": k, "episodes": 20, "success_rate": k / 20},
            "tasks": [{"task": "t", "family": "put", "successes": k, "episodes": 20, "per_episode": [1] * k + [0] * (20 - k)}]}


def test_compare_damaged_unit_record_one_line_before_any_run(tmp_path):
    """A unit record cut short (a full disk), emptied, merged badly or of another unit: the comparison stops at
    its start, naming the file and what to do, and runs and writes nothing (the unit would otherwise count as
    done, and the tables stop on a JSONDecodeError that names no file). A sound record is read, not rerun."""
    import json
    units = tmp_path / "cmp" / "units"
    units.mkdir(parents=True)
    good = json.dumps(_record(), indent=1)
    for bad, got in ((good[:len(good) // 2], "JSONDecodeError"), ("", "an empty file"),
                     ("<<<<<<< HEAD\n" + good + "=======\n" + good + ">>>>>>> other\n", "JSONDecodeError"),
                     (json.dumps(_record(seed=1)), "the record of scratch seed 1"),
                     (json.dumps({"arm": "scratch", "seed": 0}), "JSON without success, tasks")):
        (units / "scratch_seed0.json").write_text(bad)
        line = refused(tmp_path, "compare.py", "--quick", "--arms", "scratch", "--out", "cmp",
                       says=f"error: {os.path.join('cmp', 'units', 'scratch_seed0.json')}: expected the unit record "
                            f"of scratch seed 0, got {got}")
        assert "delete it to run the unit again" in line
        assert os.listdir(tmp_path / "cmp") == ["units"] and os.listdir(units) == ["scratch_seed0.json"]
        assert (units / "scratch_seed0.json").read_text() == bad  # left as it was, for the user to restore
    (units / "scratch_seed0.json").write_text(good)
    r = run(tmp_path, "compare.py", "--quick", "--arms", "scratch", "--out", "cmp")
    assert r.returncode == 0 and "| scratch | 15.0 " in r.stdout, r.stderr[-2000:]
    assert not (tmp_path / "cmp" / "data").exists()  # every unit recorded: nothing ran
