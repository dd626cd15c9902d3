"""What writes lawm episode files (the layout is in episodes.py's docstring), and checks them: the toy
datasets (toyworld.py's scripted expert), converters from BridgeData v2 raw folders, Something-Something
v2 webm videos, official LIBERO demo files and LeRobot datasets (read by convert_lerobot.py), and demos that
a scripted expert records in the LIBERO simulator.

    python convert.py toy                   # data/toy/: the three toy files (episodes.py), < 1 min on one CPU core
    python convert.py toy --out data/toy50 --target_demos 50 --source_episodes 2000              # more data
    python convert.py check data/toy        # validate files (a file, a folder, a glob, "toy", "bdv2", "ssv2")
    python convert.py bdv2 --src raw/bridge_data_v2 --out data/bdv2 --workers 8          # BridgeData v2 raw tree
    python convert.py ssv2 --src 20bn-something-something-v2 --labels labels/train.json --out data/ssv2 \
        --fraction 0.1 --frame_skip 2 --workers 8                                           # SSv2 webm videos
    python convert.py libero --src datasets/libero_90 --out data/libero_90 --workers 8       # official LIBERO files
    python convert.py libero --src 'datasets/libero_10/*_demo.hdf5' --out data/libero_10_64 --image_size 64
    python convert.py libero-expert --suite libero_object --demos 20 --out data/libero_expert --workers 2
        # no download: scripted-expert demos recorded in the real simulator (libero_expert.py), in the
        # official schema; convert them with `convert.py libero` like official files
    python convert.py lerobot --src datasets/libero --out data/libero_lerobot --flip columns \
        --camera observation.images.image=agentview --action action    # a LeRobot dataset (convert_lerobot.py)
Bad input stops with one line, "error: <file>: <key>: expected ..., got ...", and no traceback.

Shards. bdv2, ssv2, libero and lerobot write <name>_00000.hdf5, <name>_00001.hdf5, ... of --shard_size episodes,
one write_episodes call each (written to .tmp, then renamed: a shard that exists is complete). The sorted
input list is cut into runs of --shard_size, so shard i always holds the same inputs and a rerun skips the
shards that exist (a shard whose inputs were all skipped leaves <name>_<i:05d>.empty). A run that fails
removes what it made that holds no shard: the folders it created, and libero.json when no shard is there.
A raw episode that breaks a rule is reported, counted and left out; nothing is zero-filled: a missing camera
or key is absent.

What each source becomes
    bdv2: obs/agentview_rgb = images0, obs/state = obs_dict full_state (7), actions (T, 7), instruction =
    first lang.txt line, task_type = episodes.task_family(instruction) (put/move/remove/take/other); 5 Hz.
    ssv2: obs/agentview_rgb only, instruction = the filled-in label, task = template; 12 fps / --frame_skip.
    libero: obs/agentview_rgb, obs/eye_in_hand_rgb = the official frames flipped upright (img[::-1]) and
    resized; obs/ee_states (6), gripper_states (2), joint_states (7) and actions (T, 7) as float32; instruction =
    the language LIBERO trains with, from the file name <task>_demo.hdf5 (not problem_info's BDDL text); task =
    <task>, task_type = episodes.task_family(instruction); 20 fps. Every source file is checked (check_official)
    before anything is written; libero.json in --out records the sources and options, and a rerun with other
    ones stops instead of mixing shards.
    lerobot: the flags map the dataset's keys (--camera, --action, --state); convert_lerobot.py's docstring has
    the layouts and rules; lerobot.json records the episodes and options as libero.json does.
"""
import argparse
import collections
import glob
import json
import multiprocessing
import os
import pickle
import re
import sys
import time

import h5py
import numpy as np
from PIL import Image
from tqdm import tqdm

import convert_lerobot
import libero_sim
from data import find_episode_files
from episodes import (CAMERAS, FORMAT_VERSION, DataError, Skip, check_demo, demo_keys, fail, open_hdf5, read_error,
                      scan_file, task_family)
