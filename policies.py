"""BAKU and Diffusion Policy behind one interface.

    policy = make_policy({"kind": "baku", **asdict(BakuConfig(...))})   # or "diffusion"
    z = policy.latent(obs)                  # (B, n, d) differentiable: stage 1 (pretrain.py)
    loss = policy.loss(obs, actions, mask)  # supervised, masked: stage 2 (finetune.py)
    a = policy.act(obs)                     # (B, n, d) normalised actions: evaluate.py
    policy.reset_action_layer(action_dim)   # stage 2 starts here
    policy.ema_step()                       # after every optimizer step (no-op for BAKU)

obs: "agentview" (B,3,H,W) float in [0,1], optional "wrist" (B,3,H,W), optional "state" (B,D),
"lang" (B,384) MiniLM embedding. A modality absent from obs (wrist, proprio in video) is skipped
explicitly (no token, no conditioning term), never replaced by zeros, so one set of weights serves
pretraining on video and finetuning on demos.

Shape legend: B batch, n chunk length, d action (or latent) dims per step, W token width, C channels,
K keypoints, h w feature map, S tokens, L chunk length padded for the U-Net.
"""
import copy
import dataclasses
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# Widths by name. The stage scripts' --policy_size picks one; chunk, out_dim, image size, cameras and
# state_dim come from the data. "default" = the authors' release; "small" trains in minutes on a CPU.
POLICY_SIZES = {
    "default": {"baku": dict(base_channels=64, width=256, layers=8, heads=4),
                "diffusion": dict(base_channels=64, width=256, down_dims=(256, 512, 1024), step_dim=256)},
    "small": {"baku": dict(base_channels=16, width=128, layers=2, heads=4),
              "diffusion": dict(base_channels=16, width=64, down_dims=(32, 64, 128), step_dim=32)},
}


# ---------------------------------------------------------------------------------------------------
# observation encoder, shared by both policies

def _gn(c):
    """GroupNorm, not BatchNorm: per-sample statistics make eval deterministic and independent of the
    batch (a BAKU latent never depends on which other frames share its batch), the two cameras can share
    one encoder pass, and DP's EMA copy has no running statistics to go stale."""
    return nn.GroupNorm(math.gcd(8, c), c)  # 8 groups as in the release's DP; fewer if c is small


class FilmBlock(nn.Module):
    """ResNet BasicBlock (two 3x3 convs + shortcut), then FiLM from the instruction: x <- (1+g)*x + b."""

    def __init__(self, cin, cout, stride, cond_dim):
        super().__init__()
        self.conv1, self.n1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _gn(cout)
        self.conv2, self.n2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _gn(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _gn(cout))
                      if stride != 1 or cin != cout else nn.Identity())
        self.film = nn.Linear(cond_dim, 2 * cout)

    def forward(self, x, cond):
        h = F.relu(self.n1(self.conv1(x)))
        h = F.relu(self.n2(self.conv2(h)) + self.short(x))
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return (1 + gamma) * h + beta  # 1+gamma: an untrained FiLM starts near the identity


class ImageEncoder(nn.Module):
    """ResNet-18 stem + layer1 + layer2 (FiLM after each block), spatial softmax, one W-token.
    At 128x128: stem -> (64, 32, 32), layer2 -> (128, 16, 16), 128 keypoints -> (256,) -> W."""

    def __init__(self, base, cond_dim, width):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, base, 7, 2, 3, bias=False), _gn(base), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.blocks = nn.ModuleList([  # layer1: 2 blocks at base channels; layer2: 2 blocks at 2*base, stride 2
            FilmBlock(base, base, 1, cond_dim), FilmBlock(base, base, 1, cond_dim),
            FilmBlock(base, 2 * base, 2, cond_dim), FilmBlock(2 * base, 2 * base, 1, cond_dim)])
        self.proj = nn.Linear(2 * 2 * base, width)  # (x, y) of K = 2*base keypoints -> W
        # ImageNet statistics (the release's encoder starts from ImageNet weights); not saved: constants
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, img, cond):  # img (B, 3, H, W) in [0, 1], cond (B, W)
        x = self.stem((img - self.mean) / self.std)  # (B, C, H/4, W/4)
        for block in self.blocks:
            x = block(x, cond)  # (B, K, H/8, W/8) after the last block
        B, K, h, w = x.shape
        p = x.flatten(2).softmax(-1).view(B, K, h, w)  # one attention map per channel
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=p.dtype)
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=p.dtype)
        kx, ky = (p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)  # (B, K) expected coordinates
        return self.proj(torch.cat([kx, ky], dim=1))  # (B, 2K) -> (B, W)


