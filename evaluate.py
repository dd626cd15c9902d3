"""
Closed-loop evaluation: run a finetuned policy in the simulator and measure its success rate.

Every task of the suite runs --episodes episodes on fixed seeds (episode i uses seed --seed + i;
the toy demos are generated from seeds >= 1,000,000, so evaluation states are never training
states). All episodes of a task step in lockstep so the policy's inference is batched across them.
Success rates come with Wilson 95% intervals per task, per task family and overall.

Toy world (the checkpoint holds the camera names, image size, action statistics and instruction
embeddings, so no other flags are needed):
    python evaluate.py --ckpt runs/finetune/ckpt.pt
    python evaluate.py --ckpt runs/finetune/ckpt.pt --temporal_agg --episodes 50
Execution of the predicted chunks: by default the first --action_horizon actions of each chunk are
executed before the policy is queried again; --temporal_agg instead queries every step and executes
the mean of every prediction made for the current step (the authors' release does this).

Outputs in --out_dir (default: <ckpt dir>/eval_<suite>): results.json, results.md (the table) and
a few episode GIFs.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

import toyworld
from data import embed_instructions, unnormalize_actions
from policies import CheckpointError, load_checkpoint, policy_from_checkpoint

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
# what to evaluate
p.add_argument("--ckpt", required=True, help="a finetune.py checkpoint")
p.add_argument("--suite", default="toy", choices=["toy"], help="which simulator and task list")
p.add_argument("--tasks", default="", help="comma list of task names (default: every task of the suite)")
p.add_argument("--episodes", type=int, default=20, help="episodes per task")
p.add_argument("--seed", type=int, default=0, help="episode i of a task uses environment seed seed+i; also seeds the policy's sampling")
# how the policy acts
p.add_argument("--action_horizon", type=int, default=1, help="actions of each chunk executed before re-planning (<= chunk)")
p.add_argument("--temporal_agg", action="store_true", help="query every step; act with the mean of all predictions for this step")
p.add_argument("--max_steps", type=int, default=0, help="step limit per episode (0 = the suite's own)")
# io
p.add_argument("--out_dir", default="", help="where results go (default: <ckpt dir>/eval_<suite>)")
p.add_argument("--gifs", type=int, default=4, help="save the first episode of this many tasks as a GIF")
p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
args = p.parse_args()

if args.device == "auto":
    args.device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
device = torch.device(args.device)
out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), f"eval_{args.suite}")
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


# -------------------------------------------------------------------------------------------------
# the environment seam: everything simulator-specific is here (LIBERO plugs in beside the toy world)
def suite_tasks(suite):
    """Task names, their family and their instruction."""
    return [(t, toyworld.task_family(t), toyworld.instruction(t)) for t in toyworld.TASKS]


def make_env(suite):
    """A fresh environment of the suite, rendering at the checkpoint's image size."""
    return toyworld.ToyEnv(domain="target", image_size=spec["image_size"])


def to_policy_obs(raw, lang):
    """List of raw env observations -> the policy's obs dict (only the inputs the checkpoint uses)."""
    img = torch.from_numpy(np.stack([o["agentview"] for o in raw])).to(device)  # (E, H, W, 3) uint8
    obs = {"agentview": img.permute(0, 3, 1, 2).float() / 255, "lang": lang}  # (E, 3, H, W)
    if spec["state_keys"]:
        obs["state"] = torch.from_numpy(np.stack([o["state"] for o in raw])).float().to(device)  # (E, D)
    return obs