from run import check_out_dir

BDV2_FPS, SSV2_FPS = 5, 12  # BridgeData v2 control rate; SSv2 native frame rate (before --frame_skip)
BDV2_LATENCY_FIXED = "2021-07-23"  # BridgeData collected before this date has one step of camera latency
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}")  # the collection folder above raw/
LIBERO_FPS = 20  # LIBERO's control rate
LIBERO_LOWDIM = {"ee_states": 6, "gripper_states": 2, "joint_states": 7}  # official proprio kept: name -> width
LIBERO_ACTION_DIM = 7  # OSC_POSE deltas (6) + gripper
TOY_FPS = 10


# ----------------------------------------------------------------------------------------------
# the writer of every episode file (episodes.py's docstring has the layout)

def write_episodes(path, episodes, source, fps, attrs=None):
    """Write episodes (a list, or any iterable: it is streamed, never held whole) to one file; attrs: more
    data.attrs (label.py: actions_source).
    Atomic: written to path.tmp, checked, then renamed; on any error nothing is left behind."""
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with h5py.File(tmp, "w") as f:
            data = f.create_group("data")
            data.attrs.update(source=source, fps=fps, format_version=FORMAT_VERSION, **(attrs or {}))
            n = 0
            for n, ep in enumerate(episodes, 1):
                key, obs, actions = f"data/demo_{n - 1}", ep["obs"], ep.get("actions")
                T = len(obs["agentview_rgb"]) if "agentview_rgb" in obs else 0
                size = data.attrs.setdefault("image_size", obs["agentview_rgb"].shape[1] if T else 0)
                for a in ("instruction", "task", "task_type"):
                    if not isinstance(ep.get(a), str):
                        fail(path, f"{key}.attrs['{a}']", "a string", repr(ep.get(a)))
                check_demo(path, key, T, size, {k: v for k, v in obs.items() if k.endswith("_rgb")},
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
                fail(path, "data", "at least one episode", "none")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ----------------------------------------------------------------------------------------------
# the shard runner, shared by bdv2, ssv2, libero and lerobot

def _write_shard(job):
    """Convert the inputs of one shard and write it (runs in a worker). Returns (kept, frames, skipped)."""
    kind, path, items, opts = job
    make = {"bdv2": _bdv2_episode, "ssv2": _ssv2_episode, "libero": _libero_episode, "lerobot": convert_lerobot.episode}[kind]
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
        fps = SSV2_FPS / opts["frame_skip"] if kind == "ssv2" else opts["fps"] if kind == "lerobot" else \
            {"bdv2": BDV2_FPS, "libero": LIBERO_FPS}[kind]
        write_episodes(path, episodes(), kind, fps)
    except DataError:
        if tally["kept"] or len(skipped) < len(items):  # a real error, not "every input was skipped"
            raise
        with open(path[:-5] + ".empty.tmp", "w") as f:  # every input skipped: remember it, with why
            f.writelines(f"{name}\t{why}\n" for name, why in skipped)
        os.replace(path[:-5] + ".empty.tmp", path[:-5] + ".empty")
    return tally["kept"], tally["frames"], skipped


def _convert(kind, items, args, opts, manifest=None):
    """Make --out, then convert items into shards there (_shards). manifest (libero): the sources and options,
    written as <kind>.json beside the shards, or compared with the one an earlier run wrote there. A run that
    fails leaves no shard of its own half-written (write_episodes), and removes what it made that describes
    no shard: its manifest, when no shard is there, and the folders it created, when they are empty."""
    if args.shard_size < 1 or args.workers < 1 or args.image_size < 1:
        fail("arguments", "--shard_size, --workers, --image_size", "positive", (args.shard_size, args.workers, args.image_size))
    made, d = [], os.path.normpath(args.out)  # the folders this run creates, deepest first
    while d and not os.path.exists(d):
        made.append(d)
        d = os.path.dirname(d)
    os.makedirs(args.out, exist_ok=True)
    path, wrote = os.path.join(args.out, f"{kind}.json"), False
    try:
        if manifest is not None and os.path.exists(path):
            with open(path) as f:
                try:
                    earlier = json.load(f)
                except json.JSONDecodeError as e:
                    fail(path, "file", "JSON written by an earlier conversion", f"invalid JSON ({e})")
            if earlier != manifest:
                fail(path, "contents", "the sources and options of this run (convert into a fresh --out)",
                     "those of an earlier, different conversion")
        elif manifest is not None:
            with open(path + ".tmp", "w") as f:
                json.dump(manifest, f)
            os.replace(path + ".tmp", path)
            wrote = True
        _shards(kind, items, args, opts)
    except BaseException:
        if wrote and not any(re.fullmatch(rf"{kind}_\d+\.(hdf5|empty)", name) for name in os.listdir(args.out)):
            os.remove(path)
        for d in made:
            if os.listdir(d):
                break
            os.rmdir(d)
        raise


def _shards(kind, items, args, opts):
    """Shard items, convert the missing shards with --workers processes, print a summary."""
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
    if jobs and len(jobs) == n and kept == 0:  # nothing usable anywhere: a wrong --src, not a few bad inputs
        for j in jobs:  # no .empty markers either, or a rerun with the right --src would skip those shards
            if os.path.exists(j[1][:-5] + ".empty"):
                os.remove(j[1][:-5] + ".empty")
        fail(args.src, "inputs", f"at least one usable {kind} input (is --src the right folder?)",
             f"none of {len(items)}: " + ", ".join(f"{v} {k}" for k, v in why.most_common(3)))
    dt = max(time.time() - t0, 1e-9)
    print(f"{kind}: {args.out}: {len(jobs)} of {n} shards done now ({n - len(jobs)} already there), {kept} episodes kept, "
          f"{sum(why.values())} skipped" + "".join(f", {v} {k}" for k, v in sorted(why.items()))
          + f", {frames} frames in {dt:.1f}s ({frames / dt:.0f} frames/s)")


# ----------------------------------------------------------------------------------------------
# BridgeData v2 and Something-Something v2: raw downloads

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
                # squashed to a square like the official converters; decodes here: a corrupt jpg raises now
                frames[t] = np.asarray(im.convert("RGB").resize((image_size, image_size), Image.BILINEAR))
        except Exception as e:
            raise Skip(f"unreadable image: {os.path.basename(path)}: {type(e).__name__}")
    ep = {"obs": {"agentview_rgb": frames}, "actions": acts[:T], "instruction": instruction,
          "task": instruction, "task_type": task_family(instruction)}
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


def convert_bdv2(args):
    if not args.src or not os.path.isdir(args.src):
        fail(args.src or "--src", "folder", "the raw BridgeData v2 tree (raw/bridge_data_v2)", "nothing there")
    trajs = _bdv2_trajectories(args.src)
    if not trajs:
        fail(args.src, "trajectories", "folders .../raw/traj_group*/traj*/", "none")
    _convert("bdv2", trajs, args, dict(image_size=args.image_size, min_frames=args.min_frames))


def convert_ssv2(args):
    if not args.src or not os.path.isdir(args.src):
        fail(args.src or "--src", "folder", "the folder of SSv2 <id>.webm videos", "nothing there")
    if not args.labels or not os.path.isfile(args.labels):
        fail(args.labels or "--labels", "file", "the SSv2 labels JSON (labels/train.json)", "no such file")
    try:
        with open(args.labels) as f:
            entries = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(args.labels, "file", "JSON", f"invalid JSON ({e})")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) and isinstance(e.get("id"), str) and isinstance(e.get("label"), str) for e in entries):
        fail(args.labels, "entries", 'a non-empty list of {"id": str, "label": str, ...}', "something else")
    if not 0 < args.fraction <= 1 or args.frame_skip < 1:
        fail("arguments", "--fraction, --frame_skip", "0 < fraction <= 1, frame_skip >= 1", (args.fraction, args.frame_skip))
    entries = sorted(entries, key=lambda e: (len(e["id"]), e["id"]))  # numeric order for numeric ids
    # A seeded random subset, sorted again so shards do not depend on the draw order. (The release took the
    # first 10,000 file names in string order, a subset biased towards ids starting with "1".)
    keep = np.sort(np.random.default_rng(args.seed).choice(len(entries), max(1, round(args.fraction * len(entries))), replace=False))
    # instruction = the filled-in "label" ("Putting a pen on a table"), not the "[something]" template
    items = [(entries[i]["id"], entries[i]["label"], str(entries[i].get("template", entries[i]["label"]))) for i in keep]
    if not any(os.path.isfile(os.path.join(args.src, f"{vid}.webm")) for vid, _, _ in items):
        fail(args.src, "videos", f"<id>.webm for the {len(items)} listed clips (is --src the folder that holds "
             "them?)", "none of them")
    _convert("ssv2", items, args, dict(src=args.src, image_size=args.image_size, frame_skip=args.frame_skip,
                                        min_frames=args.min_frames))


