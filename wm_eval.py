"""Stage 1's evaluation: what pretrain.py measures of its world model and latents on held-out video.

    train, held = split(dataset, say)        # a fixed tenth of the episodes held out (data.held_out)
    idx = eval_windows(dataset, held)        # two windows per held-out episode, 7 steps apart
    metrics = evaluate(model, wm, batch, seed, idm, png_path)   # the eval line's numbers, and a rollout picture

The numbers (docs/toy_study.md says how they are read):
    openloop_k / copy_k  squared error summed over pixels of frame t+k imagined from frame t under the
                         policy's latents (prior only), and of copying frame t, for k = 1..n
    gate_w               1 when openloop_k < copy_k for every k >= 2, by at least 5% (a decoder that starts
                         as "copy frame t" ties it by construction)
    swap_ratio           error with the latents of the same episode 7 steps away over error with its own
                         (> 1: the latents carry this moment's motion)
    shuffle_ratio        the same with the latents of another episode at the same step (>> swap_ratio:
                         they carry the episode's look too)
With --latents idm the imagining is the forward model's, one step at a time; the same numbers under the
IDM's own latents carry the prefix idm_, and policy_r2 is the share of the IDM's latents' variance over
the eval windows that the policy's predictions explain.
"""
import os

import numpy as np
import torch

from data import held_out


def split(ds, say):
    """A fixed random tenth of a window set's episodes is held out (data.held_out): the eval metrics
    (gate W, the swap test) come from episodes never trained on, of several tasks.
    -> (training Subset, held-out window indices into ds)."""
    held = held_out(ds.ep)
    if held.all():  # a single episode: nothing to hold out, the eval then sees training windows
        say("warning: one episode only, the eval metrics use training windows")
        held[:] = False
    return torch.utils.data.Subset(ds, np.flatnonzero(~held)), np.flatnonzero(held)


def eval_windows(ds, held):
    """Two windows per held-out episode (of the first 32), its first and one 7 steps later (or its last),
    so the swap test can give each window the latents of the same episode at another time. -> indices into ds."""
    held = held if len(held) else np.arange(len(ds))
    idx = []
    for e in np.unique(ds.ep[held])[:32]:
        w = held[ds.ep[held] == e]  # this episode's held-out windows, in time order
        idx += [int(w[0]), int(w[min(7, len(w) - 1)])]
    return idx


@torch.no_grad()
def evaluate(model, wm, batch, seed, idm, png):
    """The metrics above on a fixed batch of eval windows (E = 2 per episode, partners adjacent), and the
    rollout picture at path png; never touches the training RNG. model: pretrain.Joint (its .latents is the
    policy's, detached or not), wm: its world model (or the IDM and forward model when idm)."""
    device = next(wm.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.eval()
        frames = batch["frames"].to(device).float() / 255  # (E, n+1, 3, H, W)
        lang = batch["lang"].to(device)
        z = model.latents(frames[:, 0], lang)  # (E, n, latent_dim)
        torch.manual_seed(seed)
        latents = {"": z}  # metric prefix -> the latents imagined under
        if idm:
            latents["idm_"] = zi = wm.latents(frames)  # (E, n, latent_dim) the IDM's, from every frame pair
            every = torch.arange(z.shape[1], device=device).expand(len(z), -1)  # (E, n) all transitions
            metrics = {k: float(v) for k, v in wm.loss(frames, every).metrics.items()}
            metrics["policy_r2"] = float(1 - ((z - zi) ** 2).sum() / ((zi - zi.mean(0)) ** 2).sum())
        else:
            metrics = {k: float(v) for k, v in wm.loss(frames, z, openloop_weight=1.0).metrics.items()}
        frames = wm.resize(frames)  # (E, n+1, 3, h, w): errors at the world model's resolution

        def err(latents):  # (n,) error per horizon, the same prior draws for every variant
            torch.manual_seed(seed)
            imagined = wm.openloop(frames[:, :1], latents)  # (E, n, 3, H, W) from frame t and the latents
            return ((imagined - frames[:, 1:]) ** 2).sum((2, 3, 4)).mean(0), imagined
        copy = ((frames[:, :1] - frames[:, 1:]) ** 2).sum((2, 3, 4)).mean(0)  # (n,) predict frame t forever
        pictures = []
        for pre, z in latents.items():
            own, imagined = err(z)
            swap = err(z.view(-1, 2, *z.shape[1:]).flip(1).flatten(0, 1))[0]  # partner window, same episode
            shuffled = err(z.roll(2, dims=0))[0]  # the next episode's window at the same step
            metrics.update({pre + "openloop_err": float(own.mean()),
                            **({} if pre else {"copy_frame_err": float(copy.mean())}),
                            pre + "openloop_shuffled": float(shuffled.mean()),
                            pre + "swap_ratio": float(swap.mean() / own.mean()),
                            pre + "shuffle_ratio": float(shuffled.mean() / own.mean()),
                            pre + "gate_w": float((own[1:] <= 0.95 * copy[1:]).all()),
                            pre + "openloop_k": [round(float(v), 1) for v in own],
                            **({} if pre else {"copy_k": [round(float(v), 1) for v in copy]})})
            pictures.append(imagined[:4])
        save_rollout_png(frames[:4], pictures, png)
        model.train()
    return metrics


def save_rollout_png(frames, imagined, path):
    """Rows per sample: ground truth t..t+n, then per entry of imagined (E, n, 3, H, W) the frames imagined
    under those latents (first tile = the context frame t), then the first one's error."""
    import imageio.v3 as iio
    gt = frames  # (E, n+1, 3, H, W)
    ims = [torch.cat([frames[:, :1], im], 1) for im in imagined]  # each (E, n+1, 3, H, W)
    er = (gt - ims[0]).abs().mean(2, keepdim=True).expand_as(gt).clamp(0, 1)  # (E, n+1, 3, H, W)
    rows = torch.stack([gt, *ims, er], 1)  # (E, R, n+1, 3, H, W), R = 2 + len(imagined)
    E, R, T, C, H, W = rows.shape
    grid = rows.permute(0, 1, 4, 2, 5, 3).reshape(E * R * H, T * W, C)  # (E*R*H, (n+1)*W, 3)
    up = max(1, 64 // H)  # small world-model frames are enlarged (nearest pixel) so a reader can see them
    grid = grid.repeat_interleave(up, 0).repeat_interleave(up, 1)  # (E*R*H*up, (n+1)*W*up, 3)
    tmp = f"{path}.{os.getpid()}.tmp.png"  # per-process name; stale ones are removed by clear_run_dir
    iio.imwrite(tmp, (grid.clamp(0, 1) * 255).byte().cpu().numpy())
    os.replace(tmp, path)
