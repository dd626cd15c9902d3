"""LeRobot datasets (codebase v2.0, v2.1 and v3.0) in a local folder -> lawm episodes. This file reads;
`python convert.py lerobot` (convert.py's docstring) shards, writes and checks like every other source:

    python convert.py lerobot --src datasets/libero --out data/libero_lerobot --flip columns \
        --camera observation.images.image=agentview --camera observation.images.wrist_image=wrist \
        --action action --state observation.state=ee_states:6,gripper_states:2   # labeled demos, for finetune.py
    python convert.py lerobot --src datasets/bridge --out data/bridge_video --camera observation.images.image_0=agentview
        # no --action: action-free video, for pretrain.py
    python convert.py lerobot --src datasets/libero        # no --camera: the error lists the dataset's keys

Layouts, as LeRobot writes them (meta/info.json: codebase_version, fps, features, data_path, video_path,
chunks_size; read from LeRobot's source, v0.3.3 for v2.1 and v0.4.4 for v3.0, and from the tiny datasets
its own writer made in tests/data/: see tests/test_lerobot.py)
    v2.0, v2.1: data_path data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet, one file per
        episode; video_path videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4,
        one per camera and episode; episode_chunk = episode_index // chunks_size. meta/episodes.jsonl:
        {episode_index, tasks, length}; meta/tasks.jsonl: {task_index, task}. (v2.1 only adds
        meta/episodes_stats.jsonl, not read here.)
    v3.0: data_path data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet and video_path
        videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4 hold many episodes each.
        meta/episodes/chunk-*/file-*.parquet, a row per episode: episode_index, tasks, length,
        data/chunk_index, data/file_index, dataset_from_index, dataset_to_index and, per video key,
        videos/<key>/chunk_index, file_index, from_timestamp, to_timestamp (its span in that video file).
        meta/tasks.parquet: task_index, with the task text as the pandas index (a column "task" or
        "__index_level_0__", named in the file's pandas metadata).
    Every version: a parquet row per frame holding timestamp (seconds from the episode's start),
    frame_index, episode_index, index, task_index and every feature but the videos; an image feature
    (dtype image) is a {bytes: PNG, path} struct.

What an episode becomes (source "lerobot", fps = info.json's): each --camera KEY=NAME the frames of KEY as
obs/<agentview_rgb | eye_in_hand_rgb>, --flip'ed, then squashed to --image_size (bilinear, as every
converter); --action KEY the actions (T, A) as float32 (no --action: video, no actions); each --state
KEY[=NAME] obs/<NAME> (T, D) float32 (KEY=NAME1:D1,NAME2:D2 splits its columns in order); instruction = task =
the tasks table's text for the rows' task_index, task_type = episodes.task_family(instruction). Episodes with
an empty instruction are kept and listed.

Frames are matched by timestamp, as LeRobotDataset does (decode_video_frames): row i shows the decoded frame
whose time (pts * time_base) is nearest from_timestamp + timestamp[i] (v2: from_timestamp = 0), and must be
within --tolerance_s of it. An episode is skipped, with a line naming it and a count in the summary, when
its rows disagree with the episodes table's length, its timestamps do not step by 1/fps within
--tolerance_s (LeRobot's check_timestamps_sync), a video decodes to another number of frames in its span
than the episode has rows (a truncated file), a file is missing or unreadable, or its rows name several
tasks; nothing is padded or zero-filled.
"""
import glob
import io
import json
import os

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from episodes import CAMERAS, Skip, fail, task_family

VERSIONS = ("v2.0", "v2.1", "v3.0")
TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance_s
BOOK = ("timestamp", "frame_index", "episode_index", "index", "task_index")  # LeRobot's own columns
FLIPS = {"none": (), "rows": (1,), "columns": (2,), "both": (1, 2)}  # --flip: the axes of (T, H, W, 3) reversed


def _json(path, lines=False):
    """A JSON file (or a JSON-lines file), or a one-line error naming it."""
    if not os.path.isfile(path):
        fail(path, "file", "a LeRobot metadata file (is --src the dataset's folder?)", "no such file")
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()] if lines else json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        fail(path, "file", "JSON" + (" lines" if lines else ""), f"invalid JSON ({e})")