# ----------------------------------------------------------------------------------------------
# LIBERO: official demo files <task>_demo.hdf5 (libero_sim.write_official writes the same schema) ->
# shards libero_<i:05d>.hdf5 of --shard_size demos, in (file, demo number) order

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
        fail(path, "file name", "<task>_demo.hdf5 (LIBERO's instruction comes from the task name)", repr(name))
    try:
        with open_hdf5(path) as f:
            return _check_official_open(path, f, name[:-len("_demo.hdf5")])
    except OSError as e:  # a corrupt block inside a file that opened
        fail(path, "file", "a readable HDF5 file", f"a read error ({str(e).splitlines()[0]})")


def _check_official_open(path, f, task):
    names = demo_keys(path, f)
    info = f["data"].attrs.get("problem_info")
    want = "a JSON string with problem_name and language_instruction"
    if info is None:
        fail(path, "data.attrs['problem_info']", want, "nothing")
    try:
        info = json.loads(info.decode() if isinstance(info, bytes) else str(info))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(path, "data.attrs['problem_info']", want, f"invalid JSON ({e})")
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("problem_name", "language_instruction")):
        fail(path, "data.attrs['problem_info']", want, repr(info)[:200])
    demos = []
    for name in names:
        key, g = f"data/{name}", f["data"][name]
        a = g.get("actions") if isinstance(g, h5py.Group) else None
        if not isinstance(a, h5py.Dataset) or a.ndim != 2 or a.shape[1] != LIBERO_ACTION_DIM or a.shape[0] < 1 \
                or a.dtype.kind != "f":
            got = f"{a.dtype} {a.shape}" if isinstance(a, h5py.Dataset) else "nothing"
            fail(path, f"{key}/actions", f"float (T, {LIBERO_ACTION_DIM}) with T >= 1", got)
        T = a.shape[0]
        if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != T:
            fail(path, f"{key}.attrs['num_samples']", f"{T} (the rows of actions)", int(g.attrs["num_samples"]))
        obs = g.get("obs")
        if not isinstance(obs, h5py.Group) or "agentview_rgb" not in obs:
            fail(path, f"{key}/obs/agentview_rgb", f"uint8 ({T}, H, W, 3)", "nothing")
        cameras = [k for k in ("agentview_rgb", "eye_in_hand_rgb") if k in obs]
        for k in cameras:
            x = obs[k]
            if not isinstance(x, h5py.Dataset) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[0] != T or x.shape[3] != 3:
                got = f"{x.dtype} {x.shape}" if isinstance(x, h5py.Dataset) else "a group"
                fail(path, f"{key}/obs/{k}", f"uint8 ({T}, H, W, 3) (T = rows of actions)", got)
        for k, D in LIBERO_LOWDIM.items():
            x = obs.get(k)
            if x is not None and (not isinstance(x, h5py.Dataset) or x.shape != (T, D) or x.dtype.kind != "f"):
                got = f"{x.dtype} {x.shape}" if isinstance(x, h5py.Dataset) else "a group"
                fail(path, f"{key}/obs/{k}", f"float ({T}, {D}) (T = rows of actions)", got)
        for k, x in [("actions", a), *((f"obs/{k}", obs[k]) for k in LIBERO_LOWDIM if k in obs)]:
            with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, counted below
                v = x[()].astype(np.float32)  # small arrays, checked as they will be written
            if bad := v.size - np.isfinite(v).sum():
                fail(path, f"{key}/{k}", "finite values (as float32)", f"{bad} NaN/inf")
        demos.append({"key": key, "T": T, "cameras": cameras})
    return {"path": path, "task": task, "instruction": libero_language(task),
            "bddl_language": info["language_instruction"], "demos": demos}