# torchvision ResNet-18 state-dict names of the convolutions the trunk shares with it (stem, layer1, layer2)
RESNET18_CONVS = {"stem.0": "conv1", "blocks.2.short.0": "layer2.0.downsample.0",
                  **{f"blocks.{i}.conv{j}": f"layer{1 + i // 2}.{i % 2}.conv{j}" for i in range(4) for j in (1, 2)}}


def load_resnet18_convs(policy, path):
    """Start every image encoder of the policy (DP: its EMA copy too) from a file holding a torchvision
    ResNet-18 state dict (ImageNet: resnet18-f37072fd.pth), the 10 convolutions of its stem, layer1 and layer2.
    Only those: our GroupNorm has no running statistics to take, and BatchNorm's affine terms scale channels
    normalised by ImageNet's statistics, not per sample (the release's DP, BatchNorm swapped for GroupNorm,
    also keeps only the convolutions). ValueError, one line: an unreadable file, or the first key missing or
    shaped otherwise (the trunk must be ResNet-18's: base_channels 64, --policy_size default)."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # no such file, not a torch file, pickled objects beyond tensors
        raise ValueError(f"{path}: expected a torchvision ResNet-18 state dict, got an unreadable file "
                         f"({type(e).__name__})")
    for enc in (m for m in policy.modules() if isinstance(m, ImageEncoder)):
        for ours, theirs in RESNET18_CONVS.items():
            w, src = enc.get_submodule(ours).weight, sd.get(f"{theirs}.weight") if isinstance(sd, dict) else None
            if not torch.is_tensor(src) or src.shape != w.shape:
                raise ValueError(f"{path}: {theirs}.weight: expected {tuple(w.shape)} (a torchvision ResNet-18 "
                                 f"state dict; --policy_size default), got "
                                 f"{tuple(src.shape) if torch.is_tensor(src) else 'nothing'}")
            with torch.no_grad():
                w.copy_(src)


class ObsEncoder(nn.Module):
    """obs dict -> {"lang": (B,W), <camera>: (B,W) for each camera present, "state": (B,W) if present}."""

    def __init__(self, cfg, width):
        super().__init__()
        self.cameras, self.image_size = cfg.cameras, cfg.image_size
        self.lang = nn.Linear(cfg.lang_dim, width)  # the lang token, also the FiLM input
        self.image = ImageEncoder(cfg.base_channels, width, width)  # one encoder shared by all cameras
        self.state = nn.Linear(cfg.state_dim, width) if cfg.state_dim > 0 else None

    def forward(self, obs):
        lang = self.lang(obs["lang"])  # (B, W)
        tokens = {"lang": lang}
        cams = [c for c in self.cameras if c in obs]  # a camera absent from obs gets no token
        if cams:
            imgs = torch.cat([obs[c] for c in cams])  # (len(cams)*B, 3, H, W): one pass for all cameras
            if imgs.shape[-2:] != (self.image_size, self.image_size):
                raise ValueError(f"images: expected {self.image_size}x{self.image_size} (config image_size), "
                                 f"got {imgs.shape[-2]}x{imgs.shape[-1]}")
            feats = self.image(imgs, lang.repeat(len(cams), 1)).chunk(len(cams))  # len(cams) x (B, W)
            tokens.update(zip(cams, feats))
        if self.state is not None and "state" in obs:
            tokens["state"] = self.state(obs["state"])  # (B, W)
        return tokens


def masked_mse(pred, target, mask):
    """Mean squared error over valid steps only; padded steps (mask False) contribute nothing."""
    sq = (pred.float() - target.float()) ** 2  # (B, n, d), fp32 even under bf16 autocast
    sq = torch.where(mask.bool()[..., None], sq, 0.0)  # where, not a product: even NaN padding drops out
    return sq.sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)


def _orthogonal(m):
    """Orthogonal weights and zero biases for Linear layers, as the release initialises BAKU's trunk."""
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------
# BAKU

