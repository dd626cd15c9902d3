"""
Does world-model pretraining help? Every pretraining arm through the same stage 2, paired by seed.

    python compare.py --quick      # ~2 min on 2 CPU cores: 1 seed, tiny budgets; checks the pipeline, not the science
    python compare.py              # the pre-registered run: 5 seeds, 50 episodes per task (~2.5 h on 2 CPU cores)
    python compare.py --jobs 8     # as many runs at once as you have cores (each uses one torch thread)

Decision rule, fixed before the runs: world-model pretraining (arm wm_source) helps if its paired
mean difference in success to scratch is >= 10 points and the 95% interval of that difference
excludes 0. The same rule is reported for every arm.

Arms (BAKU unless dp_; every arm then runs the same stage 2 on the same 5 target demos per task,
with the same stage-2 seed and the same evaluation episodes):
    scratch      no pretraining
    oracle       supervised pretraining on 50 target demos per task WITH actions (gate O: the
                 recipe must let it beat scratch, or no pretraining can show)
    sup_source   supervised pretraining on source-domain demos with actions (its zero-shot target
                 success measures the domain gap)
    wm_target    world-model pretraining on target-domain video, no actions (no domain gap)
    wm_source    world-model pretraining on source-domain video, no actions (the method)
    wm_detach    as wm_source with --detach_latents (the authors' release: the policy gets no gradient)
    dp_<arm>     the same arm with Diffusion Policy instead of BAKU (dp_scratch, dp_wm_target, ...); its
                 paired difference is to dp_scratch
The supervised arms' zero-shot success (before stage 2) is reported too. For the world-model arms the
table shows gate W's numbers (open-loop beats copying frame t at every horizon >= 2, held-out windows;
its other half is the rollout pictures, which no number checks: look at them), the swap test,
held-out CCA per family next to randomly initialised policies (gate L), and what the latents are:
the share saturated at +-1, the share of their variance the instruction alone explains (over the
seeds whose latents did not collapse) and how many collapsed to one chunk for every window.

Evaluation episodes use toy seeds --eval_seed.. (never used while choosing the recipe; see README).
Runs go to --out/<arm>/seed<s>/; a finished run is skipped on a rerun, so a killed comparison resumes.
Results: --out/compare.json and compare.md (also printed), and compare.png (matplotlib): success per
arm with its 95% interval over seeds and the paired difference to scratch with its 95% interval, one
column per policy. The plot of a finished comparison, from its compare.json alone (runs nothing):
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

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--quick", action="store_true", help="tiny budgets, 2 episodes per task, 1 seed unless --seeds: a "
               "pipeline check")
p.add_argument("--seeds", type=int, default=None, help="seeds per arm (pretraining and stage-2 seed; default 5)")
p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per task")
p.add_argument("--eval_seed", type=int, default=0, help="first toy seed of the evaluation episodes")
p.add_argument("--pretrain_steps", type=int, default=1500, help="world-model pretraining steps")
p.add_argument("--sup_steps", type=int, default=4000, help="supervised pretraining steps (oracle, sup_source)")
p.add_argument("--ft_steps", type=int, default=1500, help="stage-2 steps (every arm)")
p.add_argument("--ft_lr", type=float, default=1e-3, help="stage-2 peak learning rate (every arm)")
p.add_argument("--body_lr_scale", type=float, default=1.0, help="stage-2 lr multiplier below the action layer")
p.add_argument("--arms", default="scratch,oracle,sup_source,wm_target,wm_source,wm_detach,dp_scratch,dp_wm_target",
               help="comma list of arms; dp_<arm> is <arm> with Diffusion Policy")
p.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each")
p.add_argument("--out", default="runs/compare", help="run folder")
p.add_argument("--plot", default="", help="only draw the plot of a finished comparison's compare.json, run nothing")
p.add_argument("--out_png", default="", help="with --plot: where the plot goes (default: beside it, .json -> .png)")
p.add_argument("--wandb", action="store_true", help="also log the table and plot to Weights & Biases (pip install "
               "wandb; offline: WANDB_MODE=offline); the stage runs themselves are not logged")
p.add_argument("--wandb_project", default="lawm", help="wandb project")
p.add_argument("--wandb_name", default="", help="wandb run name (default: the --out folder's name)")
args = p.parse_args()
sys.stdout.reconfigure(line_buffering=True)  # each line reaches a pipe or a log file when printed
if args.quick:
    args.episodes, args.pretrain_steps, args.sup_steps, args.ft_steps = 2, 4, 4, 4
args.seeds = args.seeds if args.seeds is not None else 1 if args.quick else 5
arms = args.arms.split(",")
ARMS = ("scratch", "oracle", "sup_source", "wm_target", "wm_source", "wm_detach")
for name, low in (("seeds", 1), ("episodes", 1), ("pretrain_steps", 0), ("sup_steps", 0), ("ft_steps", 0),
                  ("jobs", 1)):
    if getattr(args, name) < low:  # bad flags: one line, before any run starts
        sys.exit(f"error: --{name}: expected an integer >= {low}, got {getattr(args, name)}")
if not all(math.isfinite(x) and x >= 0 for x in (args.ft_lr, args.body_lr_scale)):
    sys.exit(f"error: --ft_lr, --body_lr_scale: expected finite numbers >= 0, got {args.ft_lr}, {args.body_lr_scale}")
base = lambda arm: arm[3:] if arm.startswith("dp_") else arm  # the BAKU arm a dp_ arm repeats
policy = lambda arm: ["--policy", "diffusion" if arm.startswith("dp_") else "baku"]  # for stage scripts that build one
if not all(base(a) in ARMS for a in arms) or len(set(arms)) != len(arms):
    sys.exit(f"error: --arms: expected some of {','.join(ARMS)} (or dp_ before one) once each, got {args.arms!r}")
if args.wandb:  # imported only when asked for: without --wandb no wandb code is loaded
    try:
        import wandb
    except ImportError:
        sys.exit("error: --wandb: the wandb package is not installed (pip install wandb)")


def plot(res, path):
    """compare.png: per policy (a column), success per arm with its 95% interval over seeds (top) and the
    paired difference to that policy's scratch arm with its 95% interval (bottom; dashed: the +10-point
    bar of the decision rule). One seed has no interval: the points stand alone."""
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
                ax.axhline(10, color="tab:green", lw=0.8, ls="--")
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
    fig.suptitle("green: helps (paired diff >= 10 points, dashed line, and its 95% interval excludes 0)", fontsize=10)
    fig.tight_layout()
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


if args.plot:  # only the picture of a finished comparison: nothing runs
    out_png = args.out_png or os.path.splitext(args.plot)[0] + ".png"
    try:
        res = json.load(open(args.plot))["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"error: --plot {args.plot}: expected a compare.json written by compare.py ({type(e).__name__})")
    plot(res, out_png)
    print(f"wrote {out_png}")
    sys.exit()
py, env = sys.executable, dict(os.environ, OMP_NUM_THREADS="1")
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(args.out, exist_ok=True)
log = open(os.path.join(args.out, "commands.log"), "a")  # every command run, in order, for the record


def run(*cmd, done):
    """Run one stage script unless `done` exists; stop the comparison on failure. A training run marks
    its folder DONE when it exits cleanly; a killed one is continued with --resume."""
    if os.path.exists(done):
        return
    train = done.endswith("DONE")
    if train:  # a killed run is continued; one killed before its first checkpoint starts again
        cmd = (*cmd, "--resume" if os.path.exists(os.path.join(os.path.dirname(done), "ckpt.pt")) else "--overwrite")
    cmd = [py, os.path.join(here, cmd[0]), *map(str, cmd[1:])]
    log.write(" ".join(cmd[1:]) + "\n"); log.flush()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [""])[-1]
        sys.exit(f"error: `{' '.join(cmd[1:])}` failed:\n{last}")
    if train:
        open(done, "w").close()


def parallel(fn, items):
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(fn, items))


# data, inside --out: the toy world's stage-2 demos (5 per task), source video and source demos; and,
# from another seed block so no episode is shared, 50 target demos per task for the oracle and the
# target-video arm (and CCA: 500 episodes to split in halves)
t0 = time.time()
toy, target50 = os.path.join(args.out, "data", "toy"), os.path.join(args.out, "data", "target50")
q = ["--source_episodes", 20, "--source_demos", 20, "--image_size", 32] if args.quick else []
run("data.py", "toy", "--out", toy, *q, done=os.path.join(toy, "source_video.hdf5"))
run("data.py", "toy", "--seed", 1, "--target_demos", 2 if args.quick else 50, "--source_demos", 10,
    "--source_episodes", 10, "--out", target50, *q[4:], done=os.path.join(target50, "source_video.hdf5"))
dirs = {(a, s): os.path.join(args.out, a, f"seed{s}") for a in arms for s in range(args.seeds)}
tiny = ["--batch_size", 4, "--eval_every", 2, "--log_every", 1] if args.quick else []

# stage 1 (or the supervised pretraining) of every arm and seed
video, demos = os.path.join(toy, "source_video.hdf5"), os.path.join(target50, "target_demos.hdf5")
pre = {"wm_source": ["--data", video], "wm_target": ["--data", demos],
       "wm_detach": ["--data", video, "--detach_latents"], "oracle": ["--data", demos],
       "sup_source": ["--data", os.path.join(toy, "source_demos.hdf5")]}


def evaluate(out, videos):
    """Closed-loop success of out/ckpt.pt on the shared evaluation episodes, into out/eval."""
    run("evaluate.py", "--ckpt", os.path.join(out, "ckpt.pt"), "--episodes", args.episodes, "--seed", args.eval_seed,
        "--videos", videos, "--out_dir", os.path.join(out, "eval"), done=os.path.join(out, "eval", "results.json"))


def stage1(key):
    arm, s = key
    out = os.path.join(dirs[key], "pre")
    if base(arm).startswith("wm_"):
        run("pretrain.py", *pre[base(arm)], *policy(arm), "--seed", s, "--max_steps", args.pretrain_steps,
            "--out_dir", out, *tiny, done=os.path.join(out, "DONE"))
    elif base(arm) in pre:  # supervised: finetune.py on labeled demos, then its zero-shot target success
        run("finetune.py", *pre[base(arm)], *policy(arm), "--seed", s, "--max_steps", args.sup_steps, "--out_dir", out,
            *tiny, done=os.path.join(out, "DONE"))
        evaluate(out, videos=0)


def stage2(key):
    arm, s = key
    init = (policy(arm) if base(arm) == "scratch"
            else ["--init", os.path.join(dirs[key], "pre", "ckpt.pt")])  # --init: the checkpoint says which policy
    out = os.path.join(dirs[key], "ft")
    run("finetune.py", "--data", os.path.join(toy, "target_demos.hdf5"), *init, "--seed", s, "--max_steps",
        args.ft_steps, "--lr", args.ft_lr, "--body_lr_scale", args.body_lr_scale, "--out_dir", out, *tiny,
        done=os.path.join(out, "DONE"))
    evaluate(out, videos=1 if s == 0 else 0)
    if base(arm).startswith("wm_"):  # CCA on the 50-per-task target demos
        cca = os.path.join(dirs[key], "cca")
        run("cca.py", "--ckpt", os.path.join(dirs[key], "pre", "ckpt.pt"), "--data", demos, "--out_dir", cca,
            done=os.path.join(cca, "cca.json"))


parallel(stage1, list(dirs))
parallel(stage2, list(dirs))

# -------------------------------------------------------------------------------------------------
# aggregate: success per arm with 95% intervals over seeds (t) and over all episodes (Wilson);
# paired differences to scratch per seed
T975 = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14, 2.13]  # df 1..15


def t_interval(xs):
    """Mean and 95% t-interval of per-seed values (nan bounds with one seed)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, [float("nan")] * 2
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    h = T975[min(len(xs) - 2, len(T975) - 1)] * sd / math.sqrt(len(xs))
    return m, [m - h, m + h]


