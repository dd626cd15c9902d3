"""
Stage 2: finetune a policy on labeled demonstrations (ground-truth actions).

With --init, the pretrained policy is loaded from a checkpoint (the world model is dropped), its last
action layer is re-initialised for the real action dimension (--keep_action_layer skips that), and
the whole policy is trained with the supervised loss (BAKU: masked MSE; DP: denoising). Without
--init it trains from scratch. Run on source-domain demos *with* actions, the same script gives the
supervised-pretraining baseline, whose checkpoint `finetune.py --init` accepts like any other.

Tiny CPU run on the toy world (target robot demos in data/toy, from `python convert.py toy`):
    python finetune.py --init runs/pretrain/ckpt.pt --out_dir runs/finetune
    python finetune.py --out_dir runs/scratch                               # no pretraining
    python finetune.py --data data/toy/source_demos.hdf5 --out_dir runs/sup  # supervised baseline
Real run on LIBERO-90 episode files (from `python convert.py libero`), one GPU:
    python finetune.py --data data/libero_90 --init runs/bdv2/ckpt.pt --cameras agentview,wrist \
        --state_keys ee_states,gripper_states --batch_size 256 --lr 1e-4 --warmup 1000 --max_steps 100000
Several GPUs:
    torchrun --nproc_per_node 8 finetune.py --data data/libero_90 ...   (batch_size is per GPU)

Outputs in --out_dir: ckpt.pt (with the action normalisation statistics, the observation spec and
the instruction embeddings, so evaluate.py needs no other flags) and log.jsonl. A folder that holds a
run is refused unless --resume (continue it) or --overwrite (start again) is given, and one run at a
time holds it. Bad input stops with one line, before anything is written.
With --wandb (pip install wandb; not in requirements.txt), Weights & Biases gets the flags and every
log.jsonl row at its step (the fixed training batch's loss as eval/train_batch_loss); --resume continues the
same wandb run (its id is in <out_dir>/wandb_id.txt). WANDB_MODE=offline keeps it in ./wandb/offline-run-*.
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from data import DemoWindows, StepBatches, find_episode_files
from episodes import CAMERAS, DataError
from policies import POLICY_SIZES, load_resnet18_convs, make_policy
from run import (CKPT_VERSION, CheckpointError, RunLog, add_wandb_flags, check_flags, cosine_lr, fail, load_checkpoint,
                 open_run, policy_from_checkpoint, save_checkpoint, setup_device, setup_process)

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
# data
p.add_argument("--data", default="toy", help="toy (data/toy/target_demos.hdf5) | a folder of *.hdf5 | a file")
p.add_argument("--frame_skip", type=int, default=1, help="use every k-th step of the demos")
p.add_argument("--cameras", default="agentview", help="cameras the policy sees (agentview, wrist; --init: some of its)")
p.add_argument("--state_keys", default="", help="proprio keys under obs/, e.g. ee_states,gripper_states (empty = none)")
p.add_argument("--aug_shift", type=int, default=4, help="random-shift augmentation in pixels (pad and crop; 0 = off)")
p.add_argument("--aug_jitter", type=float, default=0.0,
               help="colour jitter: brightness, contrast, saturation and hue strength (0 = off; the release: 0.3)")
p.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes")
# policy
p.add_argument("--init", default="", help="checkpoint to start from (pretrain.py or finetune.py); empty = from scratch")
p.add_argument("--keep_action_layer", action="store_true", help="keep the pretrained action layer (no re-init)")
p.add_argument("--policy", default="baku", choices=["baku", "diffusion"], help="policy from scratch (not with --init)")
p.add_argument("--policy_size", default="small", choices=list(POLICY_SIZES), help="widths from scratch (not --init)")
p.add_argument("--chunk", type=int, default=None, help="action chunk n from scratch (default: BAKU 10, DP 16)")
p.add_argument("--encoder_weights", default="", help="from scratch: a torchvision ResNet-18 state dict file whose "
               "convolutions start the image encoder (ImageNet's, as the release; --policy_size default); empty = random")
# optimization
p.add_argument("--batch_size", type=int, default=32, help="windows per step per process (paper: 256)")
p.add_argument("--max_steps", type=int, default=1500, help="optimizer steps (toy default)")
p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the action layer (paper: 1e-4)")
p.add_argument("--body_lr_scale", type=float, default=1.0,
               help="learning-rate multiplier for every layer but the action layer (0.1 protects pretrained features)")
p.add_argument("--min_lr_frac", type=float, default=0.01, help="cosine decays to this fraction of the peak")
p.add_argument("--warmup", type=int, default=100, help="linear warmup steps (paper: 1000)")
p.add_argument("--weight_decay", type=float, default=1e-6, help="AdamW weight decay on matrices")
p.add_argument("--beta1", type=float, default=0.95, help="AdamW beta1")
p.add_argument("--beta2", type=float, default=0.999, help="AdamW beta2")
p.add_argument("--grad_clip", type=float, default=100.0, help="global gradient-norm clip")
p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="bfloat16: autocast on CUDA only")
p.add_argument("--compile", action="store_true", help="torch.compile the policy's loss")
# io
p.add_argument("--out_dir", default="runs/finetune", help="run folder: ckpt.pt, log.jsonl")
p.add_argument("--resume", action="store_true", help="continue the run in --out_dir from its ckpt.pt")
p.add_argument("--overwrite", action="store_true", help="start again in an --out_dir that holds a run (its files go)")
p.add_argument("--eval_every", type=int, default=500, help="steps between eval-loss measurements and checkpoint saves")
p.add_argument("--log_every", type=int, default=50, help="steps between log lines")
p.add_argument("--seed", type=int, default=0, help="seeds weights, data order and augmentation")
p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
add_wandb_flags(p)
args = p.parse_args()
setup_process()  # line-buffered log lines; on CPU, a warm allocator

# bad flags stop here, before anything is built or written; nothing is corrected silently
cameras = args.cameras.split(",")
if not set(cameras) <= set(CAMERAS) or len(set(cameras)) != len(cameras):
    fail(f"--cameras: expected some of {list(CAMERAS)} once each, got {args.cameras!r}")
check_flags(args, (("chunk", 1), ("frame_skip", 1), ("aug_shift", 0), ("num_workers", 0), ("batch_size", 1),
                   ("max_steps", 0), ("warmup", 0), ("eval_every", 1), ("log_every", 1)),
            ("lr", "body_lr_scale", "min_lr_frac", "weight_decay", "grad_clip", "beta1", "beta2", "aug_jitter"))
if args.aug_jitter > 0.5:  # hue beyond half a turn repeats; brightness etc. beyond 1 - s < 0.5 would black out
    fail(f"--aug_jitter: expected 0 to 0.5, got {args.aug_jitter}")
config = vars(args)

# -------------------------------------------------------------------------------------------------
# device, dtype, DDP (torchrun: one process per GPU)
ddp, rank, world, device, autocast = setup_device(args)  # args.world_size: in the config, --resume checks it
master = rank == 0
torch.manual_seed(args.seed + rank)
say = tqdm.write if master else (lambda *a, **k: None)

# -------------------------------------------------------------------------------------------------
# the run folder: one holding a run is refused unless --resume or --overwrite; locked while we run
RESUME_KEYS = ("data", "frame_skip", "cameras", "state_keys", "init", "keep_action_layer", "policy", "policy_size",
               "chunk", "batch_size", "seed", "world_size")  # change the model or the data order
ckpt_path = os.path.join(args.out_dir, "ckpt.pt")
try:
    ckpt = open_run(config, "finetune", RESUME_KEYS, master)
except CheckpointError as e:
    fail(e)

# -------------------------------------------------------------------------------------------------
# the starting point decides the observation spec: a pretrained policy keeps its inputs
init = None
state_keys = [k for k in args.state_keys.split(",") if k]
if args.init:
    try:
        init = load_checkpoint(args.init)
    except CheckpointError as e:
        fail(e)
    chunk = init["policy_config"]["chunk"]
    if args.encoder_weights:  # the checkpoint brings its own encoder
        fail(f"--encoder_weights: starts a policy from scratch, not with --init {args.init}")
    if args.chunk is not None and args.chunk != chunk:  # --chunk shapes a policy from scratch only
        fail(f"--chunk: the policy in {args.init} predicts chunks of {chunk}, got {args.chunk}")
    # the policy skips absent inputs explicitly, so any subset of the cameras it was built for works
    if not set(cameras) <= set(init["policy_config"]["cameras"]):
        fail(f"{args.init}: policy_config.cameras: expected a superset of --cameras {args.cameras}, "
             f"got {init['policy_config']['cameras']}")
else:
    chunk = args.chunk if args.chunk is not None else 10 if args.policy == "baku" else 16

# -------------------------------------------------------------------------------------------------
# data: obs at t, actions t..t+n-1 normalised to [-1, 1], padded at the episode end with mask False
try:
    paths = find_episode_files("data/toy/target_demos.hdf5" if args.data == "toy" else args.data)
    dataset = DemoWindows(paths, chunk=chunk, cameras=tuple(cameras), state_keys=tuple(state_keys),
                          frame_skip=args.frame_skip)
except DataError as e:
    fail(e)
action_dim, state_dim, image_size = dataset.action_dim, dataset.state_dim, dataset.image_size
predicted = sorted({(d["path"], d["actions_source"]) for d in dataset.episodes if d["actions_source"] != "recorded"})
for path, source in predicted:  # never mixed silently with recorded actions
    say(f"note: {path}: its actions are {source}")

# -------------------------------------------------------------------------------------------------
# model
if init is not None:
    pc = init["policy_config"]
    if pc["image_size"] != image_size:
        fail(f"{args.init}: policy_config.image_size: expected the data's {image_size}, got {pc['image_size']}")
    if pc["state_dim"] != state_dim:
        fail(f"{args.init}: policy_config.state_dim: expected {state_dim} (from --state_keys {args.state_keys!r}), "
             f"got {pc['state_dim']}")
    policy = policy_from_checkpoint(init)  # the world model in a pretrain checkpoint is simply not loaded
    if not args.keep_action_layer:
        policy.reset_action_layer(action_dim)  # stage 2 starts here: a fresh layer for real actions
    elif pc["out_dim"] != action_dim:
        fail(f"{args.init}: --keep_action_layer needs out_dim == action dim {action_dim}, got {pc['out_dim']}")
else:
    policy = make_policy(dict(POLICY_SIZES[args.policy_size][args.policy], kind=args.policy, chunk=chunk,
                              out_dim=action_dim, image_size=image_size, cameras=tuple(cameras), state_dim=state_dim))
    if args.encoder_weights:
        try:
            load_resnet18_convs(policy, args.encoder_weights)
        except ValueError as e:
            fail(f"--encoder_weights {e}")
policy.to(device)
if master:
    n_pol = sum(t.numel() for t in policy.parameters() if t.requires_grad)  # not DP's EMA copy
    say(f"policy {policy.config_dict()['kind']}: {n_pol / 1e6:.2f}M params | "
        f"{'init ' + args.init if args.init else 'from scratch'} | {len(dataset)} windows from {len(paths)} file(s) | "
        f"cameras {cameras} | state {state_keys or 'none'} | chunk {chunk} | action dim {action_dim}")

# the action layer trains at --lr, everything else at --lr * --body_lr_scale
head_ids = {id(t) for t in policy.action_layer_parameters()}
groups = []
for is_head in (True, False):
    ts = [t for t in policy.parameters() if (id(t) in head_ids) == is_head]
    scale = 1.0 if is_head else args.body_lr_scale
    groups.append({"params": [t for t in ts if t.dim() >= 2], "weight_decay": args.weight_decay, "scale": scale})
    groups.append({"params": [t for t in ts if t.dim() < 2], "weight_decay": 0.0, "scale": scale})
# fused: one kernel per step instead of a dozen passes over every parameter (5x faster on CPU)
optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2),
                              fused=device.type in ("cpu", "cuda"))

step0 = 0
if args.resume:
    policy.load_state_dict(ckpt["policy"])
    optimizer.load_state_dict(ckpt["optimizer"])
    step0 = ckpt["step"]
    torch.set_rng_state(ckpt["rng"]["torch"])
    say(f"resumed {ckpt_path} at step {step0}")


class Supervised(torch.nn.Module):
    """The policy's supervised loss as a forward, so DDP can wrap it."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs, actions, mask):
        return self.policy.loss(obs, actions, mask)