def _table(path, columns=None):
    """A metadata parquet file (only these columns), or a one-line error naming it."""
    try:
        names = pq.read_schema(path).names
        if missing := [c for c in columns or [] if c not in names]:
            fail(path, "columns", ", ".join(columns), f"no {', '.join(missing)}")
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:  # a truncated or corrupt file
        fail(path, "file", "a readable parquet file", str(e).splitlines()[0][:200])


def _describe(features):
    """The dataset's keys as the error lines list them: 'observation.state (float32 [8])', ..."""
    return ", ".join(f"{k} ({f.get('dtype')} {list(f.get('shape', []))})" for k, f in features.items() if k not in BOOK)


def _name_map(specs, flag, default):
    """['KEY=NAME', 'KEY', ...] -> {KEY: NAME}; a bare KEY gets default(KEY)."""
    out = {}
    for s in specs or []:
        key, _, name = s.partition("=")
        if not key or key in out:
            fail("arguments", flag, "KEY=NAME, each KEY once", repr(s))
        out[key] = name or default(key)
    return out


def _split(key, spec, D):
    """--state KEY=NAME -> [[NAME, 0, D]]; KEY=NAME1:D1,NAME2:D2 -> consecutive column ranges, D1 + D2 = D (LeRobot's
    LIBERO observation.state is our ee_states (6) and gripper_states (2) side by side)."""
    if ":" not in spec:
        return [[spec, 0, D]]
    try:
        parts = [(n, int(w)) for n, w in (p.split(":") for p in spec.split(","))]
    except ValueError:
        parts = []
    if not parts or sum(w for _, w in parts) != D or min(w for _, w in parts) < 1:
        fail("arguments", "--state", f"{key}=NAME or {key}=NAME:WIDTH,NAME:WIDTH,... with widths adding up to {D}", repr(spec))
    ends = np.cumsum([w for _, w in parts]).tolist()
    return [[n, e - w, e] for (n, w), e in zip(parts, ends)]


def read_info(src):
    """meta/info.json, its version and the fields this reader uses checked."""
    path = os.path.join(src, "meta", "info.json")
    info = _json(path)
    if not isinstance(info, dict) or info.get("codebase_version") not in VERSIONS:
        fail(path, "codebase_version", " or ".join(VERSIONS), repr(info.get("codebase_version") if isinstance(info, dict) else info))
    for k, kind in (("fps", (int, float)), ("features", dict), ("data_path", str)):
        if not isinstance(info.get(k), kind):
            fail(path, k, f"a {kind.__name__ if isinstance(kind, type) else 'number'}", repr(info.get(k)))
    return info


def _check_keys(info, path, cameras, action, state):
    """Every mapped key is a feature of the right kind; the error lists the dataset's keys."""
    features, have = info["features"], _describe(info["features"])
    for key, name in cameras.items():
        f = features.get(key, {})
        if f.get("dtype") not in ("video", "image") or len(f.get("shape", [])) != 3:
            fail(path, f"features['{key}']", f"a video or image feature for --camera (the dataset has: {have})",
                 f"{f.get('dtype')} {list(f.get('shape', []))}" if f else "nothing")
        if name not in CAMERAS:
            fail("arguments", "--camera", f"KEY=NAME with NAME one of {', '.join(CAMERAS)}", repr(f"{key}={name}"))
    for key, flag in [*(((action, "--action"),) if action else ()), *((k, "--state") for k in state)]:
        f = features.get(key, {})
        if not str(f.get("dtype")).startswith("float") or len(f.get("shape", [])) != 1:
            fail(path, f"features['{key}']", f"a float (D,) feature for {flag} (the dataset has: {have})",
                 f"{f.get('dtype')} {list(f.get('shape', []))}" if f else "nothing")


def _tasks(src, version):
    """{task_index: text} from meta/tasks.jsonl (v2) or meta/tasks.parquet (v3)."""
    if version != "v3.0":
        path = os.path.join(src, "meta", "tasks.jsonl")
        rows = _json(path, lines=True)
        if not all(isinstance(r, dict) and isinstance(r.get("task_index"), int) and isinstance(r.get("task"), str) for r in rows):
            fail(path, "rows", '{"task_index": int, "task": str} each', "another shape")
        return {r["task_index"]: r["task"] for r in rows}
    path = os.path.join(src, "meta", "tasks.parquet")
    if not os.path.isfile(path):
        fail(path, "file", "the v3.0 tasks table", "no such file")
    t = _table(path)
    meta = json.loads((t.schema.metadata or {}).get(b"pandas", b"{}"))
    text = next((c for c in meta.get("index_columns", []) if isinstance(c, str)), "task")  # the pandas index
    if text not in t.column_names or "task_index" not in t.column_names:
        fail(path, "columns", "task_index and the task text (a column 'task' or the pandas index)", t.column_names)
    return dict(zip(t.column("task_index").to_pylist(), t.column(text).to_pylist()))


