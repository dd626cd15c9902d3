"""Tests of the world model (rssm.py). Run: OMP_NUM_THREADS=1 python -m pytest tests/test_rssm.py -q

All on CPU (the bf16 autocast test also on CUDA where there is one). The training test uses toy-world windows
when toyworld.py is importable, else synthetic moving squares.
"""
import itertools

import pytest
import torch
from torch.distributions import Independent, OneHotCategorical, kl_divergence

import rssm  # the repository root is on sys.path through tests/conftest.py
from rssm import PRESETS, WorldModel, WorldModelConfig


def make(size="1m", image_size=16, action_dim=3, seed=0, trained_decoder=True):
    torch.manual_seed(seed)
    wm = WorldModel(WorldModelConfig(size=size, image_size=image_size, action_dim=action_dim), verbose=False)
    if trained_decoder:  # the context decoder's last layer starts at zero, which passes no gradient
        torch.nn.init.normal_(wm.decoder.convs[-1].weight, std=0.02)  # upstream: as after one step
    return wm


def batch(B=2, T=4, H=16, A=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T + 1, 3, H, H, generator=g), torch.rand(B, T, A, generator=g) * 2 - 1


def test_observe_equals_loop_of_single_steps():
    wm = make()
    frames, actions = batch()
    B, T1 = frames.shape[:2]
    torch.manual_seed(1)
    st = wm.observe(frames, actions)
    # the time-independent projections run once per window, as in observe (a matmul over B*(T+1)
    # rows may round differently from one over B rows, so per-frame calls are checked to tolerance)
    embed = wm.encoder(frames.flatten(0, 1)).unflatten(0, (B, T1))  # (B, T+1, E)
    e_emb = wm.post_e(embed)  # (B, T+1, I)
    torch.testing.assert_close(e_emb[:, 1], wm.post_e(wm.encoder(frames[:, 1])))
    torch.manual_seed(1)
    h = wm.initial(embed[:, 0])
    for k in range(T1):
        if k > 0:
            h = wm.transition(h, z, actions[:, k - 1])
        post = wm.posterior(h, e_emb[:, k])
        z = rssm.sample(post)
        prior = wm.logprobs(wm.prior_net(h))
        for name, ref in (("deter", h), ("stoch", z), ("post", post)):
            torch.testing.assert_close(st[name][:, k], ref, atol=0, rtol=0, msg=f"{name} at step {k}")
        torch.testing.assert_close(st["prior"][:, k], prior)  # batched over steps in observe


def test_action_k_drives_frame_k_to_k_plus_1():
    wm = make()
    frames, actions = batch(T=4)
    torch.manual_seed(3)
    a = wm.observe(frames, actions)
    changed = actions.clone()
    changed[:, 2] += 0.5  # z_2 drives frame 2 -> 3
    torch.manual_seed(3)
    b = wm.observe(frames, changed)
    assert torch.equal(a["deter"][:, :3], b["deter"][:, :3])  # frames 0..2 untouched
    assert not torch.allclose(a["deter"][:, 3], b["deter"][:, 3])  # frame 3 moves


def dist(logp):
    """(..., S, K) log-probs -> torch's distribution of S independent categoricals per step."""
    return Independent(OneHotCategorical(logits=logp), 1)


def reference_kl(post, prior, free):
    dyn = kl_divergence(dist(post.detach()), dist(prior))
    rep = kl_divergence(dist(post), dist(prior.detach()))
    free = torch.tensor(free)
    return torch.maximum(dyn, free), torch.maximum(rep, free)


