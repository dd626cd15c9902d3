"""Tests of the toy world: expert success, determinism, success predicates, shapes.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_toyworld.py
"""
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import toyworld as tw  # noqa: E402


def drive_to(env, goal, grip, max_steps=40):
    """Hand-drive the gripper to a table point with a fixed grip; returns the success flags seen on the way."""
    seen = []
    for _ in range(max_steps):
        d = (np.asarray(goal) - env.pos) / tw.SPEED
        if np.abs(d).max() < 1e-9:
            break
        _, ok, _ = env.step([*np.clip(d, -1, 1), grip])
        seen.append(ok)
    return seen


def test_task_list():
    assert len(set(tw.TASKS)) == len(tw.TASKS)
    for fam in tw.FAMILIES:
        assert sum(tw.task_family(t) == fam for t in tw.TASKS) >= 2, fam
    instrs = [tw.instruction(t) for t in tw.TASKS]
    assert len(set(instrs)) == len(instrs) and all(isinstance(s, str) and s for s in instrs)
    with pytest.raises(ValueError):
        tw.task_family("fly_to_moon")


@pytest.mark.parametrize("family", tw.FAMILIES)
def test_expert_succeeds_per_family(family):
    tasks = [t for t in tw.TASKS if tw.task_family(t) == family]
    ok = [tw.rollout_expert(tasks[s % len(tasks)], s)["success"] for s in range(200)]
    assert np.mean(ok) >= 0.95, (family, np.mean(ok))


def test_expert_succeeds_in_source_domain():
    ok = [tw.rollout_expert(t, s, "source")["success"] for t in tw.TASKS for s in range(5)]
    assert np.mean(ok) >= 0.95


def test_rollout_shapes_and_alignment():
    ep = tw.rollout_expert("put_red_in_bowl", 0)
    T = len(ep["actions"])
    assert 1 <= T <= tw.MAX_STEPS
    assert ep["frames"].shape == (T, 64, 64, 3) and ep["frames"].dtype == np.uint8
    assert ep["actions"].shape == (T, tw.ACTION_DIM) and ep["actions"].dtype == np.float32
    assert ep["states"].shape == (T, tw.STATE_DIM) and ep["states"].dtype == np.float32
    assert np.abs(ep["actions"]).max() <= 1.0
    assert ep["task"] == "put_red_in_bowl" and ep["task_type"] == "put"
    assert ep["instruction"] == tw.instruction("put_red_in_bowl") and isinstance(ep["success"], bool)
    env = tw.ToyEnv()
    obs = env.reset("put_red_in_bowl", 0)
    assert np.array_equal(obs["agentview"], ep["frames"][0]) and np.array_equal(obs["state"], ep["states"][0])
    # frames[t]/states[t] come BEFORE actions[t]: replaying actions[t] from state t gives state t+1
    for t in range(T):
        assert np.array_equal(obs["agentview"], ep["frames"][t])
        obs, _, done = env.step(ep["actions"][t])
        if t + 1 < T:
            expected = np.clip(ep["states"][t, :2] + tw.SPEED * ep["actions"][t, :2], 0.03, 0.97)
            assert np.allclose(obs["state"][:2], expected, atol=1e-6)
    assert done


def test_determinism_and_domains():
    a, b = tw.rollout_expert("remove_red_from_box", 7), tw.rollout_expert("remove_red_from_box", 7)
    for k in ("frames", "actions", "states"):
        assert np.array_equal(a[k], b[k]), k
    c = tw.rollout_expert("remove_red_from_box", 8)
    assert a["frames"].shape != c["frames"].shape or not np.array_equal(a["frames"], c["frames"])
    s1, s2 = tw.rollout_expert("remove_red_from_box", 7, "source"), tw.rollout_expert("remove_red_from_box", 7, "source")
    assert np.array_equal(s1["frames"], s2["frames"])
    # same seed: same layout and dynamics, different look
    assert np.array_equal(s1["actions"], a["actions"]) and np.array_equal(s1["states"], a["states"])
    assert np.abs(s1["frames"][0].astype(int) - a["frames"][0]).mean() > 10
    # a reused env gives the same episode as a fresh one (no state leaks across resets)
    env = tw.ToyEnv("source")
    env.reset("take_green", 1); env.step([1, 1, 1])
    assert np.array_equal(env.reset("remove_red_from_box", 7)["agentview"], s1["frames"][0])
    # the source look is randomised per episode
    s3 = tw.rollout_expert("remove_red_from_box", 9, "source")
    assert not np.array_equal(s1["frames"][0], s3["frames"][0])