@dataclass
class ObsConfig:
    """The fields both policies share: what they see and how they encode it."""
    chunk: int = 10              # n: steps predicted per observation (the latent chunk in stage 1)
    out_dim: int = 7             # d: dims per step; latent dim in stage 1, action dim after reset_action_layer
    image_size: int = 128        # H = W of every camera image (inputs are checked against it)
    cameras: tuple = ("agentview",)  # cameras the policy can use; any of them may be absent at call time
    state_dim: int = 0           # proprio size; 0 = no proprio input at all
    lang_dim: int = 384          # instruction embedding size (all-MiniLM-L6-v2)
    base_channels: int = 64      # ResNet stem/layer1 channels, layer2 has twice as many (64 = ResNet-18)


@dataclass
class BakuConfig(ObsConfig):
    width: int = 256             # token width = transformer width = head hidden size
    layers: int = 8              # transformer blocks
    heads: int = 4               # attention heads (width must divide by heads)
    dropout: float = 0.1         # dropout in attention and MLP (the release's GPT uses 0.1)

    def __post_init__(self):
        self.cameras = tuple(self.cameras)  # a list after a JSON round trip
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must divide by heads {self.heads}")


class Block(nn.Module):
    """Pre-LN transformer block: causal self-attention, then a 4x GELU MLP, each residual."""

    def __init__(self, width, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.qkv, self.proj = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))

    def forward(self, x):  # (B, S, W)
        B, S, W = x.shape
        p = self.dropout if self.training else 0.0
        qkv = self.qkv(self.ln1(x)).view(B, S, 3, self.heads, W // self.heads)  # (B, S, 3, heads, W/heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, heads, S, W/heads)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)  # (B, heads, S, W/heads)
        x = x + F.dropout(self.proj(a.transpose(1, 2).reshape(B, S, W)), p, self.training)  # (B, S, W)
        return x + F.dropout(self.mlp(self.ln2(x)), p, self.training)


class Baku(nn.Module):
    """Tokens [lang, cameras..., proprio, action] -> causal transformer -> MLP head on the action token
    -> n*d values in (-1, 1) (tanh). Loss = masked MSE, the fixed-std Gaussian NLL up to constants."""

    def __init__(self, cfg: BakuConfig):
        super().__init__()
        self.cfg = cfg = dataclasses.replace(cfg)  # own copy: reset_action_layer edits out_dim
        W = cfg.width
        self.obs_encoder = ObsEncoder(cfg, W)
        # No positional embedding, so an absent token shifts nothing. Cameras share one encoder, so each
        # gets a learned type embedding; lang and state tokens come from their own Linear layers.
        self.cam_emb = nn.ParameterDict({c: nn.Parameter(0.02 * torch.randn(W)) for c in cfg.cameras})
        self.action_token = nn.Parameter(torch.randn(W))
        self.blocks = nn.ModuleList([Block(W, cfg.heads, cfg.dropout) for _ in range(cfg.layers)])
        self.ln_f = nn.LayerNorm(W)
        self.head = nn.Sequential(nn.Linear(W, W), nn.ReLU(), nn.Linear(W, W), nn.ReLU(),
                                  nn.Linear(W, cfg.chunk * cfg.out_dim), nn.Tanh())  # head[4]: the action layer
        self.blocks.apply(_orthogonal)
        self.head.apply(_orthogonal)

    def latent(self, obs):
        """(B, n, d) in (-1, 1), differentiable."""
        tok = self.obs_encoder(obs)
        B = tok["lang"].shape[0]
        seq = ([tok["lang"]] + [tok[c] + self.cam_emb[c] for c in self.cfg.cameras if c in tok]
               + [tok[k] for k in ("state",) if k in tok] + [self.action_token.expand(B, -1)])
        x = torch.stack(seq, dim=1)  # (B, S, W), S = 2..5
        for block in self.blocks:
            x = block(x)
        out = self.head(self.ln_f(x[:, -1]))  # (B, n*d) read from the action token, which sees all tokens
        return out.view(B, self.cfg.chunk, self.cfg.out_dim)  # (B, n, d) step-major: step k is dims k*d..k*d+d-1

    def loss(self, obs, actions, mask):
        return masked_mse(self.latent(obs), actions, mask)

    @torch.no_grad()
    def act(self, obs):
        """(B, n, d) normalised actions, in eval mode (no dropout); the mode is restored afterwards."""
        was = self.training
        a = self.eval().latent(obs)
        self.train(was)
        return a

    def reset_action_layer(self, action_dim):
        """Re-initialise exactly the last head Linear (W -> n*action_dim); every other tensor is kept."""
        old = self.head[4]
        self.cfg.out_dim = action_dim
        new = nn.Linear(self.cfg.width, self.cfg.chunk * action_dim)
        _orthogonal(new)
        self.head[4] = new.to(old.weight.device, old.weight.dtype)

    def action_layer_parameters(self):
        return list(self.head[4].parameters())

    def ema_step(self):
        pass  # BAKU keeps no EMA

    def config_dict(self):
        return {"kind": "baku", **asdict(self.cfg)}


# ---------------------------------------------------------------------------------------------------
# Diffusion Policy

@dataclass
class DiffusionConfig(ObsConfig):
    chunk: int = 16              # n: any length; the U-Net pads to a multiple of 2**(levels-1) and crops back
    width: int = 256             # obs token width; the U-Net condition is [step emb, obs sum, lang] = step_dim + 2W
    down_dims: tuple = (256, 512, 1024)  # U-Net channels per level (the release's)
    step_dim: int = 256          # diffusion-step embedding size
    train_steps: int = 100       # DDPM steps T, squared-cosine schedule, epsilon prediction
    infer_steps: int = 10        # DDIM steps in act(), eta 0, "leading" spacing: t = 90, 80, ..., 0
    ema_decay: float = 0.9999    # cap of the EMA decay min((1+s)/(10+s), ema_decay), s = EMA steps taken

    def __post_init__(self):
        self.cameras, self.down_dims = tuple(self.cameras), tuple(self.down_dims)


class NoiseSchedule:
    """DDPM squared-cosine schedule ("squaredcos_cap_v2") and the DDIM update with eta 0."""

    def __init__(self, train_steps, infer_steps):
        s = torch.arange(train_steps + 1, dtype=torch.float64) / train_steps
        f = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # alpha_bar of continuous time s
        self.betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # (T,); the cap keeps the last steps invertible
        self.alphas_cumprod = torch.cumprod(1 - self.betas, 0).float()  # (T,) alpha_bar_t
        self.ratio = train_steps // infer_steps
        self.timesteps = [i * self.ratio for i in reversed(range(infer_steps))]  # 90, 80, ..., 0

    def _ab(self, t, x):
        """alpha_bar_t shaped to broadcast over x (B, n, d); t an int or a (B,) tensor."""
        return self.alphas_cumprod.to(x.device)[t].view(-1, 1, 1)

    def add_noise(self, x0, noise, t):
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def x0(self, x_t, eps, t):
        """The clean-chunk estimate implied by a noise prediction."""
        ab = self._ab(t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def step(self, x_t, eps, t):
        """One DDIM step t -> t - ratio (eta 0). x0 is clipped to [-1, 1] (diffusers' default, which the
        release uses; eps is not recomputed after the clip); before t = 0 alpha_bar_prev is 1."""
        ab_prev = float(self.alphas_cumprod[t - self.ratio]) if t - self.ratio >= 0 else 1.0
        x0 = self.x0(x_t, eps, t).clamp(-1, 1)
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps


class ResBlock1D(nn.Module):
    """Two conv-GroupNorm-Mish layers over the chunk, FiLM from the condition between them, residual."""

    def __init__(self, cin, cout, cond_dim):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(cin, cout, 3, padding=1), _gn(cout), nn.Mish())
        self.conv2 = nn.Sequential(nn.Conv1d(cout, cout, 3, padding=1), _gn(cout), nn.Mish())
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.short = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, cond):  # x (B, C, L), cond (B, cond_dim)
        gamma, beta = self.film(cond)[:, :, None].chunk(2, dim=1)  # (B, C, 1) each
        return self.conv2((1 + gamma) * self.conv1(x) + beta) + self.short(x)