def _official_files(src):
    """The <task>_demo.hdf5 files named by --src: a folder (searched recursively), a file or a glob; sorted."""
    if not src:
        fail("--src", "argument", "a folder, a file or a glob of official <task>_demo.hdf5 files", "nothing")
    if os.path.isdir(src):
        found = sorted(glob.glob(os.path.join(src, "**", "*_demo.hdf5"), recursive=True))
    else:
        found = [src] if os.path.isfile(src) else sorted(glob.glob(src))
    if not found:
        fail(src, "files", "official LIBERO <task>_demo.hdf5 files (a folder, a file or a glob)", "none")
    return found


def _libero_episode(item, image_size, cameras):
    """One demo of an official LIBERO file, already checked by check_official -> an episode dict."""
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
        fail(path, key, "readable data", f"a read error ({str(e).splitlines()[0]})")
    return {"obs": obs, "actions": actions, "instruction": instruction, "task": task,
            "task_type": task_family(instruction)}


def convert_libero(args):
    files = _official_files(args.src)
    names = [c for c in args.cameras.split(",") if c]
    if "agentview" not in names or not set(names) <= set(CAMERAS):
        fail("arguments", "--cameras", "a comma list of agentview (required) and wrist", repr(args.cameras))
    if args.shard_size < 1 or args.workers < 1 or args.image_size < 1:
        fail("arguments", "--shard_size, --workers, --image_size", "positive", (args.shard_size, args.workers, args.image_size))
    cameras = [CAMERAS[c] for c in names]
    checked = [check_official(p) for p in files]  # every file, before anything is written
    items = [(c["path"], d["key"], c["task"], c["instruction"]) for c in checked for d in c["demos"]]
    no_wrist = sum("eye_in_hand_rgb" not in d["cameras"] for c in checked for d in c["demos"])
    print(f"libero: {len(files)} files checked, {len(items)} demos, {sum(d['T'] for c in checked for d in c['demos'])} "
          f"steps, {len({c['task'] for c in checked})} tasks"
          + (f"; {no_wrist} demos without eye_in_hand_rgb keep no wrist camera" if "wrist" in names and no_wrist else ""))
    # Shard i holds items[i*n:(i+1)*n]: a rerun may only skip the shards that exist if it would write the
    # same items with the same options, so the first run records them (libero.json) and a different rerun stops.
    manifest = {"image_size": args.image_size, "cameras": cameras, "shard_size": args.shard_size,
                "episodes": [[c["task"], d["key"], d["T"]] for c in checked for d in c["demos"]]}
    _convert("libero", items, args, dict(image_size=args.image_size, cameras=cameras), manifest)


