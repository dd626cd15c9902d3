"""
Throughput of each piece of lawm, as JSON: the numbers our speed goals are checked against
(never timed assertions in tests: shared machines are noisy).

    python bench.py                               # everything, CPU, writes bench.json
    python bench.py --only wm,policy --device cuda --out bench_gpu.json
    python bench.py --only toyworld,data --iters 3

Groups:
    toyworld  env steps/s with rendering at 64x64, one core
    data      pretraining / finetuning windows/s served from toy episode files, one worker
    wm        world-model forward+backward ms/step: 1m at 64x64 batch 16 x 10 steps; 12m at 128x128 batch 8
    policy    BAKU and DP forward+backward ms/step at batch 32, 64 and 128 px, small and default widths
    pretrain  one joint stage-1 step (small BAKU + 1m world model, 64 px, batch 32, chunk 10)
    stage1    the stage-1 step as pretrain.py ships it (frame-t context, --openloop_weight 1, --openloop_frames 2;
              a linear stand-in policy from the instruction, batch 8, 10-step windows) for the 2m and 25m world
              models at 64 and 128 px: the whole step (forward, backward, clip, AdamW) and each part of it
              (forward only: encoder, posterior rollout without the encoder, prior rollout, decoder for
              the reconstruction and for the 2 open-loop frames; backward; clip + optimizer), and the step's
              FLOPs (matmuls and convolutions, torch's FlopCounterMode), the TFLOP/s they run at and, with
              --peak_tflops, the model FLOPs utilisation; the 50m model on a GPU in bf16:
                  python bench.py --only stage1 --stage1_sizes 50m --device cuda --dtype bfloat16 --peak_tflops 989
    release   the authors' release world model (the dreamerv3/ folder of github.com/baheytharwat/lawm; --release_dir:
              a checkout of it; needs pyyaml) built as its lawm/algos/baku.py builds it, for its "1m" and "12m"
              profiles, and trained as there (10 frames at 128 px, reconstruction + KL, no open-loop term), with
              stage1's batch, stand-in policy, clip and AdamW: step time, parameters and FLOPs, what stage1's
              numbers compare with (not in the default; --release_sizes)
    pair      the steps the speed goals compare, interleaved in one process (each round times one step of every
              row in a shuffled order, after 4 warm-up steps each; median ms per row, and the ratios): ours as
              pretrain.py ships it at 128 px, batch 8, for each of --stage1_sizes, and plain (no frame-t context,
              no open-loop term: the release's work); the toy's step (2m at 32 px, batch 16); the inverse-dynamics
              arm's (idm.py at 64 px, batch 16, its forward model on 4 pairs per window and the IDM's latents of
              all 10 as the stand-in policy's targets). With --against DIR the same rows from DIR's rssm.py and
              idm.py (a checkout of an earlier commit, "base", each step as that commit shipped it), so a commit
              pairing is one command (git worktree add ../lawm_base <commit>); with --release_dir the release's
              --release_sizes beside ours, in order (1m beside 2m, 12m beside 25m: the nearest parameter counts):
                  python bench.py --only pair --against ../lawm_base --release_dir ../release --threads 1
    libero    LIBERO-Object env steps/s (all processes together) with 1 and 2 simulator processes, for
              the fast render path (agentview only, MSAA off: evaluation's default), the wrist camera added
              (agentview + wrist, MSAA off: what a policy with the wrist camera costs) and the official
              renderer's settings (agentview + wrist, MSAA on), and the wall time of a 10-task x 10-episode
              LIBERO-Object evaluation estimated from it; needs requirements-libero.txt (not in the default --only)
Each timing is the median over --iters runs after one warm-up.
"""
import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from run import setup_process

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--only", default="toyworld,data,wm,policy,pretrain,stage1", help="comma list of groups to run")
p.add_argument("--iters", type=int, default=10, help="timed repetitions per measurement (median reported)")
p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
p.add_argument("--device", default="cpu", help="cpu | cuda")
p.add_argument("--stage1_sizes", default="2m,25m", help="world-model presets the stage1 group times")
p.add_argument("--stage1_batch", type=int, default=8, help="stage1 group: windows per step")
p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
               help="stage1 group: bfloat16 autocasts the step, as pretrain.py does (CUDA only)")
p.add_argument("--peak_tflops", type=float, default=0.0, help="stage1 group: the device's peak TFLOP/s in --dtype "
               "(e.g. 989 for an H100 SXM in bf16): adds the model FLOPs utilisation (0 = not reported)")
