"""A scripted pick-and-place expert for LIBERO that reads the simulator state, and a generator of
demo files in the official LIBERO schema from it (no download needed).

    python libero_expert.py                      # one episode of libero_object task 0: success, steps, seconds, a GIF
    python convert.py libero-expert --suite libero_object --demos 20 --out data/libero_expert --workers 2

Approach (the distances are the constants below)
- Goal from the BDDL: env.env.parsed_problem["goal_state"][0] = ['in', obj, region] or ['on', obj, target].
  A region's object is the longest object name that prefixes it; its xy is the region site's.
- Geometry from the simulator after the settle steps: the collision geoms of every object (mesh
  vertices, box corners for primitives) give world point clouds; the gripper's own collision geoms,
  read in the eef-site frame, give the boxes that must not touch a neighbour.
- Grasp: eef at the object's mid-height, but near the top of tall objects and above the bottom of flat
  ones. Yaw: the first of YAWS whose closing width fits and whose gripper boxes hold no neighbour
  point. No yaw fits the width (bowls): a rim grasp, fingers closing radially across the wall.
- Waypoints, P-controlled with a speed cap, orientation held towards the downward pose turned by the
  grasp yaw: transit above every top, straight descent to a frozen grasp point, close, lift so the
  held object clears every top, move over the target (corrected for where the object sits in the
  hand), lower, open, retreat, then wait for success. Success fires while the object is still held,
  so an episode is judged by check_success() at the end, after release and retreat.
- Diversity: noise = Gaussian sigma on the 3 position actions (action units, 0.1 ~ 5 mm/step);
  jitter in [0, 1] scales random offsets of the free-space waypoints (+-1 cm xy, +0..3 cm heights),
  the grasp height (+-5 mm), the speed caps (x 0.6..1) and the gripper step counts (+0..4).
- Layouts: demos start from placements the simulator samples itself. env.seed(s) seeds numpy's
  global generator and a soft reset (hard_reset=False) does re-run LIBERO's placement samplers (checked:
  object xy spread over seeds ~ the spread of the 50 fixed init states), s = f(seed, task, attempt).
  A layout whose object positions are all within 1 mm of one of the evaluation's 50 init states is
  skipped, so demos and evaluation are disjoint.
"""
import argparse
import os
import time

import numpy as np

import libero_sim

# suites generate() accepts, and the tasks it refuses (measured: 0 successes)
SOLVED = {"libero_object": {}, "libero_spatial": {5: "bowl on the ramekin: the rim grasp never lifts it, 0/3 layouts"}}
# controller
POS_SCALE = 0.05  # m per unit of position action (robosuite OSC_POSE output_max)
ROT_SCALE = 0.5  # rad per unit of rotation action
ROT_GAIN = 1.0  # fraction of the orientation error commanded per step
DESCENT_SPEED = 0.6  # speed cap (action units) on descents: contact comes gently
TOL = 0.01  # m, a free-space waypoint is reached
TOL_DESC = 0.006  # m, the grasp / place point is reached (the P term settles a few mm short in contact)
# geometry
MAX_WIDTH = 0.068  # m, widest closing width the open fingers (7.6 cm gap) take
CLEAR = 0.04  # m, clearance over every object top when moving sideways or carrying
TOP_DEPTH = 0.037  # m, eef at most this far below the object's top (tall objects are gripped near the
# top; the palm, 3.1 cm above the eef, then just touches it: lower, it pushes on it and stalls the descent)
FLOOR_MARGIN = 0.015  # m, eef at least this far above the object's bottom (fingertips 2 mm above)
RIM_DEPTH = 0.02  # m, rim grasp: eef this far below the rim top
BOX_MARGIN = 0.01  # m, neighbour points this close to a gripper box count as a collision
IN_HEIGHT = 0.035  # m, 'in': held object's bottom this far above the container floor at release
ON_HEIGHT = 0.02  # m, 'on': held object's bottom this far above the target's top at release
RETREAT = 0.08  # m, lift after release
YAWS = np.deg2rad([0, 15, -15, 30, -30, 45, -45, 60, -60, 75, -75, 90])  # candidates, preferred first
DOWN = np.array([[0., 1, 0], [1, 0, 0], [0, 0, -1]])  # eef-site frame pointing down (LIBERO's start pose, untilted)
# timing (steps)
CLOSE_STEPS, OPEN_STEPS, WAIT_STEPS = 12, 10, 20
MAX_STEPS = 600  # episode cap (after the settle steps); robosuite's horizon is 1000
OPEN, CLOSE = -1.0, 1.0