def test_put_success_only_after_release():
    env = tw.ToyEnv()
    env.reset("put_red_in_bowl", 3)
    assert not env.success()
    red = tw.BLOCKS.index("red")
    drive_to(env, env.objs[red], grip=-1)
    env.step([0, 0, 1])
    assert env.held == red
    assert not any(drive_to(env, env.cont["box"], grip=1))  # the wrong container, still held
    env.step([0, 0, -1])
    assert env.held is None and env.inside(env.objs[red], "box") and not env.success()  # released in the box: not the task
    drive_to(env, env.objs[red], grip=-1)
    env.step([0, 0, 1])
    assert not any(drive_to(env, env.cont["bowl"], grip=1))  # in the bowl but held: not yet
    assert env.inside(env.objs[red], "bowl")
    _, ok, done = env.step([0, 0, -1])
    assert ok and not done
    for _ in range(tw.SETTLE - 2):
        assert env.step([0, 0, -1])[1:] == (True, False)
    assert env.step([0, 0, -1])[1:] == (True, True)  # done after SETTLE successful steps


def test_move_remove_take_predicates():
    env = tw.ToyEnv()
    env.reset("move_blue_to_right", 4)
    blue = tw.BLOCKS.index("blue")
    assert not env.success()
    drive_to(env, env.objs[blue], grip=-1)
    assert not any(drive_to(env, [0.9, env.pos[1]], grip=1))
    assert env.step([0, 0, -1])[1]

    env.reset("remove_green_from_bowl", 4)
    green = tw.BLOCKS.index("green")
    assert env.inside(env.objs[green], "bowl") and not env.success()
    drive_to(env, env.objs[green], grip=-1)
    drive_to(env, env.cont["bowl"] + [0, 0.3], grip=1)
    assert not env.success()
    assert env.step([0, 0, -1])[1]

    env.reset("take_green", 4)
    assert not env.success()
    drive_to(env, env.objs[green], grip=-1)
    assert not env.success()
    seen = drive_to(env, env.objs[green] + [0, 0.25], grip=1)
    assert seen[-1] and env.held == green
    assert not env.step([0, 0, -1])[1]  # dropped: no longer taken


def test_action_clipping_and_grip_rule():
    env = tw.ToyEnv()
    env.reset("take_blue", 0)
    env.pos = np.array([0.5, 0.5])
    env.objs[:] = [[0.1, 0.1], [0.2, 0.1], [0.3, 0.1]]  # every block out of reach
    env.step([5.0, -5.0, 0.5])
    assert np.allclose(env.pos, [0.5 + tw.SPEED, 0.5 - tw.SPEED]) and env.closed and env.held is None
    env.step([0.0, 0.0, -3.0])
    assert not env.closed
    env.objs[2] = env.pos + [tw.GRASP_R * 0.9, 0]
    env.step([0, 0, 1])
    assert env.held == 2 and np.array_equal(env.objs[2], env.pos)
    env.step([1, 0, 1])
    assert np.array_equal(env.objs[2], env.pos)  # the held block moves with the gripper
    env.step([1, 0, 0])
    assert env.held is None
    before = env.objs[2].copy()
    env.step([-1, 0, -1])
    assert np.array_equal(env.objs[2], before)  # released blocks stay put


@pytest.mark.parametrize("size", [32, 64, 96, 128])
@pytest.mark.parametrize("domain", ["target", "source"])
def test_image_sizes(size, domain):
    env = tw.ToyEnv(domain, size)
    obs = env.reset("put_green_in_box", 1)
    assert obs["agentview"].shape == (size, size, 3) and obs["agentview"].dtype == np.uint8
    assert obs["state"].shape == (tw.STATE_DIM,) and obs["state"].dtype == np.float32
    obs2 = env.step([1, -1, -1])[0]
    assert obs2["agentview"].shape == (size, size, 3)


@pytest.mark.parametrize("domain", ["target", "source"])
def test_embodiment_is_large_and_grip_is_visible(domain):
    env = tw.ToyEnv(domain)
    f0 = env.reset("take_blue", 2)["agentview"].astype(int)
    env.objs[:] = [[0.1, 0.1], [0.2, 0.1], [0.3, 0.1]]  # nothing under the gripper
    env.pos = np.array([0.5, 0.6])
    f_open = env.step([0, 0, -1])[0]["agentview"].astype(int)
    f_closed = env.step([0, 0, 1])[0]["agentview"].astype(int)
    assert (np.abs(f_open - f_closed).sum(-1) > 30).sum() >= 10  # closing changes >= 10 pixels
    moved = env.step([1, 0, 1])[0]["agentview"].astype(int)
    assert (np.abs(moved - f_closed).sum(-1) > 30).sum() >= 40  # one step of motion changes many pixels
    assert not np.array_equal(f0, f_open)


def test_no_torch_import():
    code = "import sys, toyworld; assert 'torch' not in sys.modules"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_min_steps_pads_with_idle_tail():
    base = tw.rollout_expert(tw.TASKS[0], 5)
    padded = tw.rollout_expert(tw.TASKS[0], 5, min_steps=len(base["actions"]) + 7)
    T = len(base["actions"])
    assert len(padded["actions"]) == T + 7 and padded["success"] == base["success"]
    assert np.array_equal(padded["frames"][:T], base["frames"]) and np.array_equal(padded["actions"][:T], base["actions"])
    assert np.all(padded["actions"][T:, :2] == 0)  # idle: no motion after the episode ended
