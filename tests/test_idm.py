"""The inverse-dynamics arm (idm.py, pretrain.py --latents idm): shapes, the untrained forward model,
which loss reaches which model, and a tiny end-to-end run whose checkpoint stage 2 and cca.py take.

    python -m pytest -q tests/test_idm.py
"""
import json
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from idm import IDMConfig, LatentActionModel, idm_losses  # noqa: E402
from policies import POLICY_SIZES, make_policy  # noqa: E402
from test_stages import TINY_WM, load, run  # noqa: E402


def frames_and_lang(B=3, n=5, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, n + 1, 3, size, size, generator=g), torch.randn(B, 384, generator=g)


def test_shapes_and_untrained_forward_model_copies_frame_t():
    lam = LatentActionModel(IDMConfig(latent_dim=3, image_size=32, pairs=2))
    frames, _ = frames_and_lang()
    z = lam.latents(frames)
    assert z.shape == (3, 5, 3) and z.abs().max() < 1  # tanh range
    # the latent of transition k is the IDM's of frames k, k+1: the same as calling it on that pair alone
    assert torch.allclose(z[1, 2], lam.idm(frames[1:2, 2], frames[1:2, 3])[0], atol=1e-6)
    assert lam.openloop(frames[:, :1], z).shape == (3, 5, 3, 32, 32)
    # 64 px frames are area-averaged to the model's 32 before anything sees them: random pixels, so that each
    # 2x2 block's mean differs from any one of its pixels (nearest-neighbour resizing fails this); 128 px frames
    # are 4x4 means (bilinear sampling, which reads only a block's middle 2x2, fails that)
    for f in (2, 4):
        big = torch.rand(3, 6, 3, 32 * f, 32 * f, generator=torch.Generator().manual_seed(f))  # (B, n+1, 3, 32f, 32f)
        means = big.view(3, 6, 3, 32, f, 32, f).mean((4, 6))  # (B, n+1, 3, 32, 32): each f x f block's mean
        assert torch.allclose(lam.latents(big), lam.latents(means), atol=1e-5)
        assert not torch.allclose(lam.latents(big[..., ::f, ::f]), lam.latents(means), atol=1e-3)  # the test can tell
    # the last up-convolution starts at zero: an untrained forward model predicts frame t exactly
    lam.eval()
    out = lam.loss(frames, torch.tensor([[0, 4], [1, 2], [3, 0]]))
    assert out.metrics["fm_mse"] == pytest.approx(float(out.metrics["copy_mse"]), rel=1e-6)
    a, b = frames[[0, 0, 1, 1, 2, 2], [0, 4, 1, 2, 3, 0]], frames[[0, 0, 1, 1, 2, 2], [1, 5, 2, 3, 4, 1]]
    assert out.loss.item() == pytest.approx(float(((a - b) ** 2).mean()), rel=1e-5)  # the drawn pairs, no others


@pytest.mark.parametrize("kind", ["baku", "diffusion"])
def test_each_loss_reaches_only_its_own_model(kind):
    """The forward-model loss trains the IDM and the forward model, never the policy; the policy's fit to
    the IDM's latents trains the policy, never the IDM."""
    torch.manual_seed(0)
    lam = LatentActionModel(IDMConfig(latent_dim=3, image_size=32, pairs=2))
    torch.nn.init.normal_(lam.fm.up[-1].weight, std=0.02)  # as after a step: at init only this layer gets a gradient
    policy = make_policy(dict(POLICY_SIZES["small"][kind], kind=kind, chunk=5, out_dim=3, image_size=32,
                              cameras=("agentview",), state_dim=0))
    frames, lang = frames_and_lang()
    out, fit = idm_losses(lam, policy, frames, lang)
    grads = lambda m: [p.grad for p in m.parameters() if p.requires_grad]
    fit.backward(retain_graph=True)
    assert all(g is None for g in grads(lam)), "the policy's loss must not reach the IDM or forward model"
    assert sum(float(g.abs().sum()) for g in grads(policy) if g is not None) > 0
    policy.zero_grad(set_to_none=True)
    out.loss.backward()
    assert all(g is None for g in grads(policy)), "the forward model's loss must not reach the policy"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lam.idm.parameters()), \
        "every IDM tensor must learn from the forward model's loss"
    assert lam.fm.up[-1].weight.grad.abs().sum() > 0, "and the forward model too"


