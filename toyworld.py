"""toyworld.py: the embedded 2-D tabletop that stands in for LIBERO (target) and BridgeData/SSv2 (source).

    python toyworld.py                                  # expert success, episode lengths, toyworld_demo.gif
    python toyworld.py --episodes 20 --out demo.gif --png frame.png --image_size 96

World. The table is the unit square seen from above; x grows to the right and y grows DOWN, so a
frame is upright as stored (row = y). A gripper on an arm that enters from the bottom edge moves in the
plane, SPEED = 0.06 table units per unit action on each axis. Three blocks (red, green, blue; 0.11
wide, 7 px at 64x64) lie on the table; a bowl (ring) and a box (outlined square), both 0.23 wide, sit
in the upper half; the strips x < 0.2 and x > 0.8 are the left and right zones (tinted).
Action (dx, dy, grip) in [-1, 1] (clipped). Per step: move first, then the grip rule: grip > 0 and
nothing held -> pick up the nearest block whose centre is within GRASP_R = 0.07 of the gripper; the
held block sits at the gripper centre; grip <= 0 releases it where it is. No collisions, no physics.
Tasks. TASKS lists 10 tasks of four families (the paper's CCA groups), one fixed instruction each:
  put_<block>_in_<container>   success: block centre inside the container and released
  move_<block>_to_<left|right> success: block centre in the side zone and released
  remove_<block>_from_<cont.>  block starts inside the container; success: outside every container, released
  take_<block>                 "pick up": success: block held and >= 0.2 away from where it started
Only a remove task's block starts inside a container. An episode is `done` once success has held for
SETTLE = 3 consecutive steps, or at max_steps = 60. The scripted Expert is proportional control to
jittered waypoints (block, then goal), grips when one step away from the block, releases when one step
away from the goal, then backs off; Gaussian noise on (dx, dy). Expert episodes take 10-23 steps (mean 16).
Domains. "target": the robot we finetune and evaluate; fixed look (grey table, parallel-jaw gripper
with light fingers and a dark palm that turns cyan when closed). "source": the same layout and dynamics
for the same seed, with the look randomised per episode: table colour and texture, colour jitter
that keeps each hue, and the embodiment drawn either as a human hand (open hand / gripping fist) or as
a round-clawed robot, scaled 0.95-1.2x. Both embodiments stay large so a summed pixel loss sees them.
Determinism: reset(task, seed) draws layout from rng([seed, task index]) and the source look from
rng([seed, task index, 1]); rollout_expert draws expert noise from rng([seed, 2]). numpy only.
So one seed gives the same layout and expert actions in both domains: use disjoint seed ranges for
datasets that must not pair up, and for evaluation versus training demos. step() after done still runs.
Observation: {"agentview": uint8 (H, W, 3), "state": float32 (3,) = gripper x, y, closed (0/1)}.
"""
import argparse

import numpy as np

FAMILIES = ("put", "move", "remove", "take")
BLOCKS = ("red", "green", "blue")
CONTAINERS = ("bowl", "box")
_INSTRUCTIONS = {
    "put_red_in_bowl": "put the red block in the bowl",
    "put_green_in_box": "put the green block in the box",
    "put_blue_in_bowl": "put the blue block in the bowl",
    "move_red_to_left": "move the red block to the left side of the table",
    "move_blue_to_right": "move the blue block to the right side of the table",
    "move_green_to_left": "move the green block to the left side of the table",
    "remove_green_from_bowl": "remove the green block from the bowl",
    "remove_red_from_box": "remove the red block from the box",
    "take_blue": "pick up the blue block",
    "take_green": "pick up the green block",
}
TASKS = list(_INSTRUCTIONS)
ACTION_DIM = 3
STATE_DIM = 3          # gripper x, y, closed
SPEED = 0.06           # table units per step per unit action and axis (3.8 px at 64x64)
GRASP_R = 0.07         # a closing gripper grasps a block whose centre is this close
BLOCK = 0.055          # block half side
CONT = 0.115           # container outer half side / radius
INNER = 0.10           # a block centre this close to a container's centre (box: max-norm, bowl: L2) is inside
ZONE = 0.2             # side zones: x < ZONE and x > 1 - ZONE
TAKE_DIST = 0.2        # take: the held block must be this far from its start
SETTLE = 3             # done after success held for this many consecutive steps
MAX_STEPS = 60
EXPERT_NOISE = 0.15    # std of the expert's Gaussian noise on dx, dy
_TARGET_LOOK = dict(table=(128, 128, 136), zone=(98, 98, 110), bowl=(245, 245, 245), box=(230, 190, 70),
                    blocks=((225, 45, 45), (40, 190, 70), (50, 100, 235)), body="robot", finger=(175, 182, 205),
                    palm=(35, 35, 45), palm_closed=(0, 225, 225), arm=(55, 55, 65), scale=1.0, texture=0.0, speckle=0.0)