p.add_argument("--release_dir", default="", help="release and pair groups: a checkout of github.com/baheytharwat/lawm")
p.add_argument("--release_sizes", default="1m,12m", help="the release's size profiles the release and pair groups time")
p.add_argument("--against", default="", help="pair group: a checkout of an earlier commit, timed beside this one")
p.add_argument("--out", default="bench.json", help="where the JSON goes (also printed)")
args = p.parse_args()
setup_process()  # as the stage scripts run: a warm allocator on CPU (run.setup_process)
if args.threads:
    torch.set_num_threads(args.threads)
device = torch.device(args.device)
groups = args.only.split(",")
if args.dtype == "bfloat16" and device.type != "cuda":
    sys.exit(f"error: --dtype bfloat16: expected --device cuda (autocast on CUDA only, as pretrain.py), got {args.device}")
if args.stage1_batch < 1 or args.peak_tflops < 0:
    sys.exit(f"error: --stage1_batch, --peak_tflops: expected >= 1 and >= 0, got {args.stage1_batch}, {args.peak_tflops}")

def commit(folder):
    """The checkout's commit, "-dirty" when it has uncommitted changes ("" outside git)."""
    r = subprocess.run(["git", "-C", folder, "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True,
                       text=True)
    return r.stdout.strip()


results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "commit": commit(os.path.dirname(os.path.abspath(__file__))), "argv": sys.argv[1:]}


