"""
Does latent-action pretraining help? Every pretraining arm through the same stage 2, paired by seed,
on the built-in toy world (--env toy) or in the real LIBERO simulator (--env libero_object).

    python compare.py --quick      # ~2 min on 2 CPU cores: 1 seed, tiny budgets; checks the pipeline, not the science
    python compare.py              # the toy's pre-registered run: 5 seeds, 50 episodes per task (~2.5 h on 2 CPU cores)
    python compare.py --jobs 8     # as many units at once as you have cores (each run uses one torch thread)
    python compare.py --env libero_object   # the LIBERO run below (~10 CPU-hours; resumable, unit by unit)

Decision rule, fixed before the runs: an arm helps if its paired mean difference in success to
scratch is >= --helps_points (toy 10, LIBERO 5) and the 95% interval of that difference excludes 0.
On the toy the arm in question is wm_source, on LIBERO wm; the rule is reported for every arm.
Pre-registered for idm_source (issue 25, before its runs): the target is met if the policy's predicted
latents reach held-out CCA >= 0.6 in every family and >= random init + 0.3 (gate L), their swap ratio
is >= 1.1, and the rule above says it helps.

Toy arms (BAKU unless dp_; every arm then runs the same stage 2 on the same 5 target demos per task,
with the same stage-2 seed and the same evaluation episodes, toy seeds --eval_seed.., never used while
choosing the recipe):
    scratch      no pretraining
    oracle       supervised pretraining on 50 target demos per task WITH actions (gate O: the
                 recipe must let it beat scratch, or no pretraining can show)
    sup_source   supervised pretraining on source-domain demos with actions (its zero-shot target
                 success measures the domain gap)
    wm_target    world-model pretraining on target-domain video, no actions (no domain gap)
    wm_source    world-model pretraining on source-domain video, no actions (the method)
    wm_detach    as wm_source with --detach_latents (the authors' release: the policy gets no gradient)
    idm_source   latents chosen with hindsight (pretrain.py --latents idm, idm.py) on source-domain video:
                 an inverse-dynamics model and a one-step forward model learn the latents, the policy
                 learns to predict them from frame t and the instruction
    idm_target   the same on target-domain video
    vpt_target   pseudo-labels (label.py; VPT, BCO): an inverse-dynamics model trained on the 5 stage-2 demos
                 per task labels the target-domain video, then supervised pretraining on those labels as
                 sup_source's (no zero-shot evaluation)
    vpt_source   the same on the source-domain video (another embodiment: not expected to transfer)
    dp_<arm>     the same arm with Diffusion Policy instead of BAKU (dp_scratch, dp_wm_target, ...); its
                 paired difference is to dp_scratch

LIBERO-Object, pre-registered before any arm ran (issue 26). All 10 tasks; BAKU small at 64 px with
agentview and 8-d proprio (ee_states, gripper_states); the wrist camera is left out (it doubles the
render cost and the video has none). Data, from the scripted expert (libero_expert.py; it renders only
agentview here, which records the same actions, states and frames a quarter faster), whose layouts are
sampled by the simulator and never an evaluation init state:
    video        --video_demos (30) successful episodes per task, layout seed 100: stage 1's video
                 (actions dropped for wm and idm; kept for sup)
    demos        --demos (5) per task, layout seed 200: the labeled demos of stage 2, and the held-out
                 episodes of CCA (never seen in stage 1)
Arms, seeds 0..--seeds-1 (3), one stage-2 recipe (finetune.py --batch_size 64 --lr 3e-4 --max_steps
--ft_steps (4000), fixed a priori from the first LIBERO result's recipe, not tuned on any evaluation
state; --first_init 40 evaluates a recipe on init states 40..49 instead, the only ones to look at while
choosing one):
    scratch      no pretraining
    wm           LAWM stage 1 on the video (pretrain.py, the RSSM at --wm_image_size: the smallest size
                 whose supervised probe, `python idm.py --probe`, reads the actions within 0.05 pooled R^2 of
                 the best size measured: 32 px, docs/libero.md), with the recipe stage 1's own gates chose
                 (results/libero_stage1/run.py, docs/libero.md): --no_context, batch 64, lr 3e-4, 12,000 steps.
                 The first comparison's wm (context on, batch 16, lr 1e-3, 3,000 steps) is in
                 results/libero_compare_first/
    sup          supervised pretraining on the same video WITH its actions: the upper bound
    idm          the inverse-dynamics arm (pretrain.py --latents idm), if its toy gates pass. They did not
                 (results/toy_compare_idm.md, before any LIBERO unit ran): the IDM's own latents pass gate L,
                 but the policy predicts them with R^2 0.33 and its latents fail gate L, and idm_source is
                 -5.8 points [-16.8, 5.2] against scratch. So idm is not a default arm here (--arms adds it).
    vpt          pseudo-labels (label.py): an inverse-dynamics model trained on the labeled demos labels the
                 video, then sup's path on those labels (no zero-shot evaluation); docs/libero.md
Not run: wm with --detach_latents. BAKU small has no batch statistics (GroupNorm, LayerNorm), so a
policy whose gradient is stopped leaves stage 1 exactly as it entered: equal to scratch by construction.
Evaluation: init states 0..--episodes-1 (10) of every task, the same for every arm and seed. Success
per arm with Wilson intervals, per task and overall, pooled over seeds; paired differences to scratch.
Also on the labeled demos: CCA per task family against random-init policies; from stage 1's own
held-out video windows: open-loop error vs copying frame t per k, swap and shuffle ratios.

Units and resuming. One unit = one arm and seed: stage 1, stage 2, evaluation, CCA. Runs go to
--out/<arm>/seed<s>/ (a finished run is skipped on a rerun, a killed one resumes; a finished run's DONE
names the command that made it, and a rerun with other flags stops there, naming the folder to delete),
and each finished unit leaves a small record, --records/<arm>_seed<s>.json (toy: --out/units; LIBERO: results/
libero_compare/, committed; it names the git commit that ran it and a fingerprint of the data it read), which a
rerun reads instead of running the unit again: a comparison longer than a session continues on a fresh machine
from its committed records (one that cannot be read stops the rerun at its start, naming it), and the tables say
which data each unit trained on when a fresh machine's data came out different. The tables are made from the
records alone. Every command run is appended to --out/commands.log, and its output (progress bars, log lines) goes
to --out/logs/<arm>_seed<s>_<stage>.log as it runs: `tail -f` one to watch a unit. It prints what is left
at the start, each run's log file as it starts, and each unit as it is recorded.
Results: --result.json and .md (also printed; toy: --out/compare, LIBERO: results/libero_compare; per arm, per
seed with the paired differences, each latent unit's gates beside its success, per task), and .png (matplotlib):
success per arm with its 95% interval over seeds and the paired difference to scratch with its 95% interval,
each seed a dot, one column per policy. The plot of a finished comparison, from its
json alone (runs nothing):
    python compare.py --plot results/toy_compare.json --out_png assets/toy_compare.png
With --wandb (pip install wandb; not in requirements.txt), one Weights & Biases run gets the flags,
success/<arm> and diff_vs_scratch/<arm>, the table and the plot (the stage runs are not logged).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from episodes import fingerprint  # the data a unit read, in its record
from intervals import mde, t_interval, wilson  # the tables' 95% intervals and the design's resolution

# per environment: the arms it knows, its default arms and budgets (flags left unset take these)
ENVS = {
    "toy": dict(known=("scratch", "oracle", "sup_source", "wm_target", "wm_source", "wm_detach", "idm_source",
                       "idm_target", "vpt_target", "vpt_source"),
                arms="scratch,oracle,sup_source,wm_target,wm_source,wm_detach,dp_scratch,dp_wm_target", seeds=5,
                episodes=50, pretrain_steps=1500, sup_steps=4000, ft_steps=1500, ft_lr=1e-3, helps_points=10,
                zero_shot_seeds=1000),
    "libero_object": dict(known=("scratch", "wm", "sup", "idm", "vpt"), arms="scratch,wm,sup", seeds=3, episodes=10,
                          pretrain_steps=12000, sup_steps=3000, ft_steps=4000, ft_lr=3e-4, helps_points=5,
                          zero_shot_seeds=3),
}
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--env", default="toy", choices=list(ENVS), help="toy world or the LIBERO simulator")
p.add_argument("--quick", action="store_true", help="tiny budgets, 2 episodes per task (LIBERO: task 0, 1 episode, "
               "one expert recording as both video and demos), 1 seed unless --seeds: a pipeline check")
p.add_argument("--seeds", type=int, default=None, help="seeds per arm (pretraining and stage-2 seed; toy 5, LIBERO 3)")
p.add_argument("--episodes", type=int, default=None, help="evaluation episodes per task (toy 50, LIBERO 10)")
p.add_argument("--eval_seed", type=int, default=0, help="toy: first seed of the evaluation episodes")
p.add_argument("--first_init", type=int, default=0, help="LIBERO: first fixed init state of the evaluation (40: the "
               "states for choosing a recipe)")
p.add_argument("--pretrain_steps", type=int, default=None, help="stage-1 steps (toy 1500, LIBERO 12000)")
p.add_argument("--sup_steps", type=int, default=None, help="supervised pretraining steps (toy 4000, LIBERO 3000)")
p.add_argument("--ft_steps", type=int, default=None, help="stage-2 steps, every arm (toy 1500, LIBERO 4000)")
p.add_argument("--ft_lr", type=float, default=None, help="stage-2 peak learning rate, every arm (toy 1e-3, LIBERO 3e-4)")
p.add_argument("--body_lr_scale", type=float, default=1.0, help="stage-2 lr multiplier below the action layer")
p.add_argument("--helps_points", type=float, default=None, help="the decision rule's bar in points (toy 10, LIBERO 5)")
p.add_argument("--zero_shot_seeds", type=int, default=None, help="the supervised arms' zero-shot success is evaluated for "
               "seeds below this (toy: all; LIBERO 3: the powered comparison's cost control, docs/libero.md)")
p.add_argument("--video_demos", type=int, default=30, help="LIBERO: expert video episodes per task (stage 1)")
p.add_argument("--demos", type=int, default=5, help="LIBERO: labeled expert demos per task (stage 2)")
p.add_argument("--wm_image_size", type=int, default=32, help="LIBERO: the world model's and IDM's frame size (32: "
               "chosen by the probe, docs/libero.md)")
p.add_argument("--arms", default=None, help="comma list of arms (toy: dp_<arm> is <arm> with Diffusion Policy)")
p.add_argument("--jobs", type=int, default=None, help="units at once, one torch thread per run (toy 2; LIBERO 1: its "
               "evaluation already runs 2 simulator processes)")
p.add_argument("--out", default=None, help="run folder (default runs/compare, LIBERO runs/libero_compare)")
p.add_argument("--records", default=None, help="folder of the finished units' records (default: see the docstring)")
p.add_argument("--result", default=None, help="path of the tables without extension (default: see the docstring)")
p.add_argument("--plot", default="", help="only draw the plot of a finished comparison's json, run nothing")
p.add_argument("--out_png", default="", help="with --plot: where the plot goes (default: beside it, .json -> .png)")
p.add_argument("--wandb", action="store_true", help="also log the table and plot to Weights & Biases (pip install "
               "wandb; offline: WANDB_MODE=offline); the stage runs themselves are not logged")
p.add_argument("--wandb_project", default="lawm", help="wandb project")
p.add_argument("--wandb_name", default="", help="wandb run name (default: the --out folder's name)")
args = p.parse_args()
sys.stdout.reconfigure(line_buffering=True)  # each line reaches a pipe or a log file when printed
libero = args.env != "toy"
env_defaults = ENVS[args.env]
if args.seeds is None:
    args.seeds = 1 if args.quick else env_defaults["seeds"]
for k, v in env_defaults.items():
    if k != "known" and getattr(args, k) is None:
        setattr(args, k, v)
if args.quick:
    args.episodes, args.pretrain_steps, args.sup_steps, args.ft_steps = 1 if libero else 2, 4, 4, 4
    args.video_demos, args.demos = 1, 1
args.jobs = args.jobs or (1 if libero else 2)
args.out = args.out or ("runs/libero_compare" if libero else "runs/compare")
in_repo = libero and not args.quick  # the real LIBERO run keeps its records and tables in results/
args.records = args.records or ("results/libero_compare" if in_repo else os.path.join(args.out, "units"))
args.result = args.result or ("results/libero_compare" if in_repo else os.path.join(args.out, "compare"))
arms = args.arms.split(",")
for name, low in (("seeds", 1), ("episodes", 1), ("pretrain_steps", 0), ("sup_steps", 0), ("ft_steps", 0),
                  ("jobs", 1), ("first_init", 0), ("zero_shot_seeds", 0), ("video_demos", 1),
                  ("demos", 2 if not args.quick else 1)):
    if getattr(args, name) < low:  # bad flags: one line, before any run starts
        sys.exit(f"error: --{name}: expected an integer >= {low}, got {getattr(args, name)}")
if not all(math.isfinite(x) and x >= 0 for x in (args.ft_lr, args.body_lr_scale, args.helps_points)):
    sys.exit(f"error: --ft_lr, --body_lr_scale, --helps_points: expected finite numbers >= 0, got {args.ft_lr}, "
             f"{args.body_lr_scale}, {args.helps_points}")
if libero and args.first_init + args.episodes > 50:
    sys.exit(f"error: --first_init, --episodes: expected first_init + episodes <= 50 (LIBERO's fixed init states), "
             f"got {args.first_init}, {args.episodes}")
base = lambda arm: arm[3:] if arm.startswith("dp_") else arm  # the BAKU arm a dp_ arm repeats
ref_of = lambda arm: "dp_scratch" if arm.startswith("dp_") else "scratch"  # paired with the same policy's scratch arm
policy = lambda arm: ["--policy", "diffusion" if arm.startswith("dp_") else "baku"]  # for stage scripts that build one
latent_arm = lambda arm: base(arm).startswith(("wm", "idm"))  # a stage-1 arm whose policy emits latents
# the supervised arms' policy before stage 2 is evaluated too (vpt's is not: the cost of an evaluation)
zero_shot = lambda arm, s: base(arm) in ("oracle", "sup_source", "sup") and s < args.zero_shot_seeds
known = env_defaults["known"]
if not all(base(a) in known and (a == base(a) or not libero) for a in arms) or len(set(arms)) != len(arms):
    sys.exit(f"error: --arms: expected some of {','.join(known)}" + ("" if libero else " (or dp_ before one)")
             + f" once each, got {args.arms!r}")
if args.wandb:  # imported only when asked for: without --wandb no wandb code is loaded
    from run import check_wandb  # installed, and a key or offline: found now, not after the whole comparison
    if why := check_wandb():
        sys.exit(f"error: {why}")
    import wandb


def plot(res, path, bar):
    """compare.png: per policy (a column), success per arm with its 95% interval over seeds (top) and the
    paired difference to that policy's scratch arm with its 95% interval (bottom; dashed: the decision
    rule's bar, bar points); each seed's value a small dot left of its arm's. One seed has no interval."""
    import matplotlib
    matplotlib.use("Agg")  # draws to a file; no display needed
    import matplotlib.pyplot as plt
    cols = [(title, [a for a in res if a.startswith("dp_") == dp]) for title, dp in (("BAKU", False),
                                                                                  ("Diffusion Policy", True))]
    cols = [(title, names) for title, names in cols if names]
    fig, axes = plt.subplots(2, len(cols), figsize=(2.5 + 0.9 * len(res), 7), sharey="row", squeeze=False,
                             gridspec_kw={"width_ratios": [len(names) for _, names in cols]})
    for c, (title, names) in enumerate(cols):
        for row, key, ci in ((0, "success", "ci95_seeds"), (1, "diff_vs_scratch", "diff_ci95")):
            ax, x = axes[row, c], range(len(names))
            ref = lambda a: row == 1 and base(a) == "scratch"  # the reference arm's difference is 0 by definition
            m = [float("nan") if ref(a) else 100 * res[a].get(key, float("nan")) for a in names]
            lo = [100 * res[a][ci][0] if ci in res[a] and not ref(a) else float("nan") for a in names]
            hi = [100 * res[a][ci][1] if ci in res[a] and not ref(a) else float("nan") for a in names]
            color = ["tab:green" if res[a].get("helps") else "tab:gray" if row else "tab:blue" for a in names]
            if row == 0:
                ax.bar(x, m, color=color, alpha=0.35)
            else:
                ax.axhline(0, color="black", lw=0.8)
                ax.axhline(bar, color="tab:green", lw=0.8, ls="--")
            for i, a in enumerate(names):  # each seed, left of its arm's mean: how the seeds spread, paired by seed
                ref_seeds = res.get(ref_of(a), {}).get("per_seed")
                seeds = res[a].get("per_seed") if row == 0 else [p - q for p, q in zip(res[a].get("per_seed", []),
                                                                                       ref_seeds or [])]
                if seeds and not ref(a):
                    ax.scatter([i - 0.35 + 0.2 * k / max(len(seeds) - 1, 1) for k in range(len(seeds))],
                               [100 * v for v in seeds], s=9, color=color[i], alpha=0.6, lw=0)
            for i in x:
                ax.errorbar(i, m[i], yerr=[[m[i] - lo[i]], [hi[i] - m[i]]], fmt="o", color=color[i], capsize=4)
                if m[i] == m[i]:
                    ax.annotate(f"{m[i]:.1f}", (i, m[i]), textcoords="offset points", xytext=(6, 0), ha="left",
                                va="center", fontsize=8)
            ax.set_xticks(list(x), [("(ref) " if ref(a) else "") + a for a in names], rotation=30, ha="right")
            ax.grid(axis="y", alpha=0.3)
            ax.set_xlim(-0.6, len(names) - 0.4)  # both rows alike, though the reference has no point below
            ax.margins(y=0.15)  # whisker caps clear of the frame
        axes[0, c].set_title(title)
    axes[0, 0].set_ylabel("success % (95% over seeds)")
    axes[1, 0].set_ylabel("paired diff to scratch, points (95%)")
    fig.suptitle(f"green: helps (paired diff >= {bar:g} points, dashed line,\nand its 95% interval excludes 0)",
                 fontsize=10)
    fig.tight_layout()
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)