train_model = Supervised(policy)
if ddp:
    train_model = DDP(train_model, device_ids=[device.index] if device.type == "cuda" else None,
                      find_unused_parameters=True)
if args.compile:
    train_model = torch.compile(train_model)

sampler = StepBatches(len(dataset), args.batch_size, seed=args.seed, rank=rank, world=world, start_step=step0)
loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=args.num_workers,
                                     pin_memory=device.type == "cuda", persistent_workers=args.num_workers > 0,
                                     generator=torch.Generator().manual_seed(args.seed))


def color_jitter(x, s):
    """The release's batch-wise colour jitter (BatchWiseImgColorJitterAug, torchvision's ColorJitter): one
    brightness, contrast and saturation factor in [1-s, 1+s] and one hue shift in [-s, s] per call, applied in
    a random order, to each image with probability 0.9. x: (B, 3, H, W) in [0, 1]."""
    gray = lambda y: (0.2989 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2])[:, None]  # (B, 1, H, W)
    out = x
    for op in torch.randperm(4).tolist():
        f = float(torch.empty(1).uniform_(1 - s, 1 + s)) if op < 3 else float(torch.empty(1).uniform_(-s, s))
        if op == 0:  # brightness
            out = (out * f).clamp(0, 1)
        elif op == 1:  # contrast: towards each image's mean grey
            out = (f * out + (1 - f) * gray(out).mean((1, 2, 3), keepdim=True)).clamp(0, 1)
        elif op == 2:  # saturation: towards the image's greyscale
            out = (f * out + (1 - f) * gray(out)).clamp(0, 1)
        else:  # hue: RGB -> HSV, rotate H by f of a turn, back (value and saturation unchanged)
            v, c = out.max(1).values, out.max(1).values - out.min(1).values  # (B, H, W) each
            r, g, b = out.unbind(1)
            cs = torch.where(c > 0, c, 1.0)
            h = torch.where(v == r, ((g - b) / cs) % 6, torch.where(v == g, (b - r) / cs + 2, (r - g) / cs + 4))
            h, sat = (h / 6 + f) % 1, torch.where(v > 0, c / torch.where(v > 0, v, 1.0), 0.0)
            k = (torch.tensor([5.0, 3.0, 1.0], device=x.device)[:, None, None] + 6 * h[:, None]) % 6  # (B, 3, H, W)
            out = v[:, None] * (1 - sat[:, None] * torch.minimum(k, 4 - k).clamp(0, 1))
    keep = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.1  # the release's epsilon: 10% left as they are
    return torch.where(keep, x, out)


