"""Stage 1's recipe on LIBERO, chosen by its gates (issue 38; docs/libero.md, "Stage 1's recipe, chosen by its gates").

Each candidate is `pretrain.py` on the comparison's video (runs/libero_compare/data/video, made by compare.py or
this script) with the comparison's `wm` flags plus its own, seed 0, then `cca.py` on the 50 labeled demos stage 1
never sees. Nothing is evaluated in the simulator: a candidate is judged by gate W (its final eval on held-out
video windows: gate_w 1 and swap ratio >= 1.1) and gate L (held-out CCA >= random init + 0.3 in every family).
The rule, written before any candidate ran: the recipe is the first candidate in CANDIDATES' order that passes
both; if none passes, `fair`. `long` is the leader with 4x the steps (the leader: the first that passes both,
else the one furthest above random in held-out CCA, ties to the earlier), so it runs after 1-4 are recorded.

Each finished candidate leaves results/libero_stage1/<name>.json (its commands, the gate numbers, CCA, ms per
step) and assets/libero_stage1_<name>.png (its last rollout picture); the table is printed from the records alone.
Resumable: a recorded candidate is skipped, a killed pretrain resumes from its checkpoint.

    python results/libero_stage1/run.py                   # from the repository root: every candidate in order
    python results/libero_stage1/run.py --only no_context --jobs 1   # one candidate
    python results/libero_stage1/run.py --table           # the table from the records, runs nothing
    python results/libero_stage1/run.py --time            # 20 steps of each candidate: its ms per step
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import time

RUNS, REC = "runs/libero_stage1", "results/libero_stage1"
DATA = "runs/libero_compare/data"  # the comparison's expert data, shared
# the comparison's wm flags (compare.py, --env libero_object), then each candidate's own
BASE = ["--cameras", "agentview", "--state_dim", 8, "--latent_dim", 7, "--wm_image_size", 32, "--policy", "baku",
        "--seed", 0]
FAIR = ["--batch_size", 64, "--lr", 3e-4, "--max_steps", 3000]
CANDIDATES = {"fair": FAIR, "no_context": [*FAIR, "--no_context"], "slow_policy": [*FAIR, "--policy_lr_scale", 0.1],
              "wm64": [*FAIR, "--wm_image_size", 64]}  # and "long": the leader's flags with --max_steps 12000
ORDER = ["fair", "no_context", "slow_policy", "wm64", "long"]
env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def sh(*cmd, log, done, train=False):
    """Run one script unless `done` exists (then mark it); a stage run resumes its checkpoint or starts over."""
    cmd = [str(c) for c in cmd]
    typed = "python " + " ".join(cmd)
    if os.path.exists(done):
        return typed
    if train:
        cmd.append("--resume" if os.path.exists(os.path.join(os.path.dirname(done), "ckpt.pt")) else "--overwrite")
    with open(log, "a") as f:
        print("$", " ".join(cmd), file=f, flush=True)
        if subprocess.run([sys.executable, *cmd], stdout=f, stderr=subprocess.STDOUT, env=env).returncode:
            sys.exit(f"error: {' '.join(cmd)} failed; see {log}")
    open(done, "a").close()
    return typed


def data():
    """The comparison's video and labeled demos (compare.py's commands and folders: each side reuses the other's)."""
    for name, n, seed in (("video", 30, 100), ("demos", 5, 200)):
        raw, out = f"{DATA}/{name}_raw", f"{DATA}/{name}"
        os.makedirs(DATA, exist_ok=True)
        sh("convert.py", "libero-expert", "--suite", "libero_object", "--demos", n, "--seed", seed, "--out", raw,
           "--workers", 2, "--cameras", "agentview", log=f"{RUNS}/data.log", done=f"{raw}/DONE")
        sh("convert.py", "libero", "--src", raw, "--out", out, "--image_size", 64, "--cameras", "agentview",
           log=f"{RUNS}/data.log", done=f"{out}/DONE")


def record(name):
    return f"{REC}/{name}.json"


def passes(r):
    """(gate W, gate L) of a record, by the pre-registered rule."""
    w = r["pre_eval"]["gate_w"] == 1 and r["pre_eval"]["swap_ratio"] >= 1.1
    lo = all(c["heldout"] >= c["random_heldout"] + 0.3 for g, c in r["cca"]["results"].items() if g != "overall")
    return w, lo


def leader():
    """The first of 1-4 that passes both gates, else the furthest above random in held-out CCA (min over families)."""
    recs = [json.load(open(record(n))) for n in ORDER[:-1]]
    ok = [r for r in recs if all(passes(r))]
    margin = lambda r: min(c["heldout"] - c["random_heldout"] for g, c in r["cca"]["results"].items() if g != "overall")
    return ok[0]["name"] if ok else max(recs, key=lambda r: (margin(r), -ORDER.index(r["name"])))["name"]


def flags(name):
    if name != "long":
        return CANDIDATES[name]
    lead = CANDIDATES[leader()]
    i = lead.index("--max_steps")
    return [*lead[:i + 1], 12000, *lead[i + 2:]]