# -------------------------------------------------------------------------------------------------
def wilson(k, n, z=1.96):
    """Wilson score 95% interval for k successes out of n."""
    if n == 0:
        return 0.0, 0.0
    p_hat = k / n
    centre = (p_hat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p_hat * (1 - p_hat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def run_task(task, lang_vec, n, record):
    """Run n episodes of one task in lockstep; returns per-episode success and frames of episode 0."""
    envs = [make_env(args.suite) for _ in range(n)]
    raw = [env.reset(task, args.seed + i) for i, env in enumerate(envs)]
    limit = args.max_steps or envs[0].max_steps
    lang = torch.as_tensor(lang_vec, dtype=torch.float32, device=device).expand(n, -1)  # (E, 384)
    success, done = np.zeros(n, bool), np.zeros(n, bool)
    frames = [raw[0]["agentview"]] if record else []
    plan = None  # (E, n, A) current chunk, for the action-horizon mode
    if args.temporal_agg:  # sum and count of every prediction made for each step
        agg_sum = torch.zeros(n, limit + chunk, action_dim, device=device)  # (E, steps, A)
        agg_cnt = torch.zeros(n, limit + chunk, 1, device=device)  # (E, steps, 1)
    for t in range(limit):
        if args.temporal_agg or t % args.action_horizon == 0:
            plan = policy.act(to_policy_obs(raw, lang))  # (E, chunk, A) normalised
            if args.temporal_agg:
                agg_sum[:, t:t + chunk] += plan
                agg_cnt[:, t:t + chunk] += 1
        a = agg_sum[:, t] / agg_cnt[:, t] if args.temporal_agg else plan[:, t % args.action_horizon]  # (E, A)
        a = unnormalize_actions(a.float().cpu().numpy(), stats)
        for i, env in enumerate(envs):
            if done[i]:
                continue  # finished episodes keep their last observation and are not stepped
            raw[i], ok, done[i] = env.step(a[i])
            success[i] |= ok
            if record and i == 0:
                frames.append(raw[0]["agentview"])
        if done.all():
            break
    return success, frames


tasks = suite_tasks(args.suite)
if args.tasks:
    wanted = args.tasks.split(",")
    unknown = sorted(set(wanted) - {t for t, _, _ in tasks})
    if unknown:
        sys.exit(f"error: --tasks: unknown task(s) {unknown}; expected names from {[t for t, _, _ in tasks]}")
    tasks = [x for x in tasks if x[0] in wanted]
# instruction embeddings come from the checkpoint; only an instruction it never saw is embedded here
missing = [ins for _, _, ins in tasks if ins not in ckpt["lang"]]
lang_table = dict(ckpt["lang"])
if missing:
    print(f"note: {len(missing)} instruction(s) not in the checkpoint; embedding them with MiniLM")
    lang_table.update(zip(missing, embed_instructions(missing)))

os.makedirs(out_dir, exist_ok=True)
rows = []
for j, (task, family, ins) in enumerate(tqdm(tasks, desc=f"evaluate {args.suite}")):
    success, frames = run_task(task, lang_table[ins], args.episodes, record=j < args.gifs)
    k = int(success.sum())
    lo, hi = wilson(k, args.episodes)
    rows.append({"task": task, "family": family, "instruction": ins, "successes": k, "episodes": args.episodes,
                 "success_rate": k / args.episodes, "ci95": [lo, hi], "per_episode": success.astype(int).tolist()})
    if frames:
        import imageio.v2 as imageio
        big = [np.kron(f, np.ones((2, 2, 1), np.uint8)) for f in frames]  # 2x upscale so it is readable
        imageio.mimsave(os.path.join(out_dir, f"{task}_ep0_{'success' if success[0] else 'fail'}.gif"), big, duration=0.1, loop=0)


def summary(sel):
    """Pooled success rate and Wilson interval over a list of rows."""
    k, n = sum(r["successes"] for r in sel), sum(r["episodes"] for r in sel)
    lo, hi = wilson(k, n)
    return {"successes": k, "episodes": n, "success_rate": k / max(n, 1), "ci95": [lo, hi]}


families = {f: summary([r for r in rows if r["family"] == f]) for f in dict.fromkeys(r["family"] for r in rows)}
results = {"suite": args.suite, "ckpt": os.path.abspath(args.ckpt), "config": vars(args),
           "overall": summary(rows), "families": families, "tasks": rows}
tmp = os.path.join(out_dir, "results.json.tmp")
with open(tmp, "w") as f:
    json.dump(results, f, indent=1)
os.replace(tmp, os.path.join(out_dir, "results.json"))

fmt = lambda s: f"{100 * s['success_rate']:5.1f}% [{100 * s['ci95'][0]:4.1f}, {100 * s['ci95'][1]:5.1f}]"
lines = [f"| task | family | success (Wilson 95%) | n |", "|---|---|---|---|"]
lines += [f"| {r['task']} | {r['family']} | {fmt(r)} | {r['episodes']} |" for r in rows]
lines += [f"| **{f}** | | {fmt(s)} | {s['episodes']} |" for f, s in families.items()]
lines += [f"| **overall** | | {fmt(results['overall'])} | {results['overall']['episodes']} |"]
with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"wrote {out_dir}/results.json")