if args.plot:  # only the picture of a finished comparison: nothing runs
    out_png = args.out_png or os.path.splitext(args.plot)[0] + ".png"
    try:
        done = json.load(open(args.plot))
        res, bar = done["results"], done["config"].get("helps_points", 10)  # older tables: the toy's 10
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: --plot {args.plot}: expected a compare.json written by compare.py ({type(e).__name__})")
    plot(res, out_png, bar)
    print(f"wrote {out_png}")
    sys.exit()
record_path = lambda key: os.path.join(args.records, f"{key[0]}_seed{key[1]}.json")


def damaged(arm, s):
    """Why the existing record of a unit cannot be read (a disk that filled up while it was written, a bad merge
    of the committed results/libero_compare/), or None. Checked before any unit runs: a unit whose record exists
    is skipped, so a damaged one would otherwise stop the comparison only at the tables, hours later."""
    path = record_path((arm, s))
    try:
        rec = json.load(open(path))
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, a bad UTF-8 byte
        return f"{type(e).__name__}: {e}" if os.path.getsize(path) else "an empty file"
    need = ["arm", "seed", "success", "tasks", *(["pre_eval", "cca"] if latent_arm(arm) else []),
            *(["zero_shot"] if zero_shot(arm, s) else []), *(["labels"] if base(arm).startswith("vpt") else [])]
    if not isinstance(rec, dict) or any(k not in rec for k in need):
        return f"JSON without {', '.join(k for k in need if not isinstance(rec, dict) or k not in rec)}"
    if not (isinstance(rec["success"], dict) and {"successes", "episodes", "success_rate"} <= set(rec["success"])):
        return "a success entry without successes, episodes and success_rate"
    if (rec["arm"], rec["seed"]) != (arm, s):
        return f"the record of {rec['arm']} seed {rec['seed']}"