class UNet1D(nn.Module):
    """1-D conditional U-Net over the chunk. The action dim enters only through `action_in` (1x1 conv
    d -> down_dims[0]) and `action_out` (1x1 conv down_dims[0] -> d): the two layers reset at stage 2.
    Any chunk length: the chunk is zero-padded at its end to a multiple of the downsampling factor and
    the output cropped back, so the padding never reaches the loss."""

    def __init__(self, action_dim, dims, cond_dim):
        super().__init__()
        self.factor = 2 ** (len(dims) - 1)
        self.action_in = nn.Conv1d(action_dim, dims[0], 1)
        self.down = nn.ModuleList([nn.ModuleList([
            ResBlock1D(dims[max(i - 1, 0)], d, cond_dim), ResBlock1D(d, d, cond_dim),
            nn.Conv1d(d, d, 3, 2, 1) if i < len(dims) - 1 else nn.Identity()]) for i, d in enumerate(dims)])
        self.mid = nn.ModuleList([ResBlock1D(dims[-1], dims[-1], cond_dim) for _ in range(2)])
        self.up = nn.ModuleList([nn.ModuleList([  # deepest first; the upsampling halves the channels
            nn.ConvTranspose1d(dims[i + 1], dims[i], 4, 2, 1), ResBlock1D(2 * dims[i], dims[i], cond_dim),
            ResBlock1D(dims[i], dims[i], cond_dim)]) for i in reversed(range(len(dims) - 1))])
        self.final = nn.Sequential(nn.Conv1d(dims[0], dims[0], 3, padding=1), _gn(dims[0]), nn.Mish())
        self.action_out = nn.Conv1d(dims[0], action_dim, 1)

    def forward(self, x, cond):  # x (B, n, d), cond (B, cond_dim)
        n = x.shape[1]
        x = F.pad(x.transpose(1, 2), (0, -n % self.factor))  # (B, d, L), L = n rounded up to the factor
        x = self.action_in(x)  # (B, C0, L)
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, cond), cond)
            skips.append(x)  # (B, C_i, L / 2**i)
            x = down(x)
        for res in self.mid:
            x = res(x, cond)  # (B, C_last, L / factor)
        for (up, res1, res2), skip in zip(self.up, reversed(skips[:-1])):
            x = torch.cat([up(x), skip], dim=1)  # (B, 2 C_i, L / 2**i)
            x = res2(res1(x, cond), cond)
        return self.action_out(self.final(x))[:, :, :n].transpose(1, 2)  # (B, d, L) -> (B, n, d)


