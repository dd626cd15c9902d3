"""The scripted LIBERO expert in the real simulator: it solves a task from a fixed evaluation init
state, generate() writes an official-schema file, and the recorded actions replay to the recorded
states. About 45 s on one core.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_libero_expert.py
"""
from conftest import require_libero
require_libero()

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import convert  # noqa: E402
import libero_expert  # noqa: E402
import libero_sim  # noqa: E402
from conftest import ROOT, read_episodes  # noqa: E402

SUITE = "libero_object"


def test_expert_solves_a_fixed_init_state():
    task = libero_sim.suite_tasks(SUITE)[0]  # alphabet soup -> basket
    env = libero_sim.make_env(task["bddl"], render=False)
    env.reset()
    env.set_init_state(libero_sim.init_states(SUITE, 0)[7])
    ep = libero_expert.run_episode(env, np.random.default_rng(0))
    env.close()
    assert ep["success"] and ep["success_ever"], ep
    assert ep["steps"] < libero_sim.SUITES[SUITE] - libero_sim.SETTLE_STEPS  # within evaluation's step limit
    assert "actions" not in ep  # recording is off by default


def cli(*args, ok=True):
    r = subprocess.run([sys.executable, "convert.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert (r.returncode == 0) == ok, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def test_refuses_a_task_it_does_not_solve(tmp_path):
    r = cli("libero-expert", "--suite", "libero_spatial", "--tasks", "5", "--out", str(tmp_path / "x"), ok=False)
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: libero_spatial: --suite/--tasks")
    assert not (tmp_path / "x").exists()
    r = cli("libero-expert", "--cameras", "wrist", "--out", str(tmp_path / "y"), ok=False)
    assert len(r.stderr.strip().splitlines()) == 1 and "--cameras" in r.stderr and not (tmp_path / "y").exists()


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    """One rendered demo of task 1 (cream cheese, the shortest) written by `convert.py libero-expert`."""
    out = tmp_path_factory.mktemp("expert")
    r = cli("libero-expert", "--suite", SUITE, "--tasks", "1", "--demos", "1", "--noise", "0.1", "--jitter", "1.0",
            "--seed", "3", "--workers", "1", "--out", str(out))
    assert "kept 1/" in r.stdout + r.stderr
    task = libero_sim.suite_tasks(SUITE)[1]
    return out / (task["name"] + "_demo.hdf5"), task


def test_generate_writes_the_official_schema(demo_file):
    path, task = demo_file
    convert.check_official(str(path))  # the validator of `convert.py libero` accepts it
    with h5py.File(path, "r") as f:
        grp = f["data"]
        assert list(grp) == ["demo_0"] and grp.attrs["num_demos"] == 1
        info = json.loads(grp.attrs["problem_info"])
        assert info["language_instruction"] and info["problem_name"]
        assert grp.attrs["macros_image_convention"] == "opengl" and "bddl_file_content" in grp.attrs
        ep = grp["demo_0"]
        T = ep.attrs["num_samples"]
        assert grp.attrs["total"] == T and 80 < T < 270
        assert ep["actions"].shape == (T, 7) and np.abs(ep["actions"][:]).max() <= 1
        assert ep["states"].shape == (T, len(libero_sim.init_states(SUITE, 1)[0]))
        np.testing.assert_array_equal(ep.attrs["init_state"], ep["states"][0])
        assert "<mujoco" in ep.attrs["model_file"]
        obs = ep["obs"]
        for k in ("agentview_rgb", "eye_in_hand_rgb"):
            assert obs[k].shape == (T, 128, 128, 3) and obs[k].dtype == np.uint8
        assert obs["ee_states"].shape == (T, 6) and obs["gripper_states"].shape == (T, 2)
        assert obs["joint_states"].shape == (T, 7) and ep["robot_states"].shape == (T, 9)
        assert ep["rewards"][-1] == 1 and ep["dones"][-1] == 1 and ep["rewards"][:-1].sum() == 0
        assert obs["agentview_rgb"][0].std() > 10  # a rendered scene, not a blank frame
        # the gripper closes and opens: the demo is a pick and place, not idling
        assert (ep["actions"][:, 6] > 0).any() and ep["actions"][-1, 6] < 0


def test_recorded_file_converts(demo_file, tmp_path):
    path, task = demo_file
    cli("libero", "--src", str(path.parent), "--out", str(tmp_path / "conv"), "--image_size", "64")
    (ep,) = read_episodes(str(tmp_path / "conv" / "libero_00000.hdf5"))
    with h5py.File(path, "r") as f:
        raw = f["data/demo_0/obs/agentview_rgb"][:]
    assert ep["instruction"] == task["language"] and ep["obs"]["agentview_rgb"].shape == (len(raw), 64, 64, 3)
    np.testing.assert_array_equal(ep["obs"]["agentview_rgb"][-1], libero_sim.upright(raw[-1], 64))


def test_recorded_demo_replays(demo_file):
    """The demo starts from a fresh layout, and states[t] is the state before action t, so stepping actions[:-1] from states[0] must end at
    states[-1]: object positions within 1 cm."""
    path, task = demo_file
    with h5py.File(path, "r") as f:
        actions, states = f["data/demo_0/actions"][:], f["data/demo_0/states"][:]
    env = libero_sim.make_env(task["bddl"], render=False)
    env.reset()
    env.set_init_state(states[0])
    for a in actions[:-1]:
        env.step(a)
    idx = libero_expert._object_qpos(env)
    final = env.get_sim_state()
    env.close()
    assert libero_expert.layout_distance(states[0], libero_sim.init_states(SUITE, 1), idx) > 1e-3  # not an eval layout
    moved = np.abs(states[-1][idx] - states[0][idx]).max()
    assert moved > 0.1  # the cream cheese travelled to the basket
    err = np.abs(final[idx] - states[-1][idx]).reshape(-1, 3)  # (objects, xyz)
    assert err.max() < 0.01, err