# -------------------------------------------------------------------------------------------------
# geometry read from the simulator
def _mj(env):
    """The raw mujoco (model, data) behind a LIBERO env."""
    sim = env.env.sim
    return sim.model._model, sim.data._data


def _geom_points(m, d, g):
    """World-frame points of one geom: its mesh vertices, or the corners of its bounding box."""
    import mujoco
    t = int(m.geom_type[g])
    G = mujoco.mjtGeom
    if t == G.mjGEOM_MESH:
        i = m.geom_dataid[g]
        local = m.mesh_vert[m.mesh_vertadr[i]:m.mesh_vertadr[i] + m.mesh_vertnum[i]]  # (V, 3) in the geom frame
    else:
        s = m.geom_size[g]
        half = {int(G.mjGEOM_BOX): s[:3], int(G.mjGEOM_ELLIPSOID): s[:3], int(G.mjGEOM_SPHERE): s[[0, 0, 0]],
                int(G.mjGEOM_CYLINDER): s[[0, 0, 1]], int(G.mjGEOM_CAPSULE): s[[0, 0, 0]] + [0, 0, s[1]]}.get(t)
        if half is None:  # planes and height fields: not part of a movable object
            return np.zeros((0, 3))
        local = half * np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T  # (8, 3) corners
    return d.geom_xpos[g] + local @ d.geom_xmat[g].reshape(3, 3).T  # (V, 3)


def _collision_geoms(m, prefixes):
    """{prefix: ids of the collision geoms (contype or conaffinity set; visual geoms have neither) of the
    bodies whose names start with prefix}."""
    import mujoco
    out = {p: [] for p in prefixes}
    for g in range(m.ngeom):
        if m.geom_contype[g] or m.geom_conaffinity[g]:
            body = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_BODY, m.geom_bodyid[g]) or ""
            for p in prefixes:
                if body.startswith(p):
                    out[p].append(g)
    return out


def _site(m, d):
    """eef site position (3,) and rotation (3, 3): what robot0_eef_pos / _quat report."""
    import mujoco
    s = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "gripper0_grip_site")
    return d.site_xpos[s].copy(), d.site_xmat[s].reshape(3, 3).copy()


def _gripper(m, d):
    """The open gripper in the eef-site frame: boxes [(lo, hi)] of its collision geoms (extended upwards,
    to -inf along the site's z, which points down: a vertical descent sweeps them), the unit closing
    direction, and how far the palm's underside sits above the site."""
    import mujoco
    p, R = _site(m, d)
    boxes, pads, palm = [], [], None
    for g in _collision_geoms(m, ["gripper0_"])["gripper0_"]:
        local = (_geom_points(m, d, g) - p) @ R  # (V, 3) in the site frame
        if not len(local):
            continue
        lo, hi = local.min(0), local.max(0)
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g)
        if "pad" in name:
            pads.append((lo + hi) / 2)
        if "hand" in name:
            palm = -hi[2]  # the palm's lowest point, as a height above the site
        lo[2] = -np.inf
        boxes.append((lo, hi))
    closing = pads[0] - pads[1]
    return boxes, closing / np.linalg.norm(closing), palm


