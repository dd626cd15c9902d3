"""DreamerV3-style categorical RSSM world model for LAWM pretraining.

The world model turns a window of frames and the policy's latent actions into a loss. Its gradient
flows into the latent actions (nothing is detached or zeroed), which is how the policy learns.

    wm = WorldModel(WorldModelConfig(size="1m", image_size=64, action_dim=7))
    out = wm.loss(frames, actions)         # frames (B, T+1, 3, H, W) in [0,1]; actions (B, T, A)
    out.loss.backward(); out.metrics       # scalar; {"recon", "kl_dyn", "kl_rep", "kl", ...}
    video = wm.openloop(frames[:, :c], actions)   # (B, T-c+1, 3, H, W): imagined frames c..T

Action alignment: frames t..t+T and latents z_t..z_{t+T-1}; z_{t+k} drives frame t+k -> t+k+1.
The first posterior comes from the initial state and frame t; then z_k advances the GRU before the
posterior of frame k+1. (The authors' release zeroes z_t at the reset: not here.)

Frame-t context (config.context, the default; a departure from DreamerV3): the initial state is
computed from frame t's embedding and the decoder predicts frame t+k as a change of frame t (U-Net
skips from frame t's encoder maps, FiLM from the state, flow + residual; see Decoder). The scene's
look then never has to pass through the 32 categoricals or the latents; what the state must carry
is what moves. context=False is DreamerV3's model (learned h0, a decoder from the state alone).

Loss per frame, averaged over (B, T+1):
    recon = sum over pixels of (decoded - frame)^2
    kl_dyn = dyn_scale * max(free, KL(sg(post) || prior))   trains the prior (dynamics)
    kl_rep = rep_scale * max(free, KL(post || sg(prior)))   keeps the posterior predictable
KL is summed over the S categoricals. Optional `openloop_weight` adds the same squared error for frames 1..T
predicted from the first posterior through the PRIOR alone under the actions: without it the posterior can explain
every frame and the latents get ignored (the dyn KL then sits at the free-bits floor; the `kl_floor` metric shows how
often). `openloop_frames` L decodes a random L of each window's T imagined frames (pretrain.py: 2): ~40% less decoding.

Metrics (detached scalars): recon, kl_dyn, kl_rep (the terms above: loss = recon + kl_dyn + kl_rep + openloop_weight
* openloop); kl (raw KL(post || prior) in nats, before free bits); prior_entropy, post_entropy (nats, summed over S);
kl_floor (fraction of transitions 1..T whose KL is at or below the free bits: near 1 means the latents may be
ignored); openloop (only when openloop_weight > 0).

Presets are named by the world model's own parameter count at 128x128 (A=7) and use DreamerV3's widths unchanged,
except 2m (1.33M), which is 1m with twice the conv widths (sized for the toy world). Two choices keep the counts near
the names: the GRU is DreamerV3's block-diagonal one (8 blocks; the release's dense GRU makes its "50m" 116M), and the
conv channels stop growing at 8*depth (DreamerV3's 64px widths), so a 128px decoder's first linear layer does not
double; a 128px model is its 64px model behind one half-width stage (conv_widths).

Symbols: B batch, T transitions in a window (T+1 frames), L open-loop frames decoded, N images in one conv call
(B*(T+1) encoded, B*(T+1+L) decoded), M windows whose frame t the decoder reads, H = W image side, E encoder output
size, D deterministic size, G GRU blocks, S categoricals, K classes, Z = S*K, F = D + Z, I hidden width, A action size.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# name: (deter D, GRU blocks G, categoricals S, classes K, cnn depth, hidden I). DreamerV3's layout:
# always 32 categoricals, the classes grow with size (the release's N x 32 has the same Z = S*K, but
# its 1m model then has 4 categoricals: at most 20 bits for everything about a frame)
PRESETS = {
    "1m": (512, 8, 32, 4, 4, 64),
    "2m": (512, 8, 32, 4, 8, 64),  # not DreamerV3's: 1m with twice the conv widths, sized for the toy world
    "12m": (2048, 8, 32, 16, 16, 256),
    "25m": (3072, 8, 32, 24, 24, 384),
    "50m": (4096, 8, 32, 32, 32, 512),
    # DreamerV3's larger sizes (the release's config has them too): the paper's Fig. 6 scales the world
    # model past 50m; on a GPU these redo it (pretrain.py --wm_size 100m ...)
    "100m": (6144, 8, 32, 48, 48, 768),
    "200m": (8192, 8, 32, 64, 64, 1024),
    "400m": (12288, 8, 32, 96, 96, 1536),
}


@dataclass
class WorldModelConfig:
    size: str = "1m"  # preset in PRESETS, named by parameter count at 128x128
    image_size: int = 64  # H = W, a power of two >= 16 (the convs go down to 4x4); bigger frames are shrunk
    action_dim: int = 7  # A: latent action size (the policy's output size)
    free_nats: float = 1.0  # free bits: each KL term is clamped below at this many nats per step
    dyn_scale: float = 0.5  # weight of KL(sg(post) || prior): moves the prior only
    rep_scale: float = 0.1  # weight of KL(post || sg(prior)): moves the posterior only
    unimix: float = 0.01  # uniform share mixed into every categorical: no class prob below unimix/K
    context: bool = True  # frame t seeds h and reaches the decoder directly (see Decoder); False = DreamerV3's


@dataclass
class LossOut:
    loss: torch.Tensor  # scalar to backpropagate
    metrics: dict  # name -> detached scalar tensor


def dense(i, o):
    """Linear -> LayerNorm -> SiLU (no bias: the norm would remove it)."""
    return nn.Sequential(nn.Linear(i, o, bias=False), nn.LayerNorm(o), nn.SiLU())


def conv_widths(depth, image_size):
    """Channels of the stride-2 stages, finest first: depth 4 at 64px -> [4, 8, 16, 32] at 32, 16, 8, 4 px
    (DreamerV3's; 32px: [4, 8, 16]). Above 64px each stage in front has half the next one's width: 128px ->
    [2, 4, 8, 16, 32], the 64px model behind one cheap stage (a third of the conv FLOPs; docs/speed.md)."""
    stages = int(math.log2(image_size)) - 2
    assert image_size >= 16 and 2 ** (stages + 2) == image_size, f"image_size {image_size}: need a power of two >= 16"
    extra = max(stages - 4, 0)  # stages finer than 32px: 1 at 128px
    return [depth * 2 ** min(i, 3 + extra) // 2 ** extra for i in range(stages)]  # capped at 8*depth


class Encoder(nn.Module):
    """(N, 3, H, W) in [0,1] -> (N, E): stride-2 convs k4 down to 4x4, then flatten.

    Norm = LayerNorm over each image's (C, H, W) map (GroupNorm with one group). DreamerV3 normalises
    each pixel's channels instead: with the 1m preset's 4 channels that discards half of every pixel,
    and it is ~30x slower on CPU (millions of 4-element rows)."""

    def __init__(self, depth, image_size):
        super().__init__()
        self.stages, c = nn.ModuleList(), 3
        for w in conv_widths(depth, image_size):
            self.stages.append(nn.Sequential(nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.GroupNorm(1, w), nn.SiLU()))
            c = w
        self.out_dim = c * 16

    def maps(self, x):
        """(N, 3, H, W) -> the feature map after each stage: [(N, C_0, H/2, W/2), ..., (N, C_L, 4, 4)]."""
        # centre the pixels; channels-last memory makes these convs ~10% faster on CPU
        x = (x - 0.5).contiguous(memory_format=torch.channels_last)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x):  # (N, 3, H, W) -> (N, E)
        return self.maps(x)[-1].flatten(1)  # (N, C*4*4) flattened C, H, W


class Decoder(nn.Module):
    """(N, F) -> (N, 3, H, W): linear to 4x4, transposed convs k4 s2 up to H; mean of a unit Gaussian.

    With context (frame t's pixels and encoder maps) the decoder predicts how frame t changes:
    each stage also sees frame t's map of its own resolution (a U-Net skip) and is modulated by the
    state (FiLM: a per-channel scale and shift from F), and the last stage outputs a flow field and
    a residual: frame t+k = warp(frame t, flow) + residual (video prediction by transforming the
    last frame, as Finn et al. 2016 do for action-conditioned robot video). Frame t's look reaches
    every imagined frame directly, so the state and the policy's latents need only say what moves
    and where; the model starts as "copy frame t" (zero flow and residual) and learns the change."""

    def __init__(self, feat, depth, image_size, context, hidden):
        super().__init__()
        skips = conv_widths(depth, image_size)[::-1]  # frame t's map widths, 4 px first: e.g. [32, 16, 8, 4]
        widths = skips + [5 if context else 3]  # the encoder's widths mirrored, then the output channels
        self.film_in = dense(feat, hidden) if context else None  # shared by the stages' FiLM layers
        self.c0, self.context = widths[0], context
        self.inp = nn.Linear(feat, 16 * self.c0)
        self.convs, self.norms, self.film = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            self.convs.append(nn.ConvTranspose2d(a + skips[i] if context else a, b, 4, 2, 1, bias=last))  # + skip
            if not last:
                self.norms.append(nn.GroupNorm(1, b))
                if context:
                    self.film.append(nn.Linear(hidden, 2 * b))
        if context:  # start as "copy frame t": flow and residual are learnt from zero, not from noise
            nn.init.zeros_(self.convs[-1].weight), nn.init.zeros_(self.convs[-1].bias)

    def forward(self, feat, ctx=None):
        """feat (N, F) -> (N, 3, H, W). With context, ctx = (frame t (M, 3, H, W), its encoder maps) for
        M episodes, and N = M*R: the R states of each episode are consecutive rows of feat.

        A stage's conv over [x, skip] is conv_x(x) + conv_skip(skip) (its weight split along the input
        channels), and the skip is the same for an episode's R frames: conv_skip runs once per episode
        and is broadcast. The same model as concatenating the skip to every frame, at half the FLOPs."""
        x = self.inp(feat).unflatten(-1, (self.c0, 4, 4))  # (N, C, 4, 4)
        x = x.contiguous(memory_format=torch.channels_last)  # as in the encoder
        film = self.film_in(feat) if self.context else None  # (N, I)
        for i, conv in enumerate(self.convs):
            if self.context:
                skip, c = ctx[1][-1 - i], x.shape[1]  # frame t's map at this resolution (M, C, h, w)
                x = F.conv_transpose2d(x, conv.weight[:c], None, 2, 1)  # (N, C', 2h, 2w)
                s = F.conv_transpose2d(skip, conv.weight[c:], conv.bias, 2, 1)  # (M, C', 2h, 2w)
                # added on the channels-last view, where both are contiguous: the backward then sums an
                # episode's R frames over whole rows (on the NCHW view it strides, ~2x slower)
                x = x.permute(0, 2, 3, 1).unflatten(0, (len(s), -1))  # (M, R, 2h, 2w, C')
                x = (x + s.permute(0, 2, 3, 1)[:, None]).flatten(0, 1).permute(0, 3, 1, 2)  # (N, C', 2h, 2w)
            else:
                x = conv(x)
            if i < len(self.norms):
                norm = self.norms[i]
                if self.context:  # the norm's affine folded into FiLM: one pass over x, not three
                    scale, shift = self.film[i](film)[:, :, None, None].chunk(2, 1)  # (N, C, 1, 1) each
                    w, b = norm.weight[:, None, None], norm.bias[:, None, None]  # (C, 1, 1)
                    x = torch.addcmul(b * (1 + scale) + shift, F.group_norm(x, 1, eps=norm.eps), w * (1 + scale))
                else:
                    x = norm(x)
                x = F.silu(x)
        if not self.context:
            return x + 0.5  # no sigmoid (as DreamerV3): the squared error stays well-scaled
        frame = ctx[0].float()  # (M, 3, H, W)
        M, H = len(frame), frame.shape[2]
        eye = torch.eye(2, 3, device=x.device).expand(M, 2, 3)
        grid = F.affine_grid(eye, frame.shape, align_corners=False)  # (M, H, W, 2) identity sampling grid
        # x is channels-last, so its (N, H, W, 5) view is contiguous and no piece below is copied to
        # another layout; split, not slices: a slice's backward fills zeros
        flow, residual = x.float().permute(0, 2, 3, 1).unflatten(0, (M, -1)).split([2, 3], -1)  # (M, R, H, W, 2|3)
        # each frame t is warped by its R flows at once: the R grids stacked as one tall grid
        grid = (grid[:, None] + flow).flatten(1, 2)  # (M, R*H, W, 2), flow in grid units
        warped = F.grid_sample(frame, grid, padding_mode="border", align_corners=False)  # (M, 3, R*H, W)
        out = warped.unflatten(2, (-1, H)).permute(0, 2, 3, 4, 1) + residual  # (M, R, H, W, 3)
        return out.flatten(0, 1).permute(0, 3, 1, 2)  # (N, 3, H, W), channels-last memory


class BlockLinear(nn.Module):
    """G independent linear maps (B, G, i) -> (B, G, o): a block-diagonal weight, G-fold fewer parameters."""

    def __init__(self, blocks, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(blocks, i, o))  # (G, i, o)
        nn.init.uniform_(self.weight, -i**-0.5, i**-0.5)  # nn.Linear's default range

    def forward(self, x):
        return torch.einsum("bgi,gio->bgo", x, self.weight)


class BlockGRU(nn.Module):
    """DreamerV3's GRU: G blocks of D/G units; each block sees its own slice of h plus the shared input x
    through a normed hidden layer, then its gates (LayerNorm on the gates, as the release)."""

    def __init__(self, inp, deter, blocks):
        super().__init__()
        self.G, d = blocks, deter // blocks
        self.hid, self.hid_norm = BlockLinear(blocks, d + inp, d), nn.LayerNorm(deter)
        self.gates, self.gate_norm = BlockLinear(blocks, d, 3 * d), nn.LayerNorm(3 * deter)

    def forward(self, h, x):  # h (B, D), x (B, I') -> (B, D)
        B, G = h.shape[0], self.G
        hx = torch.cat([h.view(B, G, -1), x[:, None].expand(B, G, x.shape[-1])], -1)  # (B, G, D/G + I')
        y = F.silu(self.hid_norm(self.hid(hx).reshape(B, -1))).view(B, G, -1)  # (B, G, D/G)
        gates = self.gate_norm(self.gates(y).reshape(B, -1)).view(B, G, 3, -1)  # (B, G, 3, D/G)
        reset, cand, update = [g.reshape(B, -1) for g in gates.unbind(2)]  # 3x (B, D)
        cand = torch.tanh(torch.sigmoid(reset) * cand)  # reset scales a pre-activation that holds h
        update = torch.sigmoid(update - 1)  # bias towards keeping h
        return update * cand + (1 - update) * h


def sample(logp, u=None):
    """(..., S, K) log-probs -> one-hot samples with straight-through gradient (exact one-hots forward).
    u: uniform draws of logp's shape (drawn here if not given)."""
    u = torch.rand_like(logp) if u is None else u
    noise = -torch.log(-torch.log(u))  # Gumbel-max draws one class per categorical
    onehot = F.one_hot((logp + noise).argmax(-1), logp.shape[-1]).to(logp.dtype)
    probs = logp.exp()
    return onehot + (probs - probs.detach())  # forward: exactly onehot (x - x = 0); backward: d/d probs


def kl_balance(post, prior, free):
    """(..., S, K) log-probs -> (dyn, rep, kl), each (...): the free-bits-clamped terms and the raw KL.

    Both terms have the same value KL(post || prior), summed over the S categoricals; the
    stop-gradients decide who moves: dyn trains the prior towards the posterior, rep the reverse."""
    kl = lambda p, q: (p.exp() * (p - q)).sum((-2, -1))  # KL(p || q) of S independent categoricals
    dyn = kl(post.detach(), prior)
    rep = kl(post, prior.detach())
    return dyn.clamp(min=free), rep.clamp(min=free), dyn.detach()


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig, verbose: bool = True):
        super().__init__()
        self.cfg = cfg
        D, G, self.S, self.K, depth, I = PRESETS[cfg.size]
        Z = self.S * self.K
        self.encoder = Encoder(depth, cfg.image_size)
        self.decoder = Decoder(D + Z, depth, cfg.image_size, cfg.context, I)
        self.h0 = nn.Parameter(torch.zeros(1, D))  # learned initial deterministic state (through tanh)
        # with context the initial state also reads frame t's embedding: a D-wide path for the scene,
        # where the first posterior alone has S*log2(K) bits (64 at 1m)
        self.h0_e = nn.Sequential(dense(self.encoder.out_dim, I), nn.Linear(I, D)) if cfg.context else None
        # GRU input = normed embeddings of h and of (stoch, action), as the release: the action joins
        # the stochastic state BEFORE the norm, so the GRU sees its magnitude, not only its direction
        # (a norm over the A-dim action alone maps 0.3 z and z to the same input)
        self.in_deter, self.in_stoch = dense(D, I), dense(Z + cfg.action_dim, I)
        self.gru = BlockGRU(2 * I, D, G)
        self.prior_net = nn.Sequential(dense(D, I), nn.Linear(I, Z))  # h -> prior logits
        # posterior from h and the frame embedding; the embedding half is applied to all frames at once
        self.post_h = nn.Linear(D, I, bias=False)
        self.post_e = nn.Linear(self.encoder.out_dim, I, bias=False)
        self.post_out = nn.Sequential(nn.LayerNorm(I), nn.SiLU(), nn.Linear(I, Z))
        if verbose:
            n = sum(p.numel() for p in self.parameters())
            print(f"world model {cfg.size} at {cfg.image_size}px: {n / 1e6:.2f}M parameters")

    def logprobs(self, logits):
        """(..., Z) raw logits -> (..., S, K) log-probs after the unimix."""
        p = logits.float().unflatten(-1, (self.S, self.K)).softmax(-1)  # float32 even under autocast
        return ((1 - self.cfg.unimix) * p + self.cfg.unimix / self.K).log()

    def initial(self, embed0):
        """Initial h (B, D) from frame t's embedding (B, E): learned h0 (+ the embedding with context)."""
        h0 = self.h0 + self.h0_e(embed0) if self.cfg.context else self.h0.expand(len(embed0), -1)
        return torch.tanh(h0)

    def transition(self, h, stoch, action):
        """One GRU step: h_k (B, D), stoch_k (B, S, K), action a_k (B, A) -> h_{k+1} (B, D).
        DreamerV3 divides the action by max(1, |a|) without gradient: big actions stay bounded."""
        a = action / action.detach().abs().clamp(min=1)
        x = torch.cat([self.in_deter(h), self.in_stoch(torch.cat([stoch.flatten(1), a], -1))], -1)  # (B, 2I)
        return self.gru(h, x)

    def posterior(self, h, e_emb):
        """h (B, D), projected frame embedding post_e(embed) (B, I) -> log-probs (B, S, K)."""
        return self.logprobs(self.post_out(self.post_h(h) + e_emb))

    def observe(self, frames, actions, imagine=False):
        """Posterior rollout. frames (B, T+1, 3, H, W), actions (B, T, A) -> dict deter (B, T+1, D),
        stoch (B, T+1, S, K), post and prior log-probs (B, T+1, S, K), ctx (frame t and its maps).
        imagine: also "im", the prior rollout from the first posterior state under the same actions (deter
        (B, T, D), stoch (B, T, S, K)), on CPU the numbers imagine() gives after observe(): its random draws
        come in the same order. The two chains share each GRU call (2B rows read the weights once: ~8% of a step)."""
        B, T1 = frames.shape[:2]
        assert actions.shape[1] == T1 - 1, f"need T actions for T+1 frames, got {actions.shape[1]} for {T1}"
        # frame t in a call of its own: the decoder keeps its maps, and their gradient then flows into
        # them alone rather than into zero-filled maps of every frame
        maps = self.encoder.maps(frames[:, 0])  # frame t's maps [(B, C, h, w), ...]
        embed = maps[-1].flatten(1)[:, None]  # (B, 1, E)
        if T1 > 1:  # the later frames in one conv call
            embed = torch.cat([embed, self.encoder(frames[:, 1:].flatten(0, 1)).unflatten(0, (B, T1 - 1))], 1)
        e_emb = self.post_e(embed)  # (B, T+1, I)
        ctx = (frames[:, 0], maps)  # frame t, its maps
        u = torch.rand(T1, B, self.S, self.K, device=frames.device)  # every draw up front, as if one per step
        ui = torch.rand(T1 - 1, B, self.S, self.K, device=frames.device) if imagine else None  # the prior chain's
        h, hs, zs, posts, his, zis = self.initial(embed[:, 0]), [], [], [], [], []
        for k in range(T1):
            if k > 0:  # z_{k-1} drives frame k-1 -> k; from k = 2 the prior chain's state rides along
                two = imagine and k > 1
                hz = (torch.cat([h, his[-1]]), torch.cat([zs[-1], zis[-1]])) if two else (h, zs[-1])  # (2B or B, ...)
                x = self.transition(*hz, actions[:, k - 1].repeat(1 + two, 1))  # (2B or B, D)
                h = x[:B]
                if imagine:  # at k = 1 the prior chain's step is the posterior's own (both start at state 0)
                    his.append(x[-B:])
                    zis.append(sample(self.logprobs(self.prior_net(his[-1])), ui[k - 1]))
            posts.append(self.posterior(h, e_emb[:, k]))  # (B, S, K)
            zs.append(sample(posts[-1], u[k]))
            hs.append(h)
        deter = torch.stack(hs, 1)  # (B, T+1, D)
        prior = self.logprobs(self.prior_net(deter))  # (B, T+1, S, K), all steps in one call
        im = dict(deter=torch.stack(his, 1), stoch=torch.stack(zis, 1)) if imagine else None
        return dict(deter=deter, stoch=torch.stack(zs, 1), post=torch.stack(posts, 1), prior=prior, ctx=ctx, im=im)

    def imagine(self, state, actions):
        """Prior rollout. state: deter (B, D), stoch (B, S, K); actions (B, T, A) ->
        dict deter (B, T, D), stoch (B, T, S, K), prior (B, T, S, K) for the T next frames."""
        h, z, hs, zs, priors = state["deter"], state["stoch"], [], [], []
        for k in range(actions.shape[1]):
            h = self.transition(h, z, actions[:, k])
            priors.append(self.logprobs(self.prior_net(h)))  # (B, S, K)
            z = sample(priors[-1])
            hs.append(h)
            zs.append(z)
        return dict(deter=torch.stack(hs, 1), stoch=torch.stack(zs, 1), prior=torch.stack(priors, 1))

    def decode(self, states, ctx):
        """deter (B, T, D), stoch (B, T, S, K), ctx from observe -> images (B, T, 3, H, W), one call."""
        feat = torch.cat([states["deter"], states["stoch"].flatten(2)], -1)  # (B, T, F)
        out = self.decoder(feat.flatten(0, 1), ctx if self.cfg.context else None)  # (B*T, 3, H, W)
        return out.unflatten(0, feat.shape[:2]).float()  # (B, T, 3, H, W)

    def resize(self, frames):
        """(B, T, 3, H', W') -> (B, T, 3, H, W) at the model's image_size (area average when H' > H)."""
        if frames.shape[-1] == self.cfg.image_size:
            return frames
        x = F.interpolate(frames.flatten(0, 1).float(), size=self.cfg.image_size, mode="area")  # (B*T, 3, H, W)
        return x.unflatten(0, frames.shape[:2])

    @torch.no_grad()
    def openloop(self, frames_context, actions):
        """Imagined frames for pictures (no gradient). frames_context (B, c, 3, H, W) are frames 0..c-1,
        actions (B, T, A) with T >= c -> (B, T-c+1, 3, H, W) in [0,1]: frames c..T from the prior alone."""
        c, frames_context = frames_context.shape[1], self.resize(frames_context)
        assert actions.shape[1] >= c, f"{c} context frames need at least {c} actions, got {actions.shape[1]}"
        st = self.observe(frames_context, actions[:, : c - 1])
        start = dict(deter=st["deter"][:, -1], stoch=st["stoch"][:, -1])
        return self.decode(self.imagine(start, actions[:, c - 1 :]), st["ctx"]).clamp(0, 1)

    def loss(self, frames, actions, openloop_weight: float = 0.0, openloop_frames: int = 0) -> LossOut:
        """frames (B, T+1, 3, H, W) float in [0,1], actions (B, T, A) -> LossOut (see module docstring)."""
        assert frames.is_floating_point(), "frames must be float in [0,1] (uint8 / 255)"
        cfg, frames = self.cfg, self.resize(frames.float())
        (B, T1), target = frames.shape[:2], frames[:, 1:]  # target (B, T, 3, H, W): the open-loop frames' truth
        st = self.observe(frames, actions, imagine=openloop_weight > 0)
        states = dict(deter=st["deter"], stoch=st["stoch"])  # (B, T+1, ...) posterior states
        if openloop_weight > 0:  # frames 1..T from the first posterior state through the prior alone
            if 0 < openloop_frames < T1 - 1:  # a random L of the T: an unbiased estimate of their mean error
                pick = torch.rand(B, T1 - 1, device=frames.device).argsort(1)[:, :openloop_frames]  # (B, L)
                rows = torch.arange(B, device=frames.device)[:, None]  # (B, 1)
                st["im"], target = {k: v[rows, pick] for k, v in st["im"].items()}, target[rows, pick]  # (B, L, ...)
            states = {k: torch.cat([states[k], st["im"][k]], 1) for k in states}  # (B, T+1+L, ...): one decoder call
        decoded = self.decode(states, st["ctx"])  # (B, T+1 [+L], 3, H, W)
        decoded, imagined = decoded.split([T1, decoded.shape[1] - T1], 1)  # (B, T+1, ...), (B, L or 0, ...)
        recon = (decoded - frames).square().sum((2, 3, 4))  # (B, T+1)
        dyn, rep, kl = kl_balance(st["post"], st["prior"], cfg.free_nats)  # (B, T+1) each
        loss = (recon + cfg.dyn_scale * dyn + cfg.rep_scale * rep).mean()
        ent = lambda logp: -(logp.exp() * logp).sum((-2, -1)).mean()  # summed over the S categoricals
        m = dict(recon=recon.mean(), kl_dyn=cfg.dyn_scale * dyn.mean(), kl_rep=cfg.rep_scale * rep.mean(),
                 kl=kl.mean(), prior_entropy=ent(st["prior"]), post_entropy=ent(st["post"]),
                 kl_floor=(kl[:, 1:] <= cfg.free_nats).float().mean())  # transitions only: frame 0 has no z
        if openloop_weight > 0:
            m["openloop"] = (imagined - target).square().sum((2, 3, 4)).mean()
            loss = loss + openloop_weight * m["openloop"]
        return LossOut(loss, {k: v.detach() for k, v in m.items()})
