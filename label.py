"""
Pseudo-labels: an inverse-dynamics model trained on the labeled demos labels the action-free video
(the `vpt` arm of compare.py; VPT, Baker et al. 2022; BCO, Torabi et al. 2018).

LAWM asks a world model to find the video's actions without labels. This is the cheaper route the
literature uses: the few labeled demos stage 2 has anyway train a supervised inverse-dynamics model
(idm.InverseDynamics: frames o_t, o_{t+1} -> a_t), it labels every transition of the video, and the
policy pretrains on those labels with the supervised path (finetune.py), then the same stage 2 as every
arm. It uses exactly the labels `scratch` has, plus the action-free video; its ceiling is supervised
pretraining on the video's true actions.

    python label.py --demos data/toy/target_demos.hdf5 --video data/toy/source_video.hdf5 --out data/vpt   # toy
    python finetune.py --data data/vpt --max_steps 4000 --out_dir runs/vpt_pre        # pretrain on the labels
    python finetune.py --data data/toy/target_demos.hdf5 --init runs/vpt_pre/ckpt.pt --out_dir runs/vpt_ft

1. Quality: the IDM trains on 4/5 of the demo episodes and is scored on the other fifth: held-out R^2
   per action dimension and pooled (printed, and in --out/labels.json).
2. Labels: the IDM trains again on all demo episodes (same steps and seed) and labels the video: a_t =
   IDM(o_t, o_{t+1}), turned back from [-1, 1] into the demos' action units.
3. Files: each video file <name>.hdf5 becomes --out/<name>_labeled.hdf5 with its cameras, proprio and
   instruction, and the predicted actions. An episode's last frame has no next frame and so no action: it is
   dropped, never padded. Where a video file records actions (the toy's, LIBERO's expert video) they are never
   used, but they score the labels: R^2 against them is printed and kept in labels.json (`video_r2`), the
   labels' quality on the video itself, which can differ from the demos' (another look, another embodiment).
   The files say what their actions are: data.attrs['actions_source'] = 'predicted: label.py ...'
   (episodes.py), and finetune.py prints a line when it trains on predicted actions.
A file that exists is complete (atomic writes), so a killed run redone skips the files it finished;
--out/config.json holds the flags (a rerun with others stops), --out/labels.json is written last and marks the run done.
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np
import torch

import idm
from convert import write_episodes
from data import DemoWindows, find_episode_files, normalize_actions, unnormalize_actions
from episodes import DataError, scan_file

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--demos", required=True, help="labeled episode files (a file or folder): the IDM's training data")
p.add_argument("--video", required=True, help="action-free episode files (a file or folder) to label; any actions "
               "they hold are ignored and replaced")
p.add_argument("--out", required=True, help="folder of the labeled episode files and labels.json")
p.add_argument("--size", type=int, default=64, help="the IDM's frame size (a power of two, at most the data's; 64: "
               "at 32 px the toy arm's motion is too small to read, idm.py)")
p.add_argument("--steps", type=int, default=2000, help="IDM optimizer steps (each fit; toy: ~60 ms each, one thread)")
p.add_argument("--batch_size", type=int, default=64, help="frame pairs per step")
p.add_argument("--seed", type=int, default=0, help="the held-out split, weights and batches")
args = p.parse_args()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
if args.size < 16 or args.size & (args.size - 1) or args.steps < 1 or args.batch_size < 1:
    sys.exit(f"error: --size, --steps, --batch_size: expected a power of two >= 16 and integers >= 1, got "
             f"{args.size}, {args.steps}, {args.batch_size}")
report, claim = os.path.join(args.out, "labels.json"), os.path.join(args.out, "config.json")
if os.path.exists(claim):  # a run (done, or killed) with other flags must not pass for this one, nor mix its files in
    done = json.load(open(claim))
    if done != vars(args):
        diff = ", ".join(f"--{k} {done.get(k)!r} (now {v!r})" for k, v in vars(args).items() if done.get(k) != v)
        sys.exit(f"error: {claim}: --out holds labels made with other flags: {diff}; pass another --out, or delete it")
if os.path.exists(report):
    print(f"{report} exists: the video is labeled already")
    sys.exit()
t0 = time.time()
try:
    demos = DemoWindows(find_episode_files(args.demos, role="demos"), chunk=1)
    videos = [(path, *scan_file(path)) for path in find_episode_files(args.video)]  # (path, image_size, demos)
except DataError as e:
    sys.exit(f"error: {e}")
if demos.image_size < args.size:
    sys.exit(f"error: --size: expected at most the frame size of {args.demos} ({demos.image_size} px), got {args.size}")
outs = {}
for path, size, eps in videos:
    # the labeled video is the policy's pretraining data, and stage 2 then reads the demos: one frame size for both
    if size != demos.image_size:
        sys.exit(f"error: {path}: data.attrs['image_size']: expected the demos' {demos.image_size} px, got {size}")
    if not any(d["T"] >= 2 for d in eps):
        sys.exit(f"error: {path}: expected an episode of at least 2 frames (one transition to label), got none")
    out = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + "_labeled.hdf5")  # not a toy name
    if out in outs:
        sys.exit(f"error: --video: {path} and {outs[out]} would both be labeled into {out}; give them distinct names")
    outs[out] = path
if len(demos.episodes) < 2:
    sys.exit(f"error: --demos {args.demos}: expected at least 2 episodes (one is held out), got {len(demos.episodes)}")

# 1. the labeler's quality, on demo episodes it never trained on
train_eps, held_eps = idm.heldout_split(len(demos.episodes), args.seed)
model = idm.fit(idm.episode_pairs(demos, train_eps), demos.action_dim, args.size, args.steps, args.batch_size,
                args.seed)
per_dim, pooled = idm.r2(model, idm.episode_pairs(demos, held_eps), args.size)
print(f"IDM at {args.size} px on {len(train_eps)} demo episodes, held-out R^2 on {len(held_eps)}: "
      f"{' / '.join(f'{v:.2f}' for v in per_dim)} (pooled {pooled:.2f})")

# 2. the labeler: the same fit on every demo episode
model = idm.fit(idm.episode_pairs(demos, range(len(demos.episodes))), demos.action_dim, args.size, args.steps,
                args.batch_size, args.seed)
source = (f"predicted: label.py, an inverse-dynamics model at {args.size} px trained on {len(demos.episodes)} "
          f"episodes of {args.demos} (held-out R^2 pooled {pooled:.2f})")


@torch.no_grad()
def labeled(path, eps):
    """The episodes of one video file with the IDM's actions, each one frame shorter."""
    with h5py.File(path, "r") as f:
        for d in eps:
            if d["T"] < 2:
                continue  # one frame, no transition: nothing to label (counted in labels.json)
            g = f[d["key"]]
            obs = {k: v[: d["T"] - 1] for k, v in ((k, g["obs"][k][()]) for k in g["obs"])}  # every obs but the last
            x = torch.from_numpy(np.ascontiguousarray(g["obs/agentview_rgb"][()].transpose(0, 3, 1, 2)))  # (T, 3, S, S)
            n = d["T"] - 1  # transitions
            z = torch.cat([model(idm.resize(x[i:min(i + 256, n)], args.size), idm.resize(x[i + 1:min(i + 256, n) + 1],
                                                                                        args.size))
                           for i in range(0, n, 256)])  # (T-1, A) in (-1, 1)
            acts = unnormalize_actions(z.numpy(), demos.stats).astype(np.float32)  # (T-1, A) in the demos' units
            yield {"obs": obs, "actions": acts, **{a: d[a] for a in ("instruction", "task", "task_type")},
                   **({"seed": d["seed"]} if d["seed"] >= 0 else {})}


