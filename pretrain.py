"""
Stage 1: latent action pretraining through world modeling.

A policy looks at frame x_t and the instruction and emits a chunk of n latent actions
z_t..z_{t+n-1}. Those latents are the actions of a DreamerV3 RSSM world model that must explain
frames x_t..x_{t+n}: z_{t+k} drives the transition from frame t+k to t+k+1. The world-model loss
(summed-pixel reconstruction + KL balancing) is the only training signal, and it reaches the policy
through the latents. Videos need no action labels.

Tiny CPU run on the built-in toy world (generates data/toy if missing, a few minutes):
    python pretrain.py
Real run on one GPU (BridgeData v2 episode files written by `python convert.py bdv2`):
    python pretrain.py --data data/bdv2 --policy baku --wm_size 50m --wm_image_size 128 --batch_size 256 \
        --lr 1e-4 --warmup 1000 --max_steps 200000 --policy_size default --latent_dim 7 --dtype bfloat16
Robot and human video mixed half and half (episode files from `python convert.py bdv2` / `ssv2`):
    python pretrain.py --data bdv2,ssv2 --mix 0.5,0.5 --frame_skip 1 ...
Several GPUs:
    torchrun --nproc_per_node 8 pretrain.py --data data/bdv2 ...   (batch_size is per GPU)
Latents chosen with hindsight instead (the inverse-dynamics arm, idm.py): an IDM picks each
transition's latent from its two frames, a one-step forward model must predict the second frame from
the first and the latent, and the policy is fitted to the IDM's latents (it gets no world-model gradient):
    python pretrain.py --latents idm
Positive control for the gates: start from a supervised policy (finetune.py on demos WITH actions),
whose outputs are actions by construction; --detach_latents keeps it fixed while the world model learns,
--policy_lr_scale 0.1 trains it jointly at a tenth of the world model's rate:
    python pretrain.py --data DEMOS.hdf5 --init_policy SUP/ckpt.pt --detach_latents

Outputs in --out_dir: ckpt.pt (resumable with --resume; `finetune.py --init` reads it),
log.jsonl (one JSON line per log step), rollout_<step>.png (world-model open-loop rollouts:
ground truth, frames imagined from frame t under the policy's latents, with --latents idm also under
the IDM's, and the first row's error). A folder
that holds a run is refused unless --resume (continue it) or --overwrite (start again) is given, and
one run at a time holds it. Bad input stops with one line, before anything is written.
With --wandb (pip install wandb; not in requirements.txt), Weights & Biases gets the flags, every
log.jsonl row at its step (eval rows as eval/<name>, per-horizon lists as eval/openloop_k/1..n) and
the rollout pictures; --resume continues the same wandb run (its id is in <out_dir>/wandb_id.txt).
WANDB_MODE=offline keeps it in ./wandb/offline-run-* (`wandb sync` uploads it later).
"""
import argparse
import math
import os
import sys
import time
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import wm_eval
from data import MixtureBatches, PretrainWindows, StepBatches, find_episode_files
from episodes import CAMERAS, DataError
from idm import IDMConfig, LatentActionModel, idm_losses
from policies import POLICY_SIZES, load_resnet18_convs, make_policy
from rssm import PRESETS, WorldModel, WorldModelConfig
from run import (CKPT_VERSION, CheckpointError, RunLog, add_wandb_flags, check_flags, cosine_lr, fail, load_checkpoint,
                 open_run, save_checkpoint, setup_device, setup_process)

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
# data
p.add_argument("--data", default="toy", help="toy | bdv2 | ssv2 | a folder of *.hdf5 | a file; several comma-joined")
p.add_argument("--mix", default=None, help="weights of the comma-joined --data sets, e.g. 0.5,0.5 (default: one set)")
p.add_argument("--frame_skip", type=int, default=1, help="use every k-th frame (BridgeData 5 Hz: 1; SSv2 12 fps: 2)")
p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes (0 = load in the main process)")
# policy
p.add_argument("--policy", default="baku", choices=["baku", "diffusion"], help="which policy to pretrain")
p.add_argument("--policy_size", default="small", choices=list(POLICY_SIZES), help="small (CPU toy) or default (paper)")
p.add_argument("--chunk", type=int, default=None, help="latent actions per chunk n (default: 10 for BAKU, 16 for DP)")
p.add_argument("--latent_dim", type=int, default=3, help="size of each latent = the target's action size (toy 3)")
p.add_argument("--cameras", default="agentview", help="cameras of the stage-2 policy (video has agentview only)")
p.add_argument("--state_dim", type=int, default=0, help="proprio size of the stage-2 policy (0 = none; video has none)")
p.add_argument("--init_policy", default="", help="start the policy from a checkpoint, e.g. a supervised finetune.py "
               "one whose action size is --latent_dim (a positive control for the gates: its latents are actions)")