def timed(fn):
    """Median seconds of fn() over --iters runs, after a warm-up run."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)  # time the work, not its launch
    fn()
    times = []
    for _ in range(args.iters):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if "toyworld" in groups:
    import toyworld
    env, rng = toyworld.ToyEnv("target", 64), np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (2000, 3))

    def run_env():
        env.reset(toyworld.TASKS[0], 0)
        for a in acts:
            if env.step(a)[2]:
                env.reset(toyworld.TASKS[0], 1)
    results["toyworld_steps_per_s"] = len(acts) / timed(run_env)

if "data" in groups:
    import subprocess
    import sys
    from data import DemoWindows, PretrainWindows
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert.py"), "toy",
                        "--out", d, "--source_episodes", "100", "--target_demos", "3", "--source_demos", "10"],
                       check=True, capture_output=True)
        for name, ds in (("pretrain_windows_per_s", PretrainWindows([f"{d}/source_video.hdf5"], chunk=10)),
                         ("demo_windows_per_s", DemoWindows([f"{d}/target_demos.hdf5"], chunk=10, state_keys=("state",)))):
            idx = np.random.default_rng(0).integers(0, len(ds), 2000)
            results[name] = len(idx) / timed(lambda: [ds[int(i)] for i in idx])

if "wm" in groups:
    from rssm import WorldModel, WorldModelConfig
    for size, img, batch in (("1m", 64, 16), ("12m", 128, 8)):
        wm = WorldModel(WorldModelConfig(size=size, image_size=img, action_dim=7), verbose=False).to(device)
        frames = torch.rand(batch, 11, 3, img, img, device=device)  # (B, T+1, 3, H, W), 10-step windows
        z = torch.randn(batch, 10, 7, device=device)

        def step():
            wm.zero_grad(set_to_none=True)
            wm.loss(frames, z).loss.backward()
        results[f"wm_{size}_{img}px_b{batch}_ms"] = 1000 * timed(step)

if "policy" in groups:
    from policies import POLICY_SIZES, make_policy
    for kind in ("baku", "diffusion"):
        for size in POLICY_SIZES:
            for img in (64, 128):
                pol = make_policy(dict(POLICY_SIZES[size][kind], kind=kind, chunk=10, out_dim=7, image_size=img,
                                       cameras=("agentview",), state_dim=0)).to(device)
                obs = {"agentview": torch.rand(32, 3, img, img, device=device), "lang": torch.randn(32, 384, device=device)}
                acts, mask = torch.rand(32, 10, 7, device=device) * 2 - 1, torch.ones(32, 10, dtype=torch.bool, device=device)

                def step():
                    pol.zero_grad(set_to_none=True)
                    pol.loss(obs, acts, mask).backward()
                results[f"policy_{kind}_{size}_{img}px_b32_ms"] = 1000 * timed(step)

if "pretrain" in groups:
    from policies import POLICY_SIZES, make_policy
    from rssm import WorldModel, WorldModelConfig
    pol = make_policy(dict(POLICY_SIZES["small"]["baku"], kind="baku", chunk=10, out_dim=7, image_size=64,
                           cameras=("agentview",), state_dim=0)).to(device)
    wm = WorldModel(WorldModelConfig(size="1m", image_size=64, action_dim=7), verbose=False).to(device)
    frames = torch.rand(32, 11, 3, 64, 64, device=device)  # (B, n+1, 3, H, W)
    lang = torch.randn(32, 384, device=device)

    def step():
        pol.zero_grad(set_to_none=True); wm.zero_grad(set_to_none=True)
        z = pol.latent({"agentview": frames[:, 0], "lang": lang})  # (B, n, 7)
        wm.loss(frames, z, openloop_weight=1.0, openloop_frames=2).loss.backward()  # pretrain.py's defaults
    results["pretrain_step_small_baku_1m_64px_b32_ms"] = 1000 * timed(step)

if "stage1" in groups:
    from torch.utils.flop_counter import FlopCounterMode

    from rssm import WorldModel, WorldModelConfig
    B = args.stage1_batch
    amp = torch.autocast("cuda", torch.bfloat16) if args.dtype == "bfloat16" else contextlib.nullcontext()
    for size in args.stage1_sizes.split(","):
        for img in (64, 128):
            torch.manual_seed(0)
            wm = WorldModel(WorldModelConfig(size=size, image_size=img, action_dim=7), verbose=False).to(device)
            pol = torch.nn.Linear(384, 10 * 7).to(device)  # stand-in policy: instruction -> 10 latents of 7
            params = list(wm.parameters()) + list(pol.parameters())
            opt = torch.optim.AdamW(params, lr=1e-4, fused=True)  # as pretrain.py
            frames = torch.rand(B, 11, 3, img, img, device=device)  # (B, n+1, 3, H, W)
            lang = torch.randn(B, 384, device=device)
            z = lambda: pol(lang).view(B, 10, 7)  # (B, n, A)
            key = f"stage1_{size}_{img}px_b{B}" + ("_bf16" if args.dtype == "bfloat16" else "")

            def forward():
                with amp:
                    return wm.loss(frames, z(), openloop_weight=1.0, openloop_frames=2).loss  # pretrain.py's defaults

            def step():
                opt.zero_grad(set_to_none=True)
                forward().backward()
                torch.nn.utils.clip_grad_norm_(params, 100.0)
                opt.step()
            results[f"{key}_step_ms"] = 1000 * timed(step)
            with FlopCounterMode(display=False) as flop_count:  # the matmuls and convolutions of one step
                forward().backward()
            gflop = flop_count.get_total_flops() / 1e9
            results[f"{key}_gflop"] = gflop
            results[f"{key}_tflops"] = gflop / results[f"{key}_step_ms"]  # GFLOP per ms = TFLOP/s
            if args.peak_tflops:
                results[f"{key}_mfu"] = results[f"{key}_tflops"] / args.peak_tflops
            with torch.no_grad():  # the parts, forward only, on the same inputs
                flat = frames.flatten(0, 1)  # (B*(n+1), 3, H, W)
                st = wm.observe(frames, z())
                start = dict(deter=st["deter"][:, 0], stoch=st["stoch"][:, 0])
                im = {k: v[:, :2] for k, v in wm.imagine(start, z()).items()}  # the 2 open-loop frames decoded
                enc = timed(lambda: wm.encoder.maps(flat))
                parts = {"encoder": enc, "posterior_rollout": timed(lambda: wm.observe(frames, z())) - enc,
                         "prior_rollout": timed(lambda: wm.imagine(start, z())),
                         "decoder_recon": timed(lambda: wm.decode(st, st["ctx"])),
                         "decoder_openloop": timed(lambda: wm.decode(im, st["ctx"])),
                         "forward": timed(forward)}
            opt.zero_grad(set_to_none=True)
            loss = forward()
            parts["backward"] = timed(lambda: loss.backward(retain_graph=True))
            parts["clip_and_optimizer"] = timed(lambda: (torch.nn.utils.clip_grad_norm_(params, 100.0), opt.step()))
            results.update({f"{key}_{k}_ms": 1000 * v for k, v in parts.items()})

def release_step(size):
    """The release's world model of --release_dir in its size profile `size`, built as its lawm/algos/baku.py
    builds it and trained as there (10 frames at 128 px, reconstruction + KL), with stage1's batch (8), stand-in
    policy, clip and AdamW -> (one training step, its parameter count)."""
    import io
    import types
    import warnings

    import yaml
    if not os.path.isfile(os.path.join(args.release_dir, "dreamerv3", "models.py")):
        sys.exit(f"error: --release_dir: expected a checkout of github.com/baheytharwat/lawm (with dreamerv3/models.py), "
                 f"got {args.release_dir!r}")
    sys.path.insert(0, args.release_dir)
    from dreamerv3.models import WorldModel as ReleaseWorldModel
    from dreamerv3.utils import Config, apply_size_override, setup_config_for_worldmodel
    warnings.filterwarnings("ignore", "To copy construct")  # its preprocess re-wraps every input (and detaches it)
    warnings.filterwarnings("ignore", category=FutureWarning)  # its torch.cuda.amp calls
    space = types.SimpleNamespace(spaces={"image": types.SimpleNamespace(shape=(128, 128, 3))})  # gym's Dict(Box)
    cfg = yaml.safe_load(open(os.path.join(args.release_dir, "dreamerv3", "worldmodel_config.yaml")))
    apply_size_override(cfg, f"size{size}")
    flat = setup_config_for_worldmodel(dict(cfg["defaults"], device=args.device), cfg.get(f"size{size}", {}))
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its shapes and sizes
        wm = ReleaseWorldModel(space, Config(**flat)).to(device)
    pol = torch.nn.Linear(384, 10 * 7).to(device)  # stage1's stand-in policy
    params = list(wm.parameters()) + list(pol.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    lang = torch.randn(8, 384, device=device)
    data = {"image": 255 * torch.rand(8, 10, 128, 128, 3, device=device),  # (B, T, H, W, 3), as baku.py passes it
            "is_first": torch.zeros(8, 10, device=device).index_fill_(1, torch.tensor([0], device=device), 1.0)}

    def step():
        opt.zero_grad(set_to_none=True)
        wm._train(dict(data, action=pol(lang).view(8, 10, 7))).backward()
        torch.nn.utils.clip_grad_norm_(params, 100.0)
        opt.step()
    return step, sum(p.numel() for p in wm.parameters())


if "release" in groups:
    from torch.utils.flop_counter import FlopCounterMode
    for size in args.release_sizes.split(","):
        step, results[f"release_{size}_params"] = release_step(size)
        results[f"release_{size}_128px_b8_step_ms"] = 1000 * timed(step)
        with FlopCounterMode(display=False) as flop_count:  # as stage1's: the matmuls and convolutions of a step
            step()
        results[f"release_{size}_128px_b8_gflop"] = flop_count.get_total_flops() / 1e9

if "pair" in groups:
    import importlib.util
    import inspect

    def checkout(folder, tag):
        """rssm.py and idm.py (None in commits before the inverse-dynamics arm) of a checkout as modules of
        their own (idm's `from rssm import LossOut` is shared)."""
        if not os.path.isfile(os.path.join(folder, "rssm.py")):
            sys.exit(f"error: --against: expected a checkout of lawm (with rssm.py), got {folder!r}")
        mods = []
        for name in ("rssm", "idm"):
            spec = importlib.util.spec_from_file_location(f"{name}_{tag}", os.path.join(folder, f"{name}.py"))
            mods.append(importlib.util.module_from_spec(spec) if os.path.isfile(spec.origin) else None)
            if mods[-1]:
                spec.loader.exec_module(mods[-1])
        return mods

    def trainer(modules, loss):
        """One step as pretrain.py takes it: zero_grad, loss().backward(), clip, fused AdamW."""
        params = [p for m in modules for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=1e-4, fused=True)

        def step():
            opt.zero_grad(set_to_none=True)
            loss().backward()
            torch.nn.utils.clip_grad_norm_(params, 100.0)
            opt.step()
        return step

    def wm_step(mod, size, img, B, shipped):
        """stage1's step: `shipped` = pretrain.py's defaults (frame-t context, open-loop term on 2 frames); else plain."""
        torch.manual_seed(0)
        wm = mod.WorldModel(mod.WorldModelConfig(size=size, image_size=img, action_dim=7, context=shipped),
                            verbose=False).to(device)
        pol = torch.nn.Linear(384, 10 * 7).to(device)  # stand-in policy: instruction -> 10 latents of 7
        frames, lang = torch.rand(B, 11, 3, img, img, device=device), torch.randn(B, 384, device=device)
        kw = dict(openloop_weight=1.0, openloop_frames=2) if shipped else {}
        if "openloop_frames" not in inspect.signature(mod.WorldModel.loss).parameters:  # before 2026-12-04: all n
            kw.pop("openloop_frames", None)
        return trainer([wm, pol], lambda: wm.loss(frames, pol(lang).view(B, 10, 7), **kw).loss)  # (B, n, A)

    def idm_step(mod):
        """The inverse-dynamics arm's step (pretrain.py --latents idm's defaults: 64 px, 4 pairs, latents of 3)."""
        torch.manual_seed(0)
        lam, pol = mod.LatentActionModel(mod.IDMConfig()).to(device), torch.nn.Linear(384, 10 * 3).to(device)
        frames, lang = torch.rand(16, 11, 3, 64, 64, device=device), torch.randn(16, 384, device=device)

        def loss():
            steps = torch.rand(16, 10, device=device).argsort(1)[:, :4]  # (B, P)
            with torch.no_grad():
                target = lam.latents(frames)  # (B, n, d)
            return lam.loss(frames, steps).loss + (pol(lang).view(16, 10, 3) - target).square().mean()
        return trainer([lam, pol], loss)

    rows, sizes = {}, args.stage1_sizes.split(",")
    tags = [("now", os.path.dirname(os.path.abspath(__file__)))] + ([("base", args.against)] if args.against else [])
    results["pair_base_commit"] = commit(args.against) if args.against else None
    for tag, folder in tags:
        rssm_mod, idm_mod = checkout(folder, tag)
        for size in sizes:
            rows[f"{tag}_{size}_128px_b8"] = wm_step(rssm_mod, size, 128, 8, True)
            if tag == "now":
                rows[f"now_{size}_128px_b8_plain"] = wm_step(rssm_mod, size, 128, 8, False)
        rows[f"{tag}_toy_2m_32px_b16"] = wm_step(rssm_mod, "2m", 32, 16, True)
        if idm_mod:
            rows[f"{tag}_idm_64px_b16"] = idm_step(idm_mod)
    if args.release_dir:
        for size in args.release_sizes.split(","):
            rows[f"release_{size}_128px_b8"], _ = release_step(size)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in rows.values():  # the allocator's heap grows for a few steps (first-touch page faults)
        for _ in range(4):
            step()
    times, order = {name: [] for name in rows}, list(rows)
    for r in range(args.iters):  # round r: every row once, in an order shuffled per round (a row's cache and
        random.Random(r).shuffle(order)  # allocator state then never depends on a fixed neighbour)
        for name in order:
            step = rows[name]
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times[name].append(1000 * (time.perf_counter() - t0))
    results.update({f"pair_{name}_ms": statistics.median(t) for name, t in times.items()})
    med = lambda name: results[f"pair_{name}_ms"]
    for name in rows:  # base / now: > 1 means this checkout is faster
        if name.startswith("base_"):
            results[f"pair_{name[5:]}_base_over_now"] = med(name) / med("now" + name[4:])
    if args.release_dir:
        for size, ours in zip(args.release_sizes.split(","), sizes):
            results[f"pair_release_{size}_over_now_{ours}"] = med(f"release_{size}_128px_b8") / med(f"now_{ours}_128px_b8")

if "libero" in groups:
    import libero_sim
    steps = 50 * args.iters
    for path, cams, msaa in (("fast", ("agentview",), False), ("wrist", ("agentview", "wrist"), False),
                             ("default", ("agentview", "wrist"), True)):
        for n in (1, 2):
            pool = libero_sim.EnvWorkers(n, cams, 128, msaa=msaa)
            t0 = time.perf_counter()
            for i in range(n):  # task 0, init states 0..n-1: env build + reset + settle
                pool.send(i, "reset", "libero_object", 0, i)
            for i in range(n):
                pool.recv(i)
            reset_s = time.perf_counter() - t0
            acts = np.random.default_rng(0).uniform(-0.2, 0.2, (steps, 7))  # small random motions, gripper +-0.2
            t0 = time.perf_counter()
            for a in acts:
                for i in range(n):
                    pool.send(i, "step", a)
                for i in range(n):
                    pool.recv(i)
            results[f"libero_{path}_{n}proc_steps_per_s"] = n * steps / (time.perf_counter() - t0)
            results[f"libero_{path}_{n}proc_first_reset_s"] = reset_s
            pool.close()
    # 100 episodes of at most 280 + 10 settle steps; a task switch rebuilds the env in every process
    worst = 100 * (libero_sim.SUITES["libero_object"] + libero_sim.SETTLE_STEPS)
    for path in ("fast", "wrist", "default"):
        results[f"libero_object_10x10_eval_{path}_2proc_min_upper_bound"] = (
            worst / results[f"libero_{path}_2proc_steps_per_s"] + 10 * results[f"libero_{path}_2proc_first_reset_s"]) / 60

text = json.dumps(results, indent=1)
print(text)
with open(args.out + ".tmp", "w") as f:
    f.write(text + "\n")
os.replace(args.out + ".tmp", args.out)