def wilson(k, n, z=1.96):
    c, h = (k + z * z / 2) / (n + z * z), z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return [c - h, c + h]


load = lambda *path: json.load(open(os.path.join(*path)))
res, seeds = {}, range(args.seeds)
for arm in arms:
    ev = [load(dirs[arm, s], "ft", "eval", "results.json")["overall"] for s in seeds]
    rates = [e["success_rate"] for e in ev]
    m, ci = t_interval(rates)
    ci = [min(max(c, 0.0), 1.0) if c == c else c for c in ci]  # rates lie in [0, 1] (nan: one seed, no interval)
    k, n = sum(e["successes"] for e in ev), sum(e["episodes"] for e in ev)
    r = {"success": m, "ci95_seeds": ci, "ci95_episodes": wilson(k, n), "per_seed": rates, "episodes": n}
    scratch = "dp_scratch" if arm.startswith("dp_") else "scratch"  # paired with the same policy's scratch arm
    if scratch in arms:
        ref = [load(dirs[scratch, s], "ft", "eval", "results.json")["overall"]["success_rate"] for s in seeds]
        d, dci = t_interval([a - b for a, b in zip(rates, ref)])
        r |= {"diff_vs_scratch": d, "diff_ci95": dci, "helps": bool(d >= 0.10 and dci[0] > 0)}
    if base(arm) in ("oracle", "sup_source"):
        r["zero_shot"] = t_interval([load(dirs[arm, s], "pre", "eval", "results.json")["overall"]["success_rate"]
                                     for s in seeds])[0]
    if base(arm).startswith("wm_"):
        logs = [open(os.path.join(dirs[arm, s], "pre", "log.jsonl")).readlines() for s in seeds]
        evals = [[json.loads(l)["eval"] for l in rows if '"eval"' in l][-1] for rows in logs]  # the final eval
        cca = [load(dirs[arm, s], "cca", "cca.json") for s in seeds]
        mean = lambda xs: sum(xs) / len(xs)
        r["gate_w"] = {k: mean([e[k] for e in evals]) for k in ("gate_w", "swap_ratio", "shuffle_ratio", "openloop_err",
                                                              "copy_frame_err")}
        r["gate_w"]["openloop_k"] = [round(mean(v), 1) for v in zip(*[e["openloop_k"] for e in evals])]
        r["gate_w"]["copy_k"] = [round(mean(v), 1) for v in zip(*[e["copy_k"] for e in evals])]
        r["cca"] = {g: {k: mean([c["results"][g][k] for c in cca]) for k in ("heldout", "random_heldout", "insample")}
                    for g in cca[0]["results"]}
        r["gate_l_pass"] = mean([c["gate_l_pass"] for c in cca])
        # what the latents are: saturated at the tanh's +-1, and how much of them the instruction alone explains
        lat = [c["per_policy"] for c in cca]
        ok = [q for q in lat if not q["pretrained"]["latent_collapsed"]]  # a collapsed chunk has no share to speak of
        r["latents"] = {"latent_saturated": mean([q["pretrained"]["latent_saturated"] for q in lat]),
                        "latent_instruction_share": mean([q["pretrained"]["latent_instruction_share"] for q in ok])
                        if ok else float("nan"), "collapsed": len(lat) - len(ok),
                        "random_instruction_share": mean([q[a]["latent_instruction_share"] for q in lat for a in q
                                                          if a.startswith("random")])}
    res[arm] = r