def _rz(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _hits(points, pos, rot, boxes):
    """How many points lie in the gripper boxes (+ BOX_MARGIN) with the eef site at pos, rotated rot."""
    local = (points - pos) @ rot  # (N, 3) in the site frame
    return sum(int(np.all((local > lo - BOX_MARGIN) & (local < hi + BOX_MARGIN), 1).sum()) for lo, hi in boxes)


class Scene:
    """Everything the script needs to know about one episode's layout, read from the simulator."""

    def __init__(self, env):
        import mujoco
        e = env.env
        self.m, self.d = _mj(env)
        pred, obj, target = e.parsed_problem["goal_state"][0]
        if pred not in ("in", "on"):
            raise ValueError(f"goal {e.parsed_problem['goal_state']}: only 'in' and 'on' goals are scripted")
        names = list(e.objects_dict) + list(e.fixtures_dict)
        self.pred, self.obj = pred, obj
        if target in names:  # an object: aim at its body position (LIBERO's 'on' compares body xy)
            self.target, self.site = target, None
        else:  # a region site: its parent is the longest object name that prefixes it
            self.target = max((n for n in names if target.startswith(n + "_")), key=len)
            self.site = mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_SITE, target)
        self.geoms = {n: g for n, g in zip(names, _collision_geoms(self.m, [n + "_" for n in names]).values())}
        self.body = {n: mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_BODY, e.get_object(n).root_body) for n in names}
        self.boxes, self.closing, self.palm = _gripper(self.m, self.d)
        self.base = self.d.xpos[mujoco.mj_name2id(self.m, mujoco.mjtObj.mjOBJ_BODY, "robot0_base")].copy()

    def points(self, *names):
        """(N, 3) world points of the named objects' collision geoms."""
        pts = [_geom_points(self.m, self.d, g) for n in names for g in self.geoms[n]]
        return np.concatenate(pts or [np.zeros((0, 3))])

    def others(self, skip):
        """(N, 3) points of every object but skip; the table and floor are not objects."""
        return self.points(*(n for n in self.geoms if n != skip))

    def pos(self, name):
        return self.d.xpos[self.body[name]].copy()

    def target_xy(self):
        return (self.d.site_xpos[self.site] if self.site is not None else self.pos(self.target))[:2].copy()


# -------------------------------------------------------------------------------------------------
# grasp choice
def _grasp(scene):
    """(eef position, yaw, kind) of the grasp: a side grasp centred on the object at the first yaw that
    fits its width and touches no neighbour, else a rim grasp (bowls)."""
    pts, others = scene.points(scene.obj), scene.others(scene.obj)
    bot, top = pts[:, 2].min(), pts[:, 2].max()
    z = max((bot + top) / 2, top - TOP_DEPTH, bot + FLOOR_MARGIN)  # tall objects: near the top
    side = []  # (hits, preference, pos, yaw): the first yaw without hits, else the fewest hits
    for i, yaw in enumerate(YAWS):
        rot = _rz(yaw) @ DOWN
        c = (rot @ scene.closing)[:2]
        c /= np.linalg.norm(c)
        o = np.array([-c[1], c[0]])  # perpendicular to the closing direction
        pc, po = pts[:, :2] @ c, pts[:, :2] @ o  # (N,) extents along both axes
        if np.ptp(pc) <= MAX_WIDTH:
            xy = c * (pc.min() + pc.max()) / 2 + o * (po.min() + po.max()) / 2
            pos = np.array([xy[0], xy[1], z])
            side.append((_hits(others, pos, rot, scene.boxes), i, pos, yaw))
    if side:
        _, _, pos, yaw = min(side, key=lambda k: k[:2])
        return pos, yaw, "side"
    # rim grasp: fingers close radially across the wall, on the side facing the robot if it is free
    centre = (pts[:, :2].min(0) + pts[:, :2].max(0)) / 2
    rim = pts[pts[:, 2] > top - 0.01]
    r = np.median(np.linalg.norm(rim[:, :2] - centre, axis=1))
    cands = []
    for yaw in YAWS:
        rot = _rz(yaw) @ DOWN
        c = (rot @ scene.closing)[:2]
        for u in (c, -c):
            u = u / np.linalg.norm(u)
            pos = np.array([*(centre + r * u), top - RIM_DEPTH])
            facing = u @ (scene.base[:2] - centre) > 0
            cands.append((_hits(others, pos, rot, scene.boxes), not facing, abs(yaw), pos, yaw))
    h, _, _, pos, yaw = min(cands, key=lambda k: k[:3])
    return pos, yaw, "rim"


