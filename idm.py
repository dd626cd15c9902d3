"""Latent actions chosen with hindsight: an inverse-dynamics model (IDM) and a one-step forward model,
the comparison arm `pretrain.py --latents idm` (LAPO, Schmidt & Jiang 2024, is the closest published form).

LAWM's latents are a function of frame t and the instruction; the world model already sees frame t,
so the instruction is all they can add (README). Here the latent of a transition is chosen by a model
that sees both of its frames:

    z_t = IDM(o_t, o_{t+1})                   in (-1, 1)^d: tanh, then N(0, noise^2) while training
    o_{t+1} ~ o_t + FM(o_t, z_t)              a small U-Net that predicts the change of frame t
    loss = mean squared pixel error of the prediction        (trains IDM and FM; the policy never sees it)
    policy: its loss to sg(z_t..z_{t+n-1}) from o_t and the instruction  (trains the policy only)

The two losses share no parameters and no gradient: the IDM's latents are detached before the policy
is fitted to them, and the forward model never sees the policy's outputs. One optimizer trains both
in the same run (pretrain.py).

Why this form (measured on the toy world with two throwaway prototypes before this file, one seed each):
- A one-step forward model, not the project's 10-step RSSM. An IDM feeding rssm.WorldModel at 32 px
  was used by it (swap ratio 1.40) but its latents held no action (a linear or MLP readout of the true
  actions R^2 ~ 0): the RSSM's U-Net skips from frame t over ten steps are a cheap path around the
  latent. LAPO's one-step model on 64 px frame pairs gave latents an MLP reads as dx 0.90 / dy 0.59 (R^2)
  on target demos, held-out CCA 0.83-0.89 against 0.34 for a random IDM.
- 64 px, the data's size, not the RSSM's 32: a supervised IDM reads the actions from 64 px frame
  pairs with R^2 0.88-0.94 but from 32 px ones with only 0.38-0.64 (the arm moves ~1.9 px per step at 32).
- The bottleneck is tanh + Gaussian noise (sigma 0.1), not a VQ codebook: at equal steps the
  noise bottleneck reached target CCA 0.89 against 0.75 for a 32-code EMA VQ started from encoder
  outputs with dead-code restarts (a plain VQ collapsed to one code by step 500). Its range is the
  policy's tanh range, so the policy's chunk head fits it unchanged.
- The IDM sees both frames and 4x their difference: the difference carries the motion, the frames
  say which object moved.

Cost: the forward model is trained on `pairs` transitions drawn per window per step, not all n, so
the step costs about what the RSSM's does; the policy's targets are the IDM's latents of all n
transitions (no gradient, no noise), and its own stage-2 loss fits them (BAKU: MSE; DP: denoising). Gates (pretrain.py's eval line): open-loop error of the forward model rolled out from frame
t under the IDM's latents and under the policy's, against copying frame t; swap and shuffle ratios
(does the forward model read the latent?); policy_r2, how much of the IDM's latents the policy predicts
on held-out windows.

`python idm.py` builds the model on zeros and prints shapes and parameter counts.
Symbols: B windows, n transitions per window, P pairs drawn per window, N = B*P images in one call,
H = W image side, d latent size, C channels.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rssm import LossOut


@dataclass
class IDMConfig:
    latent_dim: int = 3  # d: the policy's latent size (= the target's action size)
    image_size: int = 64  # H = W of both models' frames, a power of two >= 16
    width: int = 16  # channels of the first conv; doubled at each of the three stride-2 stages
    noise: float = 0.1  # sigma of the Gaussian added to the tanh latent while training (the bottleneck)
    pairs: int = 4  # P: transitions per window the forward model is trained on each step


def down(i, o):
    """Stride-2 conv k4 -> GroupNorm(1 group) -> SiLU: halves H and W."""
    return nn.Sequential(nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.GroupNorm(1, o), nn.SiLU())


class InverseDynamics(nn.Module):
    """(N, 3, H, W) o_t and o_{t+1} in [0, 1] -> (N, d) latent in (-1, 1): three stride-2 convs on
    [o_t, o_{t+1}, 4 (o_{t+1} - o_t)], two more down to 4x4, an MLP, tanh."""

    def __init__(self, cfg):
        super().__init__()
        widths = [cfg.width * 2 ** min(i, 3) for i in range(int(math.log2(cfg.image_size)) - 2)]  # to 4x4
        self.convs = nn.Sequential(*[down(i, o) for i, o in zip([9] + widths[:-1], widths)])
        c = widths[-1]
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, 256), nn.SiLU(), nn.Linear(256, cfg.latent_dim))

    def forward(self, a, b):
        x = torch.cat([a - 0.5, b - 0.5, 4 * (b - a)], 1)  # (N, 9, H, W)
        return torch.tanh(self.head(self.convs(x)))  # (N, d)


class ForwardModel(nn.Module):
    """(N, 3, H, W) o_t and (N, d) z_t -> (N, 3, H, W) predicted o_{t+1} = o_t + a change.
    A U-Net: three stride-2 convs, z joined at the bottleneck (tiled) and as FiLM on every decoder
    level, transposed convs up with the encoder's maps concatenated."""

    def __init__(self, cfg):
        super().__init__()
        w, d = cfg.width, cfg.latent_dim
        self.enc = nn.ModuleList([down(3, w), down(w, 2 * w), down(2 * w, 4 * w)])  # H/2, H/4, H/8
        self.mid = nn.Sequential(nn.Conv2d(4 * w + d, 4 * w, 3, 1, 1), nn.GroupNorm(1, 4 * w), nn.SiLU())
        self.film = nn.ModuleList([nn.Linear(d, 2 * c) for c in (4 * w, 2 * w, w)])  # per decoder level
        self.up = nn.ModuleList([nn.ConvTranspose2d(8 * w, 2 * w, 4, 2, 1), nn.ConvTranspose2d(4 * w, w, 4, 2, 1),
                                 nn.ConvTranspose2d(2 * w, 3, 4, 2, 1)])
        self.norm = nn.ModuleList([nn.GroupNorm(1, 2 * w), nn.GroupNorm(1, w)])
        nn.init.zeros_(self.up[-1].weight)  # no change at first: the untrained model copies frame t
        nn.init.zeros_(self.up[-1].bias)

    def forward(self, x, z):
        skips, h = [], x - 0.5
        for stage in self.enc:
            h = stage(h)
            skips.append(h)  # (N, w, H/2, W/2), (N, 2w, H/4, W/4), (N, 4w, H/8, W/8)
        z_map = z[:, :, None, None].expand(-1, -1, *h.shape[2:])  # (N, d, H/8, W/8)
        h = self.mid(torch.cat([h, z_map], 1))  # (N, 4w, H/8, W/8)
        for i, up in enumerate(self.up):
            g, b = self.film[i](z)[:, :, None, None].chunk(2, 1)  # (N, C, 1, 1) each
            h = up(torch.cat([(1 + g) * h + b, skips[-1 - i]], 1))  # (N, C/2, 2h, 2w); last: (N, 3, H, W)
            if i < 2:
                h = F.silu(self.norm[i](h))
        return x + h  # (N, 3, H, W) frame t plus the predicted change


