"""
Do the latent actions carry action information? CCA between latents and ground-truth actions.

A pretrained policy (pretrain.py checkpoint) is run on labeled demos: every window gives a chunk of
latents z_t..z_{t+n-1} from frame t, and each latent z_{t+k} is paired with the true action
a_{t+k} (padding past the episode end is dropped). The first canonical correlation between the
paired samples is reported per task family and overall, next to the same number for randomly initialised
policies of the same architecture (the mean over --random_seeds of them). The families are the paper's
Table III groups, in its order: Put, Move, Remove, Take, from each demo's instruction by its verb
(episodes.task_family; anything else is "other"), so BridgeData, LIBERO and toy files group alike.
Windows span the checkpoint's --frame_skip: latent z_{t+k} drives frames t+ks -> t+(k+1)s in
pretraining, and is paired here with the action a_{t+ks} (data.DemoWindows). Diffusion Policy's latents
start from noise: every policy draws it from --seed, so a rerun prints the same numbers.

Held out by episode: the canonical directions are fitted on half of the episodes and the correlation
is measured on the other half (and the halves swapped; the mean is reported). Windows of one episode
are never split: latents that only encode an episode's look are nearly constant within it, and an
in-sample CCA rewards that (a random conv net scores well above 0 in-sample). The in-sample number
is printed beside it, labelled, for comparison with papers that report it.

Two more lines describe the latents themselves: how many sit at the tanh's +-1 (saturated), and how
much of their variance over windows the instruction alone explains. A policy trained through a world
model that does not see the instruction can pass the task to it as a code that is the same for every
window of the task (near 100%), instead of the motion (a supervised policy's actions on the toy: ~20%).

A checkpoint of `pretrain.py --latents idm` gets the same table for its inverse-dynamics model's own
latents (z_t from frames t and t+1, paired with a_t; random-init IDMs as the baseline), below the policy's.

    python cca.py --ckpt runs/pretrain/ckpt.pt                   # toy: data/toy/target_demos.hdf5
    python cca.py --ckpt runs/bdv2/ckpt.pt --data data/bdv2       # the paper's Table III: BridgeData's own demos
    python cca.py --ckpt runs/bdv2/ckpt.pt --data data/libero_90

Outputs in --out_dir (default: <ckpt dir>/cca): cca.json and cca.md.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

import idm
from data import DemoWindows, find_episode_files
from episodes import FAMILY_VERBS, DataError, task_family
from policies import make_policy
from run import CheckpointError, check_flags, check_out_dir, load_checkpoint, policy_from_checkpoint, setup_process


def cca_fit(x, y, ridge=1e-3):
    """First canonical pair of x (N, p) and y (N, q), ridge-regularised -> (rho, u (p,), v (q,)) with
    corr(x @ u, y @ v) = rho in-sample. Each covariance gets ridge * (mean variance) on its diagonal,
    so constant or collinear columns never divide by zero; a dimension with no variance adds nothing."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = len(x)
    cxx, cyy, cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n  # (p, p), (q, q), (p, q)

    def inv_sqrt(c):
        """C^{-1/2} of a regularised covariance through its eigendecomposition."""
        c = c + ridge * (np.trace(c) / len(c) + 1e-12) * np.eye(len(c))
        w, v = np.linalg.eigh(c)
        return v @ np.diag(1 / np.sqrt(np.maximum(w, 1e-12))) @ v.T

    wx, wy = inv_sqrt(cxx), inv_sqrt(cyy)
    U, sv, Vt = np.linalg.svd(wx @ cxy @ wy)  # whitened cross-covariance (p, q)
    return float(np.clip(sv[0], 0.0, 1.0)), wx @ U[:, 0], wy @ Vt[0]


def first_cca(x, y, ridge=1e-3):
    """In-sample first canonical correlation of x (N, p) and y (N, q)."""
    return cca_fit(x, y, ridge)[0]