# -------------------------------------------------------------------------------------------------
# the script: waypoints, each planned when the previous one is done (it reads the sim in between)
def plan(env, rng, jitter=0.0):
    """Yields waypoints {pos, grip, rot, steps, tol, speed}: move to pos (tol None: hold it for steps
    steps), gripper command grip, orientation rot; give up after steps steps."""
    scene = Scene(env)
    j = float(jitter)

    def wp(pos, grip, steps, tol=TOL, cap=1.0):
        return {"pos": np.asarray(pos, np.float64), "grip": grip, "rot": rot, "steps": steps, "tol": tol,
                "speed": cap * rng.uniform(1 - 0.4 * j, 1)}

    grasp, yaw, kind = _grasp(scene)
    grasp[2] += rng.uniform(-0.005, 0.005) * j if kind == "side" else 0.0
    rot = _rz(yaw) @ DOWN
    transit = scene.points(*scene.geoms)[:, 2].max() + CLEAR + rng.uniform(0, 0.03) * j
    above = grasp[:2] + rng.uniform(-0.01, 0.01, 2) * j
    yield wp([*above, transit], OPEN, 80)  # (a) sideways at the transit height
    yield wp(grasp, OPEN, 60, TOL_DESC, DESCENT_SPEED)  # (b) straight down to the frozen grasp point
    yield wp(grasp, CLOSE, CLOSE_STEPS + int(rng.integers(0, 5) * j), None)  # (c) close
    # where the object sits in the hand, now that it is held
    eef, _ = _site(scene.m, scene.d)
    held = scene.points(scene.obj)
    drop = held[:, 2].min() - eef[2]  # (<0) held object's bottom relative to the eef
    offset = scene.pos(scene.obj)[:2] - eef[:2]  # body xy relative to the eef: LIBERO tests body positions
    carry = scene.others(scene.obj)[:, 2].max() + CLEAR - drop + rng.uniform(0, 0.03) * j
    yield wp([*eef[:2], carry], CLOSE, 60)  # (d) lift
    spread = 0.01 if scene.pred == "in" else 0.005  # 'on' needs the body within 3 cm of the target's
    goal = scene.target_xy() - offset + rng.uniform(-spread, spread, 2) * j
    yield wp([*goal, carry], CLOSE, 80)  # (e) over the target
    tgt = scene.points(scene.target)
    if scene.pred == "in":  # bottom above the container floor, palm above its rim
        z = max(tgt[:, 2].min() + IN_HEIGHT - drop, tgt[:, 2].max() - scene.palm + 0.005)
    else:
        z = tgt[:, 2].max() + ON_HEIGHT - drop
    yield wp([*goal, z], CLOSE, 60, TOL_DESC, DESCENT_SPEED)  # (f) lower
    eef, _ = _site(scene.m, scene.d)
    yield wp(eef, OPEN, OPEN_STEPS + int(rng.integers(0, 5) * j), None)  # (g) release
    yield wp(eef + [0, 0, RETREAT + rng.uniform(0, 0.04) * j], OPEN, 30)  # (h) retreat


def _rotvec(R):
    """Rotation matrix -> axis-angle (3,), angle in [0, pi]."""
    import mujoco
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, R.reshape(-1))  # (w, x, y, z)
    q = -q if q[0] < 0 else q
    s = np.linalg.norm(q[1:])
    return q[1:] / s * 2 * np.arctan2(s, q[0]) if s > 1e-9 else np.zeros(3)


def _action(m, d, w):
    """The 7-d action towards waypoint w: P terms on position (capped at w's speed) and orientation."""
    eef, R = _site(m, d)
    a = np.zeros(7)
    a[:3] = np.clip((w["pos"] - eef) / POS_SCALE, -w["speed"], w["speed"])
    a[3:6] = np.clip(ROT_GAIN * _rotvec(w["rot"] @ R.T) / ROT_SCALE, -1, 1)  # world-frame delta, as OSC applies it
    a[6] = w["grip"]
    return a


