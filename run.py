"""The run folder and the checkpoint: what every stage script shares besides the models.

    setup_process()                                   # line-buffered stdout, CPU allocator kept warm
    check_flags(args, ints, floats)                   # bad flags stop with one line (fail)
    why = check_device(args.device)                   # None, or why --device cannot be used
    ddp, rank, world, device, autocast = setup_device(args)   # torchrun or one process
    ckpt = open_run(config, "pretrain", RESUME_KEYS)  # claim --out_dir; with --resume, its checkpoint
    log = RunLog(config, "pretrain", step0, master)   # once the inputs are checked: make, lock, clear; log.jsonl
    save_checkpoint(path, dict(...)); ckpt = load_checkpoint(path, kind="finetune")
    lr = cosine_lr(step, args)                        # the learning-rate schedule of both training stages
    why = check_out_dir("--out_dir", path)            # None, or why a script's output folder cannot take files
    add_wandb_flags(p)                                # --wandb, --wandb_project, --wandb_name
    why = check_wandb()                               # None, or what --wandb needs first (a key or offline)
    wandb_evaluation(args, results, videos, out_dir)  # evaluate.py's results and videos to wandb
    save_video(path, frames, fps)                     # an MP4 (or .gif) of uint8 frames

A run folder holding a run is refused unless --resume or --overwrite; one process at a time holds it
(flock, released by the kernel even on kill -9). A checkpoint is one dict of plain values and tensors,
written atomically and read with torch.load(weights_only=True). Every failure is a CheckpointError
whose message is one line naming the file or flag.
"""
import errno
import fcntl
import glob
import importlib
import json
import math
import os
import sys
import tempfile
import warnings
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from policies import make_policy


def setup_process():
    """What every stage script does first. stdout is line-buffered, so each log line reaches a pipe or a
    log file when it is printed (users tail runs; tests wait for lines). On Linux, glibc keeps freed
    memory in the process instead of returning it to the kernel: a training step allocates the same
    large activations every time, and re-mapping them cost ~20% of a CPU step in page faults."""
    sys.stdout.reconfigure(line_buffering=True)
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX = 0: big blocks come from the heap, which is reused
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD = 1 GiB: freed memory stays with the process
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


# -------------------------------------------------------------------------------------------------
# checkpoints: one dict of plain values and tensors, loadable with torch.load(weights_only=True)

CKPT_VERSION = 1
CKPT_KEYS = ("format_version", "kind", "step", "config", "policy", "policy_config", "optimizer",
             "action_stats", "obs_spec", "lang", "rng")  # + world_model, wm_config when kind is "pretrain"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def save_checkpoint(path, ckpt):
    """Write to path.<pid>.tmp, then rename: a crash never leaves a half-written checkpoint, and two
    processes never share a temporary file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path, kind=None, policy_config=None):
    """Load and validate a checkpoint (weights_only); kind "pretrain" | "finetune" | None (any); policy_config:
    the policy it must hold (a dict as make_policy takes), or None (any)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file (expected a checkpoint written by pretrain.py or finetune.py)")
    try:
        with warnings.catch_warnings():  # a plain pickle makes torch warn of its protocol (2 lines) before refusing it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a non-checkpoint file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}); expected a file "
                              "written by save_checkpoint") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found {type(ckpt).__name__}")
    if ckpt.get("format_version") != CKPT_VERSION:
        raise CheckpointError(f"{path}: format_version {ckpt.get('format_version')!r}, expected {CKPT_VERSION}")
    if ckpt.get("kind") not in ("pretrain", "finetune") or (kind is not None and ckpt["kind"] != kind):
        raise CheckpointError(f"{path}: kind {ckpt.get('kind')!r}, expected {kind or 'pretrain or finetune'!r}")
    need = CKPT_KEYS + (("world_model", "wm_config") if ckpt["kind"] == "pretrain" else ())
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}, expected all of {list(need)}")
    # the policy state must fit the architecture its config describes (built on the meta device: no memory)
    try:
        with torch.device("meta"):
            want = make_policy(ckpt["policy_config"]).state_dict()
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        raise CheckpointError(f"{path}: policy_config does not build a policy ({why})") from None
    got = ckpt["policy"]
    for k in sorted(set(want) | set(got)):
        if k not in want or k not in got or want[k].shape != got[k].shape:
            found = tuple(got[k].shape) if k in got else "missing"
            raise CheckpointError(f"{path}: policy.{k}: shape {found}, expected "
                                  f"{tuple(want[k].shape) if k in want else 'no such key'} from policy_config")
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # the cameras tuple is a list after a save
    got = ckpt["policy_config"]
    bad = [k for k in policy_config or {} if norm(got.get(k)) != norm(policy_config[k])]
    if bad:
        raise CheckpointError(f"{path}: policy_config: expected {', '.join(f'{k}={policy_config[k]!r}' for k in bad)}"
                              f" (from the flags and data), got {', '.join(f'{k}={got.get(k)!r}' for k in bad)}")
    return ckpt


