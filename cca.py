"""
Do the latent actions carry action information? CCA between latents and ground-truth actions.

A pretrained policy (pretrain.py checkpoint) is run on labeled demos: every window gives a chunk of
latents z_t..z_{t+n-1} from frame t, and each latent z_{t+k} is paired with the true action
a_{t+k} (padding past the episode end is dropped). The first canonical correlation between the
paired samples is reported per task family (Put/Move/Remove/Take, the paper's Table III groups) and
overall, next to the same number for a randomly initialised policy of the same architecture: a
random conv net already scores well above 0 in-sample, so the raw number means little on its own.

    python cca.py --ckpt runs/pretrain/ckpt.pt                   # toy: data/toy/target_demos.hdf5
    python cca.py --ckpt runs/bdv2/ckpt.pt --data data/libero_90

Outputs in --out_dir (default: <ckpt dir>/cca): cca.json and cca.md.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

from data import DataError, DemoWindows, find_episode_files
from policies import CheckpointError, load_checkpoint, make_policy, policy_from_checkpoint


def first_cca(x, y, ridge=1e-3):
    """First canonical correlation of x (N, p) and y (N, q), ridge-regularised.

    Each covariance gets ridge * (mean variance) added on its diagonal, so constant or collinear
    columns never divide by zero; a dimension with no variance simply contributes nothing.
    """
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = len(x)
    cxx, cyy, cxy = x.T @ x / n, y.T @ y / n, x.T @ y / n  # (p, p), (q, q), (p, q)

    def inv_sqrt(c):
        """C^{-1/2} of a regularised covariance through its eigendecomposition."""
        c = c + ridge * (np.trace(c) / len(c) + 1e-12) * np.eye(len(c))
        w, v = np.linalg.eigh(c)
        return v @ np.diag(1 / np.sqrt(np.maximum(w, 1e-12))) @ v.T

    m = inv_sqrt(cxx) @ cxy @ inv_sqrt(cyy)  # (p, q) whitened cross-covariance
    return float(np.clip(np.linalg.svd(m, compute_uv=False)[0], 0.0, 1.0))


@torch.no_grad()
def collect(policy, dataset, device, batch_size):
    """Run the policy on every window; paired (latent, action) samples and their task family."""
    zs, acts, fams = [], [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for batch in loader:
        obs = {"agentview": batch["agentview"].to(device).float() / 255, "lang": batch["lang"].to(device)}
        z = policy.latent(obs).float().cpu()  # (B, n, d) latents from frame t, as in pretraining
        mask = batch["mask"]  # (B, n) False past the episode end
        zs.append(z[mask].numpy())  # (M, d): z_{t+k} ...
        acts.append(batch["actions"][mask].numpy())  # (M, A): ... paired with a_{t+k}
        fams += [f for f, m in zip(batch["task_type"], mask.sum(1).tolist()) for _ in range(m)]
    return np.concatenate(zs), np.concatenate(acts), np.array(fams)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a pretrain.py checkpoint (its policy emits latents)")
    p.add_argument("--data", default="toy", help="labeled demos: toy (data/toy/target_demos.hdf5) | directory | file")
    p.add_argument("--ridge", type=float, default=1e-3, help="covariance regularisation, relative to the mean variance")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomly initialised baseline policy")
    p.add_argument("--batch_size", type=int, default=64, help="windows per forward pass")
    p.add_argument("--out_dir", default="", help="where cca.json/cca.md go (default: <ckpt dir>/cca)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    args = p.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    out_dir = args.out_dir or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "cca")
    try:
        ckpt = load_checkpoint(args.ckpt, kind="pretrain")
        paths = find_episode_files("data/toy/target_demos.hdf5" if args.data == "toy" else args.data)
        dataset = DemoWindows(paths, chunk=ckpt["policy_config"]["chunk"], cameras=("agentview",))
    except (CheckpointError, DataError) as e:
        sys.exit(f"error: {e}")
    if dataset.image_size != ckpt["policy_config"]["image_size"]:
        sys.exit(f"error: {paths[0]}: image_size: expected the policy's {ckpt['policy_config']['image_size']}, got {dataset.image_size}")

    torch.manual_seed(args.seed)
    arms = {"pretrained": policy_from_checkpoint(ckpt), "random_init": make_policy(ckpt["policy_config"])}
    results, notes = {}, []
    for arm, policy in arms.items():
        z, a, fam = collect(policy.to(device).eval(), dataset, device, args.batch_size)
        # collapse check: latents that barely vary carry no information, whatever the CCA says
        spread = float(z.std(0).max())
        if spread < 1e-4:
            notes.append(f"{arm}: latents collapsed (max std over dims {spread:.2e}); CCA is meaningless")
        groups = {"overall": np.ones(len(z), bool), **{f: fam == f for f in sorted(set(fam))}}
        results[arm] = {g: {"cca": first_cca(z[m], a[m], args.ridge), "samples": int(m.sum())} for g, m in groups.items()}
        results[arm]["latent_std"] = spread

    os.makedirs(out_dir, exist_ok=True)
    out = {"ckpt": os.path.abspath(args.ckpt), "data": paths, "config": vars(args), "results": results, "notes": notes}
    with open(os.path.join(out_dir, "cca.json.tmp"), "w") as f:
        json.dump(out, f, indent=1)
    os.replace(os.path.join(out_dir, "cca.json.tmp"), os.path.join(out_dir, "cca.json"))
    groups = [g for g in results["pretrained"] if g != "latent_std"]
    lines = ["| group | samples | CCA pretrained | CCA random init |", "|---|---|---|---|"]
    lines += [f"| {g} | {results['pretrained'][g]['samples']} | {results['pretrained'][g]['cca']:.3f} | "
              f"{results['random_init'][g]['cca']:.3f} |" for g in groups]
    with open(os.path.join(out_dir, "cca.md"), "w") as f:
        f.write("\n".join(lines + notes) + "\n")
    print("\n".join(lines + notes))
    print(f"wrote {out_dir}/cca.json")


if __name__ == "__main__":
    main()
