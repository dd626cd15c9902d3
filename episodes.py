"""The episode file: its layout, and the validator that the writer (convert.py) and the reader
(data.py) share, so a file the converters write is exactly a file the stages accept.
Bad input is a DataError whose message is one line, "<file>: <key>: expected ..., got ...".
fingerprint(path) names a file's or folder's contents (compare.py records the data each unit read).

Layout (every source; the robomimic/LIBERO one)
    <name>.hdf5
      data/                  attrs: source (toy|libero|bdv2|ssv2|lerobot), fps, image_size, format_version
                             (+ actions_source: 'predicted: ...' where label.py wrote the actions)
        demo_<i>/            attrs: num_samples = T, instruction, task, task_type (+ seed for toy)
          obs/agentview_rgb    uint8   (T, S, S, 3)  main camera, stored UPRIGHT, S = image_size
          obs/eye_in_hand_rgb  uint8   (T, S, S, 3)  optional wrist camera
          obs/<lowdim>         float32 (T, D)        optional proprio (toy: obs/state = gripper x, y, grip)
          actions              float32 (T, A)        absent in action-free video; a_t is taken after obs t
    Obs keys ending in _rgb are cameras, every other obs key is low-dim. A missing camera or key is
    absent, never zero-filled. A file is written to <name>.hdf5.tmp and renamed, so a file that
    exists is complete. What each converted source holds is in convert.py's docstring.

Toy files (python convert.py toy; toyworld.py is the simulator)
    source_video.hdf5   source domain, no actions or state: action-free video for pretraining
    target_demos.hdf5   target domain, --target_demos successful expert demos per task: finetuning
    source_demos.hdf5   source domain with actions and state: the supervised-pretraining baseline
    Seeds: evaluate.py uses seeds 0 .. N-1 (N < 1_000_000). Here file d (1 target_demos, 2 source_demos,
    3 source_video) uses seeds 10_000_000 * --seed + 1_000_000 * d + k, k = 0, 1, ... so no two files,
    and no file and the evaluation, share a seed. Each demo records its seed in attrs["seed"].

Task families (task_family): the paper's Table III reports CCA per task type, Put, Move, Remove, Take.
Every converter that has instructions stores task_type = task_family(instruction) (toy: toyworld's own
family, the same by test), and cca.py groups by task_family(instruction), so files converted before this
rule existed group the same way. docs/method.md counts which real instructions fall in "other".
"""
import glob
import hashlib
import os
import re

import h5py
import numpy as np

FORMAT_VERSION = 1
CAMERAS = {"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}  # policy name -> obs key on disk


# The paper's four task types, each with the verbs that name it (BridgeData v2 and LIBERO phrasing).
FAMILY_VERBS = {"put": ("put", "place", "set", "stack", "insert", "drop"),
                "move": ("move", "push", "slide", "shift", "drag"),
                "remove": ("remove",),
                "take": ("take", "pick", "grab", "grasp", "lift", "get", "retrieve")}
_FAMILY_OF = {v: f for f, verbs in FAMILY_VERBS.items() for v in verbs}


def task_family(instruction):
    """put | move | remove | take | other: the family of the instruction's verb, its first word
    ("remove the lid from the pot" -> remove). A grasp followed by a placing clause is put, not take:
    "pick up the milk and place it in the basket" (LIBERO's pick-and-place) succeeds when the milk is
    placed, as "put the milk in the basket" does; "pick up the blue block" alone is take."""
    words = re.findall(r"[a-z]+", instruction.lower())  # "Put the spoon in the pot." -> put, the, ...
    family = _FAMILY_OF.get(words[0], "other") if words else "other"
    # the first word of each later " and " clause: "pick up the yellow and white mug and place it ..."
    later = [c.split()[0] for c in re.split(r"\band\b", " ".join(words))[1:] if c.split()]
    return "put" if family == "take" and any(_FAMILY_OF.get(v) == "put" for v in later) else family


class DataError(Exception):
    """Bad input, as one line: "<file>: <key>: expected ..., got ..."."""


class Skip(Exception):
    """A raw episode that breaks a rule: reported, counted and left out by a converter (convert.py's shard
    runner; raised there and in convert_lerobot.py), never zero-filled."""


def fail(path, key, expected, got):
    raise DataError(f"{path}: {key}: expected {expected}, got {got}")


def check_demo(path, key, T, size, images, lowdim, actions):
    """The per-episode schema, shared by the writer (convert.write_episodes) and the reader. images and
    lowdim map obs names to numpy arrays or h5py datasets (only shape and dtype are looked at); lowdim and
    actions are numpy."""
    if "agentview_rgb" not in images:
        fail(path, f"{key}/obs/agentview_rgb", f"uint8 (T, {size}, {size}, 3)", "nothing")
    if T < 1:
        fail(path, f"{key}.attrs['num_samples']", "at least 1 step", T)
    for name, x in images.items():
        if x.dtype != np.uint8 or tuple(x.shape) != (T, size, size, 3):
            fail(path, f"{key}/obs/{name}", f"uint8 ({T}, {size}, {size}, 3) (T = num_samples, "
                  f"{size} = image_size)", f"{x.dtype} {tuple(x.shape)}")
    for name, x in [*((f"obs/{k}", v) for k, v in lowdim.items()), ("actions", actions)]:
        if x is None:
            continue
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] != T:
            fail(path, f"{key}/{name}", f"float32 ({T}, D) (T = num_samples)", f"{x.dtype} {x.shape}")
        if not np.isfinite(x).all():
            fail(path, f"{key}/{name}", "finite values", f"{np.size(x) - np.isfinite(x).sum()} NaN/inf")