def policy_from_checkpoint(ckpt):
    """Rebuild the policy from a loaded checkpoint alone (on the CPU; move it with .to(device))."""
    policy = make_policy(ckpt["policy_config"])
    policy.load_state_dict(ckpt["policy"])
    return policy


# ---------------------------------------------------------------------------------------------------
# what the stage scripts share besides checkpoints: flags, the device, the run folder and its log

def fail(msg):
    """One clear line, no traceback, for bad input."""
    sys.exit(f"error: {msg}")


def check_flags(args, ints, floats=()):
    """A script's numeric flags: ints as (name, lowest), floats (finite, >= 0) by name; None is an unset default.
    Also, where the script has them, the optimizer's bounds (the training stages), --device, and wandb when
    --wandb is given (imported only then: without --wandb no wandb code is loaded). Stops with one line (fail)
    at the first bad flag."""
    for name, low in ints:
        if getattr(args, name) is not None and getattr(args, name) < low:
            fail(f"--{name}: expected an integer >= {low}, got {getattr(args, name)}")
    for name in floats:
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            fail(f"--{name}: expected a finite number >= 0, got {getattr(args, name)}")
    if hasattr(args, "beta1") and not (args.beta1 < 1 and args.beta2 < 1 and args.min_lr_frac <= 1
                                       and args.grad_clip > 0):
        fail(f"--beta1, --beta2: expected < 1, --min_lr_frac <= 1, --grad_clip > 0; got {args.beta1}, {args.beta2}, "
             f"{args.min_lr_frac}, {args.grad_clip}")
    if check_device(args.device):
        fail(check_device(args.device))
    if getattr(args, "wandb", False) and (why := check_wandb()):
        fail(why)


def check_wandb():
    """Can --wandb start a run here? None, or the one line saying what to do. Asked before any work: without an
    API key (a fresh machine) wandb.init raises UsageError, which evaluate.py and compare.py reach only after all
    their episodes. Offline (WANDB_MODE=offline, or `wandb offline`) needs no key; else wandb's own lookup (its
    environment variables, settings files, ~/.netrc), never the network and never a prompt."""
    try:
        wandb = importlib.import_module("wandb")
    except ImportError:
        return "--wandb: the wandb package is not installed (pip install wandb)"
    if wandb.setup().settings.mode in ("offline", "dryrun", "disabled") or wandb.login(prompt=False, verify=False):
        return None
    return ("--wandb: wandb has no API key here: run `wandb login` (or set WANDB_API_KEY), or set WANDB_MODE=offline "
            "to keep the run on disk (`wandb sync` uploads it later)")