def video_r2(path, eps, out):
    """Where the video file records actions (a check: they never reach the labels), the labels' R^2 against them,
    per dimension and pooled, in the demos' normalised units as the held-out R^2; None unless every episode with a
    transition records them (predicted actions, label.py's own, are no reference)."""
    if any(d["actions_source"] != "recorded" for d in eps):
        return None
    t, p = [], []
    with h5py.File(path, "r") as f, h5py.File(out, "r") as g:
        for i, d in enumerate(x for x in eps if x["T"] >= 2):  # out's demo_i is the i-th episode with a transition
            if "actions" not in f[d["key"]]:
                return None
            a = g[f"data/demo_{i}/actions"][()]  # (T-1, A)
            t.append(f[d["key"]]["actions"][: len(a)]), p.append(a)
    t, p = (normalize_actions(np.concatenate(x).astype(np.float64), demos.stats) for x in (t, p))  # (N, A) each
    sse, sst = ((p - t) ** 2).sum(0), ((t - t.mean(0)) ** 2).sum(0)
    return (1 - sse / sst).tolist(), float(1 - sse.sum() / sst.sum())


# 3. the labeled files, one per video file; config.json first: what a killed run's files were made with
os.makedirs(args.out, exist_ok=True)
with open(claim + ".tmp", "w") as f:
    json.dump(vars(args), f, indent=1)
os.replace(claim + ".tmp", claim)
files = []
for (path, size, eps), out in zip(videos, outs):
    with h5py.File(path, "r") as f:
        kind, fps = f["data"].attrs["source"], f["data"].attrs["fps"]
    if not os.path.exists(out):  # complete (written atomically) by a killed run with these flags: labels.json says so
        write_episodes(out, labeled(path, eps), kind, fps, attrs={"actions_source": source})
    files.append({"video": path, "out": out, "episodes": sum(d["T"] >= 2 for d in eps),
                  "transitions": sum(max(d["T"] - 1, 0) for d in eps),
                  "skipped_one_frame": sum(d["T"] < 2 for d in eps)})
    skipped = files[-1]["skipped_one_frame"]  # one frame: no transition to label
    print(f"wrote {out}: {files[-1]['episodes']} episodes, {files[-1]['transitions']} labeled transitions"
          + (f"; {skipped} one-frame episodes left out (no transition)" if skipped else ""))
    check = video_r2(path, eps, out)
    if check:
        files[-1]["video_r2"], files[-1]["video_r2_pooled"] = check
        print(f"  its recorded actions (never used) score the labels: R^2 {' / '.join(f'{v:.2f}' for v in check[0])} "
              f"(pooled {check[1]:.2f})")
rec = {"config": vars(args), "heldout_r2": per_dim, "heldout_r2_pooled": pooled, "train_episodes": len(train_eps),
       "heldout_episodes": len(held_eps), "action_stats": demos.stats, "files": files, "actions_source": source,
       "wall_s": round(time.time() - t0, 1)}
with open(report + ".tmp", "w") as f:
    json.dump(rec, f, indent=1)
os.replace(report + ".tmp", report)
print(f"wrote {report} ({rec['wall_s']:.0f} s)")