def heldout_cca(x, y, episode, ridge=1e-3, seed=0):
    """Two-fold first canonical correlation split by episode: directions fitted on one half of the
    episodes, correlation measured on the other half, then swapped; the mean of the two. Can be
    negative (directions that do not generalise); nan with fewer than 2 episodes."""
    eps = np.random.default_rng(seed).permutation(np.unique(episode))
    if len(eps) < 2:
        return float("nan")
    first = np.isin(episode, eps[: len(eps) // 2])
    scores = []
    for fit, test in ((first, ~first), (~first, first)):
        _, u, v = cca_fit(x[fit], y[fit], ridge)
        a, b = (x[test] - x[fit].mean(0)) @ u, (y[test] - y[fit].mean(0)) @ v
        scores.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0)
    return float(np.mean(scores))


def instruction_share(x, instruction):
    """Share of the variance of x (N, p), summed over dims, that the instruction (N,) alone explains:
    1 - within-instruction / total sum of squares. Near 1: x says which task it is, not what moves."""
    within = sum(((x[instruction == i] - x[instruction == i].mean(0)) ** 2).sum() for i in np.unique(instruction))
    total = ((x - x.mean(0)) ** 2).sum()
    return float(1 - within / total) if total > 0 else float("nan")


@torch.no_grad()
def collect(policy, dataset, device, batch_size):
    """Run the policy on every window; paired (latent, action) samples, their episode, and each window's
    whole latent chunk (windows, n*d)."""
    zs, acts, eps, chunks = [], [], [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        obs = {"agentview": batch["agentview"].to(device).float() / 255, "lang": batch["lang"].to(device)}
        z = policy.latent(obs).float().cpu()  # (B, n, d) latents from frame t, as in pretraining
        mask = batch["mask"]  # (B, n) False past the episode end
        chunks.append(z.flatten(1).numpy())  # (B, n*d)
        zs.append(z[mask].numpy())  # (M, d): z_{t+k} ...
        acts.append(batch["actions"][mask].numpy())  # (M, A): ... paired with a_{t+k}
        eps.append(batch["episode"][:, None].expand_as(mask)[mask].numpy())  # (M,) episode of each pair
    return np.concatenate(zs), np.concatenate(acts), np.concatenate(eps), np.concatenate(chunks)


def scores(z, a, fam, ep, args):
    """Held-out and in-sample first CCA per task family (the paper's order, then "other") and overall."""
    order = (*FAMILY_VERBS, "other")
    fams = sorted(set(fam), key=lambda f: (order.index(f) if f in order else len(order), f))
    groups = {"overall": np.ones(len(z), bool), **{f: fam == f for f in fams}}
    return {g: {"heldout": heldout_cca(z[m], a[m], ep[m], args.ridge, args.seed),
                "insample": first_cca(z[m], a[m], args.ridge), "samples": int(m.sum()),
                "episodes": len(np.unique(ep[m]))} for g, m in groups.items()}


def table(results, gate, rand, what):
    """cca.md's table of one kind of latents against its random inits, and the gate L line."""
    lines = [f"| group | episodes | held-out CCA {what} | held-out random init (mean of {rand}) | "
             f"in-sample {what} | in-sample random init |", "|---|---|---|---|---|---|"]
    lines += [f"| {g} | {r['episodes']} | {r['heldout']:.3f} | {r['random_heldout']:.3f} | {r['insample']:.3f} | "
              f"{r['random_insample']:.3f} |" for g, r in results.items()]
    return lines + [f"gate L ({what}; held-out >= 0.6 and >= random + 0.3 in every family): "
                    f"{'pass' if all(gate.values()) else 'fail'}"]


def with_random(own, rand):
    """Per group: own's numbers, and the mean held-out and in-sample over the random inits', and gate L
    (README): per family, held-out CCA >= 0.6 and >= 0.3 above the random inits' mean."""
    mean = lambda key, g: float(np.mean([r[g][key] for r in rand])) if rand else float("nan")
    results = {g: dict(r, random_heldout=mean("heldout", g), random_insample=mean("insample", g))
               for g, r in own.items()}
    gate = {g: bool(r["heldout"] >= 0.6 and r["heldout"] >= r["random_heldout"] + 0.3)
            for g, r in results.items() if g != "overall"}
    return results, gate


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a pretrain.py checkpoint (its policy emits latents)")
    p.add_argument("--data", default="toy", help="labeled demos: toy (data/toy/target_demos.hdf5) | directory | file")
    p.add_argument("--ridge", type=float, default=1e-3, help="covariance regularisation, relative to the mean variance")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode split and of the first random policy")
    p.add_argument("--random_seeds", type=int, default=3, help="random-init policies whose mean is the baseline")
    p.add_argument("--batch_size", type=int, default=64, help="windows per forward pass")
    p.add_argument("--out_dir", default="", help="where cca.json/cca.md go (default: <ckpt dir>/cca)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    args = p.parse_args()
    setup_process()  # line-buffered log lines; on CPU, a warm allocator
    check_flags(args, (("batch_size", 1), ("random_seeds", 0)), ("ridge",))  # bad flags: one line, before anything runs
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "cca")
    if why := check_out_dir("--out_dir", out_dir):  # the results must have somewhere to go before the work starts
        sys.exit(f"error: {why}")
    try:
        ckpt = load_checkpoint(args.ckpt, kind="pretrain")
        paths = find_episode_files("data/toy/target_demos.hdf5" if args.data == "toy" else args.data)
        # the windows pretraining saw: chunk latents, each spanning --frame_skip steps
        dataset = DemoWindows(paths, chunk=ckpt["policy_config"]["chunk"], cameras=("agentview",),
                              frame_skip=ckpt["config"]["frame_skip"])
    except (CheckpointError, DataError) as e:
        sys.exit(f"error: {e}")
    if dataset.image_size != ckpt["policy_config"]["image_size"]:
        sys.exit(f"error: {paths[0]}: image_size: expected the policy's {ckpt['policy_config']['image_size']}, "
                 f"got {dataset.image_size}")

    # the pretrained policy, then --random_seeds randomly initialised ones of the same architecture
    policies = [("pretrained", policy_from_checkpoint(ckpt))]
    for i in range(args.random_seeds):
        torch.manual_seed(args.seed + i)
        policies.append((f"random_init_{i}", make_policy(ckpt["policy_config"])))
    per, notes = {}, []
    window_instruction = np.array([dataset.episodes[e]["instruction"] for e in dataset.ep])  # loader order
    family = np.array([task_family(d["instruction"]) for d in dataset.episodes])  # (episodes,)
    for arm, policy in policies:
        torch.manual_seed(args.seed)  # DP's latents denoise noise: the same draws in every run
        z, a, ep, chunks = collect(policy.to(device).eval(), dataset, device, args.batch_size)
        # collapse check: a chunk that barely varies across windows carries no information, whatever the
        # CCA says (pooled over the chunk's steps, a constant chunk still varies: a clock, not actions)
        spread = float(chunks.std(0).max())
        collapsed = spread < 1e-3  # a thousandth of the tanh range
        if collapsed:
            notes.append(f"{arm}: latents collapsed, the same chunk for every window (max std over windows "
                         f"{spread:.2e}); its CCA and instruction share are meaningless")
        per[arm] = scores(z, a, family[ep], ep, args)
        # saturation: a tanh head pinned at +-1 passes no gradient, and stage 2 starts from it
        per[arm] |= {"latent_std": spread, "latent_collapsed": collapsed, "latent_abs": float(np.abs(z).mean()),
                     "latent_saturated": float((np.abs(z) > 0.99).mean()),
                     "latent_instruction_share": instruction_share(chunks, window_instruction)}
    rand = [per[arm] for arm, _ in policies[1:]]
    mean_of = lambda key, rs: float(np.mean([r[key] for r in rs])) if rs else float("nan")
    strip = lambda r: {g: v for g, v in r.items() if not g.startswith("latent_")}  # the CCA groups only
    results, gate = with_random(strip(per["pretrained"]), [strip(r) for r in rand])
    out = {"ckpt": os.path.abspath(args.ckpt), "data": paths, "config": vars(args), "results": results,
           "gate_l": gate, "gate_l_pass": all(gate.values()), "per_policy": per, "notes": notes}
    lines = table(results, gate, len(rand), "pretrained")
    pre = per["pretrained"]
    lines.append(f"latents: mean |z| {pre['latent_abs']:.3f}, |z| > 0.99 in {100 * pre['latent_saturated']:.1f}% "
                 f"(random init: {mean_of('latent_abs', rand):.3f}, {100 * mean_of('latent_saturated', rand):.1f}%); "
                 + ("the same chunk for every window (collapsed)" if pre["latent_collapsed"] else
                    f"the instruction alone explains {100 * pre['latent_instruction_share']:.1f}% of the latent chunks' "
                    f"variance over windows (random init: {100 * mean_of('latent_instruction_share', rand):.1f}%)"))
    if ckpt["config"].get("latents") == "idm":  # the inverse-dynamics model's own latents, and random IDMs'
        lams = idm.checkpoint_and_random(ckpt, args.random_seeds, args.seed)
        own = []
        for lam in lams:
            z, a, _, ep = idm.demo_latents(lam.to(device).eval(), dataset, device)
            own.append(scores(z, a, family[ep], ep, args))
        out["idm_results"], out["idm_gate_l"] = with_random(own[0], own[1:])
        out["idm_gate_l_pass"] = all(out["idm_gate_l"].values())
        lines += [""] + table(out["idm_results"], out["idm_gate_l"], len(own) - 1, "IDM")

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cca.json.tmp"), "w") as f:
        json.dump(out, f, indent=1)
    os.replace(os.path.join(out_dir, "cca.json.tmp"), os.path.join(out_dir, "cca.json"))
    with open(os.path.join(out_dir, "cca.md"), "w") as f:
        f.write("\n".join(lines + notes) + "\n")
    print("\n".join(lines + notes))
    print(f"wrote {out_dir}/cca.json")


if __name__ == "__main__":
    main()