def setup_device(args):
    """One process, or one of torchrun's (RANK in the environment: DDP over NCCL on CUDA, gloo otherwise).
    Resolves --device auto and records the world size in args (the data order depends on it, so --resume
    checks it). -> ddp, rank, world size, torch.device, the autocast context (bf16 on CUDA only)."""
    ddp = "RANK" in os.environ  # launched by torchrun
    if ddp:
        rank, world, local_rank = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    else:
        rank, world, local_rank = 0, 1, 0
    args.world_size = world
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(f"cuda:{local_rank}" if args.device == "cuda" else args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    bf16 = device.type == "cuda" and args.dtype == "bfloat16"
    return ddp, rank, world, device, torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else nullcontext()


def cosine_lr(step, args):
    """Linear warmup from 0.001x --lr, then cosine down to --min_lr_frac x --lr at --max_steps."""
    if step < args.warmup:
        return args.lr * (0.001 + 0.999 * step / args.warmup)
    frac = min(1.0, (step - args.warmup) / max(1, args.max_steps - args.warmup))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


def check_device(name):
    """--device auto | cpu | cuda | cuda:<i> | mps -> the reason it cannot be used, or None."""
    try:
        dev = torch.device("cpu" if name == "auto" else name)
    except RuntimeError:
        return f"--device: expected auto, cpu, cuda, cuda:<i> or mps, got {name!r}"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"--device {name}: CUDA is not available on this machine (use --device cpu)"
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        return f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
    if dev.type == "mps" and not torch.backends.mps.is_available():
        return f"--device {name}: MPS is not available on this machine (use --device cpu)"
    if dev.type not in ("cpu", "cuda", "mps"):
        return f"--device: expected auto, cpu, cuda, cuda:<i> or mps, got {name!r}"
    return None


# a run, what evaluate/cca add by default, and the wandb run id --resume continues
RUN_FILES = ("ckpt.pt", "log.jsonl", "rollout_*.png", "eval_*", "cca", "wandb_id.txt")
_LOCKS = {}  # folder -> the open descriptor that holds its lock until this process exits


def check_out_dir(flag, path):
    """Why the output folder given as `flag path` cannot take a script's files, or None; creates nothing.
    Every script asks here before any work, so one fault reads the same everywhere, path as the user
    wrote it. Writability is found by trying (a temporary file made and removed in the folder, or in the
    nearest existing folder above it, which would have to take the new one): os.access says yes to
    root even for a read-only mount or an immutable folder."""
    there = path
    while there and not os.path.exists(there):  # the nearest part of the path that exists
        there = os.path.dirname(there)
    there = there or "."
    got = None
    if not os.path.isdir(there):
        got = "a file" if there == path else f"a path through the file {there}"
    else:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".write-check-", dir=there)  # hidden, no .tmp: no run folder glob sees it
            os.close(fd)
            os.remove(tmp)
        except OSError as e:  # EPERM: an immutable folder (chattr +i), EROFS: a read-only mount
            what = ("read-only folder" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else
                    f"folder it cannot write into ({e.strerror})")
            got = f"a {what}" if there == path else f"a path under the {what} {there}"
    return got and f"{flag} {path}: expected a folder this user can write, got {got}"