class LatentActionModel(nn.Module):
    """IDM + forward model. frames (B, n+1, 3, H, W) in [0, 1] at any power-of-two size; they are
    resized (area) to cfg.image_size."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.idm, self.fm = InverseDynamics(cfg), ForwardModel(cfg)

    def resize(self, frames):
        """(B, T, 3, H, W) -> (B, T, 3, S, S) with S = cfg.image_size (area average: no aliasing)."""
        if frames.shape[-1] == self.cfg.image_size:
            return frames
        B, T = frames.shape[:2]
        x = F.interpolate(frames.flatten(0, 1), size=self.cfg.image_size, mode="area")  # (B*T, 3, S, S)
        return x.view(B, T, *x.shape[1:])  # (B, T, 3, S, S)

    def latents(self, frames):
        """The IDM's latents of every transition, no noise: (B, n+1, 3, H, W) -> (B, n, d)."""
        frames = self.resize(frames)
        B, T = frames.shape[:2]
        z = self.idm(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1))  # (B*n, d)
        return z.view(B, T - 1, -1)  # (B, n, d)

    def loss(self, frames, steps):
        """frames (B, n+1, 3, H, W); steps (B, P) long, the transitions k (frame k -> k+1) to train on.
        -> LossOut: the forward model's mean squared pixel error; metrics fm_mse, copy_mse (of copying
        frame k, for scale), z_abs (mean |z|, near 1: the tanh saturates)."""
        frames = self.resize(frames)
        rows = torch.arange(len(steps), device=frames.device)[:, None]  # (B, 1)
        a, b = frames[rows, steps].flatten(0, 1), frames[rows, steps + 1].flatten(0, 1)  # (N, 3, H, W) each
        z = self.idm(a, b)  # (N, d)
        pred = self.fm(a, z + self.cfg.noise * torch.randn_like(z) if self.training else z)  # (N, 3, H, W)
        mse = ((pred - b) ** 2).mean()
        return LossOut(mse, {"fm_mse": mse.detach(), "copy_mse": ((a - b) ** 2).mean().detach(),
                             "z_abs": z.abs().mean().detach()})

    def openloop(self, frame0, z):
        """Frames imagined from frame t alone: frame0 (B, 1, 3, H, W), z (B, n, d) -> (B, n, 3, S, S),
        each step's prediction fed back as the next step's input (the RSSM's openloop, one step at a time)."""
        x, out = self.resize(frame0)[:, 0], []
        for k in range(z.shape[1]):
            x = self.fm(x, z[:, k]).clamp(0, 1)  # (B, 3, S, S)
            out.append(x)
        return torch.stack(out, 1)  # (B, n, 3, S, S)