# -------------------------------------------------------------------------------------------------
# one episode
def run_episode(env, rng, noise=0.0, jitter=0.0, record=False, max_steps=MAX_STEPS):
    """One expert episode from the env's current state (after reset or set_init_state). First
    libero_sim.SETTLE_STEPS idle steps, not recorded (evaluation settles as long before the policy acts).
    Returns {success (check_success at the end, after release and retreat), success_ever, steps, and
    with record: actions (T, 7) clipped to [-1, 1], states (T, D) flat sim states before each action,
    obs {agentview_rgb, eye_in_hand_rgb (T, 128, 128, 3) raw upside-down frames, present when the env
    renders them; ee_states (T, 6), gripper_states (T, 2), joint_states (T, 7)}: the obs before action t}."""
    for _ in range(libero_sim.SETTLE_STEPS):
        raw, _, _, _ = env.step(libero_sim.IDLE)
    m, d = _mj(env)
    actions, states, obs = [], [], {}
    ever, t = False, 0

    def step(a):
        nonlocal raw, ever, t
        a = a.copy()
        if noise:
            a[:3] += rng.normal(0, noise, 3)
        a = np.clip(a, -1, 1)
        if record:
            actions.append(a)
            states.append(env.get_sim_state())
            for key, cam in (("agentview_rgb", "agentview_image"), ("eye_in_hand_rgb", "robot0_eye_in_hand_image")):
                if cam in raw:
                    obs.setdefault(key, []).append(raw[cam])
            for k, v in libero_sim.proprio(raw).items():
                obs.setdefault(k, []).append(v)
        raw, _, done, _ = env.step(a)
        ever, t = ever or bool(done), t + 1

    w = None
    for w in plan(env, rng, jitter):
        for _ in range(w["steps"]):
            if t >= max_steps or (w["tol"] is not None and np.linalg.norm(w["pos"] - _site(m, d)[0]) < w["tol"]):
                break
            step(_action(m, d, w))
    for _ in range(WAIT_STEPS):  # hold the retreat pose until success registers
        if t >= max_steps or env.check_success():
            break
        step(_action(m, d, w))
    out = {"success": bool(env.check_success()), "success_ever": ever, "steps": t}
    if record:
        out.update(actions=np.array(actions), states=np.array(states),
                   obs={k: np.array(v) for k, v in obs.items()})
    return out


# -------------------------------------------------------------------------------------------------
# demo files
def _object_qpos(env):
    """Indices into a flat sim state (time, qpos, qvel) of every movable object's position (x, y, z)."""
    import mujoco
    m, _ = _mj(env)
    out = []
    for n, o in env.env.objects_dict.items():
        j = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, o.joints[-1])
        if j >= 0 and m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            out.extend(1 + m.jnt_qposadr[j] + np.arange(3))
    return np.array(out)


def layout_distance(state, evals, idx):
    """How far (m) a flat sim state's object positions are from the nearest of the evaluation's init
    states (rows of evals): the largest object coordinate difference, minimised over the rows."""
    return float(np.abs(evals[:, idx] - state[idx]).max(1).min())


def _task_file(job, tick):
    """Record one task's demos and write its file; tick(1) per kept demo. job: one task's share of
    generate()'s arguments. Returns the task's stats."""
    task, t0 = job["task"], time.time()
    env = libero_sim.make_env(task["bddl"], cameras=job["cameras"], msaa=False)
    evals = libero_sim.init_states(job["suite"], task["id"])  # (50, D): demos must not start from these
    idx = _object_qpos(env)
    demos, attempts = [], 0
    for attempt in range(2 * job["demos"] + 5):  # then give up: the file gets the demos it has
        if len(demos) == job["demos"]:
            break
        # numpy's global generator, which LIBERO's samplers use: a pure function of (seed, task, attempt)
        env.seed(int(np.random.SeedSequence([job["seed"], task["id"], attempt]).generate_state(1)[0]))
        env.reset()  # soft reset: re-samples the object placements
        if layout_distance(env.get_sim_state(), evals, idx) < 1e-3:  # an evaluation layout (never seen so far)
            continue
        attempts += 1
        rng = np.random.default_rng([job["seed"], task["id"], attempt])
        ep = run_episode(env, rng, job["noise"], job["jitter"], record=True)
        if ep["success"]:
            demos.append(ep | {"model_file": env.env.sim.model.get_xml()})
            tick(1)
    env.close()
    if demos:
        libero_sim.write_official(job["path"], demos, task["bddl"])
    steps = np.mean([d["steps"] for d in demos]) if demos else 0
    return (f"{task['name']}: kept {len(demos)}/{attempts}, mean {steps:.0f} steps, "
            f"{(time.time() - t0) / max(attempts, 1):.1f} s/episode"), len(demos), attempts


_TICKS = None  # one item per kept demo, for the progress bar; forked pool workers inherit it


def _pool_job(job):
    return _task_file(job, _TICKS.put)