def open_hdf5(path):
    """h5py.File(path, "r"), or a DataError saying why not."""
    if not os.path.isfile(path):
        fail(path, "file", "an HDF5 episode file", "no such file")
    if not h5py.is_hdf5(path):
        fail(path, "file", "an HDF5 file", "a file without the HDF5 signature")
    try:
        return h5py.File(path, "r")
    except OSError as e:  # e.g. "truncated file: eof = ..."
        fail(path, "file", "a complete HDF5 file", f"an unreadable one ({str(e).splitlines()[0]})")


def demo_keys(path, f):
    """The demo_<i> group names under data/ of an open file, demo_10 after demo_9 (by number, not string)."""
    if not isinstance(f.get("data"), h5py.Group):
        fail(path, "data", "a group of demo_<i> groups", "nothing")
    names = sorted((k for k in f["data"] if k.startswith("demo_") and k[5:].isdigit()), key=lambda k: int(k[5:]))
    if not names:
        fail(path, "data", "at least one demo_<i> group", "0")
    return names


def scan_file(path):
    """Validate a whole file without reading its images. Returns (image_size, demos), one dict per
    demo: key, T, instruction, task, task_type, seed, cameras (obs names), lowdim {name: array},
    actions (array or None), path."""
    key = "file"  # what is being read, for the error line
    try:
        with open_hdf5(path) as f:
            names = demo_keys(path, f)
            attrs = f["data"].attrs
            for a in ("source", "fps", "image_size", "format_version"):
                if a not in attrs:
                    fail(path, f"data.attrs['{a}']", "a value", "nothing")
            if attrs["format_version"] != FORMAT_VERSION:
                fail(path, "data.attrs['format_version']", FORMAT_VERSION, attrs["format_version"])
            size, demos = int(attrs["image_size"]), []
            for name in names:
                key = f"data/{name}"
                g = f["data"][name]
                for a in ("num_samples", "instruction", "task", "task_type"):
                    if a not in g.attrs:
                        fail(path, f"{key}.attrs['{a}']", "a value", "nothing")
                obs = g["obs"] if isinstance(g.get("obs"), h5py.Group) else {}
                images = {k: v for k, v in obs.items() if k.endswith("_rgb")}
                lowdim = {k: v[()] for k, v in obs.items() if not k.endswith("_rgb")}
                actions = g["actions"][()] if "actions" in g else None
                T = int(g.attrs["num_samples"])
                check_demo(path, key, T, size, images, lowdim, actions)
                demos.append(dict(key=key, T=T, cameras=list(images), lowdim=lowdim, actions=actions, path=path,
                                  seed=int(g.attrs.get("seed", -1)),
                                  actions_source=str(attrs.get("actions_source", "recorded")),
                                  **{a: str(g.attrs[a]) for a in ("instruction", "task", "task_type")}))
        return size, demos
    except DataError:
        raise
    except Exception as e:  # a corrupt block inside a file that opened: h5py raises OSError, TypeError, KeyError ...
        read_error(path, key, e)


def read_error(path, key, e):
    """Turn any exception h5py raised while reading key of path into the one-line DataError."""
    why = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
    fail(path, key, "a readable HDF5 object", f"a read error ({why})")


def fingerprint(path):
    """The first 12 hex digits of a sha256 of episode files' contents (path: a file, or a folder's *.hdf5): each
    file's name, every group's and dataset's name and attributes, every dataset's dtype, shape and bytes, in name
    order. Not of the files' bytes, which hold HDF5's write times: data written again gets the same fingerprint
    exactly when it holds the same numbers. compare.py puts it in each unit's record."""
    h = hashlib.sha256()

    def add(name, obj):
        h.update(f"{name}|{sorted((k, repr(v)) for k, v in obj.attrs.items())}".encode())
        if isinstance(obj, h5py.Dataset):
            h.update(f"{obj.dtype}{obj.shape}".encode())
            h.update(np.ascontiguousarray(obj[()]).tobytes())
    for name in [path] if os.path.isfile(path) else sorted(glob.glob(os.path.join(path, "*.hdf5"))):
        with h5py.File(name, "r") as f:
            add(os.path.basename(name), f)
            f.visititems(add)
    return h.hexdigest()[:12]