def idm_losses(lam, policy, frames, lang):
    """pretrain.py --latents idm's two losses, which share no parameter and no gradient. frames
    (B, n+1, 3, H, W) in [0, 1], lang (B, 384) -> (LossOut of the forward model on cfg.pairs transitions
    drawn per window, the policy's own loss towards the IDM's latents of all n transitions)."""
    B, n = frames.shape[0], frames.shape[1] - 1
    steps = torch.rand(B, n, device=frames.device).argsort(1)[:, :lam.cfg.pairs]  # (B, P) distinct transitions
    out = lam.loss(frames, steps)
    with torch.no_grad():  # fixed targets: the policy's loss must not move the IDM
        target = lam.latents(frames)  # (B, n, d), no noise
    mask = torch.ones(B, n, dtype=torch.bool, device=frames.device)
    return out, policy.loss({"agentview": frames[:, 0], "lang": lang}, target, mask)


# -------------------------------------------------------------------------------------------------
# the IDM's own latents in cca.py (a `pretrain.py --latents idm` checkpoint)

def checkpoint_and_random(ckpt, n, seed):
    """The IDM of a checkpoint, then n randomly initialised ones (seeds seed, seed+1, ..): CCA's baseline."""
    cfg = IDMConfig(**ckpt["wm_config"])
    lams = [LatentActionModel(cfg)]
    lams[0].load_state_dict(ckpt["world_model"])
    for k in range(n):
        torch.manual_seed(seed + k)
        lams.append(LatentActionModel(cfg))
    return lams


@torch.no_grad()
def demo_latents(lam, dataset, device):
    """The IDM's latent of every transition of every demo of a data.DemoWindows, z_t = IDM(o_t, o_{t+1}),
    paired with a_t; with their task family and episode (as cca.collect's)."""
    zs, acts, fams, eps = [], [], [], []
    for e, d in enumerate(dataset.episodes):  # e: the episode index DemoWindows gives its windows
        x = dataset._frames(d, "agentview", slice(0, d["T"])).to(device).float() / 255  # (T, 3, S, S)
        zs.append(lam.latents(x[None])[0].float().cpu().numpy())  # (T-1, d)
        acts.append(d["norm"][:-1])  # (T-1, A): a_t drives o_t -> o_{t+1}
        fams += [d["task_type"]] * (d["T"] - 1)
        eps.append(np.full(d["T"] - 1, e))
    return np.concatenate(zs), np.concatenate(acts), np.array(fams), np.concatenate(eps)


@torch.no_grad()
def r2(model, pairs, size):
    """R^2 = 1 - SSE / SST of the model's predictions on (o_t, o_{t+1}, a_t) triples, per action dimension
    and pooled over them (sums of SSE and SST: a dimension that hardly varies cannot swamp it)."""
    a, b, act = pairs
    pred = torch.cat([model(resize(a[i:i + 256], size), resize(b[i:i + 256], size)) for i in range(0, len(a), 256)])
    sse, sst = ((pred - act) ** 2).sum(0), ((act - act.mean(0)) ** 2).sum(0)  # (A,) each
    return (1 - sse / sst).tolist(), float(1 - sse.sum() / sst.sum())