def test_pretrain_idm_end_to_end(tmp_path_factory):
    """A tiny `pretrain.py --latents idm` run: its eval line has both sets of gate numbers, finetune.py
    --init takes its checkpoint, cca.py reports the IDM's own latents beside the policy's."""
    work = tmp_path_factory.mktemp("idm")
    run(work, "convert.py", "toy", "--image_size", "32", "--source_episodes", "20", "--target_demos", "2",
        "--source_demos", "10")
    args = [*TINY_WM, "--latents", "idm", "--chunk", "4", "--idm_pairs", "2", "--wm_image_size", "0"]
    run(work, "pretrain.py", *args, "--max_steps", "0", "--out_dir", "i0")
    run(work, "pretrain.py", *args, "--max_steps", "3", "--eval_every", "2", "--out_dir", "i")
    p0, ck = load(work / "i0" / "ckpt.pt"), load(work / "i" / "ckpt.pt")
    assert ck["config"]["latents"] == "idm" and ck["wm_config"]["image_size"] == 32 and ck["wm_config"]["pairs"] == 2
    idm_keys = [k for k in p0["world_model"] if k.startswith("idm.")]
    assert idm_keys and all(not torch.equal(p0["world_model"][k], ck["world_model"][k]) for k in idm_keys), "the IDM learns"
    assert sum(not torch.equal(p0["policy"][k], ck["policy"][k]) for k in p0["policy"]) > 0.5 * len(p0["policy"])
    rows = [json.loads(l) for l in open(work / "i" / "log.jsonl")]
    assert {"fm_mse", "copy_mse", "z_abs", "policy_fit"} <= set(rows[1])
    ev = rows[-1]["eval"]
    for pre in ("", "idm_"):
        assert {pre + k for k in ("openloop_err", "swap_ratio", "shuffle_ratio", "gate_w")} <= set(ev)
        assert len(ev[pre + "openloop_k"]) == len(ev["copy_k"]) == 4
    assert ev["policy_r2"] < 1 and ev["idm_openloop_k"] != ev["openloop_k"]
    assert (work / "i" / "rollout_000003.png").exists()
    # wrong flags: one line naming the flag
    r = run(work, "pretrain.py", *args, "--idm_pairs", "5", "--out_dir", "bad", ok=False)
    assert r.returncode != 0 and "--idm_pairs" in r.stderr and "Traceback" not in r.stderr
    # stage 2 takes it as it takes LAWM's; cca.py adds the IDM's table
    run(work, "finetune.py", "--init", str(work / "i" / "ckpt.pt"), "--max_steps", "1", "--batch_size", "4",
        "--out_dir", "ft", "--device", "cpu")
    assert load(work / "ft" / "ckpt.pt")["policy_config"]["out_dim"] == 3
    out = run(work, "cca.py", "--ckpt", str(work / "i" / "ckpt.pt"), "--random_seeds", "1").stdout
    assert "held-out CCA IDM" in out and "held-out CCA pretrained" in out
    res = json.load(open(work / "i" / "cca" / "cca.json"))
    assert set(res["idm_results"]) == set(res["results"]) and res["idm_gate_l_pass"] == all(res["idm_gate_l"].values())
    for g, r in res["idm_results"].items():  # the IDM's own gate L, by the same rule as the policy's
        if g != "overall":
            assert res["idm_gate_l"][g] == (r["heldout"] >= 0.6 and r["heldout"] >= r["random_heldout"] + 0.3)
    # the supervised probe: a table row per frame size, R^2 per action dimension and pooled
    out = run(work, "idm.py", "--probe", "--data", "data/toy/source_demos.hdf5", "--sizes", "16,32", "--steps", "3").stdout
    rows = [l for l in out.splitlines() if l.startswith(("| 16 |", "| 32 |"))]
    assert len(rows) == 2 and all(len(r.split("|")[2].split("/")) == 3 for r in rows)