def generate(suite, out_dir, demos_per_task=20, task_ids=None, workers=2, noise=0.1, jitter=1.0, seed=0,
             cameras=("agentview", "wrist")):
    """Write <out_dir>/<task name>_demo.hdf5 per task (the official LIBERO file name and schema, the
    cameras at 128x128 in the simulator's upside-down orientation, MSAA off like evaluation) with
    demos_per_task successful expert demos from fresh layouts the simulator samples (seeds a function
    of (seed, task, attempt), none equal to an evaluation init state).
    task_ids: None = every task of the suite; workers: processes, one task at a time each;
    noise, jitter: see run_episode / plan. A task gets 2 x demos_per_task + 5 attempts; one that runs
    out of them is written with the demos it has and reported. A task whose file exists is skipped
    (files are written atomically). cameras: both, as official files have; ("agentview",) renders a
    quarter faster (measured, one episode: 333 vs 452 ms/step) and records the same actions, states and
    agentview frames bit for bit, since rendering does not touch the physics."""
    import multiprocessing
    from tqdm import tqdm
    global _TICKS
    if suite not in SOLVED:
        raise ValueError(f"suite {suite!r}: the expert is scripted for {sorted(SOLVED)} only")
    libero_sim.setup_rendering()
    tasks = libero_sim.suite_tasks(suite)
    task_ids = range(len(tasks)) if task_ids is None else task_ids
    jobs = []
    for i in task_ids:
        if i in SOLVED[suite]:
            raise ValueError(f"{suite} task {i} ({tasks[i]['name']}): the scripted expert does not solve it "
                             f"({SOLVED[suite][i]})")
        path = os.path.join(out_dir, tasks[i]["name"] + "_demo.hdf5")
        if os.path.exists(path):
            print(f"skip {path} (exists)")
        else:
            jobs.append({"suite": suite, "task": tasks[i], "path": path, "demos": demos_per_task, "noise": noise,
                         "jitter": jitter, "seed": seed, "cameras": tuple(cameras)})
    stats = []
    bar = tqdm(total=len(jobs) * demos_per_task, desc=f"{suite} expert demos", unit="ep", dynamic_ncols=True)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            stats.append(_task_file(job, bar.update))
            bar.write(stats[-1][0])
    else:
        ctx = multiprocessing.get_context("fork")  # the caller needs no __main__ guard
        _TICKS = ctx.Queue()
        with ctx.Pool(min(workers, len(jobs))) as pool:
            pending = [pool.apply_async(_pool_job, (job,)) for job in jobs]
            while pending:
                try:
                    bar.update(_TICKS.get(timeout=0.5))
                except Exception:  # queue.Empty
                    pass
                for r in [r for r in pending if r.ready()]:
                    pending.remove(r)
                    stats.append(r.get())
                    bar.write(stats[-1][0])
    bar.close()
    kept, tried = sum(s[1] for s in stats), sum(s[2] for s in stats)
    if tried:
        print(f"{suite}: kept {kept}/{tried} episodes ({kept / tried:.0%} success) in {len(stats)} task files")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="The scripted LIBERO expert: one recorded episode and its GIF.")
    p.add_argument("--suite", default="libero_object", choices=list(SOLVED), help="LIBERO suite")
    p.add_argument("--task", type=int, default=0, help="task id; the episode starts from its init state 0")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian sigma on the position actions (action units)")
    p.add_argument("--jitter", type=float, default=0.0, help="waypoint/speed jitter scale in [0, 1]")
    p.add_argument("--gif", default="libero_expert.gif", help="where the demo episode's upright agentview GIF goes")
    args = p.parse_args()
    task = libero_sim.suite_tasks(args.suite)[args.task]
    env = libero_sim.make_env(task["bddl"], cameras=("agentview", "wrist"))
    env.reset()
    env.set_init_state(libero_sim.init_states(args.suite, args.task)[0])
    t0 = time.time()
    ep = run_episode(env, np.random.default_rng(0), args.noise, args.jitter, record=True)
    print(f"{args.suite} task {args.task} ({task['language']}): success {ep['success']} (ever {ep['success_ever']}), "
          f"{ep['steps']} steps, {time.time() - t0:.1f} s with both cameras")
    from PIL import Image
    frames = [Image.fromarray(np.ascontiguousarray(f[::-1])) for f in ep["obs"]["agentview_rgb"][::2]]  # upright
    frames[0].save(args.gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    print(f"wrote {args.gif} ({len(frames)} frames, every 2nd step, upright)")