def record_libero_expert(args):
    import libero_expert  # needs the simulator stack (requirements-libero.txt)
    tasks = None if not args.tasks else [int(t) for t in args.tasks.split(",")]
    cameras = args.cameras.split(",")
    if cameras[0] != "agentview" or not set(cameras) <= set(CAMERAS) or len(set(cameras)) != len(cameras):
        fail("arguments", "--cameras", "agentview, then optionally wrist", args.cameras)
    if args.demos < 1 or args.workers < 1 or args.noise < 0 or not 0 <= args.jitter <= 1:
        fail("arguments", "--demos, --workers, --noise, --jitter", "demos, workers >= 1, noise >= 0, 0 <= jitter <= 1",
              (args.demos, args.workers, args.noise, args.jitter))
    try:
        libero_expert.generate(args.suite, args.out, demos_per_task=args.demos, task_ids=tasks, workers=args.workers,
                               noise=args.noise, jitter=args.jitter, seed=args.seed, cameras=cameras)
    except ValueError as e:  # a suite or task the expert is not scripted for
        fail(args.suite, "--suite/--tasks", "a suite and tasks the scripted expert solves", e)


def convert_lerobot_dataset(args):
    items, opts, manifest = convert_lerobot.plan(args)  # reading LeRobot's layouts lives in convert_lerobot.py
    _convert("lerobot", items, args, opts, manifest)