def check_records(keys, must_exist):
    """Stop on the first record of keys that cannot be read (or, must_exist, is missing), in one line."""
    for arm, s in keys:
        path = record_path((arm, s))
        missing = "no file (moved while this comparison ran?)" if must_exist else None
        if why := damaged(arm, s) if os.path.exists(path) else missing:
            sys.exit(f"error: {path}: expected the unit record of {arm} seed {s}, got {why}; restore it (git checkout "
                     f"-- it, where the records are committed) or delete it to run the unit again")


check_records([(a, s) for a in arms for s in range(args.seeds)], must_exist=False)
py, env = sys.executable, dict(os.environ, OMP_NUM_THREADS="1")
here = os.path.dirname(os.path.abspath(__file__))
git = lambda *a: subprocess.run(["git", *a], cwd=here, capture_output=True, text=True).stdout.strip()
# the code this invocation runs, in every record it writes: records of different code are never pooled unknowingly
# ("+dirty": tracked files changed since that commit; None: not a git checkout)
commit = (git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")) or None
os.makedirs(args.out, exist_ok=True)
os.makedirs(args.records, exist_ok=True)
log = open(os.path.join(args.out, "commands.log"), "a")  # every command run, in order, for the record


def run(*cmd, done, train=False, unit=None):
    """Run one script unless `done` exists, then make sure `done` does; stop the comparison on failure.
    train: a stage run, whose folder --resume continues (a killed run) or --overwrite starts again (one
    killed before its first checkpoint). unit: a list that gets the command, for the unit's record."""
    if train:
        cmd = (*cmd, "--resume" if os.path.exists(os.path.join(os.path.dirname(done), "ckpt.pt")) else "--overwrite")
    cmd = [py, os.path.join(here, cmd[0]), *map(str, cmd[1:])]
    typed = " ".join(["python", cmd[1].split(os.sep)[-1], *cmd[2:-1 if train else None]])  # as a user types it
    if unit is not None:
        unit.append(typed)
    if os.path.exists(done):  # a finished run: its DONE holds the command that made it (empty: before 2026-12-07)
        made = open(done).read().strip() if os.path.basename(done) == "DONE" else ""
        if made and made != typed:  # another recipe's run must not stand in for this one
            sys.exit(f"error: {done}: that run was made by `{made}`, this comparison runs `{typed}`; delete "
                     f"{os.path.dirname(done)} to run it again")
        return
    log.write(" ".join(cmd[1:]) + "\n"); log.flush()
    # its output, progress bars included, to --out/logs/<run folder>.log: `tail -f` it to watch a long unit
    out = os.path.join(args.out, "logs", os.path.relpath(os.path.dirname(done), args.out).replace(os.sep, "_") + ".log")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    print(f"{time.strftime('%m-%d %H:%M')} {typed.split()[1]} -> {out}", flush=True)
    with open(out, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        last = (open(out).read().strip().replace("\r", "\n").splitlines() or [""])[-1]
        sys.exit(f"error: `{' '.join(cmd[1:])}` failed (its output: {out}):\n{last}")
    if os.path.basename(done) == "DONE":
        with open(done, "w") as f:
            f.write(typed + "\n")
    elif not os.path.exists(done):
        open(done, "w").close()


def parallel(fn, items):
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(fn, items))


t0 = time.time()
data = os.path.join(args.out, "data")
dirs = {(a, s): os.path.join(args.out, a, f"seed{s}") for a in arms for s in range(args.seeds)}
todo = [key for key in dirs if not os.path.exists(record_path(key))]
print(f"{len(dirs) - len(todo)} of {len(dirs)} units recorded in {args.records}; to run: "
      + (", ".join(f"{a} seed {s}" for a, s in todo) or "none"), flush=True)
make_data = bool(todo)  # every unit recorded: no data needed
if not libero:
    # the toy world's stage-2 demos (5 per task), source video and source demos; and, from another seed
    # block so no episode is shared, 50 target demos per task for the oracle and the target-video arms (and
    # CCA: 500 episodes to split in halves)
    toy, target50 = os.path.join(data, "toy"), os.path.join(data, "target50")
    q = ["--source_episodes", 20, "--source_demos", 20, "--image_size", 32] if args.quick else []
    if make_data:
        run("convert.py", "toy", "--out", toy, *q, done=os.path.join(toy, "source_video.hdf5"))
        run("convert.py", "toy", "--seed", 1, "--target_demos", 2 if args.quick else 50, "--source_demos", 10,
            "--source_episodes", 10, "--out", target50, *q[4:], done=os.path.join(target50, "source_video.hdf5"))
    video, demos = os.path.join(toy, "source_video.hdf5"), os.path.join(target50, "target_demos.hdf5")
    pre = {"wm_source": ["--data", video], "wm_target": ["--data", demos],
           "wm_detach": ["--data", video, "--detach_latents"], "oracle": ["--data", demos],
           "sup_source": ["--data", os.path.join(toy, "source_demos.hdf5")],
           "idm_source": ["--data", video, "--latents", "idm"], "idm_target": ["--data", demos, "--latents", "idm"],
           "vpt_target": [], "vpt_source": []}  # vpt: --data is the unit's own labeled video (unit())
    to_label = {"vpt_target": demos, "vpt_source": video}  # the video each vpt arm's IDM labels
    stage2_data, cca_data = ["--data", os.path.join(toy, "target_demos.hdf5")], demos
    evaluation = ["--episodes", args.episodes, "--seed", args.eval_seed]
    tiny = ["--batch_size", 4, "--eval_every", 2, "--log_every", 1] if args.quick else []
else:
    # the scripted expert's video and labeled demos (official schema), then episode files at 64 px
    tasks = ["--tasks", "0"] if args.quick else []
    if make_data:  # the headless GL backend probed once: every stage inherits MUJOCO_GL instead of probing again
        import libero_sim
        try:
            env["MUJOCO_GL"] = libero_sim.setup_rendering()
        except RuntimeError as e:
            sys.exit(f"error: {e}")
    video, demos = os.path.join(data, "video"), os.path.join(data, "demos")
    if args.quick:  # one recording serves as both: --quick checks the pipeline, and the expert is most of its time
        demos = video
    recordings = [(video, args.video_demos, 100)] + ([] if args.quick else [(demos, args.demos, 200)])
    for out, n, seed in recordings if make_data else ():
        run("convert.py", "libero-expert", "--suite", "libero_object", *tasks, "--demos", n, "--seed", seed,
            "--out", out + "_raw", "--workers", 2, "--cameras", "agentview", done=os.path.join(out + "_raw", "DONE"))
        run("convert.py", "libero", "--src", out + "_raw", "--out", out, "--image_size", 64, "--cameras", "agentview",
            done=os.path.join(out, "DONE"))
    obs = ["--cameras", "agentview", "--state_keys", "ee_states,gripper_states"]  # the stage-2 policy's inputs
    latent = ["--data", video, "--cameras", "agentview", "--state_dim", 8, "--latent_dim", 7,
              "--wm_image_size", args.wm_image_size]  # stage 1 builds the same policy, latents of the action size
    # wm: the stage-1 recipe its gates chose (docs/libero.md); idm (not a default arm) keeps context on, batch 16
    pre = {"wm": [*latent, "--no_context", "--batch_size", 64, "--lr", 3e-4], "idm": [*latent, "--latents", "idm"],
           "sup": ["--data", video, *obs, "--batch_size", 64, "--lr", 3e-4], "vpt": [*obs, "--batch_size", 64, "--lr", 3e-4]}
    to_label = {"vpt": video}
    stage2_data, cca_data = ["--data", demos, *obs, "--batch_size", 64], demos
    evaluation = ["--suite", "libero_object", "--episodes", args.episodes, "--first_init", args.first_init,
                  "--envs", 2, *tasks, *(["--max_steps", 5] if args.quick else [])]
    tiny = ["--batch_size", 4, "--eval_every", 2, "--log_every", 1] if args.quick else []
load = lambda *path: json.load(open(os.path.join(*path)))
inputs = {"video": video, "demos": demos} if libero else {"toy": toy, "target50": target50}  # what the units read
data_prints = {}  # name -> episodes.fingerprint of inputs[name], once per invocation (LIBERO video and demos: ~30 s)


def evaluate(out, videos, unit):
    """Closed-loop success of out/ckpt.pt on the shared evaluation episodes, into out/eval."""
    run("evaluate.py", "--ckpt", os.path.join(out, "ckpt.pt"), *evaluation, "--videos", videos, "--out_dir",
        os.path.join(out, "eval"), done=os.path.join(out, "eval", "results.json"), unit=unit)


def unit(key):
    """One arm and seed: stage 1 (or supervised pretraining), stage 2, evaluation, CCA; then its record.
    A unit whose record exists is done, whether or not its runs are on this machine."""
    if os.path.exists(record_path(key)):
        return
    arm, s = key
    d, cmds, t_unit = dirs[key], [], time.time()
    if latent_arm(arm):
        run("pretrain.py", *pre[base(arm)], *policy(arm), "--seed", s, "--max_steps", args.pretrain_steps,
            "--out_dir", os.path.join(d, "pre"), *tiny, done=os.path.join(d, "pre", "DONE"), train=True, unit=cmds)
    elif base(arm) != "scratch":  # supervised: finetune.py on labeled episodes (then, zero_shot: its success)
        sup = pre[base(arm)]
        if base(arm).startswith("vpt"):  # pseudo-labels: an IDM trained on the stage-2 demos labels the video
            run("label.py", "--demos", stage2_data[1], "--video", to_label[base(arm)], "--out",
                os.path.join(d, "labels"), "--seed", s, *(["--steps", 4, "--size", 32] if args.quick else []),
                done=os.path.join(d, "labels", "labels.json"), unit=cmds)
            sup = ["--data", os.path.join(d, "labels"), *sup]
        run("finetune.py", *sup, *policy(arm), "--seed", s, "--max_steps", args.sup_steps, "--out_dir",
            os.path.join(d, "pre"), *tiny, done=os.path.join(d, "pre", "DONE"), train=True, unit=cmds)
        if zero_shot(arm, s):
            evaluate(os.path.join(d, "pre"), 0, cmds)
    init = policy(arm) if base(arm) == "scratch" else ["--init", os.path.join(d, "pre", "ckpt.pt")]  # it says which
    run("finetune.py", *stage2_data, *init, "--seed", s, "--max_steps", args.ft_steps, "--lr", args.ft_lr,
        "--body_lr_scale", args.body_lr_scale, "--out_dir", os.path.join(d, "ft"), *tiny,
        done=os.path.join(d, "ft", "DONE"), train=True, unit=cmds)
    evaluate(os.path.join(d, "ft"), 1 if s == 0 else 0, cmds)
    if latent_arm(arm):  # CCA on labeled episodes stage 1 never saw (LIBERO --quick: its own video)
        run("cca.py", "--ckpt", os.path.join(d, "pre", "ckpt.pt"), "--data", cca_data, "--out_dir",
            os.path.join(d, "cca"), done=os.path.join(d, "cca", "cca.json"), unit=cmds)
    # the record: what the tables need, small enough to commit
    ev = load(d, "ft", "eval", "results.json")
    data_prints.update({k: fingerprint(v) for k, v in inputs.items() if k not in data_prints})
    rec = {"arm": arm, "seed": s, "commit": commit, "data": dict(data_prints), "success": ev["overall"],
           "commands": cmds,
           "tasks": [{k: t[k] for k in ("task", "family", "successes", "episodes", "per_episode")} for t in ev["tasks"]]}
    if zero_shot(arm, s):
        rec["zero_shot"] = load(d, "pre", "eval", "results.json")["overall"]
    if base(arm).startswith("vpt"):  # the labeler's quality: held-out R^2 on demo episodes it never trained on
        lab = load(d, "labels", "labels.json")
        rec["labels"] = {k: lab[k] for k in ("heldout_r2", "heldout_r2_pooled")}
        if all("video_r2_pooled" in f for f in lab["files"]):  # the video records actions: they score the labels
            rec["labels"]["video_r2_pooled"] = sum(f["video_r2_pooled"] for f in lab["files"]) / len(lab["files"])
    if latent_arm(arm):
        rows = open(os.path.join(d, "pre", "log.jsonl")).readlines()
        rec["pre_eval"] = [json.loads(l)["eval"] for l in rows if '"eval"' in l][-1]  # stage 1's final eval
        c = load(d, "cca", "cca.json")
        rec["cca"] = {k: c[k] for k in ("results", "gate_l_pass", "per_policy", "idm_results", "idm_gate_l_pass")
                      if k in c}
    with open(record_path(key) + ".tmp", "w") as f:
        json.dump(rec, f, indent=1)
    os.replace(record_path(key) + ".tmp", record_path(key))
    done = sum(os.path.exists(record_path(k)) for k in dirs)
    print(f"{time.strftime('%m-%d %H:%M')} recorded {arm} seed {s} ({(time.time() - t_unit) / 60:.0f} min): {done} of "
          f"{len(dirs)} units -> {record_path(key)}", flush=True)


parallel(unit, todo)

# -------------------------------------------------------------------------------------------------
# aggregate, from the records alone: success per arm with 95% intervals over seeds (t, intervals.py: any
# number of seeds) and over all episodes (Wilson); paired differences to scratch per seed
check_records(dirs, must_exist=True)  # a record moved or spoiled while this invocation ran: one line, not a traceback
recs = {key: json.load(open(record_path(key))) for key in dirs}
res, seeds = {}, range(args.seeds)
mean = lambda xs: sum(xs) / len(xs)


def bootstrap(arm, ref, draws=10000):
    """95% percentile interval of the paired mean difference in success, arm - ref, resampling seeds and tasks
    (both with replacement, a fixed generator): seeds and tasks are where the variance lies, and the episodes of
    one policy on one task are not independent draws. Cell (seed, task): the difference of the two rates."""
    names = [t["task"] for t in recs[arm, 0]["tasks"]]
    rate = lambda a, s: {t["task"]: t["successes"] / t["episodes"] for t in recs[a, s]["tasks"]}
    d = np.array([[rate(arm, s)[t] - rate(ref, s)[t] for t in names] for s in seeds])  # (S, T)
    g = np.random.default_rng(0)
    si, ti = g.integers(0, d.shape[0], (draws, d.shape[0])), g.integers(0, d.shape[1], (draws, d.shape[1]))
    means = d[si[:, :, None], ti[:, None, :]].mean((1, 2))  # (draws,): each draw's grid of S x T resampled cells
    return np.percentile(means, [2.5, 97.5]).tolist()


for arm in arms:
    ev = [recs[arm, s]["success"] for s in seeds]
    rates = [e["success_rate"] for e in ev]
    m, ci = t_interval(rates)
    ci = [min(max(c, 0.0), 1.0) if c == c else c for c in ci]  # rates lie in [0, 1] (nan: one seed, no interval)
    k, n = sum(e["successes"] for e in ev), sum(e["episodes"] for e in ev)
    r = {"success": m, "ci95_seeds": ci, "ci95_episodes": wilson(k, n), "per_seed": rates, "episodes": n,
         "data": [recs[arm, s].get("data") for s in seeds]}  # per seed, the data's fingerprints (None: not recorded)
    # per task, pooled over the seeds
    r["tasks"] = {t["task"]: [0, 0] for t in recs[arm, 0]["tasks"]}
    for s in seeds:
        for t in recs[arm, s]["tasks"]:
            r["tasks"][t["task"]] = [r["tasks"][t["task"]][0] + t["successes"], r["tasks"][t["task"]][1] + t["episodes"]]
    scratch = ref_of(arm)
    if scratch in arms:
        ref = [recs[scratch, s]["success"]["success_rate"] for s in seeds]
        diffs = [a - b for a, b in zip(rates, ref)]
        d, dci = t_interval(diffs)
        r |= {"diff_vs_scratch": d, "diff_ci95": dci, "helps": bool(d >= args.helps_points / 100 and dci[0] > 0)}
        if arm != scratch:  # beside the rule's t-interval: seeds and tasks resampled; the design's resolution
            sd = math.sqrt(sum((x - d) ** 2 for x in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else float("nan")
            r |= {"diff_boot95": bootstrap(arm, scratch), "diff_sd": sd, "mde80": mde(sd, len(diffs))}
    if "labels" in recs[arm, 0]:  # vpt: the labeler's held-out R^2, per dimension (mean over seeds) and pooled per seed
        r["labels"] = {"heldout_r2": [mean(v) for v in zip(*[recs[arm, s]["labels"]["heldout_r2"] for s in seeds])],
                       "pooled_per_seed": [recs[arm, s]["labels"]["heldout_r2_pooled"] for s in seeds]}
        if all("video_r2_pooled" in recs[arm, s]["labels"] for s in seeds):
            r["labels"]["video_pooled_per_seed"] = [recs[arm, s]["labels"]["video_r2_pooled"] for s in seeds]
    if "zero_shot" in recs[arm, 0]:  # over the seeds that have it (--zero_shot_seeds)
        r["zero_shot"] = mean([recs[arm, s]["zero_shot"]["success_rate"] for s in seeds if "zero_shot" in recs[arm, s]])
    if latent_arm(arm):
        evals = [recs[arm, s]["pre_eval"] for s in seeds]
        cca = [recs[arm, s]["cca"] for s in seeds]
        r["gate_w"] = {k: mean([e[k] for e in evals]) for k in ("gate_w", "swap_ratio", "shuffle_ratio", "openloop_err",
                                                              "copy_frame_err")}
        r["gate_w"]["openloop_k"] = [round(mean(v), 1) for v in zip(*[e["openloop_k"] for e in evals])]
        r["gate_w"]["copy_k"] = [round(mean(v), 1) for v in zip(*[e["copy_k"] for e in evals])]
        r["cca"] = {g: {k: mean([c["results"][g][k] for c in cca]) for k in ("heldout", "random_heldout", "insample")}
                    for g in cca[0]["results"]}
        r["gate_l_pass"] = mean([c["gate_l_pass"] for c in cca])
        r["gates_per_seed"] = [{**{k: e[k] for k in ("gate_w", "swap_ratio", "shuffle_ratio")},
                                "gate_l_pass": c["gate_l_pass"], "cca_overall": c["results"]["overall"]["heldout"],
                                "cca_overall_random": c["results"]["overall"]["random_heldout"]}
                               for e, c in zip(evals, cca)]
        # what the latents are: saturated at the tanh's +-1, and how much of them the instruction alone explains
        lat = [c["per_policy"] for c in cca]
        ok = [q for q in lat if not q["pretrained"]["latent_collapsed"]]  # a collapsed chunk has no share to speak of
        r["latents"] = {"latent_saturated": mean([q["pretrained"]["latent_saturated"] for q in lat]),
                        "latent_instruction_share": mean([q["pretrained"]["latent_instruction_share"] for q in ok])
                        if ok else float("nan"), "collapsed": len(lat) - len(ok),
                        "random_instruction_share": mean([q[a]["latent_instruction_share"] for q in lat for a in q
                                                          if a.startswith("random")])}
        if base(arm).startswith("idm"):  # the IDM's own latents, and how well the policy predicts them
            r["idm"] = {k: mean([e[k] for e in evals]) for k in ("idm_gate_w", "idm_swap_ratio", "idm_shuffle_ratio",
                                                               "policy_r2")}
            r["idm"]["idm_openloop_k"] = [round(mean(v), 1) for v in zip(*[e["idm_openloop_k"] for e in evals])]
            r["idm"]["cca"] = {g: {k: mean([c["idm_results"][g][k] for c in cca]) for k in ("heldout", "random_heldout")}
                               for g in cca[0]["idm_results"]}
            r["idm"]["gate_l_pass"] = mean([c["idm_gate_l_pass"] for c in cca])
            r["target_met"] = bool(r.get("helps") and r["gate_l_pass"] == 1 and r["gate_w"]["swap_ratio"] >= 1.1)
    res[arm] = r

pct = lambda x: f"{100 * x:.1f}" if x == x else "nan"
verdict = lambda x: "pass" if x == 1 else "fail"  # a gate over seeds passes only if it passes in every seed
lines = ["| arm | success % [95% over seeds] [95% over episodes] | paired diff to scratch (dp_: to dp_scratch) [95%] "
         "| bootstrap 95% (seeds x tasks) | zero-shot % |", "|---|---|---|---|---|"]
for arm, r in res.items():
    lines.append(f"| {arm} | {pct(r['success'])} [{pct(r['ci95_seeds'][0])}, {pct(r['ci95_seeds'][1])}] "
                 f"[{pct(r['ci95_episodes'][0])}, {pct(r['ci95_episodes'][1])}] | "
                 + (f"{pct(r['diff_vs_scratch'])} [{pct(r['diff_ci95'][0])}, {pct(r['diff_ci95'][1])}]"
                    f"{' helps' if r['helps'] else ''}" if "diff_vs_scratch" in r else "-")
                 + (f" | [{pct(r['diff_boot95'][0])}, {pct(r['diff_boot95'][1])}]" if "diff_boot95" in r else " | -")
                 + f" | {pct(r['zero_shot']) if 'zero_shot' in r else '-'} |")
lines += ["", "The rule reads the paired t-interval; the Wilson interval pools every episode as if independent, so it "
          "describes one arm and is not evidence across arms. The design's resolution (80% power, two-sided 5%, from "
          f"the measured seed-to-seed SD of each paired difference, {args.seeds} seeds): "
          + "; ".join(f"{arm} {100 * r['mde80']:.1f} points (SD {100 * r['diff_sd']:.1f})" for arm, r in res.items()
                      if "mde80" in r)]
# the bound to state when an interval is wide, rather than "no effect": what its 95% t-interval rules out
bounds = [f"{arm}: a difference above {pct(r['diff_ci95'][1])} or below {pct(r['diff_ci95'][0])} points"
          for arm, r in res.items() if r.get("diff_sd", 0) > 0]
lines[-1] += f". Excluded by each arm's paired 95% t-interval: {'; '.join(bounds)}." if bounds else ""
by_data = {}  # fingerprints -> the units that read that data: one entry, unless data recorded again came out different
for arm, r in res.items():
    for s, fp in zip(seeds, r["data"]):
        key = ", ".join(f"{k} {v}" for k, v in fp.items()) if fp else "not recorded"
        by_data.setdefault(key, {}).setdefault(arm, []).append(s)
units_of = lambda units: ", ".join(f"{arm} {','.join(map(str, ss))}" for arm, ss in units.items())  # scratch 0,1
lines += ["", "Data the units trained on (episodes.fingerprint of the episode files they read): "
          + "; ".join(f"{fp}: {units_of(units)}" for fp, units in by_data.items())]
if any("gate_w" in r for r in res.values()):  # arms without a world model have no gates
    lines += ["", "| arm | gate W numbers | open-loop k=1..n | copy k=1..n | swap ratio | shuffle ratio | held-out CCA "
              "per family (random init) | gate L | latents saturated | instruction share of latents (random init) "
              "| collapsed |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
for arm, r in res.items():
    if "gate_w" in r:
        w, c = r["gate_w"], r["cca"]
        fams = ", ".join(f"{g} {c[g]['heldout']:.2f} ({c[g]['random_heldout']:.2f})" for g in c)
        curve = lambda xs: "/".join(f"{v:.1f}" for v in xs)
        sat = "-" if arm.startswith("dp_") else pct(r["latents"]["latent_saturated"]) + "%"  # DP's latents: no tanh
        lines.append(f"| {arm} | {verdict(w['gate_w'])} | {curve(w['openloop_k'])} | {curve(w['copy_k'])} "
                     f"| {w['swap_ratio']:.3f} | {w['shuffle_ratio']:.3f} | {fams} | {verdict(r['gate_l_pass'])} "
                     f"| {sat} | {pct(r['latents']['latent_instruction_share'])}% "
                     f"({pct(r['latents']['random_instruction_share'])}%) | {r['latents']['collapsed']} of {args.seeds} |")
# per seed: each arm's success and its paired difference (points), then the latent arms' gates beside them, so a
# reader can see whether the seeds whose latents pass the gates are the ones that do well
paired = lambda arm: arm != ref_of(arm) and ref_of(arm) in res
seed_cell = lambda a, i: pct(res[a]["per_seed"][i]) + (
    f" ({100 * (res[a]['per_seed'][i] - res[ref_of(a)]['per_seed'][i]):+.1f})" if paired(a) else "")
lines += ["", "| seed | " + " | ".join(f"{a} % (paired diff)" if paired(a) else f"{a} %" for a in arms) + " |",
          "|---|" + "---|" * len(arms)]
lines += [f"| {s} | " + " | ".join(seed_cell(a, i) for a in arms) + " |" for i, s in enumerate(seeds)]
if any("gates_per_seed" in r for r in res.values()):
    lines += ["", "| unit | gate_w | swap ratio | shuffle ratio | held-out CCA overall (random init) | gate L | success % "
              "(paired diff) |", "|---|---|---|---|---|---|---|"]
for a, r in res.items():
    for i, (s, g) in enumerate(zip(seeds, r.get("gates_per_seed", []))):
        lines.append(f"| {a} seed {s} | {verdict(g['gate_w'])} | {g['swap_ratio']:.3f} "
                     f"| {g['shuffle_ratio']:.3f} | {g['cca_overall']:.2f} ({g['cca_overall_random']:.2f}) "
                     f"| {verdict(g['gate_l_pass'])} | {seed_cell(a, i)} |")
labelers = {}  # vpt arms whose labelers are the same (same demos and seeds) share one line
for arm, r in res.items():
    if "labels" in r:
        line = (f"the labeler (an IDM trained on the stage-2 demos) on held-out demo episodes, R^2 per action dimension "
                f"(mean over seeds) {' / '.join(f'{v:.2f}' for v in r['labels']['heldout_r2'])}, pooled per seed "
                f"{' / '.join(f'{v:.2f}' for v in r['labels']['pooled_per_seed'])}")
        labelers.setdefault(line, []).append(arm)
lines += [x for line, arms in labelers.items() for x in ("", f"{', '.join(arms)}: {line}")]
lines += [f"{arm}: the labels against the actions its video records (never used), R^2 (pooled per file, mean over files) per seed "
          f"{' / '.join(f'{v:.2f}' for v in r['labels']['video_pooled_per_seed'])}"
          for arm, r in res.items() if "video_pooled_per_seed" in r.get("labels", {})]
idm = [(arm, r) for arm, r in res.items() if "idm" in r]
if idm:
    lines += ["", "| arm | IDM latents: open-loop k=1..n | swap ratio | shuffle ratio | held-out CCA per family (random "
              "init) | gate L | policy R^2 to them | pre-registered target (idm_source) |", "|---|---|---|---|---|---|---|---|"]
for arm, r in idm:
    i = r["idm"]
    fams = ", ".join(f"{g} {c['heldout']:.2f} ({c['random_heldout']:.2f})" for g, c in i["cca"].items())
    lines.append(f"| {arm} | {'/'.join(f'{v:.1f}' for v in i['idm_openloop_k'])} | {i['idm_swap_ratio']:.3f} "
                 f"| {i['idm_shuffle_ratio']:.3f} | {fams} | {verdict(i['gate_l_pass'])} "
                 f"| {i['policy_r2']:.3f} | {'met' if r['target_met'] else 'not met'} |")
if libero:  # per task, pooled over the seeds
    names = list(res[arms[0]]["tasks"])
    lines += ["", "| task | " + " | ".join(f"{arm} % [Wilson 95%]" for arm in arms) + " |", "|---|" + "---|" * len(arms)]
    for t in names:
        cell = lambda k, n: f"{pct(k / n)} [{pct(wilson(k, n)[0])}, {pct(wilson(k, n)[1])}]"
        lines.append(f"| {t} | " + " | ".join(cell(*res[arm]["tasks"][t]) for arm in arms) + " |")
n_tasks = len(res[arms[0]]["tasks"])
lines.append(f"\n{args.seeds} seed(s) x {args.episodes} episodes per task x {n_tasks} tasks per arm; this invocation's "
             f"wall time {(time.time() - t0) / 60:.1f} min (finished units are skipped); each unit's commands are in its "
             f"record, {args.records}/<arm>_seed<s>.json")
out = {"config": vars(args), "results": res, "wall_s": time.time() - t0}
with open(args.result + ".json.tmp", "w") as f:
    json.dump(out, f, indent=1)
os.replace(args.result + ".json.tmp", args.result + ".json")
with open(args.result + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
plot(res, args.result + ".png", args.helps_points)
print("\n".join(lines))
if args.wandb:  # one wandb run for the comparison: per-arm scalars, the table, the plot
    wandb.init(project=args.wandb_project, name=args.wandb_name or os.path.basename(os.path.abspath(args.out)),
               config=vars(args), job_type="compare")
    cols = ["arm", "success", "ci95_seeds_low", "ci95_seeds_high", "diff_vs_scratch", "diff_ci95_low",
            "diff_ci95_high", "helps", "zero_shot"]
    rows = [[arm, r["success"], *r["ci95_seeds"], r.get("diff_vs_scratch"), *r.get("diff_ci95", [None] * 2),
             r.get("helps"), r.get("zero_shot")] for arm, r in res.items()]
    rows = [[None if x != x else x for x in row] for row in rows]  # one seed: no interval (nan), an empty cell
    wandb.log({"comparison": wandb.Table(columns=cols, data=rows),
               "plot": wandb.Image(args.result + ".png"),
               **{f"success/{arm}": r["success"] for arm, r in res.items()},
               **{f"diff_vs_scratch/{arm}": r["diff_vs_scratch"] for arm, r in res.items()
                  if "diff_vs_scratch" in r}})
    wandb.finish()