def test_kl_balance_matches_torch_distributions_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    post_raw = torch.randn(64, 4, 8, generator=g).requires_grad_()  # leaves: raw logits, 64 steps, S=4, K=8
    prior_raw = torch.randn(64, 4, 8, generator=g).requires_grad_()
    post, prior = post_raw.log_softmax(-1), prior_raw.log_softmax(-1)
    kls = kl_divergence(dist(post), dist(prior))
    free = kls.sort().values[31:33].mean().item()  # half the steps clamped, none exactly at the floor
    dyn, rep, kl = rssm.kl_balance(post, prior, free)
    ref_dyn, ref_rep = reference_kl(post, prior, free)
    torch.testing.assert_close(dyn, ref_dyn)
    torch.testing.assert_close(rep, ref_rep)
    torch.testing.assert_close(kl, kls.detach())  # the raw KL, before free bits: below the floor where clamped
    assert not kl.requires_grad and (kl < free).any() and (kl > free).any()
    w = torch.randn(64, generator=g)  # a random weighting so every step's gradient is checked
    for ours, ref, moves, fixed in ((dyn, ref_dyn, prior_raw, post_raw), (rep, ref_rep, post_raw, prior_raw)):
        g_ours = torch.autograd.grad((w * ours).sum(), (moves, fixed), retain_graph=True, allow_unused=True)
        g_ref = torch.autograd.grad((w * ref).sum(), (moves,), retain_graph=True)[0]
        torch.testing.assert_close(g_ours[0], g_ref)
        assert g_ours[0].abs().sum() > 0
        assert g_ours[1] is None or g_ours[1].abs().sum() == 0  # the stop-gradient side never moves


def test_loss_equals_reference_built_from_observe():
    wm = make()
    frames, actions = batch()
    cfg = wm.cfg
    torch.manual_seed(5)
    out = wm.loss(frames, actions)
    torch.manual_seed(5)
    st = wm.observe(frames, actions)
    recon = (wm.decode(st, st["ctx"]) - frames).square().sum((2, 3, 4))
    dyn, rep = reference_kl(st["post"], st["prior"], cfg.free_nats)
    total = (recon + cfg.dyn_scale * dyn + cfg.rep_scale * rep).mean()
    torch.testing.assert_close(out.loss, total)
    torch.testing.assert_close(out.metrics["recon"], recon.mean())
    torch.testing.assert_close(out.metrics["kl_dyn"], cfg.dyn_scale * dyn.mean())
    torch.testing.assert_close(out.metrics["kl_rep"], cfg.rep_scale * rep.mean())
    kl = kl_divergence(dist(st["post"]), dist(st["prior"]))  # (B, T+1) raw, unclamped
    torch.testing.assert_close(out.metrics["kl"], kl.mean())
    torch.testing.assert_close(out.metrics["kl_floor"], (kl[:, 1:] <= cfg.free_nats).float().mean())
    for name in ("prior", "post"):
        torch.testing.assert_close(out.metrics[f"{name}_entropy"], dist(st[name]).entropy().mean())
    assert set(out.metrics) == {"recon", "kl_dyn", "kl_rep", "kl", "prior_entropy", "post_entropy", "kl_floor"}
    assert all(not v.requires_grad for v in out.metrics.values())


def test_every_latent_action_gets_gradient():
    wm = make()
    frames, actions = batch(B=3, T=5)
    actions.requires_grad_()
    wm.loss(frames, actions).loss.backward()
    per_action = actions.grad.abs().sum(-1)  # (B, T)
    assert (per_action > 0).all(), per_action


def test_unimix_floor_and_exact_one_hot_samples():
    wm = make()
    K = wm.K
    logits = torch.randn(5, wm.S * K) * 1e4  # extreme logits: softmax is one-hot before the mix
    probs = wm.logprobs(logits).exp()
    assert probs.min() >= wm.cfg.unimix / K * (1 - 1e-5)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, wm.S))
    frames, actions = batch()
    st = wm.observe(frames, actions)
    assert st["post"].exp().min() >= wm.cfg.unimix / K * (1 - 1e-5)
    z = st["stoch"]
    assert ((z == 0) | (z == 1)).all() and (z.sum(-1) == 1).all()
    assert z.requires_grad  # straight-through: gradient flows through the one-hots