def unit(name):
    if os.path.exists(record(name)):
        return
    d, log = f"{RUNS}/{name}", f"{RUNS}/{name}.log"
    os.makedirs(d, exist_ok=True)
    f = flags(name)
    t0 = time.time()
    cmds = [sh("pretrain.py", "--data", f"{DATA}/video", *BASE, *f, "--out_dir", f"{d}/pre", log=log,
               done=f"{d}/pre/DONE", train=True)]
    cmds.append(sh("cca.py", "--ckpt", f"{d}/pre/ckpt.pt", "--data", f"{DATA}/demos", "--out_dir", f"{d}/cca", log=log,
                   done=f"{d}/cca/cca.json"))
    rows = [json.loads(line) for line in open(f"{d}/pre/log.jsonl")]
    evals = [r for r in rows if "eval" in r]
    ms = [r["ms_step"] for r in rows if "ms_step" in r][1:]  # the first row times the first step alone
    c = json.load(open(f"{d}/cca/cca.json"))
    pngs = sorted(x for x in os.listdir(f"{d}/pre") if x.startswith("rollout_") and x.endswith(".png"))
    if pngs:
        shutil.copy(f"{d}/pre/{pngs[-1]}", f"assets/libero_stage1_{name}.png")
    r = {"name": name, "flags": [str(x) for x in f], "commands": cmds, "pre_eval": evals[-1]["eval"],
         "eval_steps": [{"step": e["step"], **{k: e["eval"][k] for k in ("swap_ratio", "shuffle_ratio", "openloop_err",
                                                                          "copy_frame_err", "gate_w")}} for e in evals],
         "cca": {k: c[k] for k in ("results", "gate_l_pass", "per_policy") if k in c},
         "median_ms_per_step": sorted(ms)[len(ms) // 2] if ms else None, "wall_s": round(time.time() - t0),
         "note": "wall_s: this invocation's (0 if it only read finished runs); ms per step on a shared 2-core machine"}
    r["gate_w_pass"], r["gate_l_pass_rule"] = passes(r)
    with open(record(name) + ".tmp", "w") as fh:
        json.dump(r, fh, indent=1)
    os.replace(record(name) + ".tmp", record(name))


def table():
    rows = ["| candidate | flags | gate W | open-loop / copy (final) | swap | shuffle | held-out CCA (random) "
            "| gate L | cca.py gate_l_pass | instruction share (random) | ms/step |", "|---|" * 11]
    rows[1] = "|" + "---|" * 11
    chosen = None
    for name in ORDER:
        if not os.path.exists(record(name)):
            rows.append(f"| {name} | {' '.join(map(str, flags(name))) if name != 'long' else '(the leader, 4x steps)'} "
                        "| not run yet |" + " |" * 8)
            continue
        r = json.load(open(record(name)))
        e, w, lo = r["pre_eval"], *passes(r)
        fams = ", ".join(f"{g} {c['heldout']:.2f} ({c['random_heldout']:.2f})" for g, c in r["cca"]["results"].items())
        pol = r["cca"]["per_policy"]
        share = pol["pretrained"]["latent_instruction_share"]
        rand = [v["latent_instruction_share"] for k, v in pol.items() if k.startswith("random")]
        collapsed = " (collapsed)" if pol["pretrained"].get("latent_collapsed") else ""
        rows.append(f"| {name} | {' '.join(r['flags'])} | {'pass' if w else 'fail'} | {e['openloop_err']:.2f} / "
                    f"{e['copy_frame_err']:.2f} | {e['swap_ratio']:.3f} | {e['shuffle_ratio']:.3f} | {fams} | "
                    f"{'pass' if lo else 'fail'} | {'pass' if r['cca']['gate_l_pass'] else 'fail'} | "
                    f"{100 * share:.1f}%{collapsed} ({100 * sum(rand) / len(rand):.1f}%) "
                    f"| {r['median_ms_per_step']:.0f} |")
        if chosen is None and w and lo and all(os.path.exists(record(n)) for n in ORDER[:ORDER.index(name)]):
            chosen = name  # the first that passes, with every candidate before it recorded (and failing)
    done = all(os.path.exists(record(n)) for n in ORDER)
    rows.append("")
    rows.append(f"recipe by the rule: {chosen}" if chosen else
                "recipe by the rule: fair (none passed both gates)" if done else
                "recipe by the rule: not decided yet (candidates left, and none before them passed)")
    print("\n".join(rows))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="run this candidate only (one of " + ", ".join(ORDER) + ")")
    ap.add_argument("--jobs", type=int, default=2, help="candidates at once (one torch thread each)")
    ap.add_argument("--table", action="store_true", help="print the table from the records, run nothing")
    ap.add_argument("--time", action="store_true", help="20 steps of each of 1-4 (one at a time): ms per step")
    a = ap.parse_args()
    sys.path.insert(0, os.getcwd())
    os.makedirs(RUNS, exist_ok=True)
    os.makedirs(REC, exist_ok=True)
    if a.only and a.only not in ORDER:
        sys.exit(f"error: --only: expected one of {', '.join(ORDER)}, got {a.only!r}")
    if a.only == "long" and not all(os.path.exists(record(n)) for n in ORDER[:-1]):
        sys.exit(f"error: --only long: runs the leader of {', '.join(ORDER[:-1])} with 4x the steps; record them first")
    if not a.table:
        data()
    if a.time:
        for name in ORDER[:-1]:
            out = f"{RUNS}/time/{name}"
            sh("pretrain.py", "--data", f"{DATA}/video", *BASE, *[x if x != 3000 else 20 for x in CANDIDATES[name]],
               "--eval_every", 1000, "--log_every", 5, "--out_dir", out, log=f"{RUNS}/time.log", done=f"{out}/DONE",
               train=True)
            ms = [json.loads(line)["ms_step"] for line in open(f"{out}/log.jsonl") if '"ms_step"' in line][1:]
            print(f"{name}: {sorted(ms)[len(ms) // 2]:.0f} ms per step (median of {len(ms)} log rows)")
        sys.exit()
    if not a.table:
        todo = [a.only] if a.only and a.only != "long" else [] if a.only else ORDER[:-1]
        with cf.ThreadPoolExecutor(a.jobs) as pool:
            list(pool.map(unit, todo))
        if not a.only or a.only == "long":
            if all(os.path.exists(record(n)) for n in ORDER[:-1]):
                unit("long")
    table()