pct = lambda x: f"{100 * x:.1f}" if x == x else "nan"
lines = ["| arm | success % [95% over seeds] [95% over episodes] | paired diff to scratch (dp_: to dp_scratch) [95%] "
         "| zero-shot % |", "|---|---|---|---|"]
for arm, r in res.items():
    lines.append(f"| {arm} | {pct(r['success'])} [{pct(r['ci95_seeds'][0])}, {pct(r['ci95_seeds'][1])}] "
                 f"[{pct(r['ci95_episodes'][0])}, {pct(r['ci95_episodes'][1])}] | "
                 + (f"{pct(r['diff_vs_scratch'])} [{pct(r['diff_ci95'][0])}, {pct(r['diff_ci95'][1])}]"
                    f"{' helps' if r['helps'] else ''}" if "diff_vs_scratch" in r else "-")
                 + f" | {pct(r['zero_shot']) if 'zero_shot' in r else '-'} |")
lines += ["", "| arm | gate W numbers | open-loop k=1..n | copy k=1..n | swap ratio | shuffle ratio | held-out CCA "
          "per family (random init) | gate L | latents saturated | instruction share of latents (random init) "
          "| collapsed |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
for arm, r in res.items():
    if "gate_w" in r:
        w, c = r["gate_w"], r["cca"]
        fams = ", ".join(f"{g} {c[g]['heldout']:.2f} ({c[g]['random_heldout']:.2f})" for g in c)
        curve = lambda xs: "/".join(f"{v:.1f}" for v in xs)
        verdict = lambda x: "pass" if x == 1 else "fail"
        sat = "-" if arm.startswith("dp_") else pct(r["latents"]["latent_saturated"]) + "%"  # DP's latents: no tanh
        lines.append(f"| {arm} | {verdict(w['gate_w'])} | {curve(w['openloop_k'])} | {curve(w['copy_k'])} "
                     f"| {w['swap_ratio']:.3f} | {w['shuffle_ratio']:.3f} | {fams} | {verdict(r['gate_l_pass'])} "
                     f"| {sat} | {pct(r['latents']['latent_instruction_share'])}% "
                     f"({pct(r['latents']['random_instruction_share'])}%) | {r['latents']['collapsed']} of {args.seeds} |")
lines.append(f"\n{args.seeds} seed(s) x {args.episodes} episodes per task x 10 tasks per arm; this invocation's wall "
             f"time {(time.time() - t0) / 60:.1f} min (finished runs are skipped); commands in {args.out}/commands.log")
out = {"config": vars(args), "results": res, "wall_s": time.time() - t0}
with open(os.path.join(args.out, "compare.json.tmp"), "w") as f:
    json.dump(out, f, indent=1)
os.replace(os.path.join(args.out, "compare.json.tmp"), os.path.join(args.out, "compare.json"))
with open(os.path.join(args.out, "compare.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
plot(res, os.path.join(args.out, "compare.png"))
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
               "plot": wandb.Image(os.path.join(args.out, "compare.png")),
               **{f"success/{arm}": r["success"] for arm, r in res.items()},
               **{f"diff_vs_scratch/{arm}": r["diff_vs_scratch"] for arm, r in res.items()
                  if "diff_vs_scratch" in r}})
    wandb.finish()