_PAINTS = ((235, 235, 235), (30, 30, 30), (230, 60, 200), (140, 70, 200), (60, 220, 220), (250, 140, 30))
_SKINS = ((255, 220, 177), (234, 189, 150), (198, 134, 90), (141, 85, 50), (255, 205, 160))


def task_family(task: str) -> str:
    """'put' | 'move' | 'remove' | 'take' for a task name."""
    if task not in _INSTRUCTIONS:
        raise ValueError(f"unknown toy task {task!r}; expected one of {TASKS}")
    return task.split("_")[0]


def instruction(task: str) -> str:
    """The fixed English instruction of a task."""
    task_family(task)
    return _INSTRUCTIONS[task]


def _box(u, v, cx, cy, hw, hh):
    """Mask of an axis-aligned rectangle."""
    return (np.abs(u - cx) <= hw) & (np.abs(v - cy) <= hh)


def _ell(u, v, cx, cy, rx, ry):
    """Mask of an ellipse."""
    return ((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2 <= 1


def _seg(u, v, a, b, w):
    """Mask of a capsule: points within w of the segment a-b (a finger)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * dx + (v - a[1]) * dy) / (dx * dx + dy * dy), 0, 1)
    return (u - a[0] - t * dx) ** 2 + (v - a[1] - t * dy) ** 2 <= w * w


def _sprite(S, R, parts, scale=1.0):
    """Paint [(mask_fn(u, v), rgb), ...] (later parts on top) on a 2h x 2h grid centred on the anchor."""
    h = int(np.ceil(R * scale * S))
    c = (np.arange(2 * h) - h + 0.5) / (S * scale)  # unit coords of pixel centres relative to the anchor
    u, v = np.meshgrid(c, c)
    rgb, alpha = np.zeros((2 * h, 2 * h, 3), np.uint8), np.zeros((2 * h, 2 * h), bool)
    for fn, col in parts:
        m = fn(u, v)
        rgb[m], alpha = np.clip(col, 0, 255), alpha | m
    return rgb, alpha


def _blit(frame, sprite, x, y):
    """Composite a (rgb, alpha) sprite whose centre lands on table point (x, y); clipped at the borders."""
    rgb, alpha = sprite
    S, n = frame.shape[0], rgb.shape[0]
    r0, c0 = int(round(y * S)) - n // 2, int(round(x * S)) - n // 2
    rs, cs, re, ce = max(r0, 0), max(c0, 0), min(r0 + n, S), min(c0 + n, S)
    if rs < re and cs < ce:
        sr, sc = slice(rs - r0, re - r0), slice(cs - c0, ce - c0)
        np.copyto(frame[rs:re, cs:ce], rgb[sr, sc], where=alpha[sr, sc, None])


def _source_look(rng):
    """A random source-domain look: table colour/texture, hue-preserving colour jitter, hand or other robot."""
    jit = lambda c, a: np.clip(np.asarray(c, float) + rng.uniform(-a, a, 3), 0, 255)
    table = np.clip(rng.uniform(70, 215) * rng.uniform(0.85, 1.15, 3), 0, 255)
    shade = rng.uniform(0.72, 0.86) if rng.random() < 0.5 else rng.uniform(1.14, 1.3)  # zones darker or lighter
    look = dict(table=table, zone=np.clip(table * shade, 0, 255),
                bowl=jit(_TARGET_LOOK["bowl"], 40), box=jit(_TARGET_LOOK["box"], 40),
                blocks=[jit(c, 35) for c in _TARGET_LOOK["blocks"]], scale=rng.uniform(0.95, 1.2),
                texture=rng.uniform(3, 22), speckle=rng.uniform(0, 8))
    if rng.random() < 0.5:  # a human hand: skin-tone palm, fingers, forearm
        skin = jit(_SKINS[rng.integers(len(_SKINS))], 15)
        look.update(body="hand", skin=skin, arm=skin * 0.93)
    else:  # a differently drawn robot: round claws around a hub, painted in hues no block has
        i, j = rng.choice(len(_PAINTS), 2, replace=False)
        look.update(body="claw", finger=jit(_PAINTS[i], 20), palm=jit(_PAINTS[j], 20), arm=rng.uniform(20, 120, 3))
    return look


def _body_sprites(look, S):
    """(open sprite, closed sprite) and the arm band (top offset, half width, rgb) of an embodiment."""
    def parts(closed):
        if look["body"] == "robot":  # parallel jaws: fingers close in and the palm lights up
            f = 0.058 if closed else 0.088
            fingers = lambda u, v: (np.abs(np.abs(u) - f - 0.02) <= 0.02) & (np.abs(v + 0.005) <= 0.07)
            return [(fingers, look["finger"]),
                    (lambda u, v: _box(u, v, 0, 0.08, f + 0.04, 0.02), look["palm_closed" if closed else "palm"])]
        if look["body"] == "hand":  # open hand with spread fingers / a fist wrapped around the grasp point
            sk, dk = look["skin"], look["skin"] * 0.8
            if closed:
                digits = lambda u, v: (_seg(u, v, (-0.075, 0.07), (-0.07, -0.045), 0.024)  # thumb
                                       | _seg(u, v, (0.075, 0.07), (0.07, -0.045), 0.028)  # curled fingers
                                       | _seg(u, v, (0.07, -0.05), (0.015, -0.075), 0.022))  # finger tips
                return [(digits, dk), (lambda u, v: _ell(u, v, 0, 0.095, 0.09, 0.055), sk)]
            digits = lambda u, v: (_seg(u, v, (-0.06, 0.1), (-0.14, 0.0), 0.022)  # thumb
                                   | _seg(u, v, (-0.035, 0.07), (-0.085, -0.11), 0.019)
                                   | _seg(u, v, (0.01, 0.06), (0.04, -0.13), 0.019)
                                   | _seg(u, v, (0.05, 0.07), (0.12, -0.07), 0.019))
            return [(digits, dk), (lambda u, v: _ell(u, v, 0, 0.11, 0.075, 0.06), sk)]
        r = 0.075 if closed else 0.105  # claw robot: ring arcs that contract, a hub below
        claws = lambda u, v: (np.abs(np.hypot(u, v) - r) <= 0.022) & ((v < 0.06) if closed else (np.abs(v) < 0.075))
        return [(lambda u, v: _ell(u, v, 0, 0.12, 0.07, 0.05), look["palm"]), (claws, look["finger"])]
    arm = {"robot": (0.095, 0.04), "hand": (0.14, 0.06), "claw": (0.15, 0.035)}[look["body"]]
    k = look["scale"]
    sprites = [_sprite(S, 0.17, parts(closed), k) for closed in (False, True)]
    return sprites, (arm[0] * k, arm[1] * k, np.clip(look["arm"], 0, 255).astype(np.uint8))


class ToyEnv:
    """The tabletop: reset(task, seed) -> obs; step(action) -> (obs, success, done)."""

    def __init__(self, domain="target", image_size=64):
        if domain not in ("target", "source"):
            raise ValueError(f"domain must be 'target' or 'source', got {domain!r}")
        self.domain, self.S, self.max_steps = domain, int(image_size), MAX_STEPS
        c = (np.arange(self.S) + 0.5) / self.S
        self._u, self._v = np.meshgrid(c, c)  # (S, S) table coords of pixel centres
        if domain == "target":  # the target look never changes: build its sprites once
            self._set_look(dict(_TARGET_LOOK), None)

    def _set_look(self, look, rng):
        """Build the per-look sprites (blocks, embodiment) and the background table."""
        S, u = self.S, self._u
        self.look, bw = look, max(0.016, 1.0 / S)
        outer = lambda u, v: _box(u, v, 0, 0, BLOCK, BLOCK)  # a darker rim keeps the block's shape on any table
        inner = lambda u, v: _box(u, v, 0, 0, BLOCK - bw, BLOCK - bw)
        self._blocks = [_sprite(S, BLOCK + 0.01, [(outer, np.asarray(c) * 0.55), (inner, c)]) for c in look["blocks"]]
        self._body, self._arm = _body_sprites(look, S)
        table = np.empty((S, S, 3)); table[:] = look["table"]
        side = (u < ZONE) | (u > 1 - ZONE)
        table[side] = look["zone"]
        if rng is not None:  # source texture: coarse blotches plus per-pixel speckle
            g = np.linspace(0, 5, S)  # bilinear upsampling of a 6x6 noise grid: smooth blotches, no blocky edges
            i = np.minimum(g.astype(int), 4)
            w, n = (g - i)[:, None], rng.normal(size=(6, 6))
            n = n[i] * (1 - w) + n[i + 1] * w  # (S, 6) interpolated along rows
            n = n[:, i] * (1 - w.T) + n[:, i + 1] * w.T  # (S, S)
            table += (n * look["texture"] + rng.normal(size=(S, S)) * look["speckle"])[..., None]
        self._table = table

    def reset(self, task: str, seed: int) -> dict:
        """Start an episode of a task; the layout (and source look) is a pure function of (task, seed)."""
        fam, words = task_family(task), task.split("_")
        rng = np.random.default_rng([seed, TASKS.index(task)])
        self.task, self.family, self.target, self.goal = task, fam, BLOCKS.index(words[1]), words[-1]
        while not self._layout(rng):
            pass
        self.start, self.held, self.closed, self.t, self.streak = self.objs[self.target].copy(), None, False, 0, 0
        if self.domain == "source":
            look_rng = np.random.default_rng([seed, TASKS.index(task), 1])
            self._set_look(_source_look(look_rng), look_rng)
        self._base = self._draw_base()
        return self._obs()

    def _layout(self, rng) -> bool:
        """Containers side by side in the upper half, gripper near the bottom, blocks apart; False = retry."""
        xs = [rng.uniform(0.32, 0.40), rng.uniform(0.60, 0.68)]
        if rng.random() < 0.5:
            xs = xs[::-1]
        self.cont = {k: np.array([x, rng.uniform(0.14, 0.3)]) for k, x in zip(CONTAINERS, xs)}
        self.pos = np.array([rng.uniform(0.25, 0.75), rng.uniform(0.86, 0.92)])
        objs = []
        for i in range(len(BLOCKS)):
            if self.family == "remove" and i == self.target:  # the only block that starts in a container
                objs.append(self.cont[self.goal] + rng.uniform(-0.03, 0.03, 2))
                continue
            lo, hi = (0.3, 0.7) if (self.family == "move" and i == self.target) else (0.22, 0.78)
            ymax = 0.62 if (self.family == "take" and i == self.target) else 0.74  # room to carry it 0.2 down
            for _ in range(200):
                p = np.array([rng.uniform(lo, hi), rng.uniform(0.12, ymax)])
                if (all(np.abs(p - c).max() > CONT + BLOCK + 0.01 for c in self.cont.values())
                        and all(np.abs(p - q).max() > 0.14 for q in objs) and np.hypot(*(p - self.pos)) > 0.16):
                    break
            else:
                return False
            objs.append(p)
        self.objs = np.array(objs)  # (N_blocks, 2)
        return True

    def _draw_base(self):
        """Table, zones and containers: everything static in an episode, drawn once per reset."""
        img, u, v, t = self._table.copy(), self._u, self._v, max(0.035, 1.5 / self.S)
        for k, c in self.cont.items():
            du, dv = u - c[0], v - c[1]
            r = np.hypot(du, dv) if k == "bowl" else np.maximum(np.abs(du), np.abs(dv))
            inside = r < CONT - t
            img[inside] *= 0.82  # shaded interior reads as "a container", not as a drawn line on the table
            img[(r < CONT) & ~inside] = self.look[k]
        return np.clip(img, 0, 255).astype(np.uint8)

    def _obs(self):
        """Render the current frame and proprio."""
        f, S = self._base.copy(), self.S
        x, y = self.pos.tolist()
        top, hw, col = self._arm
        r0 = max(int(round((y + top) * S)), 0)  # the arm runs from under the palm to the bottom edge
        c0, c1 = max(int(round((x - hw) * S)), 0), max(int(round((x + hw) * S)), 0)
        f[r0:, c0:c1] = col  # drawn before the blocks: it passes under them
        objs = self.objs.tolist()
        for i in sorted(range(len(objs)), key=lambda i: i == self.held):  # held block last, under the fingers
            _blit(f, self._blocks[i], *objs[i])
        _blit(f, self._body[self.closed], x, y)
        return {"agentview": f, "state": np.array([x, y, float(self.closed)], np.float32)}

    def step(self, action) -> tuple:
        """Clip the action to [-1, 1], move, apply the grip rule; returns (obs, success, done)."""
        # plain floats: numpy ufuncs on 3 numbers cost more than the whole physics (NaN counts as 0)
        a = np.asarray(action, np.float64).reshape(ACTION_DIM).tolist()
        dx, dy, grip = (min(1.0, max(-1.0, v)) if v == v else 0.0 for v in a)
        x, y = self.pos.tolist()
        self.pos = np.array([min(0.97, max(0.03, x + SPEED * dx)), min(0.97, max(0.03, y + SPEED * dy))])
        self.closed = grip > 0
        if not self.closed:
            self.held = None
        elif self.held is None:
            d = np.hypot(*(self.objs - self.pos).T)
            if d.min() <= GRASP_R:
                self.held = int(np.argmin(d))
        if self.held is not None:
            self.objs[self.held] = self.pos
        self.t += 1
        ok = self.success()
        self.streak = self.streak + 1 if ok else 0
        return self._obs(), ok, self.streak >= SETTLE or self.t >= self.max_steps

    def inside(self, p, container) -> bool:
        """Whether table point p is inside a container (bowl: disc, box: square)."""
        d = p - self.cont[container]
        return bool((np.hypot(*d) if container == "bowl" else np.abs(d).max()) < INNER)

    def success(self) -> bool:
        """The task's success predicate on the current state."""
        o, held = self.objs[self.target], self.held == self.target
        if self.family == "take":
            return held and bool(np.hypot(*(o - self.start)) >= TAKE_DIST)
        if held:
            return False
        if self.family == "put":
            return self.inside(o, self.goal)
        if self.family == "move":
            return bool(o[0] < ZONE) if self.goal == "left" else bool(o[0] > 1 - ZONE)
        return not any(self.inside(o, k) for k in CONTAINERS)


class ToyEnvs:
    """n target-domain envs behind the send/recv interface of libero_sim.EnvWorkers, for evaluate.py:
    ("reset", suite, task index, episode e) -> obs, with seed seed + e; ("step", action) -> (obs, done, success)."""

    def __init__(self, n, image_size, seed):
        self.envs, self.out, self.seed = [ToyEnv("target", image_size) for _ in range(n)], [None] * n, seed

    def send(self, i, *msg):
        if msg[0] == "reset":
            self.out[i] = self.envs[i].reset(TASKS[msg[2]], self.seed + msg[3])
        else:
            obs, ok, done = self.envs[i].step(msg[1])
            self.out[i] = (obs, done, ok)

    def recv(self, i):
        return self.out[i]

    def close(self):
        pass


class Expert:
    """Scripted noisy expert; create one per episode, after env.reset."""

    def __init__(self, env: ToyEnv, noise: float = EXPERT_NOISE, rng: np.random.Generator = None):
        self.env, self.noise = env, noise
        self.rng = rng if rng is not None else np.random.default_rng()
        self.jit_grasp = self.rng.uniform(-0.015, 0.015, 2)  # waypoint jitter so demos differ
        self.jit_goal = self.rng.uniform(-0.03, 0.03, 2)

    def _goal(self):
        """Where to carry the block (a function of the visible scene and the gripper position)."""
        e, j = self.env, self.jit_goal
        if e.family == "put":
            return e.cont[e.goal] + j
        if e.family == "move":
            return np.array([(0.1 if e.goal == "left" else 0.9) + 0.5 * j[0], e.pos[1]])
        if e.family == "remove":  # straight down out of the container, clear of the other one
            return e.cont[e.goal] + np.array([0.0, 0.24]) + j
        return np.array([e.pos[0], 0.88 + j[1]])  # take: lift it and bring it toward the robot

    def act(self) -> np.ndarray:
        """(dx, dy, grip) float32 in [-1, 1]: proportional control to the current waypoint, plus noise."""
        e = self.env
        p, held, grip = e.pos, e.held == e.target, 1.0
        if e.held is not None and not held:  # holding the wrong block: drop it
            wp, grip = p, -1.0
        elif e.family != "take" and e.success():  # done: back off so the result stays visible
            wp, grip = p + np.array([0.0, 0.2]), -1.0
        elif not held:  # reach; close when one step away (the grasp is tested after moving)
            wp = e.objs[e.target] + self.jit_grasp
            grip = 1.0 if np.abs(wp - p).max() <= SPEED else -1.0
        else:  # carry; open when one step from the goal (take never releases)
            wp = self._goal()
            if e.family != "take" and np.abs(wp - p).max() <= SPEED:
                grip = -1.0
        a = (wp - p) / SPEED
        a = a / max(1.0, np.abs(a).max()) + self.noise * self.rng.standard_normal(2)
        return np.clip([a[0], a[1], grip], -1, 1).astype(np.float32)


def rollout_expert(task, seed, domain="target", image_size=64, noise=EXPERT_NOISE, min_steps=0) -> dict:
    """One expert episode; frames[t] is the observation before actions[t] (no final frame).

    min_steps pads a short episode with idle steps after it ends (no motion, grip kept), as real
    videos keep rolling after the task is done: pretraining windows need chunk+1 frames.
    """
    env = ToyEnv(domain, image_size)
    obs, done = env.reset(task, seed), False
    expert = Expert(env, noise, np.random.default_rng([seed, 2]))
    frames, actions, states = [], [], []
    while not done or len(actions) < min_steps:
        a = expert.act() if not done else np.array([0.0, 0.0, actions[-1][2]], np.float32)
        frames.append(obs["agentview"]); states.append(obs["state"]); actions.append(a)
        obs, ok_now, done_now = env.step(a)
        if not done:
            ok, done = ok_now, done_now
    return {"frames": np.stack(frames), "actions": np.stack(actions), "states": np.stack(states), "success": bool(ok),
            "task": task, "instruction": instruction(task), "task_type": task_family(task)}


def expert_episodes(domain, seed0, counts, labeled, image_size, min_steps, tally):
    """Expert episodes as convert.write_episodes takes them (`python convert.py toy`), counts[task] per task, seeds
    seed0, seed0+1, ... Labeled demos keep only successful episodes (and record actions and state); video
    keeps every episode, like real video. tally: a dict whose "tries" and "kept" are counted up."""
    need, k = dict(counts), 0
    while any(need.values()) and k < 3 * sum(counts.values()) + 100:  # the expert almost always succeeds
        task, seed = TASKS[k % len(TASKS)], seed0 + k
        k += 1
        if need[task] == 0:
            continue
        r = rollout_expert(task, seed, domain=domain, image_size=image_size, min_steps=min_steps)
        tally["tries"] += 1
        if labeled and not r["success"]:
            continue
        need[task] -= 1
        tally["kept"] += 1
        ep = {"obs": {"agentview_rgb": r["frames"]}, "instruction": r["instruction"], "task": task,
              "task_type": r["task_type"], "seed": seed}
        if labeled:
            ep["obs"]["state"], ep["actions"] = r["states"], r["actions"]
        yield ep


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="toy world demo: expert success, episode lengths, GIF")
    ap.add_argument("--episodes", type=int, default=50, help="expert episodes per task and domain")
    ap.add_argument("--image_size", type=int, default=64, help="rendered frame size (pixels)")
    ap.add_argument("--out", default="toyworld_demo.gif", help="GIF of a few episodes per domain")
    ap.add_argument("--png", default="", help="if set, also save a 4x upscaled still of both domains here")
    args = ap.parse_args()
    for domain in ("target", "source"):  # (speed: bench.py --only toyworld)
        lens, fam_ok = [], {f: [] for f in FAMILIES}
        for task in TASKS:
            for s in range(args.episodes):
                ep = rollout_expert(task, s, domain, args.image_size)
                lens.append(len(ep["actions"])); fam_ok[ep["task_type"]].append(ep["success"])
        print(f"{domain}: expert success " + " ".join(f"{f}={np.mean(v):.3f}" for f, v in fam_ok.items())
              + f" | length mean {np.mean(lens):.1f} min {min(lens)} p95 {np.percentile(lens, 95):.0f} max {max(lens)}")
    import imageio.v3 as iio
    up = lambda f, k: f.repeat(k, 0).repeat(k, 1)
    clips = {(d, k): rollout_expert(TASKS[k], k, d, args.image_size)["frames"]
             for k in (0, 3, 6, 8) for d in ("target", "source")}  # one task per family, both domains
    frames = [up(f, 3) for c in clips.values() for f in [*c, *[c[-1]] * 4]]  # each clip holds its last frame
    iio.imwrite(args.out, np.stack(frames), duration=120, loop=0)  # ms/frame
    print(f"wrote {args.out} ({len(clips)} episodes: put, move, remove, take; target then source)")
    if args.png:
        rows = [np.concatenate([up(clips[d, k][5], 4) for k in (0, 3, 6, 8)], 1) for d in ("target", "source")]
        iio.imwrite(args.png, np.concatenate(rows, 0))  # top row target, bottom row source (same seeds)
        print(f"wrote {args.png}")