def to_obs(batch, augment):
    """Batch dict -> policy obs: images to float [0,1] (B, 3, H, W), optional colour jitter and random shift."""
    obs = {"lang": batch["lang"].to(device)}
    for cam in cameras:
        x = batch[cam].to(device, non_blocking=True).float().div_(255)  # (B, 3, H, W)
        if augment and args.aug_jitter > 0:  # before the shift, as the release orders them
            x = color_jitter(x, args.aug_jitter)
        if augment and args.aug_shift > 0:
            # random shift: replicate-pad, then crop back at a random offset per sample (as BAKU/DrQ)
            s, (B, _, H, W) = args.aug_shift, x.shape
            x = F.pad(x, (s, s, s, s), mode="replicate")  # (B, 3, H+2s, W+2s)
            ox, oy = torch.randint(0, 2 * s + 1, (2, B), device=device)
            rows = (oy[:, None] + torch.arange(H, device=device))  # (B, H)
            cols = (ox[:, None] + torch.arange(W, device=device))  # (B, W); x[b, c, rows, cols]: (B, 3, H, W)
            b, c = torch.arange(B, device=device), torch.arange(3, device=device)
            x = x[b[:, None, None, None], c[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
        obs[cam] = x
    if state_keys:
        obs["state"] = batch["state"].to(device)
    return obs


# one fixed batch of 64 TRAINING windows, the same at every eval, scored without augmentation: it tracks how
# well the demos are fitted, not generalisation (nothing is held out; closed-loop success is the test)
eval_idx = torch.linspace(0, len(dataset) - 1, 64).long().tolist()
try:  # files too big for memory are read per window: a corrupt chunk shows when it is read
    eval_batch = torch.utils.data.default_collate([dataset[i] for i in eval_idx])
except DataError as e:
    fail(e)

# -------------------------------------------------------------------------------------------------
# training loop
try:  # the inputs are checked: now the run folder is made, locked and cleared, and the log opened
    log = RunLog(config, "finetune", step0, master)
except CheckpointError as e:
    fail(e)
batches = iter(loader)
bar = tqdm(range(step0, args.max_steps + 1), initial=step0, total=args.max_steps + 1, disable=not master,
           desc="finetune", mininterval=2)
t_last = time.time()
for step in bar:
    last_step = step == args.max_steps
    if master and (step % args.eval_every == 0 or last_step) and not (step == step0 and log.logged):
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(args.seed)
            policy.eval()
            eval_loss = policy.loss(to_obs(eval_batch, False), eval_batch["actions"].to(device),
                                    eval_batch["mask"].to(device)).item()
            policy.train()
        save_checkpoint(ckpt_path, {
            "format_version": CKPT_VERSION, "kind": "finetune", "step": step, "config": config,
            "policy": policy.state_dict(), "policy_config": policy.config_dict(),
            "optimizer": optimizer.state_dict(), "action_stats": dataset.stats,
            "obs_spec": {"cameras": list(cameras), "state_keys": state_keys, "image_size": image_size},
            "lang": {k: v.tolist() for k, v in dataset.lang.items()},
            "rng": {"torch": torch.get_rng_state()}})
        log.eval(step, {"train_batch_loss": eval_loss})  # after the save: it is on disk
    if last_step:
        break

    # one training step
    for group in optimizer.param_groups:
        group["lr"] = cosine_lr(step, args) * group["scale"]
    try:
        batch = next(batches)
    except DataError as e:  # a corrupt chunk of a file read per window; from a worker, its last line is ours
        fail(str(e).strip().splitlines()[-1])
    with autocast:
        loss = train_model(to_obs(batch, True), batch["actions"].to(device), batch["mask"].to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), args.grad_clip)
    optimizer.step()
    policy.ema_step()

    if master and (step % args.log_every == 0 or step == args.max_steps - 1):
        dt = (time.time() - t_last) / (args.log_every if step > step0 else 1)
        t_last = time.time()
        log.row({"step": step, "bc": loss.item(), "grad_norm": float(grad_norm), "lr": cosine_lr(step, args),
                 "ms_step": dt * 1000, "samples_s": args.batch_size * world / dt})

log.close()
if ddp:
    dist.destroy_process_group()