def toy_windows(T, H):
    """4 windows (frames (4, T+1, 3, H, H) in [0,1], actions (4, T, 3)) from the toy world."""
    import toyworld

    frames, actions = [], []
    for i in range(4):
        ep = toyworld.rollout_expert(toyworld.TASKS[i % len(toyworld.TASKS)], seed=i, image_size=H)
        assert len(ep["actions"]) >= T + 1, "toy episode shorter than the window"
        frames.append(torch.from_numpy(ep["frames"][: T + 1]).permute(0, 3, 1, 2).float() / 255)
        actions.append(torch.from_numpy(ep["actions"][:T]))
    return torch.stack(frames), torch.stack(actions)


def square_windows(T, H):
    """4 windows of a coloured 12x12 square on grey, moved 4 px per unit action (dx, dy, unused)."""
    g = torch.Generator().manual_seed(0)
    actions = torch.rand(4, T, 3, generator=g) * 2 - 1
    frames = torch.full((4, T + 1, 3, H, H), 0.4)
    for b in range(4):
        pos = torch.randint(12, H - 24, (2,), generator=g).float()
        colour = torch.rand(3, generator=g)
        for t in range(T + 1):
            x, y = pos.round().long().tolist()
            frames[b, t, :, y : y + 12, x : x + 12] = colour[:, None, None]
            if t < T:
                pos = (pos + 4 * actions[b, t, :2]).clamp(0, H - 12)
    return frames, actions


def test_training_cuts_reconstruction_by_half():
    T, H = 6, 64
    try:
        frames, actions = toy_windows(T, H)
    except ImportError:
        frames, actions = square_windows(T, H)
    wm = make(image_size=H)
    opt = torch.optim.Adam(wm.parameters(), lr=1e-3)
    torch.manual_seed(0)
    first = wm.loss(frames, actions).metrics["recon"]
    for _ in range(200):
        out = wm.loss(frames, actions)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    torch.manual_seed(0)
    last = wm.loss(frames, actions).metrics["recon"]
    assert last <= 0.5 * first, (first.item(), last.item())