p.add_argument("--encoder_weights", default="", help="a torchvision ResNet-18 state dict file whose convolutions "
               "start the image encoder (ImageNet's, as the release; --policy_size default); empty = random")
p.add_argument("--detach_latents", action="store_true",
               help="ablation: stop the gradient into the policy (what the authors' release does by accident)")
# world model
p.add_argument("--latents", default="policy", choices=["policy", "idm"],
               help="policy: LAWM, the policy's latents drive the world model; idm: an inverse-dynamics model's "
                    "drive a one-step forward model and the policy learns to predict them (idm.py)")
p.add_argument("--wm_size", default="2m", choices=list(PRESETS), help="world-model preset, named by its size (toy 2m)")
p.add_argument("--free_nats", type=float, default=1.0, help="KL free bits per step (nats)")
p.add_argument("--dyn_scale", type=float, default=0.5, help="KL balancing: weight of KL(sg(post)||prior)")
p.add_argument("--rep_scale", type=float, default=0.1, help="KL balancing: weight of KL(post||sg(prior))")
p.add_argument("--openloop_weight", type=float, default=1.0,
               help="weight of the prior-only prediction loss that makes the world model use the latents (0: Dreamer)")
p.add_argument("--openloop_frames", type=int, default=2, help="decode a random k of the n imagined frames (0: all)")
p.add_argument("--wm_image_size", type=int, default=None,
               help="world-model frame size (0 = the data's; default 32 for --latents policy, 64 for idm: at 32 px "
                    "the toy arm's motion is too small to read from a frame pair)")
p.add_argument("--idm_pairs", type=int, default=4, help="--latents idm: transitions per window the forward model "
               "trains on each step (the policy's targets cover all n)")
p.add_argument("--no_context", action="store_true",
               help="DreamerV3's world model: frame t reaches it only through the first posterior (see rssm.Decoder)")
# optimization
p.add_argument("--batch_size", type=int, default=16, help="windows per step per process (toy 16; paper: 256)")
p.add_argument("--max_steps", type=int, default=1500, help="optimizer steps (toy default)")
p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (toy 1e-3; paper: 1e-4)")
p.add_argument("--policy_lr_scale", type=float, default=1.0,
               help="the policy's learning rate relative to --lr (the world model's); < 1 lets the policy follow a "
                    "world model that is still changing more slowly")
p.add_argument("--min_lr_frac", type=float, default=0.01, help="cosine decays to this fraction of --lr")
p.add_argument("--warmup", type=int, default=100, help="linear warmup steps (paper: 1000)")
p.add_argument("--weight_decay", type=float, default=1e-6, help="AdamW weight decay on matrices")
p.add_argument("--beta1", type=float, default=0.95, help="AdamW beta1")
p.add_argument("--beta2", type=float, default=0.999, help="AdamW beta2")
p.add_argument("--grad_clip", type=float, default=100.0, help="global gradient-norm clip over policy + world model")
p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="bfloat16: autocast on CUDA only")
p.add_argument("--compile", action="store_true", help="torch.compile the joint model")
# io
p.add_argument("--out_dir", default="runs/pretrain", help="run folder: ckpt.pt, log.jsonl, rollout pictures")
p.add_argument("--resume", action="store_true", help="continue the run in --out_dir from its ckpt.pt")
p.add_argument("--overwrite", action="store_true", help="start again in an --out_dir that holds a run (its files go)")
p.add_argument("--eval_every", type=int, default=500, help="steps between rollout pictures, eval metrics and saves")
p.add_argument("--log_every", type=int, default=50, help="steps between log lines")
p.add_argument("--seed", type=int, default=0, help="seeds weights, data order and sampling")
p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
add_wandb_flags(p)
args = p.parse_args()
if args.wm_image_size is None:
    args.wm_image_size = 64 if args.latents == "idm" else 32