# ---------------------------------------------------------------------------------------------------
# the toy datasets (toyworld.py's scripted expert) and the check command

def write_toy(args):
    # bad flags stop before anything is written; every file needs an episode, the world model 2^k >= 16 pixels
    for name, low in (("source_episodes", 1), ("target_demos", 1), ("source_demos", 1), ("min_steps", 0),
                      ("seed", 0)):
        if getattr(args, name) < low:
            sys.exit(f"error: --{name}: expected an integer >= {low}, got {getattr(args, name)}")
    if args.image_size < 16 or args.image_size & (args.image_size - 1):
        sys.exit(f"error: --image_size: expected a power of two >= 16 (for the world model), got {args.image_size}")
    import toyworld
    tasks = toyworld.TASKS

    def spread(total):  # total episodes over the tasks, round robin
        return {t: total // len(tasks) + (i < total % len(tasks)) for i, t in enumerate(tasks)}

    files = [("target_demos", "target", 1, {t: args.target_demos for t in tasks}, True),
             ("source_demos", "source", 2, spread(args.source_demos), True),
             ("source_video", "source", 3, spread(args.source_episodes), False)]
    for name, domain, d, counts, labeled in files:
        tally = {"tries": 0, "kept": 0}
        path = os.path.join(args.out, f"{name}.hdf5")
        seed0 = 10_000_000 * args.seed + 1_000_000 * d  # see "Seeds" in episodes.py's docstring
        episodes = toyworld.expert_episodes(domain, seed0, counts, labeled, args.image_size, args.min_steps, tally)
        write_episodes(path, tqdm(episodes, total=sum(counts.values()), desc=name, unit="ep"), "toy", TOY_FPS)
        short = " (FEWER than asked)" if tally["kept"] < sum(counts.values()) else ""
        print(f"{path}: {tally['kept']} episodes{short}, {domain} domain, "
              + (f"{tally['kept']} successful of {tally['tries']} expert tries" if labeled else "no actions"))


def check(args):
    """One line per file named by the spec (a toy folder is checked whole: its demos too)."""
    for path in find_episode_files(args.spec, role="any"):
        size, demos = scan_file(path)
        if not args.quick:  # decompress every image chunk: a corrupt one passes the header checks of scan_file
            with open_hdf5(path) as f:
                for d in demos:
                    for cam in d["cameras"]:
                        key = f"{d['key']}/obs/{cam}"
                        try:
                            for t in range(0, d["T"], 256):
                                f[key][t:t + 256]
                        except Exception as e:
                            read_error(path, key, e)
        acts = {d["actions"].shape[1] for d in demos if d["actions"] is not None}
        print(f"{path}: ok, {len(demos)} episodes, {sum(d['T'] for d in demos)} steps, {size}x{size}, "
              f"actions {sorted(acts) or 'none'}, {len({d['task'] for d in demos})} tasks")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="Write and check lawm episode files (see the docstring).")
    sub = p.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy", help="generate the toy-world datasets with the scripted expert")
    toy.add_argument("--out", default="data/toy", help="output folder")
    toy.add_argument("--source_episodes", type=int, default=500, help="action-free source-domain videos (total)")
    toy.add_argument("--target_demos", type=int, default=5, help="successful target-domain demos PER TASK")
    toy.add_argument("--source_demos", type=int, default=200, help="successful source-domain demos with actions (total)")
    toy.add_argument("--image_size", type=int, default=64, help="frame height and width in pixels")
    toy.add_argument("--seed", type=int, default=0, help="seed block; see 'Seeds' in episodes.py's docstring")
    toy.add_argument("--min_steps", type=int, default=20,
                     help="pad shorter episodes with idle steps after the task ends (pretraining windows need chunk+1 frames)")
    toy.set_defaults(run=write_toy)
    chk = sub.add_parser("check", help="validate episode files, reading every image chunk; one line per file")
    chk.add_argument("spec", help="a file, a folder (its *.hdf5), a glob, toy (data/toy), bdv2 or ssv2; several comma-joined")
    chk.add_argument("--quick", action="store_true", help="headers, attributes and low-dim arrays only: no images read")
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
    exp.add_argument("--cameras", default="agentview,wrist", help="cameras rendered and recorded (agentview: a quarter "
                     "faster, the same actions, states and agentview frames)")
    exp.set_defaults(run=record_libero_expert)
    lr = sub.add_parser("lerobot", help="convert a LeRobot dataset folder (v2.0, v2.1, v3.0) into episode shards")
    lr.add_argument("--src", help="the dataset's folder (meta/info.json, data/, videos/); run with --src alone to list its keys")
    lr.add_argument("--out", default="data/lerobot", help="output folder of shards")
    lr.add_argument("--camera", action="append", help="KEY=agentview (required) or KEY=wrist, e.g. "
                    "observation.images.image=agentview; repeat the flag for a second camera")
    lr.add_argument("--action", help="the action KEY, e.g. action (none: action-free video, for pretrain.py)")
    lr.add_argument("--state", action="append", help="a proprio KEY[=NAME] kept as obs/NAME (default NAME: the KEY "
                    "without 'observation.', dots as _: observation.state -> state), or KEY=NAME1:D1,NAME2:D2,... "
                    "split by columns (LIBERO ports: observation.state=ee_states:6,gripper_states:2); repeatable")
    lr.add_argument("--flip", default="none", choices=list(convert_lerobot.FLIPS),
                    help="reverse the frames' rows, columns or both (= rotate 180); LeRobot's LIBERO ports: columns "
                    "(docs/libero.md)")
    lr.add_argument("--image_size", type=int, default=128, help="frames squashed to this height and width")
    lr.add_argument("--tolerance_s", type=float, default=convert_lerobot.TOLERANCE_S,
                    help="how far a frame's time may be from its row's timestamp (LeRobotDataset's default)")
    lr.add_argument("--min_frames", type=int, default=17,
                    help="skip shorter episodes (pretraining windows need chunk*frame_skip+1 frames; DP chunk 16)")
    lr.add_argument("--shard_size", type=int, default=200, help="episodes per shard file")
    lr.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    lr.set_defaults(run=convert_lerobot_dataset)
    # bad input stops with one line naming file, key and expectation, and no traceback; --out is checked
    # before any work, so a folder that cannot take the files stops a command before its first episode
    args = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each line reaches a pipe or a log file when printed
    if getattr(args, "out", None) is not None and (why := check_out_dir("--out", args.out)):
        sys.exit(f"error: {why}")
    try:
        args.run(args)
    except DataError as e:
        sys.exit(f"error: {e}")