def test_deterministic_under_fixed_seed():
    frames, actions = batch()
    outs = []
    for _ in range(2):
        wm = make(seed=7)
        torch.manual_seed(8)
        out = wm.loss(frames, actions, openloop_weight=0.5)
        out.loss.backward()
        outs.append((out.loss, [p.grad for p in wm.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(outs[0][1], outs[1][1]))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_bf16_autocast(device):
    """--dtype bfloat16 autocasts on CUDA only; the CPU run checks the same casts (the loss and the categoricals in
    float32, finite gradients into every latent action) on every machine."""
    wm = make(image_size=64).to(device)
    frames, actions = (x.to(device) for x in batch(H=64))
    actions.requires_grad_()
    with torch.autocast(device, dtype=torch.bfloat16):
        out = wm.loss(frames, actions, openloop_weight=1.0)
        assert wm.decoder.inp(torch.zeros(1, wm.decoder.inp.in_features, device=device)).dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(actions.grad).all() and (actions.grad.abs().sum(-1) > 0).all()
    with torch.autocast(device, dtype=torch.bfloat16):
        video = wm.openloop(frames[:, :2], actions)
    assert video.shape == (2, 3, 3, 64, 64) and video.dtype == torch.float32 and torch.isfinite(video).all()


def test_preset_parameter_counts_match_names():
    assert {"100m", "200m", "400m"} <= set(PRESETS)  # past 50m: the paper's world-model scaling (its Fig. 6)
    for name in PRESETS:
        with torch.device("meta"):  # no memory for the big presets
            wm = WorldModel(WorldModelConfig(size=name, image_size=128, action_dim=7), verbose=False)
        n = sum(p.numel() for p in wm.parameters())
        target = float(name[:-1]) * 1e6
        low = 0.65 if name == "2m" else 0.7  # 2m, not DreamerV3's: 1m with twice the conv widths, 1.33M
        assert low * target <= n <= 1.3 * target, f"{name}: {n / 1e6:.1f}M"


@pytest.mark.parametrize("H", [16, 32, 64, 128])
def test_encoder_decoder_shapes(H):
    wm = make(image_size=H)
    D, G, S, K, depth, hidden = PRESETS["1m"]
    x = torch.rand(2, 3, H, H)
    embed = wm.encoder(x)
    assert embed.shape == (2, 16 * rssm.conv_widths(depth, H)[-1]) == (2, wm.encoder.out_dim)
    assert wm.decoder(torch.zeros(2, D + S * K), (x, wm.encoder.maps(x))).shape == (2, 3, H, H)
    plain = WorldModel(WorldModelConfig(size="1m", image_size=H, action_dim=3, context=False), verbose=False)
    assert plain.decoder(torch.zeros(2, D + S * K)).shape == (2, 3, H, H)


def test_conv_widths_by_frame_size():
    """Up to 64 px DreamerV3's widths (the toy's and the LIBERO study's 32 px models); a 128 px model is the 64 px
    model's stages behind one of half the width: the stages coarser than 32 px have the 64 px model's weights'
    shapes, in the encoder and in the decoder (whose stage into 64 px narrows to half, as its encoder map)."""
    assert rssm.conv_widths(4, 16) == [4, 8] and rssm.conv_widths(4, 32) == [4, 8, 16]
    assert rssm.conv_widths(4, 64) == [4, 8, 16, 32] and rssm.conv_widths(24, 64) == [24, 48, 96, 192]
    assert rssm.conv_widths(24, 128) == [12, 24, 48, 96, 192] and rssm.conv_widths(32, 256) == [8, 16, 32, 64, 128, 256]
    shapes = lambda mods: [tuple(p.shape) for m in mods for p in m.parameters()]
    for context in (True, False):
        small, big = [WorldModel(WorldModelConfig(size="25m", image_size=H, action_dim=7, context=context),
                                 verbose=False) for H in (64, 128)]
        assert shapes(big.encoder.stages[2:]) == shapes(small.encoder.stages[1:])  # the stage after the new one
        assert big.encoder.stages[1][0].weight.shape == (24, 12, 4, 4)  # reads 12 channels at 64 px, not 3 pixels
        assert shapes(big.decoder.convs[:3]) == shapes(small.decoder.convs[:3])
        assert big.decoder.convs[3].weight.shape[1] == 12 and big.decoder.convs[4].weight.shape[:2] == (
            (12 + 12, 5) if context else (12, 3))
        assert shapes([big.gru, big.prior_net, big.post_e, big.decoder.inp]) == shapes(
            [small.gru, small.prior_net, small.post_e, small.decoder.inp])  # the same embedding and state


def test_bad_image_size_is_refused():
    with pytest.raises(AssertionError, match="power of two"):
        make(image_size=48)


def test_openloop_shapes_range_metric_and_action_gradient():
    wm = make()
    frames, actions = batch(B=2, T=5)
    video = wm.openloop(frames[:, :2], actions)  # context frames 0, 1 -> imagined frames 2..5
    assert video.shape == (2, 4, 3, 16, 16) and video.min() >= 0 and video.max() <= 1
    assert wm.openloop(frames[:, :1], actions).shape == (2, 5, 3, 16, 16)
    actions.requires_grad_()
    torch.manual_seed(2)
    with_ol = wm.loss(frames, actions, openloop_weight=1.0)
    torch.manual_seed(2)
    without = wm.loss(frames, actions)  # same draws for the posterior rollout
    assert "openloop" in with_ol.metrics and "openloop" not in without.metrics
    torch.manual_seed(2)  # reference: the prior alone from the first posterior state, scored on 1..T
    st = wm.observe(frames, actions)
    im = wm.imagine(dict(deter=st["deter"][:, 0], stoch=st["stoch"][:, 0]), actions)
    imagined = wm.decode(im, st["ctx"])
    torch.manual_seed(2)  # the lockstep rollout loss() uses: the same chains, the same draws
    both = wm.observe(frames, actions, imagine=True)
    for key in ("deter", "stoch"):
        torch.testing.assert_close(both[key], st[key])
        torch.testing.assert_close(both["im"][key], im[key])
    ref = (imagined - frames[:, 1:]).square().sum((2, 3, 4)).mean()
    torch.testing.assert_close(with_ol.metrics["openloop"], ref.detach())
    torch.testing.assert_close(with_ol.loss - without.loss, with_ol.metrics["openloop"])
    grad = torch.autograd.grad(with_ol.loss - without.loss, actions)[0]  # the open-loop term alone
    assert (grad.abs().sum(-1) > 0).all(), grad


def test_openloop_frames_scores_a_random_subset_of_the_imagined_frames():
    """openloop_frames=L: each window's open-loop error is the mean over L of its T imagined frames, a
    different L from draw to draw (so the mean over draws is the full term), with gradient into the latents;
    L >= T is the full term."""
    wm = make()
    frames, actions = batch(B=2, T=4)
    actions.requires_grad_()
    torch.manual_seed(3)
    full = wm.loss(frames, actions, openloop_weight=1.0)
    torch.manual_seed(3)
    assert torch.equal(wm.loss(frames, actions, 1.0, openloop_frames=4).loss, full.loss)
    subsets, seen = list(itertools.combinations(range(4), 2)), set()
    for seed in range(8):
        torch.manual_seed(seed)  # reference: every imagined frame's error under the same draws
        st = wm.observe(frames, actions, imagine=True)
        err = (wm.decode(st["im"], st["ctx"]) - frames[:, 1:]).square().sum((2, 3, 4)).detach()  # (B, T)
        torch.manual_seed(seed)
        out = wm.loss(frames, actions, 1.0, openloop_frames=2)
        # the metric is the mean of one 2-subset per window: find which
        match = [(a, b) for a in subsets for b in subsets
                 if abs(float(err[0, list(a)].mean() + err[1, list(b)].mean()) / 2 - float(out.metrics["openloop"]))
                 <= 1e-4 * float(err.mean())]
        assert len(match) >= 1, (out.metrics["openloop"], err)
        seen.update(match)
        torch.manual_seed(seed)
        no_ol = wm.loss(frames, actions)
        grad = torch.autograd.grad(out.loss - no_ol.loss, actions)[0]  # the subsampled open-loop term alone
        assert grad.abs().sum() > 0
    assert len(seen) > 2, seen  # not always the same frames


def test_context_decoder_starts_as_copy_and_reads_frame_t():
    """With context the untrained decoder predicts frame t exactly (its last layer starts at zero), and the
    initial state depends on frame t; without context neither holds (DreamerV3's model)."""
    wm = make(trained_decoder=False)
    frames, actions = batch()
    st = wm.observe(frames, actions)
    out = wm.decode(st, st["ctx"])
    torch.testing.assert_close(out, frames[:, :1].expand_as(out), atol=1e-5, rtol=0)  # bilinear identity warp
    other = frames.clone()
    other[:, 0] = 1 - other[:, 0]
    assert not torch.equal(wm.initial(wm.encoder(frames[:, 0])), wm.initial(wm.encoder(other[:, 0])))
    plain = WorldModel(WorldModelConfig(size="1m", image_size=16, action_dim=3, context=False), verbose=False)
    assert torch.equal(plain.initial(plain.encoder(frames[:, 0])), plain.initial(plain.encoder(other[:, 0])))
    assert torch.isfinite(plain.loss(frames, actions, openloop_weight=1.0).loss)


def test_action_magnitude_reaches_the_dynamics():
    """A latent and the same latent scaled by 0.3 must lead to different next states: the action joins the
    stochastic state before the norm, so the norm cannot erase its magnitude."""
    wm = make()
    h, z = torch.randn(2, PRESETS["1m"][0]), rssm.sample(torch.randn(2, PRESETS["1m"][2], PRESETS["1m"][3]).log_softmax(-1))
    a = torch.tensor([[0.9, -0.6, 0.3], [0.2, 0.8, -0.5]])
    assert (wm.transition(h, z, a) - wm.transition(h, z, 0.3 * a)).abs().max() > 1e-3


def reference_decoder(dec, feat, frame, maps, R):
    """The context decoder written the plain way: frame t's maps concatenated to each of an episode's R
    states before every transposed conv, then GroupNorm, FiLM and the warp of a copy of frame t per state.
    feat (M*R, F), frame (M, 3, H, W), maps frame t's encoder maps (M, C, h, w) -> (M*R, 3, H, W)."""
    import torch.nn.functional as F
    rep = lambda x: x.repeat_interleave(R, 0)  # (M, ...) -> (M*R, ...)
    x = dec.inp(feat).unflatten(-1, (dec.c0, 4, 4))  # (N, C, 4, 4)
    film = dec.film_in(feat)  # (N, I)
    for i, conv in enumerate(dec.convs):
        x = conv(torch.cat([x, rep(maps[-1 - i])], 1))  # (N, 2C, h, w) -> (N, C', 2h, 2w)
        if i < len(dec.norms):
            scale, shift = dec.film[i](film)[:, :, None, None].chunk(2, 1)  # (N, C', 1, 1)
            x = F.silu(dec.norms[i](x) * (1 + scale) + shift)
    frames = rep(frame)  # (N, 3, H, W)
    grid = F.affine_grid(torch.eye(2, 3).expand(len(x), 2, 3), frames.shape, align_corners=False)
    warped = F.grid_sample(frames, grid + x[:, :2].permute(0, 2, 3, 1), padding_mode="border", align_corners=False)
    return warped + x[:, 2:]


@pytest.mark.parametrize("H", [16, 64, 128])
def test_context_decoder_equals_concatenated_skips(H):
    """The decoder runs each skip's half of a conv once per episode and broadcasts it; that must equal the
    U-Net as written in the textbook (skips concatenated to every frame's features), values and gradients."""
    wm = make(image_size=H)
    for m in wm.decoder.modules():  # non-trivial norms and FiLM, so every term is checked
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.Linear)):
            for t in m.parameters():
                torch.nn.init.normal_(t, std=0.3)
    M, R = 2, 5
    frame = torch.rand(M, 3, H, H)
    maps = wm.encoder.maps(frame)
    feat = torch.randn(M * R, wm.decoder.inp.in_features, requires_grad=True)
    got, want = wm.decoder(feat, (frame, maps)), reference_decoder(wm.decoder, feat, frame, maps, R)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    g_got = torch.autograd.grad(got.square().sum(), [feat, *wm.decoder.parameters()])
    g_want = torch.autograd.grad(want.square().sum(), [feat, *wm.decoder.parameters()])
    for a, b in zip(g_got, g_want):  # float32 sums in another order: relative to each gradient's scale
        # (at 128 px each is ~1.2e-4 from a float64 run, so they may differ by twice that)
        assert (a - b).abs().max() <= 3e-4 * b.abs().max() + 1e-8, (a - b).abs().max() / b.abs().max()


def test_loss_shrinks_bigger_frames_by_area_average():
    """64 px frames into a 32 px world model (what `make demo` does): the loss equals the loss on frames
    averaged over 2x2 pixel blocks by hand."""
    wm = make(image_size=16)
    frames, actions = batch(H=32)
    small = frames.unflatten(3, (16, 2)).unflatten(5, (16, 2)).mean((4, 6))  # (B, T+1, 3, 16, 16) block means
    torch.manual_seed(3)
    big_loss = wm.loss(frames, actions, openloop_weight=1.0)
    torch.manual_seed(3)
    small_loss = wm.loss(small, actions, openloop_weight=1.0)
    torch.testing.assert_close(big_loss.loss, small_loss.loss, rtol=1e-5, atol=0)
    assert wm.resize(frames).shape == small.shape and torch.allclose(wm.resize(frames), small, atol=1e-6)