setup_process()  # line-buffered log lines; on CPU, a warm allocator

# bad flags stop here, before anything is built or written; nothing is corrected silently
if args.chunk is None:
    args.chunk = 10 if args.policy == "baku" else 16
check_flags(args, (("chunk", 1), ("latent_dim", 1), ("state_dim", 0), ("frame_skip", 1), ("num_workers", 0),
                   ("batch_size", 1), ("idm_pairs", 1), ("openloop_frames", 0), ("max_steps", 0), ("warmup", 0),
                   ("eval_every", 1), ("log_every", 1)),
            ("lr", "policy_lr_scale", "min_lr_frac", "weight_decay", "grad_clip", "free_nats", "dyn_scale",
             "rep_scale", "openloop_weight", "beta1", "beta2"))
if args.latents == "idm" and (args.idm_pairs > args.chunk or args.detach_latents):
    fail(f"--idm_pairs, --detach_latents: expected at most --chunk ({args.chunk}) transitions per window and no "
         f"--detach_latents with --latents idm (its policy gets no world-model gradient anyway), got "
         f"{args.idm_pairs}, {args.detach_latents}")
if args.encoder_weights and args.init_policy:
    fail(f"--encoder_weights: starts the policy from scratch, not with --init_policy {args.init_policy}")
if args.wm_image_size and (args.wm_image_size < 16 or args.wm_image_size & (args.wm_image_size - 1)):
    fail(f"--wm_image_size: expected 0 or a power of two >= 16 (the world model's convs halve it to 4), "
         f"got {args.wm_image_size}")
cameras = args.cameras.split(",")
if cameras[0] != "agentview" or not set(cameras) <= set(CAMERAS) or len(set(cameras)) != len(cameras):
    fail(f"--cameras: expected agentview first, then some of {list(CAMERAS)[1:]} once each, got {args.cameras!r}")
if args.mix is not None:
    try:
        weights = [float(w) for w in args.mix.split(",")]
    except ValueError:
        fail(f"--mix: expected comma-joined numbers, got {args.mix!r}")
    if len(weights) != len(args.data.split(",")):
        fail(f"--mix: expected {len(args.data.split(','))} weights, one per --data set, got {len(weights)}")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        fail(f"--mix: expected finite non-negative weights, not all 0, got {args.mix!r}")
config = vars(args)

# -------------------------------------------------------------------------------------------------
# device, dtype, DDP (torchrun: one process per GPU)
ddp, rank, world, device, autocast = setup_device(args)  # args.world_size: in the config, --resume checks it
master = rank == 0
torch.manual_seed(args.seed + rank)
say = tqdm.write if master else (lambda *a, **k: None)

# -------------------------------------------------------------------------------------------------
# the run folder: one holding a run is refused unless --resume or --overwrite; locked while we run
RESUME_KEYS = ("data", "mix", "frame_skip", "policy", "policy_size", "chunk", "latent_dim", "cameras", "state_dim",
               "latents", "wm_size", "wm_image_size", "no_context", "batch_size", "seed", "world_size",
               "init_policy")  # model or data order
ckpt_path = os.path.join(args.out_dir, "ckpt.pt")
try:
    ckpt = open_run(config, "pretrain", RESUME_KEYS, master)
except CheckpointError as e:
    fail(e)

# -------------------------------------------------------------------------------------------------
# data: action-free windows. frames t..t+n go to the world model, frame t to the policy.
if args.data == "toy" and not os.path.exists("data/toy/source_video.hdf5") and master:
    say("data/toy missing: generating it with `python convert.py toy`")
    import subprocess
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert.py"), "toy"],
                   check=True)
if ddp:
    dist.barrier()
specs = args.data.split(",") if args.mix is not None else [args.data]  # without --mix: all files as one set
try:  # with --mix, one set per spec, drawn with the --mix weights by MixtureBatches below
    files = [find_episode_files(s, role="video") for s in specs]
    sets = [PretrainWindows(f, chunk=args.chunk, frame_skip=args.frame_skip) for f in files]
except DataError as e:
    fail(e)
paths, lang = sum(files, []), {k: v for ds in sets for k, v in ds.lang.items()}
image_size = sets[0].image_size
for s, ds in zip(specs, sets):
    if ds.image_size != image_size:
        fail(f"{s}: image_size: expected {image_size} like {specs[0]}, got {ds.image_size}")
