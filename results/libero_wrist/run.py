"""Is the wrist camera worth its render cost? (issue 26's last item; docs/libero.md, "The wrist camera")

Stage 2 from scratch on the same 5 labeled demos per task (layout seed 200, recorded with both
cameras), BAKU small at 64 px with ee_states + gripper_states, the comparison's stage-2 recipe; two
arms that differ only in the cameras the policy sees: `agentview` and `wrist` (agentview + wrist).
Evaluated on LIBERO-Object init states 40..44 of every task (the recipe-side states, never the
comparison's 0..9), seeds 0..2 paired. Two jobs at a time, one torch thread each; resumable (a
finished run is skipped, a killed finetune resumes from its checkpoint); each finished arm and seed
leaves results/libero_wrist/<arm>_seed<s>.json, and the table is printed from those records alone.

Decision rule, written before any unit ran (the comparison's): the wrist camera is worth its cost
(1.5-2.4x fewer simulator steps per second, docs/speed.md) if wrist - agentview, paired by seed, is
>= 5 points with a 95% t-interval that excludes 0.

    python results/libero_wrist/run.py              # from the repository root; ~3.5 h on 2 CPU cores
"""
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from intervals import t_interval, wilson  # noqa: E402  the comparison's intervals, one implementation

RUNS, REC = "runs/libero_wrist", "results/libero_wrist"
ARMS = {"agentview": "agentview", "wrist": "agentview,wrist"}
SEEDS, FIRST_INIT, EPISODES = range(3), 40, 5
env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def sh(*cmd, log, done, train=False):
    """Run one script unless `done` exists (then mark it); a stage run resumes its checkpoint or starts over."""
    cmd = [str(c) for c in cmd]
    typed = "python " + " ".join(cmd)
    if os.path.exists(done):
        return typed, None
    if train:
        cmd.append("--resume" if os.path.exists(os.path.join(os.path.dirname(done), "ckpt.pt")) else "--overwrite")
    with open(log, "a") as f:
        print("$", " ".join(cmd), file=f, flush=True)
        t0 = time.time()
        if subprocess.run([sys.executable, *cmd], stdout=f, stderr=subprocess.STDOUT, env=env).returncode:
            sys.exit(f"error: {' '.join(cmd)} failed; see {log}")
    open(done, "a").close()
    return typed, time.time() - t0


def data():
    raw, out = f"{RUNS}/demos_raw", f"{RUNS}/demos"
    os.makedirs(RUNS, exist_ok=True)
    sh("convert.py", "libero-expert", "--suite", "libero_object", "--demos", 5, "--seed", 200, "--cameras",
       "agentview,wrist", "--out", raw, "--workers", 2, log=f"{RUNS}/data.log", done=f"{raw}/DONE")
    sh("convert.py", "libero", "--src", raw, "--out", out, "--image_size", 64, "--cameras", "agentview,wrist",
       log=f"{RUNS}/data.log", done=f"{out}/DONE")
    return out


def unit(arm, s, demos):
    rec = f"{REC}/{arm}_seed{s}.json"
    if os.path.exists(rec):
        return
    d, log = f"{RUNS}/{arm}/seed{s}", f"{RUNS}/{arm}_seed{s}.log"
    os.makedirs(d, exist_ok=True)
    cmds, secs = [], {}
    c, secs["finetune"] = sh("finetune.py", "--data", demos, "--cameras", ARMS[arm], "--state_keys",
                             "ee_states,gripper_states", "--batch_size", 64, "--policy", "baku", "--seed", s,
                             "--max_steps", 4000, "--lr", 3e-4, "--out_dir", f"{d}/ft", log=log,
                             done=f"{d}/ft/DONE", train=True)
    cmds.append(c)
    c, secs["evaluate"] = sh("evaluate.py", "--ckpt", f"{d}/ft/ckpt.pt", "--suite", "libero_object", "--episodes",
                             EPISODES, "--first_init", FIRST_INIT, "--envs", 1, "--out_dir", f"{d}/ft/eval", log=log,
                             done=f"{d}/ft/eval/results.json")
    cmds.append(c)
    ev = json.load(open(f"{d}/ft/eval/results.json"))
    r = {"arm": arm, "seed": s, "success": ev["overall"], "tasks": ev["tasks"], "commands": cmds,
         "wall_s": secs,
         "note": "wall_s: two jobs at a time, one thread each, 2 cores (rough: a shared machine; None: run before)"}
    with open(rec + ".tmp", "w") as f:
        json.dump(r, f, indent=1)
    os.replace(rec + ".tmp", rec)


if __name__ == "__main__":
    os.makedirs(REC, exist_ok=True)
    demos = data()
    with cf.ThreadPoolExecutor(2) as pool:  # seed order first: paired units finish together
        for f in [pool.submit(unit, a, s, demos) for s in SEEDS for a in ARMS]:
            f.result()
    recs = {(a, s): json.load(open(f"{REC}/{a}_seed{s}.json")) for a in ARMS for s in SEEDS}
    print(f"LIBERO-Object, init states {FIRST_INIT}..{FIRST_INIT + EPISODES - 1} of each task, scratch BAKU small, "
          f"seeds {list(SEEDS)}\n| arm | per seed % | pooled % [Wilson 95%] |\n|---|---|---|")
    for a in ARMS:
        k = sum(recs[a, s]["success"]["successes"] for s in SEEDS)
        n = sum(recs[a, s]["success"]["episodes"] for s in SEEDS)
        lo, hi = (100 * x for x in wilson(k, n))
        per = "/".join(f"{100 * recs[a, s]['success']['success_rate']:.0f}" for s in SEEDS)
        print(f"| {a} | {per} | {100 * k / n:.1f} [{lo:.1f}, {hi:.1f}] |")
    diffs = [100 * (recs["wrist", s]["success"]["success_rate"] - recs["agentview", s]["success"]["success_rate"])
             for s in SEEDS]
    m, (lo, hi) = t_interval(diffs)
    print(f"wrist - agentview, paired by seed: {' '.join(f'{x:+.0f}' for x in diffs)}; mean {m:+.1f} points, "
          f"95% t-interval [{lo:+.1f}, {hi:+.1f}]")