def claim_run_dir(out_dir, resume, overwrite, create=False):
    """Check that --out_dir may take this run and lock it; raises CheckpointError with one line.

    A folder holding a run (ckpt.pt or a non-empty log.jsonl) is refused unless resume (continue it) or overwrite
    (start again: see clear_run_dir). The lock is flock on the folder itself, so it writes nothing
    and the kernel releases it when the process ends, even on kill -9; a second run on the folder
    fails at once. Call it first without create (checks what exists, locks it if it exists), then
    with create=True once the inputs are checked (a run writes nothing before): that also makes the
    folder and clears it (clear_run_dir)."""
    why = check_out_dir("--out_dir", out_dir)  # the same line as every other script's output folder
    if why:
        raise CheckpointError(why)
    try:
        if create:
            os.makedirs(out_dir, exist_ok=True)
    except OSError as e:  # checked just now: only a race or a full disk gets here
        raise CheckpointError(f"--out_dir {out_dir}: cannot create it ({e.strerror})") from None
    if not os.path.isdir(out_dir):
        if resume:
            raise CheckpointError(f"--out_dir {out_dir}: --resume needs a run there, got no such folder")
        return
    key = os.path.realpath(out_dir)
    if key not in _LOCKS:
        fd = os.open(out_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(f"--out_dir {out_dir}: another run is using this folder; wait for it to end "
                                  "or choose another --out_dir") from None
        _LOCKS[key] = fd
    ckpt = os.path.join(out_dir, "ckpt.pt")
    if resume and not os.path.isfile(ckpt):
        raise CheckpointError(f"{ckpt}: no such file (--resume continues the run whose checkpoint is there)")
    log = os.path.join(out_dir, "log.jsonl")
    held = os.path.isfile(ckpt) or os.path.isfile(log) and os.path.getsize(log) > 0  # empty: killed before a save
    if held and not (resume or overwrite):
        raise CheckpointError(f"--out_dir {out_dir}: holds a run already; pass --resume to continue it, "
                              "--overwrite to start again, or choose another --out_dir")
    if create:
        clear_run_dir(out_dir, overwrite)


def clear_run_dir(out_dir, overwrite):
    """Remove temporary files left by a killed run (safe: the folder is locked, no one else writes
    there) and, with overwrite, the previous run's files (RUN_FILES), so nothing old sits beside the new."""
    import shutil
    for pattern in ("*.tmp", "*.tmp.png") + (RUN_FILES if overwrite else ()):
        for path in glob.glob(os.path.join(glob.escape(out_dir), pattern)):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def open_run(config, kind, keys, master=True):
    """A stage script's run folder: claim it (claim_run_dir, on the master process) and, with --resume,
    load its checkpoint, refusing flags among keys that differ from the saved ones (they change the
    model or the data order) and a --max_steps below the saved step. config = the script's flags.
    -> the checkpoint to resume, or None; raises CheckpointError with one line."""
    out_dir, resume = config["out_dir"], config["resume"]
    if resume and config["overwrite"]:
        raise CheckpointError("--resume, --overwrite: expected one of them, got both")
    if master:
        claim_run_dir(out_dir, resume, config["overwrite"])
    if not resume:
        return None
    path = os.path.join(out_dir, "ckpt.pt")
    ckpt = load_checkpoint(path, kind=kind)
    saved = ckpt["config"]
    changed = [f"--{k} {saved.get(k)!r} -> {config.get(k)!r}" for k in keys if saved.get(k) != config.get(k)]
    if changed:
        raise CheckpointError(f"--resume: {path} was trained with other flags that change the model or the data "
                              "order: " + ", ".join(changed))
    if ckpt["step"] > config["max_steps"]:
        raise CheckpointError(f"--max_steps: expected at least the step {ckpt['step']} of {path} to resume, "
                              f"got {config['max_steps']}")
    return ckpt


def resumed_log(out_dir, step):
    """--resume at `step`: keep in log.jsonl only what the checkpoint has done (training rows before step,
    eval rows up to it), so rows written after the last save by a killed run are not doubled.
    -> whether the eval row of `step` is there: a kill between a save and its row loses the row, and
    the caller then evaluates again (the eval is deterministic, so it writes the row that was lost)."""
    path = os.path.join(out_dir, "log.jsonl")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        lines = f.read().splitlines()
    keep, have = [], False
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the last line torn by the kill: the step it was about is redone
                continue
            raise CheckpointError(f"{path}: line {i + 1}: expected one JSON row per line") from None
        if row["step"] < step or "eval" in row and row["step"] == step:
            keep.append(line)
            have |= "eval" in row and row["step"] == step
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.writelines(line + "\n" for line in keep)
    os.replace(tmp, path)
    return have


def save_video(path, frames, fps):
    """frames (uint8 (H, W, 3) each) -> path: an MP4 (H.264, by the ffmpeg inside imageio-ffmpeg: no system
    ffmpeg needed) or, for a .gif path, a looping GIF. Small frames are scaled up by a whole factor to >= 128 px."""
    import imageio.v2 as imageio  # loaded only by a run that writes a video
    scale = max(1, 128 // frames[0].shape[0])
    big = [np.kron(f, np.ones((scale, scale, 1), np.uint8)) for f in frames]  # (scale H, scale W, 3) each
    if path.endswith(".gif"):
        imageio.mimsave(path, big, duration=1 / fps, loop=0)
    else:
        imageio.mimsave(path, big, fps=fps)


def add_wandb_flags(p, what="log to", name="the --out_dir folder's name"):
    """--wandb, --wandb_project, --wandb_name: the same three flags in every script that can log to wandb."""
    p.add_argument("--wandb", action="store_true", help=f"also {what} Weights & Biases (pip install wandb; offline: "
                   "WANDB_MODE=offline)")
    p.add_argument("--wandb_project", default="lawm", help="wandb project")
    p.add_argument("--wandb_name", default="", help=f"wandb run name (default: {name})")


def start_wandb(config, job_type):
    """Open the wandb run of a stage script's run folder (wandb imported by the caller's --wandb check). Its id
    is kept in <out_dir>/wandb_id.txt (one of RUN_FILES, so --overwrite starts a new run): --resume continues it."""
    import wandb
    id_file = os.path.join(config["out_dir"], "wandb_id.txt")
    run_id = open(id_file).read().strip() if config["resume"] and os.path.isfile(id_file) else None
    wandb.init(project=config["wandb_project"], id=run_id, resume="allow", config=config, job_type=job_type,
               name=config["wandb_name"] or os.path.basename(os.path.abspath(config["out_dir"])))
    with open(id_file, "w") as f:
        f.write(wandb.run.id)


def wandb_evaluation(args, results, videos, out_dir):
    """evaluate.py's wandb run (wandb found by check_flags): success/overall and success/<family> as scalars, a
    table of the per-task rows and the videos ({task name: path})."""
    import wandb
    wandb.init(project=args.wandb_project, job_type="evaluate", config=vars(args), name=args.wandb_name or
               f"{os.path.basename(os.path.dirname(os.path.abspath(args.ckpt)))}/{os.path.basename(out_dir)}")
    cols = ["task", "family", "successes", "episodes", "success_rate", "ci95_low", "ci95_high"]
    table = wandb.Table(columns=cols, data=[[r[c] for c in cols[:5]] + r["ci95"] for r in results["tasks"]])
    wandb.log({"success/overall": results["overall"]["success_rate"], "tasks": table,
               **{f"success/{f}": s["success_rate"] for f, s in results["families"].items()},
               **{f"video/{name}": wandb.Video(path, caption=os.path.basename(path)) for name, path in videos.items()}})
    wandb.finish()


class RunLog:
    """A training stage's log on the master process (others log nothing): made once the inputs are checked,
    it claims --out_dir (make, lock, clear: claim_run_dir), keeps what a resumed checkpoint has done of
    log.jsonl (resumed_log; .logged: whether the resumed step's eval row is there), and opens --wandb's run.
    Each row goes to the console (above the progress bar), to log.jsonl and to wandb at its step; an eval
    row's metrics as eval/<name>, per-horizon lists as eval/<name>/1..n. Raises CheckpointError."""

    def __init__(self, config, kind, step0, master):
        self.master, self.wandb, self.logged = master, None, False
        if not master:
            return
        claim_run_dir(config["out_dir"], config["resume"], config["overwrite"], create=True)
        self.logged = config["resume"] and resumed_log(config["out_dir"], step0)
        self.file = open(os.path.join(config["out_dir"], "log.jsonl"), "a")
        if config["wandb"]:  # --resume continues the same wandb run
            import wandb
            start_wandb(config, kind)
            self.wandb = wandb

    def row(self, row):
        """A training row: {"step": ..., name: number, ...}."""
        if self.master:
            tqdm.write(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            self.file.write(json.dumps(row) + "\n"); self.file.flush()
            if self.wandb:
                self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def eval(self, step, metrics, image=None):
        """An eval row (write it after the checkpoint's save: it says that state is on disk); image: a picture."""
        if not self.master:
            return
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else "/".join(f"{x:.1f}" for x in v)  # per-horizon lists
        tqdm.write(f"eval {step}: " + " | ".join(f"{k} {fmt(v)}" for k, v in metrics.items()))
        self.file.write(json.dumps({"step": step, "eval": metrics}) + "\n"); self.file.flush()
        if self.wandb:
            flat = {f"eval/{k}/{i + 1}": x for k, v in metrics.items() if isinstance(v, list) for i, x in enumerate(v)}
            self.wandb.log({f"eval/{k}": v for k, v in metrics.items() if not isinstance(v, list)} | flat
                           | ({"rollout": self.wandb.Image(image)} if image else {}), step=step)

    def close(self):
        if self.wandb:
            self.wandb.finish()