if args.mix is not None:
    say("mixture: " + ", ".join(f"{s} {len(ds)} windows weight {w:g}" for s, ds, w in zip(specs, sets, weights)))
if not args.wm_image_size and (image_size < 16 or image_size & (image_size - 1)):
    fail(f"{paths[0]}: data.attrs['image_size']: expected a power of two >= 16 for the world model, got "
         f"{image_size} (pass --wm_image_size 32 to resize)")

# a tenth of the episodes is held out; the eval windows (wm_eval.py: two per held-out episode of the first
# set) come from them
whole = sets[0]
sets, helds = zip(*[wm_eval.split(ds, say) for ds in sets])
dataset = torch.utils.data.ConcatDataset(sets)
eval_idx = wm_eval.eval_windows(whole, helds[0])
try:  # files too big for memory are read per window: a corrupt chunk shows when it is read
    eval_batch = torch.utils.data.default_collate([whole[i] for i in eval_idx])
except DataError as e:
    fail(e)

# -------------------------------------------------------------------------------------------------
# models: the policy emits latents; the world model is the teacher, used only in this stage
policy_cfg = dict(POLICY_SIZES[args.policy_size][args.policy], kind=args.policy, chunk=args.chunk,
                  out_dim=args.latent_dim, image_size=image_size, cameras=tuple(cameras),
                  state_dim=args.state_dim)
policy = make_policy(policy_cfg)
if args.encoder_weights:
    try:
        load_resnet18_convs(policy, args.encoder_weights)
    except ValueError as e:
        fail(f"--encoder_weights {e}")
if args.init_policy:  # the positive control: a policy whose outputs are already (normalised) actions
    try:
        policy.load_state_dict(load_checkpoint(args.init_policy, policy_config=policy_cfg)["policy"])
    except CheckpointError as e:
        fail(e)
policy = policy.to(device)
if args.latents == "policy":
    wm_cfg = WorldModelConfig(size=args.wm_size, image_size=args.wm_image_size or image_size,
                              action_dim=args.latent_dim, free_nats=args.free_nats, dyn_scale=args.dyn_scale,
                              rep_scale=args.rep_scale, context=not args.no_context)
    wm = WorldModel(wm_cfg).to(device)
else:  # the IDM and its forward model stand where the world model stands: trained here, dropped in stage 2
    wm_cfg = IDMConfig(latent_dim=args.latent_dim, image_size=args.wm_image_size or image_size, pairs=args.idm_pairs)
    wm = LatentActionModel(wm_cfg).to(device)
if master:
    n_pol = sum(t.numel() for t in policy.parameters() if t.requires_grad)  # not DP's EMA copy
    n_wm = sum(t.numel() for t in wm.parameters())
    wm_name = f"world model {args.wm_size}" if args.latents == "policy" else "IDM + forward model"
    say(f"policy {args.policy}: {n_pol / 1e6:.2f}M params | {wm_name}: {n_wm / 1e6:.2f}M | "
        f"{len(dataset)} windows from {len(paths)} file(s) | image {image_size} | chunk {args.chunk}")


class Joint(torch.nn.Module):
    """Policy + world model as one module, so DDP sees a single forward that returns the loss."""

    def __init__(self, policy, wm, args):
        super().__init__()
        self.policy, self.wm, self.args, self.idm = policy, wm, args, args.latents == "idm"

    def latents(self, frames, lang):
        """Frame t (B, 3, H, W), instruction (B, 384) -> the world model's actions (B, n, latent_dim)."""
        z = self.policy.latent({"agentview": frames, "lang": lang})  # (B, n, latent_dim)
        return z.detach() if self.args.detach_latents else z  # detached: the release's behaviour

    def forward(self, frames, lang):
        if self.idm:  # two losses that share no parameter: the IDM's latents reach the policy as fixed targets
            out, fit = idm_losses(self.wm, self.policy, frames, lang)
            return out.loss + fit, out.metrics | {"policy_fit": fit.detach()}
        z = self.latents(frames[:, 0], lang)  # from frame t
        out = self.wm.loss(frames, z, self.args.openloop_weight, self.args.openloop_frames)  # frames (B, n+1, 3, H, W)
        return out.loss, out.metrics