def step_embedding(t, dim):
    """Sinusoidal embedding of integer diffusion steps: (B,) -> (B, dim)."""
    freqs = torch.exp(-math.log(10000) * torch.arange(dim // 2, device=t.device) / (dim // 2 - 1))
    ang = t.float()[:, None] * freqs[None]  # (B, dim/2)
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class DenoiseNet(nn.Module):
    """eps_hat(x_t, t, obs). Everything DP trains lives here, so the EMA is one deep copy of it."""

    def __init__(self, cfg):
        super().__init__()
        W = cfg.width
        self.obs_encoder = ObsEncoder(cfg, W)
        # The release concatenates the camera and proprio features and applies one Linear. Concat + Linear
        # is a sum of one Linear per modality, so we keep that sum and simply leave out an absent modality's
        # term: with every modality present it is the same function, and any subset is well-defined.
        # (The empty sum, with no camera and no proprio at all, is 0.)
        modalities = (*cfg.cameras, *(("state",) if cfg.state_dim else ()))
        self.obs_proj = nn.ModuleDict({m: nn.Linear(W, W) for m in modalities})
        S = cfg.step_dim
        self.step_mlp = nn.Sequential(nn.Linear(S, 4 * S), nn.Mish(), nn.Linear(4 * S, S))
        self.unet = UNet1D(cfg.out_dim, cfg.down_dims, cfg.step_dim + 2 * W)
        self.step_dim = cfg.step_dim
        # PyTorch's default init here: the release's orthogonal init of these Linear layers costs ~9 s of
        # QR per CPU build at the default widths (the U-Net's FiLM layers are large), for a detail.

    def encode(self, obs):
        """obs -> (B, 2W) condition [sum of per-modality projections, lang token], computed once per act()."""
        tok = self.obs_encoder(obs)
        parts = [self.obs_proj[m](tok[m]) for m in self.obs_proj if m in tok]
        return torch.cat([sum(parts) if parts else torch.zeros_like(tok["lang"]), tok["lang"]], dim=1)

    def eps(self, x_t, t, obs_cond):  # x_t (B, n, d), t (B,) long, obs_cond (B, 2W)
        cond = torch.cat([self.step_mlp(step_embedding(t, self.step_dim)), obs_cond], dim=1)  # (B, step_dim + 2W)
        return self.unet(x_t, cond)  # (B, n, d)


class DiffusionPolicy(nn.Module):
    """DDPM-trained (100 steps) noise predictor, DDIM-sampled (10 steps) with EMA weights in act().
    State dict: net.* (trained weights), ema.* (their EMA, requires_grad False), ema_steps."""

    def __init__(self, cfg: DiffusionConfig):
        super().__init__()
        self.cfg = cfg = dataclasses.replace(cfg)  # own copy: reset_action_layer edits out_dim
        self.net = DenoiseNet(cfg)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self.sched = NoiseSchedule(cfg.train_steps, cfg.infer_steps)

    def _t(self, t, x):
        return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)  # (B,)

    def latent(self, obs):
        """Stage-1 latent: one differentiable denoise of pure noise, the x0 estimate (no clipping) at the
        first DDIM timestep t = 90 = what act()'s first step predicts. Not t = 99: there sqrt(alpha_bar)
        is 5e-4, so the estimate would scale any noise-prediction error by ~2000."""
        cond = self.net.encode(obs)
        x = torch.randn(cond.shape[0], self.cfg.chunk, self.cfg.out_dim, device=cond.device)  # (B, n, d) x_T
        t = self.sched.timesteps[0]
        return self.sched.x0(x, self.net.eps(x, self._t(t, x), cond), t)  # (B, n, d), not bounded

    def loss(self, obs, actions, mask):
        """Epsilon-prediction MSE at a uniform random step; padded steps are not scored (they still enter
        the U-Net as input: pad actions by repeating the last one, not with zeros)."""
        t = torch.randint(0, self.cfg.train_steps, (actions.shape[0],), device=actions.device)  # (B,)
        noise = torch.randn_like(actions)  # (B, n, d)
        eps = self.net.eps(self.sched.add_noise(actions, noise, t), t, self.net.encode(obs))
        return masked_mse(eps, noise, mask)

    @torch.no_grad()
    def act(self, obs):
        """(B, n, d) normalised actions: DDIM from pure noise with the EMA weights."""
        cond = self.ema.encode(obs)  # the observation is encoded once for all steps
        x = torch.randn(cond.shape[0], self.cfg.chunk, self.cfg.out_dim, device=cond.device)
        for t in self.sched.timesteps:
            x = self.sched.step(x, self.ema.eps(x, self._t(t, x), cond), t)
        return x

    @torch.no_grad()
    def ema_step(self):
        """ema <- decay*ema + (1-decay)*net, decay = min((1+s)/(10+s), ema_decay) for s >= 1 previous
        steps and 0 for the first (as diffusers' EMAModel), so a stale EMA is replaced at once."""
        s = int(self.ema_steps)
        decay = min((1 + s) / (10 + s), self.cfg.ema_decay) if s > 0 else 0.0
        for e, p in zip(self.ema.parameters(), self.net.parameters()):
            e.lerp_(p, 1 - decay)
        self.ema_steps += 1

    def reset_action_layer(self, action_dim):
        """Re-initialise exactly the two layers whose shape depends on the action dim, unet.action_in and
        unet.action_out, in net and (with the same new weights) in ema; the EMA ramp restarts."""
        unet, c0 = self.net.unet, self.cfg.down_dims[0]
        w = unet.action_in.weight
        self.cfg.out_dim = action_dim
        unet.action_in = nn.Conv1d(action_dim, c0, 1).to(w.device, w.dtype)
        unet.action_out = nn.Conv1d(c0, action_dim, 1).to(w.device, w.dtype)
        self.ema.unet.action_in = copy.deepcopy(unet.action_in).requires_grad_(False)
        self.ema.unet.action_out = copy.deepcopy(unet.action_out).requires_grad_(False)
        self.ema_steps.zero_()

    def action_layer_parameters(self):
        return [*self.net.unet.action_in.parameters(), *self.net.unet.action_out.parameters()]

    def config_dict(self):
        return {"kind": "diffusion", **asdict(self.cfg)}


def make_policy(cfg):
    """{"kind": "baku" | "diffusion", **config fields} -> policy (the dict config_dict() returns)."""
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == "baku":
        return Baku(BakuConfig(**cfg))
    if kind == "diffusion":
        return DiffusionPolicy(DiffusionConfig(**cfg))
    raise ValueError(f"policy kind: expected 'baku' or 'diffusion', got {kind!r}")
