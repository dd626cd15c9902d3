"""Tests of policies.py: shapes for every modality mix, stage-1 gradients, the action-layer reset, the
losses, the DDPM/DDIM scheduler against closed forms, EMA, a short overfitting run of each policy and
exact checkpoints. CPU, small widths, about a minute:

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_policies.py
"""
import json
import math

import numpy as np
import pytest
import torch

from policies import POLICY_SIZES, make_policy
from run import CKPT_VERSION, CheckpointError, load_checkpoint, policy_from_checkpoint, save_checkpoint

STATE_DIM = 4
COMBOS = [("agentview",), ("agentview", "wrist"), ("agentview", "state"), ("agentview", "wrist", "state")]


def small(kind, **kw):
    """A small policy that can use both cameras and proprio; 32x32 images unless told otherwise."""
    cfg = dict(POLICY_SIZES["small"][kind], kind=kind, chunk=10 if kind == "baku" else 16, out_dim=7,
               image_size=32, cameras=("agentview", "wrist"), state_dim=STATE_DIM)
    cfg.update(kw)
    return make_policy(cfg)


def make_obs(keys, B=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = {"lang": torch.nn.functional.normalize(torch.randn(B, 384, generator=g), dim=-1)}
    for k in keys:
        obs[k] = torch.randn(B, STATE_DIM, generator=g) if k == "state" else torch.rand(B, 3, size, size, generator=g)
    return obs


# ---------------------------------------------------------------------------------------------------
# shapes and inputs

@pytest.mark.parametrize("kind,chunk", [("baku", 10), ("baku", 7), ("diffusion", 16), ("diffusion", 10),
                                        ("diffusion", 7)])
def test_shapes_every_modality_combination(kind, chunk):
    torch.manual_seed(0)
    policy = small(kind, chunk=chunk)
    for keys in COMBOS:
        obs = make_obs(keys)
        assert policy.latent(obs).shape == (2, chunk, 7)
        a = policy.act(obs)
        assert a.shape == (2, chunk, 7) and a.abs().max() <= 1  # tanh (BAKU) / clipped x0 (DP)
        loss = policy.loss(obs, torch.rand(2, chunk, 7) * 2 - 1, torch.ones(2, chunk, dtype=torch.bool))
        assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_image_sizes_and_size_check(kind):
    for size in (32, 64, 128):
        policy = small(kind, image_size=size)
        assert policy.latent(make_obs(("agentview",), B=1, size=size)).shape[0] == 1
    with pytest.raises(ValueError, match="expected 32x32"):
        small(kind).latent(make_obs(("agentview",), size=64))


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_config_round_trip_through_json(kind):
    policy = small(kind)
    cfg = json.loads(json.dumps(policy.config_dict()))  # tuples come back as lists
    again = make_policy(cfg)
    assert again.config_dict() == policy.config_dict()
    again.load_state_dict(policy.state_dict())
    with pytest.raises(ValueError, match="kind"):
        make_policy(dict(cfg, kind="act"))


def test_default_parameter_counts():
    """BAKU's default count, written out layer by layer, and its gap to the release's 7,712,006 (CLIP
    512-d -> MiniLM 384-d, no positional table, no redundant input Linear / lm_head / 1x1 conv)."""
    conv = lambda i, o, k: i * o * k * k  # noqa: E731  (bias-free conv)
    lin = lambda i, o: i * o + o  # noqa: E731
    enc = (conv(3, 64, 7) + 128 + 2 * (2 * conv(64, 64, 3) + 2 * 128 + lin(256, 128))
           + conv(64, 128, 3) + conv(128, 128, 3) + 2 * 256 + conv(64, 128, 1) + 256 + lin(256, 256)
           + 2 * conv(128, 128, 3) + 2 * 256 + lin(256, 256) + lin(256, 256))
    block = 2 * 512 + lin(256, 768) + lin(256, 256) + lin(256, 1024) + lin(1024, 256)
    baku = enc + lin(384, 256) + 256 + 256 + 8 * block + 512 + 2 * lin(256, 256) + lin(256, 70)
    with torch.device("meta"):  # shapes only, no memory
        b = make_policy({"kind": "baku"})
        d = make_policy({"kind": "diffusion"})
    count = lambda p: sum(t.numel() for t in p.parameters() if t.requires_grad)  # noqa: E731
    assert count(b) == baku
    assert abs(baku - 7_712_006) / 7_712_006 < 0.03
    assert 0.9 < count(d) / 51.14e6 < 1.05  # release: 51.14M (U-Net 49.88M)
    assert sum(t.numel() for t in d.ema.parameters()) == count(d)  # the EMA mirrors every trained tensor


def resnet18_state_dict(seed=0):
    """A random state dict in torchvision's ResNet-18 layout (its names and shapes, BatchNorm buffers and the
    ImageNet head included), as `torch.save(torchvision.models.resnet18().state_dict(), path)` writes it."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g)}
    bn = lambda name, c: {f"{name}.{k}": v for k, v in dict(  # noqa: E731
        weight=torch.rand(c, generator=g), bias=torch.randn(c, generator=g), running_mean=torch.randn(c, generator=g),
        running_var=torch.rand(c, generator=g), num_batches_tracked=torch.tensor(100)).items()}
    sd |= bn("bn1", 64)
    for layer, (cin, c) in enumerate(((64, 64), (64, 128), (128, 256), (256, 512)), 1):
        for b in (0, 1):
            i = cin if b == 0 else c
            sd |= {f"layer{layer}.{b}.conv1.weight": torch.randn(c, i, 3, 3, generator=g),
                   f"layer{layer}.{b}.conv2.weight": torch.randn(c, c, 3, 3, generator=g)}
            sd |= bn(f"layer{layer}.{b}.bn1", c) | bn(f"layer{layer}.{b}.bn2", c)
        if layer > 1:
            sd |= {f"layer{layer}.0.downsample.0.weight": torch.randn(c, cin, 1, 1, generator=g)}
            sd |= bn(f"layer{layer}.0.downsample.1", c)
    return sd | {"fc.weight": torch.randn(1000, 512, generator=g), "fc.bias": torch.randn(1000, generator=g)}


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_resnet18_convolutions_load_into_the_trunk(kind, tmp_path):
    """--encoder_weights: the 10 convolutions of torchvision's stem, layer1 and layer2 land in the trunk (DP: in
    its EMA copy too), everything else keeps its fresh init; a trunk of other widths is refused in one line."""
    from policies import load_resnet18_convs
    sd = resnet18_state_dict()
    torch.save(sd, tmp_path / "resnet18.pth")
    torch.manual_seed(0)
    cfg = dict(kind=kind, base_channels=64, width=64, image_size=32)
    cfg |= dict(layers=1) if kind == "baku" else dict(down_dims=(32, 64), step_dim=32)
    fresh = make_policy(cfg).state_dict()
    torch.manual_seed(0)
    policy = make_policy(cfg)
    load_resnet18_convs(policy, str(tmp_path / "resnet18.pth"))
    loaded = policy.state_dict()
    pairs = {"stem.0": "conv1", "blocks.0.conv1": "layer1.0.conv1", "blocks.0.conv2": "layer1.0.conv2",
             "blocks.1.conv1": "layer1.1.conv1", "blocks.1.conv2": "layer1.1.conv2", "blocks.2.conv1": "layer2.0.conv1",
             "blocks.2.conv2": "layer2.0.conv2", "blocks.2.short.0": "layer2.0.downsample.0",
             "blocks.3.conv1": "layer2.1.conv1", "blocks.3.conv2": "layer2.1.conv2"}
    prefixes = ["obs_encoder.image."] if kind == "baku" else ["net.obs_encoder.image.", "ema.obs_encoder.image."]
    want = {f"{p}{ours}.weight": theirs for p in prefixes for ours, theirs in pairs.items()}
    for k in loaded:
        if k in want:
            assert torch.equal(loaded[k], sd[f"{want[k]}.weight"]), k
        else:  # GroupNorm, FiLM, keypoint projection, the rest of the policy: untouched
            assert torch.equal(loaded[k], fresh[k]), k
    assert set(want) <= set(loaded) and len(want) == (10 if kind == "baku" else 20)  # every named conv exists
    small_policy = small(kind)  # base_channels 16: not ResNet-18's widths
    with pytest.raises(ValueError, match=r"resnet18.pth: conv1.weight: expected \(16, 3, 7, 7\).*got \(64, 3, 7, 7\)"):
        load_resnet18_convs(small_policy, str(tmp_path / "resnet18.pth"))
    with pytest.raises(ValueError, match="unreadable file"):
        load_resnet18_convs(policy, str(tmp_path / "missing.pth"))


# ---------------------------------------------------------------------------------------------------
# stage 1 and the stage-2 reset

ABSENT = {"baku": {"cam_emb.wrist", "obs_encoder.state.weight", "obs_encoder.state.bias"},
          "diffusion": {"net.obs_proj.wrist.weight", "net.obs_proj.wrist.bias", "net.obs_proj.state.weight",
                        "net.obs_proj.state.bias", "net.obs_encoder.state.weight", "net.obs_encoder.state.bias"}}


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_latent_gradient_reaches_every_used_parameter(kind):
    torch.manual_seed(0)
    policy = small(kind)
    for keys, absent in ((("agentview",), ABSENT[kind]), (COMBOS[-1], set())):
        policy.zero_grad(set_to_none=True)
        policy.latent(make_obs(keys)).square().mean().backward()  # video: agentview + lang only
        for name, p in policy.named_parameters():
            if not p.requires_grad:
                assert name.startswith("ema.") and p.grad is None
            elif name in absent:
                assert p.grad is None, f"{name} belongs to an absent modality but got a gradient"
            else:
                assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient from latent()"


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_reset_action_layer_reinitialises_exactly_the_action_layers(kind):
    torch.manual_seed(0)
    policy = small(kind)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01)  # no tensor equals its fresh init (the reset zeroes biases); DP: EMA != weights
    if kind == "baku":
        layers, extra = ["head.4"], set()
    else:  # the two action-dim layers in the weights and in the EMA; the EMA counter restarts
        layers, extra = [f"{m}.unet.{l}" for m in ("net", "ema") for l in ("action_in", "action_out")], {"ema_steps"}
    expected = {f"{l}.{w}" for l in layers for w in ("weight", "bias")} | extra
    for dim in (7, 3):  # the same dim re-initialises too; a new dim changes the shapes
        policy.ema_step(); policy.ema_step()  # DP: advances the counter that the reset restarts
        before = {k: v.clone() for k, v in policy.state_dict().items()}
        policy.reset_action_layer(dim)
        after = policy.state_dict()
        assert before.keys() == after.keys()
        changed = {k for k in before if before[k].shape != after[k].shape or not torch.equal(before[k], after[k])}
        assert changed == expected
    head_ids = {id(t) for t in policy.action_layer_parameters()}
    if kind == "baku":
        assert after["head.4.weight"].shape == (10 * 3, policy.cfg.width)
        assert head_ids == {id(t) for t in policy.head[4].parameters()}
    else:
        assert after["net.unet.action_in.weight"].shape[1] == 3 and after["net.unet.action_out.weight"].shape[0] == 3
        for l in ("action_in", "action_out"):  # the EMA copy starts equal to the new layers, and is not trained
            assert torch.equal(after[f"net.unet.{l}.weight"], after[f"ema.unet.{l}.weight"])
        assert not any(p.requires_grad for p in policy.ema.parameters()) and int(policy.ema_steps) == 0
        assert len(head_ids) == 4
    assert policy.config_dict()["out_dim"] == 3
    obs = make_obs(COMBOS[-1])
    n = policy.cfg.chunk
    assert policy.latent(obs).shape == policy.act(obs).shape == (2, n, 3)
    policy.loss(obs, torch.zeros(2, n, 3), torch.ones(2, n, dtype=torch.bool)).backward()
    make_policy(policy.config_dict()).load_state_dict(policy.state_dict())  # the config describes the new shape


# ---------------------------------------------------------------------------------------------------
# losses, scheduler, EMA

def test_baku_loss_is_masked_mse_and_ignores_padding():
    torch.manual_seed(0)
    policy = small("baku").eval()  # eval: no dropout, so latent() and loss() see the same function
    obs = make_obs(COMBOS[-1], B=3)
    actions = torch.rand(3, 10, 7) * 2 - 1
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, 2:] = False
    mu = policy.latent(obs)
    valid = [(b, k) for b in range(3) for k in range(10) if mask[b, k]]
    hand = sum(((mu[b, k] - actions[b, k]) ** 2).sum() for b, k in valid) / (len(valid) * 7)
    loss = policy.loss(obs, actions, mask)
    torch.testing.assert_close(loss, hand)
    garbage = actions.clone()
    garbage[~mask] = 100.0
    assert torch.equal(policy.loss(obs, garbage, mask), loss)
    moved = actions.clone()
    moved[0, 0] += 0.5
    assert not torch.equal(policy.loss(obs, moved, mask), loss)


def test_schedule_matches_closed_forms():
    sched = small("diffusion").sched
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = np.array([min(1 - f((i + 1) / 100) / f(i / 100), 0.999) for i in range(100)])
    ab = np.cumprod(1 - betas)
    np.testing.assert_allclose(sched.betas.numpy(), betas, rtol=1e-12)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), ab, rtol=1e-5)
    assert betas[-1] == 0.999 and sched.timesteps == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 7, 3, generator=g) * 2 - 1, torch.randn(4, 7, 3, generator=g)
    t = torch.tensor([0, 17, 50, 99])
    a = torch.tensor(ab[t.numpy()], dtype=torch.float32).view(4, 1, 1)
    torch.testing.assert_close(sched.add_noise(x0, noise, t), a.sqrt() * x0 + (1 - a).sqrt() * noise)
    x_t, eps = torch.randn(4, 7, 3, generator=g), torch.randn(4, 7, 3, generator=g)
    for t, t_prev in ((50, 40), (90, 80), (0, None)):
        a_t, a_prev = ab[t], (ab[t_prev] if t_prev is not None else 1.0)
        x0_hat = ((x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
        torch.testing.assert_close(sched.step(x_t, eps, t), math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps)


def test_ddim_with_a_perfect_noise_predictor_returns_the_clean_chunk():
    policy = small("diffusion", chunk=7)
    clean = torch.rand(2, 7, 7) * 1.8 - 0.9
    ab = policy.sched.alphas_cumprod

    def perfect(x_t, t, cond):  # the noise that takes clean to x_t at step t
        a = ab[t].view(-1, 1, 1)
        return (x_t - a.sqrt() * clean) / (1 - a).sqrt()

    policy.ema.eps = perfect  # only the EMA network: act() must use it
    torch.testing.assert_close(policy.act(make_obs(("agentview",))), clean, rtol=0, atol=1e-5)


def test_ema_weights_differ_and_are_what_act_uses():
    torch.manual_seed(0)
    policy = small("diffusion")
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    obs = make_obs(COMBOS[-1])
    actions, mask = torch.rand(2, 16, 7) * 2 - 1, torch.ones(2, 16, dtype=torch.bool)
    for _ in range(5):
        opt.zero_grad()
        policy.loss(obs, actions, mask).backward()
        opt.step()
        policy.ema_step()
    assert int(policy.ema_steps) == 5
    assert any(not torch.equal(e, p) for e, p in zip(policy.ema.parameters(), policy.net.parameters()))
    # one more step follows the decay schedule min((1+s)/(10+s), 0.9999) with s = 5
    e0, p0 = next(policy.ema.parameters()).clone(), next(policy.net.parameters()).clone()
    policy.ema_step()
    torch.testing.assert_close(next(policy.ema.parameters()), 6 / 15 * e0 + 9 / 15 * p0)

    def act(seed):
        torch.manual_seed(seed)
        return policy.act(obs)

    a = act(1)
    with torch.no_grad():
        for p in policy.net.parameters():
            p.add_(torch.randn_like(p))  # wreck the raw weights: act() must not notice
    assert torch.equal(act(1), a)
    with torch.no_grad():
        for p in policy.ema.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert not torch.equal(act(1), a)


# ---------------------------------------------------------------------------------------------------
# learning: 8 fixed windows, 300 steps

def demo_windows(chunk):
    """8 windows {obs, actions, mask}: toy-world expert demos when toyworld.py exists, else synthetic
    32x32 images of a square whose position and colour determine the target chunk."""
    g = torch.Generator().manual_seed(0)
    try:
        import toyworld
    except ImportError:
        toyworld = None
    if toyworld is not None:
        frames, states, acts, masks, langs = [], [], [], [], []
        table = {task: torch.nn.functional.normalize(torch.randn(384, generator=g), dim=0) for task in toyworld.TASKS}
        for i in range(8):
            ep = toyworld.rollout_expert(toyworld.TASKS[i % len(toyworld.TASKS)], seed=i, image_size=64)
            T = len(ep["actions"])
            t = (i * 5) % T
            a = torch.as_tensor(ep["actions"][t:t + chunk])  # (<= n, 3)
            masks.append(torch.arange(chunk) < len(a))
            acts.append(torch.cat([a, a[-1:].expand(chunk - len(a), -1)]))  # pad by repeating the last action
            frames.append(torch.as_tensor(ep["frames"][t]).permute(2, 0, 1).float() / 255)  # (3, H, W)
            states.append(torch.as_tensor(ep["states"][t]))
            langs.append(table[ep["task"]])
        obs = {"agentview": torch.stack(frames), "state": torch.stack(states), "lang": torch.stack(langs)}
        return obs, torch.stack(acts), torch.stack(masks), 64, toyworld.STATE_DIM
    pos = torch.randint(0, 26, (8, 2), generator=g)
    colour = torch.rand(8, 3, generator=g)
    img = torch.zeros(8, 3, 32, 32)
    for i in range(8):
        img[i, :, pos[i, 1]:pos[i, 1] + 6, pos[i, 0]:pos[i, 0] + 6] = colour[i, :, None, None]
    k = torch.arange(chunk) / chunk  # (n,)
    c = pos / 12.5 - 1  # (8, 2) in [-1, 1]
    acts = torch.stack([c[:, :1] * (1 - k), c[:, 1:] * (1 - k), (colour[:, :1] * 2 - 1) * k], dim=-1)  # (8, n, 3)
    mask = torch.ones(8, chunk, dtype=torch.bool)
    mask[7, chunk - 3:] = False
    acts[7, chunk - 3:] = 0.0
    lang = torch.nn.functional.normalize(torch.randn(1, 384, generator=g), dim=-1).expand(8, -1)
    return {"agentview": img, "lang": lang}, acts, mask, 32, 0


def train(policy, obs, actions, mask, steps=300, lr=1e-3):
    opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        policy.loss(obs, actions, mask).backward()
        opt.step()
        policy.ema_step()


def sampled_error(policy, obs, actions, mask):
    torch.manual_seed(123)
    return float(((policy.act(obs) - actions) ** 2)[mask].mean())


def test_baku_overfits_eight_windows():
    torch.manual_seed(0)
    obs, actions, mask, size, state_dim = demo_windows(10)
    policy = small("baku", out_dim=3, image_size=size, cameras=("agentview",), state_dim=state_dim)
    start = sampled_error(policy, obs, actions, mask)
    train(policy, obs, actions, mask)
    end = sampled_error(policy, obs, actions, mask)
    assert end < 0.1 * start, (start, end)


def test_diffusion_overfits_eight_windows():
    torch.manual_seed(0)
    obs, actions, mask, size, state_dim = demo_windows(7)
    policy = small("diffusion", chunk=7, out_dim=3, image_size=size, cameras=("agentview",), state_dim=state_dim)

    def denoising_loss():  # the same noise and steps every time; 4 draws of the 8 windows
        torch.manual_seed(7)
        with torch.no_grad():
            return sum(float(policy.loss(obs, actions, mask)) for _ in range(4)) / 4

    start, start_err = denoising_loss(), sampled_error(policy, obs, actions, mask)
    train(policy, obs, actions, mask)
    end, end_err = denoising_loss(), sampled_error(policy, obs, actions, mask)
    assert end <= 0.5 * start, (start, end)
    # better than the best constant chunk (the mean action: ~0.59 here, zeros ~0.66): the samples follow the windows
    base = float(((actions - actions[mask].mean(0)) ** 2)[mask].mean())
    assert end_err < 0.6 * base and end_err < start_err, (start_err, end_err, base)


# ---------------------------------------------------------------------------------------------------
# checkpoints

def full_ckpt(policy, kind="finetune", opt=None):
    ckpt = {"format_version": CKPT_VERSION, "kind": kind, "step": 3, "config": {"lr": 1e-3, "cameras": "agentview"},
            "policy": policy.state_dict(), "policy_config": policy.config_dict(),
            "optimizer": opt.state_dict() if opt else {}, "action_stats": {"min": [-1.0] * 3, "max": [1.0] * 3},
            "obs_spec": {"cameras": ["agentview"], "state_keys": [], "image_size": 32},
            "lang": {"do it": [0.0] * 384}, "rng": {"torch": torch.get_rng_state()}}
    if kind == "pretrain":
        ckpt.update(world_model={"w": torch.ones(2)}, wm_config={"size": "1m"}, action_stats=None)
    return ckpt


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_checkpoint_round_trip_is_exact(kind, tmp_path):
    torch.manual_seed(0)
    policy = small(kind)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    obs = make_obs(COMBOS[-1])
    for _ in range(2):  # trained weights and, for DP, an EMA that differs from them
        opt.zero_grad()
        n = policy.cfg.chunk
        policy.loss(obs, torch.rand(2, n, 7), torch.ones(2, n, dtype=torch.bool)).backward()
        opt.step()
        policy.ema_step()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, full_ckpt(policy, opt=opt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # the temporary file was renamed
    ckpt = load_checkpoint(path, kind="finetune")
    again = policy_from_checkpoint(ckpt)
    assert again.config_dict() == policy.config_dict()
    a, b = policy.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)
    torch.manual_seed(5); x = policy.act(obs)
    torch.manual_seed(5); y = again.act(obs)
    assert torch.equal(x, y)
    save_checkpoint(path, full_ckpt(policy, kind="pretrain"))
    assert load_checkpoint(path)["kind"] == "pretrain"


def test_checkpoint_errors_are_one_line_naming_the_file(tmp_path):
    policy = small("baku")
    good = full_ckpt(policy)
    cases = {"missing.pt": (None, "no such file"), "garbage.pt": (b"definitely not a checkpoint", "not a readable"),
             "version.pt": (dict(good, format_version=2), "format_version 2, expected 1"),
             "kind.pt": (good, "kind 'finetune', expected 'pretrain'"),
             "keys.pt": ({k: v for k, v in good.items() if k != "policy"}, "missing keys ['policy']"),
             "shape.pt": (dict(good, policy={k: v[:1] if v.dim() else v for k, v in good["policy"].items()}),
                          "shape (1,"),
             "config.pt": (dict(good, policy_config=dict(good["policy_config"], heads=3)),
                           "policy_config does not build")}
    for name, (content, what) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            torch.save(content, path)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path, kind="pretrain" if name == "kind.pt" else None)
        msg = str(err.value)
        assert str(path) in msg and what in msg and "\n" not in msg, msg