def resize(x, size):
    """(N, 3, S, S) uint8 -> (N, 3, size, size) float in [0, 1], area-averaged."""
    x = x.float() / 255
    return x if x.shape[-1] == size else F.interpolate(x, size=size, mode="area")


def episode_pairs(ds, episodes):
    """(o_t, o_{t+1}, a_t) of every transition of the given episodes of a data.DemoWindows: uint8
    (N, 3, S, S) twice and the normalised actions (N, A) in [-1, 1]."""
    parts = [[], [], []]
    for e in episodes:
        d = ds.episodes[e]
        x = ds._frames(d, "agentview", slice(0, d["T"]))  # (T, 3, S, S) uint8
        for part, v in zip(parts, (x[:-1], x[1:], torch.from_numpy(d["norm"][:-1]))):
            part.append(v)
    return [torch.cat(v) for v in parts]


def fit(pairs, action_dim, size, steps, batch_size, seed):
    """A supervised IDM (frames o_t, o_{t+1} -> a_t) trained on (o_t, o_{t+1}, a_t) triples by MSE, AdamW at
    1e-3: the probe's model, and label.py's labeler. Returns it in eval mode."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = InverseDynamics(IDMConfig(latent_dim=action_dim, image_size=size))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(steps):
        i = torch.randint(0, len(pairs[0]), (batch_size,), generator=g)  # (batch,)
        loss = ((model(resize(pairs[0][i], size), resize(pairs[1][i], size)) - pairs[2][i]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def heldout_split(n, seed=0):
    """A fifth of n episodes (at least one) held out, chosen at random with seed: -> (train, held) index lists."""
    held = set(np.random.default_rng(seed).permutation(n)[:max(1, n // 5)].tolist())
    return [e for e in range(n) if e not in held], sorted(held)


def probe(args):
    """Can the action be read from a frame pair at this size? A supervised IDM per size, trained on 80% of
    the episodes (o_t, o_{t+1} -> a_t, normalised to [-1, 1]), scored on the other 20%: the ceiling for any
    latent action model at that size."""
    from data import DemoWindows, find_episode_files
    ds = DemoWindows(find_episode_files(args.data, role="demos"), chunk=1)
    train_eps, held_eps = heldout_split(len(ds.episodes))
    train, held = episode_pairs(ds, train_eps), episode_pairs(ds, held_eps)
    print(f"{args.data}: {len(train[0])} training and {len(held[0])} held-out transitions of {len(ds.episodes)} "
          f"episodes at {ds.image_size} px; actions {ds.action_dim}-d")
    print("| frame size | held-out R^2 per action dimension | pooled |\n|---|---|---|")
    for size in [int(s) for s in args.sizes.split(",")]:
        model = fit(train, ds.action_dim, size, args.steps, args.batch_size, args.seed)
        per_dim, pooled = r2(model, held, size)
        print(f"| {size} | {' / '.join(f'{v:.2f}' for v in per_dim)} | {pooled:.2f} |")


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description="Shapes and parameter counts; with --probe, the supervised ceiling.")
    p.add_argument("--probe", action="store_true", help="train a supervised IDM per --sizes on labeled --data and "
                   "print its held-out R^2 per action dimension (which frame size shows the action?)")
    p.add_argument("--data", default="toy", help="labeled episodes: toy (data/toy/target_demos.hdf5) | folder | file")
    p.add_argument("--sizes", default="32,64", help="comma list of frame sizes (powers of two, at most the data's)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per size")
    p.add_argument("--batch_size", type=int, default=64, help="frame pairs per step")
    p.add_argument("--seed", type=int, default=0, help="weights and batches")
    args = p.parse_args()
    if args.probe:
        probe(args)
        raise SystemExit
    cfg = IDMConfig()
    m = LatentActionModel(cfg)
    frames = torch.zeros(2, 11, 3, 64, 64)
    out = m.loss(frames, torch.randint(0, 10, (2, cfg.pairs)))
    print(f"latents {tuple(m.latents(frames).shape)} | openloop "
          f"{tuple(m.openloop(frames[:, :1], m.latents(frames)).shape)} | loss {out.loss.item():.4f}")
    print(f"params: IDM {sum(t.numel() for t in m.idm.parameters()) / 1e6:.3f}M, forward model "
          f"{sum(t.numel() for t in m.fm.parameters()) / 1e6:.3f}M")