def _episodes(src, info, videos):
    """The episodes table, one dict per episode in episode_index order, with the v3 columns this reader uses."""
    if info["codebase_version"] != "v3.0":
        path = os.path.join(src, "meta", "episodes.jsonl")
        rows = _json(path, lines=True)
        need = ("episode_index", "tasks", "length")
    else:
        path = os.path.join(src, "meta", "episodes")
        files = sorted(glob.glob(os.path.join(path, "chunk-*", "file-*.parquet")))
        if not files:
            fail(path, "files", "the v3.0 episodes table, chunk-*/file-*.parquet", "none")
        need = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                *(f"videos/{k}/{c}" for k in videos for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")))
        rows = [r for p in files for r in _table(p, list(need)).to_pylist()]  # its stats/* columns are never read
    for r in rows:
        if not isinstance(r, dict) or any(k not in r for k in need) or not isinstance(r["length"], int):
            fail(path, f"episode {r.get('episode_index') if isinstance(r, dict) else r}", ", ".join(need), "another shape")
    return sorted(rows, key=lambda r: r["episode_index"])


def _path(info, key, src, **fields):
    """info[key] (a path template) filled in, under src; a template with other fields is a one-line error."""
    try:
        return os.path.join(src, info[key].format(**fields))
    except (KeyError, IndexError, ValueError, AttributeError):
        fail(os.path.join(src, "meta", "info.json"), key, f"a path template with {{{'}, {'.join(fields)}}}", repr(info.get(key)))


def plan(args):
    """The --src dataset checked against the flags -> (items, opts, manifest) for convert.py's shard runner: an
    item per episode, (name, episode_index, length, data file, {camera key: (video file, from_s, to_s)})."""
    src = args.src
    if not src or not os.path.isdir(src):
        fail(src or "--src", "folder", "a LeRobot dataset's folder (meta/, data/, videos/)", "nothing there")
    info = read_info(src)
    cameras = _name_map(args.camera, "--camera", lambda key: "")
    state = _name_map(args.state, "--state", lambda key: key.removeprefix("observation.").replace(".", "_"))
    _check_keys(info, os.path.join(src, "meta", "info.json"), cameras, args.action, state)
    state = {k: _split(k, n, info["features"][k]["shape"][0]) for k, n in state.items()}  # {key: [[name, lo, hi]]}
    names = [n for parts in state.values() for n, _, _ in parts]
    if list(cameras.values()).count("agentview") != 1 or len(set(cameras.values())) != len(cameras):
        fail("arguments", "--camera", "KEY=agentview once (and KEY=wrist at most once) (the dataset has: "
             f"{_describe(info['features'])})", repr(args.camera))
    if any(n.endswith("_rgb") or not n.isidentifier() for n in names) or len(set(names)) != len(names):
        fail("arguments", "--state", "distinct names, letters, digits and _, not ending in _rgb", repr(args.state))
    if args.image_size < 1 or args.tolerance_s <= 0 or args.min_frames < 1:
        fail("arguments", "--image_size, --tolerance_s, --min_frames", "positive", (args.image_size, args.tolerance_s, args.min_frames))
    version, videos = info["codebase_version"], [k for k in cameras if info["features"][k]["dtype"] == "video"]
    tasks, episodes = _tasks(src, version), _episodes(src, info, videos)
    items = []
    for e in episodes:
        ep = e["episode_index"]
        if version == "v3.0":
            data = _path(info, "data_path", src, chunk_index=e["data/chunk_index"], file_index=e["data/file_index"])
            spans = {k: (_path(info, "video_path", src, video_key=k, chunk_index=e[f"videos/{k}/chunk_index"],
                               file_index=e[f"videos/{k}/file_index"]),
                         e[f"videos/{k}/from_timestamp"], e[f"videos/{k}/to_timestamp"]) for k in videos}
        else:  # a file per episode: its video starts at 0 s and ends with the file
            chunk = ep // info.get("chunks_size", 1000)
            data = _path(info, "data_path", src, episode_chunk=chunk, episode_index=ep)
            spans = {k: (_path(info, "video_path", src, episode_chunk=chunk, video_key=k, episode_index=ep), 0.0, None)
                     for k in videos}
        items.append((f"episode_{ep:06d}", ep, e["length"], data, spans))
    empty = [f"episode_{e['episode_index']:06d}" for e in episodes if not any(str(t).strip() for t in e["tasks"] or [])]
    print(f"lerobot: {src}: {version}, {info['fps']} fps, {len(items)} episodes, {sum(e['length'] for e in episodes)} "
          f"frames, {len(tasks)} tasks; " + ", ".join(f"{k} -> {CAMERAS[n]}" for k, n in cameras.items())
          + (f", {args.action} -> actions" if args.action else ", no --action: video without actions")
          + "".join(f", {k}[{lo}:{hi}] -> obs/{n}" for k, parts in state.items() for n, lo, hi in parts))
    if empty:
        print(f"lerobot: {len(empty)} episodes with an empty instruction (kept, instruction ''): "
              + ", ".join(empty[:10]) + (", ..." if len(empty) > 10 else ""))
    opts = dict(cameras={k: CAMERAS[n] for k, n in cameras.items()}, action=args.action, state=state, tasks=tasks,
                fps=info["fps"], image_size=args.image_size, flip=args.flip, tolerance_s=args.tolerance_s,
                min_frames=args.min_frames)
    # Shard i holds items[i*n:(i+1)*n]: a rerun may skip the shards that exist only if it would write the same
    # episodes with the same options, so the first run records them (lerobot.json) and a different rerun stops.
    manifest = {"codebase_version": version, "shard_size": args.shard_size, "episodes": [[i[1], i[2]] for i in items],
                **{k: v for k, v in opts.items() if k != "tasks"}}
    return items, opts, manifest


# ----------------------------------------------------------------------------------------------
# one episode (runs in convert.py's shard workers)

_TABLE = {}  # the last data file read, {path: (table, episode_index column)}: a v3 file holds many episodes in a row


def _rows(path, columns):
    if path not in _TABLE:
        if not os.path.isfile(path):
            raise Skip(f"missing file: {path}")
        try:
            names = pq.read_schema(path).names
            if missing := [c for c in columns if c not in names]:
                fail(path, "columns", ", ".join(columns) + " (meta/info.json's features)", f"no {', '.join(missing)}")
            table = pq.read_table(path, columns=columns)
        except (OSError, pa.ArrowException) as e:  # a truncated or corrupt file
            raise Skip(f"unreadable parquet: {path}: {str(e).splitlines()[0][:200]}")
        _TABLE.clear()
        _TABLE[path] = table, table.column("episode_index").to_numpy()
    return _TABLE[path]


def _floats(column, key, T):
    """A parquet column of (D,) float lists -> (T, D) float32."""
    x = np.asarray(column.to_pylist(), np.float32)
    x = x[:, None] if x.ndim == 1 else x  # a (1,) feature is stored as a scalar column
    if x.shape[0] != T or x.ndim != 2:
        raise Skip(f"ragged {key}: {x.shape}")
    if not np.isfinite(x).all():
        raise Skip(f"non-finite {key}: {x.size - np.isfinite(x).sum()} NaN/inf")
    return x


def _decode(path, start, end, times, tol):
    """The frames of one episode's span [start, end) of a video file, matched to the rows' times by timestamp.
    -> (T, H, W, 3) uint8, or Skip."""
    if not os.path.isfile(path):
        raise Skip(f"missing file: {path}")
    frames, pts = [], []
    try:
        with av.open(path) as c:
            if not c.streams.video:  # a file cut short can open with its video stream missing
                raise Skip(f"unreadable video: {path}: no video stream")
            s = c.streams.video[0]
            if start > 0:  # to the keyframe at or before the span (LeRobot encodes one every 2 frames)
                c.seek(max(0, round(start / s.time_base) - 1), stream=s, backward=True, any_frame=False)
            for f in c.decode(s):
                if f.pts is None:
                    continue
                t = float(f.pts * s.time_base)
                if end is not None and t >= end - tol:  # the next episode's first frame sits at end
                    break
                if t >= start - tol:
                    frames.append(f.to_ndarray(format="rgb24"))  # (H, W, 3)
                    pts.append(t)
    except (av.error.FFmpegError, OSError) as e:
        raise Skip(f"unreadable video: {path}: {type(e).__name__}")
    if len(frames) != len(times):
        raise Skip(f"frames: {len(frames)} decoded in [{start:.3f}, {'end' if end is None else f'{end:.3f}'}) s of {path}, "
                   f"{len(times)} rows")
    query = start + times  # (T,): LeRobot's query: from_timestamp + the row's timestamp
    near = np.abs(np.asarray(pts)[None, :] - query[:, None]).argmin(1)  # (T,) nearest decoded frame
    far = np.abs(np.asarray(pts)[near] - query)
    if (far > tol).any():
        i = int(far.argmax())
        raise Skip(f"timestamps: row {i} at {query[i]:.4f} s, nearest frame of {path} at {pts[near[i]]:.4f} s "
                   f"(more than --tolerance_s {tol})")
    return np.stack([frames[j] for j in near])


def _pngs(column, key):
    """A parquet column of {bytes, path} image structs -> (T, H, W, 3) uint8."""
    out = []
    for t, x in enumerate(column.to_pylist()):
        try:
            with Image.open(io.BytesIO(x["bytes"])) as im:
                out.append(np.asarray(im.convert("RGB")))
        except Exception as e:  # no bytes (an image left as a path), a corrupt PNG
            raise Skip(f"unreadable image: {key} row {t}: {type(e).__name__}")
    return np.stack(out)


def episode(item, cameras, action, state, tasks, fps, image_size, flip, tolerance_s, min_frames):
    """One episode of the dataset -> an episode dict (convert.write_episodes), or Skip(reason)."""
    name, ep, length, data, spans = item
    images = [k for k in cameras if k not in spans]  # cameras stored as images inside the parquet
    table, index = _rows(data, ["timestamp", "episode_index", "task_index", *images, *([action] if action else []), *state])
    rows = np.flatnonzero(index == ep)  # v2: every row of the file; v3: this episode's
    T = len(rows)
    if T != length:
        raise Skip(f"length: {T} rows in {data}, the episodes table says {length}")
    if T < min_frames:
        raise Skip(f"too short: {T} frames < --min_frames {min_frames}")
    table = table.take(rows)
    times = table.column("timestamp").to_numpy().astype(np.float64)  # (T,) s from the episode's start
    steps = np.abs(np.diff(times) - 1 / fps)
    if (steps > tolerance_s).any():
        i = int(steps.argmax())
        raise Skip(f"timestamps: row {i} -> {i + 1} steps {times[i + 1] - times[i]:.4f} s, expected 1/fps = "
                   f"{1 / fps:.4f} s within --tolerance_s {tolerance_s}")
    task = set(table.column("task_index").to_pylist())
    if len(task) != 1 or next(iter(task)) not in tasks:
        raise Skip(f"tasks: task_index {sorted(task)}, expected one in the tasks table")
    instruction = tasks[task.pop()]
    obs = {}
    for key, out in cameras.items():
        x = _decode(*spans[key], times, tolerance_s) if key in spans else _pngs(table.column(key), key)  # (T, H, W, 3)
        x = np.flip(x, FLIPS[flip])  # both = rotated 180 degrees
        if x.shape[1:3] != (image_size, image_size):  # squashed to a square, bilinear, as every converter
            x = np.stack([np.asarray(Image.fromarray(f).resize((image_size, image_size), Image.BILINEAR)) for f in x])
        obs[out] = np.ascontiguousarray(x)  # (T, S, S, 3)
    for k, parts in state.items():
        x = _floats(table.column(k), k, T)  # (T, D)
        obs.update({n: x[:, lo:hi] for n, lo, hi in parts})  # (T, hi - lo) each
    ep_dict = {"obs": obs, "instruction": instruction, "task": instruction, "task_type": task_family(instruction)}
    if action:
        ep_dict["actions"] = _floats(table.column(action), action, T)  # (T, A): a_t is taken after frame t
    return ep_dict