model = Joint(policy, wm, args)
# weight decay on matrices only (not on norms, biases, embeddings-as-vectors), as the release does
# (the policy's groups run at --policy_lr_scale times the world model's rate)
groups = [{"params": [t for t in module.parameters() if (t.dim() >= 2) == matrix],
           "weight_decay": args.weight_decay if matrix else 0.0, "scale": scale}
          for module, scale in ((wm, 1.0), (policy, args.policy_lr_scale)) for matrix in (True, False)]
# fused: one kernel per step instead of a dozen passes over every parameter (5x faster on CPU)
optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2),
                              fused=device.type in ("cpu", "cuda"))

step0 = 0
if args.resume:
    policy.load_state_dict(ckpt["policy"])
    wm.load_state_dict(ckpt["world_model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    step0 = ckpt["step"]
    torch.set_rng_state(ckpt["rng"]["torch"])
    say(f"resumed {ckpt_path} at step {step0}")
train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                  find_unused_parameters=True) if ddp else model  # unused: stage-2-only inputs (wrist, proprio)
if args.compile:
    train_model = torch.compile(train_model)

# data order is a pure function of (seed, step, rank): --resume sees exactly the batches it would have
sampler = (StepBatches(len(dataset), args.batch_size, seed=args.seed, rank=rank, world=world, start_step=step0)
           if args.mix is None else
           MixtureBatches([len(ds) for ds in sets], weights, args.batch_size, seed=args.seed, rank=rank,
                          start_step=step0))
loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers,
                                     pin_memory=device.type == "cuda", persistent_workers=args.num_workers > 0,
                                     generator=torch.Generator().manual_seed(args.seed))



# -------------------------------------------------------------------------------------------------
# training loop
try:  # the inputs are checked: now the run folder is made, locked and cleared, and the log opened
    log = RunLog(config, "pretrain", step0, master)
except CheckpointError as e:
    fail(e)
batches = iter(loader)
bar = tqdm(range(step0, args.max_steps + 1), initial=step0, total=args.max_steps + 1, disable=not master,
           desc="pretrain", mininterval=2)
t_last = time.time()
for step in bar:
    last_step = step == args.max_steps
    # eval and save first, so the final step is always evaluated and saved (skipped at a resumed step
    # whose eval row is logged: that state is exactly what we just loaded)
    if master and (step % args.eval_every == 0 or last_step) and not (step == step0 and log.logged):
        png = os.path.join(args.out_dir, f"rollout_{step:06d}.png")
        metrics = wm_eval.evaluate(model, wm, eval_batch, args.seed, args.latents == "idm", png)
        save_checkpoint(ckpt_path, {
            "format_version": CKPT_VERSION, "kind": "pretrain", "step": step, "config": config,
            "policy": policy.state_dict(), "policy_config": policy.config_dict(),
            "world_model": wm.state_dict(), "wm_config": asdict(wm_cfg),
            "optimizer": optimizer.state_dict(), "action_stats": None,
            "obs_spec": {"cameras": list(policy_cfg["cameras"]), "state_keys": [], "image_size": image_size},
            "lang": {k: v.tolist() for k, v in lang.items()},
            "rng": {"torch": torch.get_rng_state()}})
        log.eval(step, metrics, image=png)  # after the save: it is on disk
    if last_step:
        break

    # one training step
    for group in optimizer.param_groups:
        group["lr"] = cosine_lr(step, args) * group["scale"]
    try:
        batch = next(batches)
    except DataError as e:  # a corrupt chunk of a file read per window; from a worker, its last line is ours
        fail(str(e).strip().splitlines()[-1])
    frames = batch["frames"].to(device, non_blocking=True).float().div_(255)  # (B, n+1, 3, H, W)
    with autocast:
        loss, metrics = train_model(frames, batch["lang"].to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    optimizer.step()
    policy.ema_step()

    if master and (step % args.log_every == 0 or step == args.max_steps - 1):
        dt = (time.time() - t_last) / (args.log_every if step > step0 else 1)
        t_last = time.time()
        log.row({"step": step, "loss": loss.item(), **{k: float(v) for k, v in metrics.items()},
                 "grad_norm": float(grad_norm), "lr": cosine_lr(step, args), "ms_step": dt * 1000,
                 "samples_s": args.batch_size * world / dt})

log.close()
if ddp:
    dist.destroy_process_group()
