"""A UNet2DModel that reads diffusers' config.json and state dicts, with no diffusers import.

The module tree mirrors diffusers' UNet2DModel attribute for attribute, so a state dict saved
by diffusers loads here with ``load_state_dict(strict=True)`` and the reverse holds too.
The forward pass is written for inference speed (fused q/k/v projection, one SiLU of the time
embedding shared by all ResNet blocks, in-place activations when autograd is off,
``scaled_dot_product_attention``) but stays trainable: with gradients enabled nothing is
done in place.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

# diffusers' UNet2DModel constructor defaults (diffusers 0.42.1). A config.json leaves out
# keys that equal these, so missing keys must take exactly these values.
UNET2D_DEFAULTS = {
    "sample_size": None,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
}

DOWN_BLOCK_TYPES = ("DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D")
UP_BLOCK_TYPES = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D")
MID_BLOCK_TYPES = ("UNetMidBlock2D", None)
TIME_EMBEDDING_TYPES = ("positional", "fourier")
CLASS_EMBED_TYPES = (None, "timestep", "identity")
TIME_SCALE_SHIFTS = ("default", "scale_shift")
RESAMPLE_TYPES = ("conv", "resnet")
ACTIVATIONS = {"silu": F.silu, "swish": F.silu, "mish": F.mish, "gelu": F.gelu, "relu": F.relu}
# Keys config.json carries that say nothing about the network itself.
BOOKKEEPING_PREFIX = "_"


def _strip_unetres(block_type):
    # diffusers accepts "UNetRes"-prefixed block names as aliases of the plain ones.
    if isinstance(block_type, str) and block_type.startswith("UNetRes"):
        return block_type[len("UNetRes"):]
    return block_type


def resolve_config(config: dict) -> dict:
    """Fill diffusers' defaults into ``config`` and check every field we build from.

    Raises ValueError naming the field, its value and what is supported.
    """
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict (a diffusers UNet2DModel config.json), got {type(config).__name__}")
    class_name = config.get("_class_name", "UNet2DModel")
    if class_name != "UNet2DModel":
        raise ValueError(f"config _class_name={class_name!r}: only UNet2DModel is supported")
    unknown = sorted(k for k in config if not k.startswith(BOOKKEEPING_PREFIX) and k not in UNET2D_DEFAULTS)
    if unknown:
        raise ValueError(f"config field(s) {unknown} are not UNet2DModel fields we support; "
                         f"supported: {sorted(UNET2D_DEFAULTS)}")
    cfg = copy.deepcopy(UNET2D_DEFAULTS)
    cfg.update({k: copy.deepcopy(v) for k, v in config.items() if not k.startswith(BOOKKEEPING_PREFIX)})
    for key in ("down_block_types", "up_block_types", "block_out_channels"):
        if not isinstance(cfg[key], (list, tuple)) or not cfg[key]:
            raise ValueError(f"config {key}={cfg[key]!r}: must be a non-empty list")
        cfg[key] = list(cfg[key])

    def check(field, allowed):
        if cfg[field] not in allowed:
            raise ValueError(f"config {field}={cfg[field]!r} is not supported; allowed: {list(allowed)}")

    for i, name in enumerate(cfg["down_block_types"]):
        if _strip_unetres(name) not in DOWN_BLOCK_TYPES:
            raise ValueError(f"config down_block_types[{i}]={name!r} is not supported; allowed: {list(DOWN_BLOCK_TYPES)}")
    for i, name in enumerate(cfg["up_block_types"]):
        if _strip_unetres(name) not in UP_BLOCK_TYPES:
            raise ValueError(f"config up_block_types[{i}]={name!r} is not supported; allowed: {list(UP_BLOCK_TYPES)}")
    check("mid_block_type", MID_BLOCK_TYPES)
    check("time_embedding_type", TIME_EMBEDDING_TYPES)
    check("class_embed_type", CLASS_EMBED_TYPES)
    check("resnet_time_scale_shift", TIME_SCALE_SHIFTS)
    check("downsample_type", RESAMPLE_TYPES)
    check("upsample_type", RESAMPLE_TYPES)
    if str(cfg["act_fn"]).lower() not in ACTIVATIONS:
        raise ValueError(f"config act_fn={cfg['act_fn']!r} is not supported; allowed: {list(ACTIVATIONS)}")

    n = len(cfg["block_out_channels"])
    if len(cfg["down_block_types"]) != n or len(cfg["up_block_types"]) != n:
        raise ValueError(f"config down_block_types ({len(cfg['down_block_types'])}), up_block_types "
                         f"({len(cfg['up_block_types'])}) and block_out_channels ({n}) must have the same length")
    positive_ints = ["in_channels", "out_channels", "layers_per_block", "norm_num_groups"]
    for key in positive_ints:
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"config {key}={cfg[key]!r}: must be a positive integer")
    groups = cfg["norm_num_groups"]
    for i, ch in enumerate(cfg["block_out_channels"]):
        if not isinstance(ch, int) or ch < 1 or ch % groups:
            raise ValueError(f"config block_out_channels[{i}]={ch!r}: must be a positive multiple of "
                             f"norm_num_groups={groups}")
    head_dim = cfg["attention_head_dim"]
    if head_dim is not None and (not isinstance(head_dim, int) or head_dim < 1):
        raise ValueError(f"config attention_head_dim={head_dim!r}: must be a positive integer or null (one head)")
    attn_groups = cfg["attn_norm_num_groups"]
    if attn_groups is not None and (not isinstance(attn_groups, int) or cfg["block_out_channels"][-1] % attn_groups):
        raise ValueError(f"config attn_norm_num_groups={attn_groups!r}: must divide block_out_channels[-1]="
                         f"{cfg['block_out_channels'][-1]}")
    if cfg["downsample_padding"] not in (0, 1):
        raise ValueError(f"config downsample_padding={cfg['downsample_padding']!r}; allowed: 0, 1")
    if cfg["class_embed_type"] is None and cfg["num_class_embeds"] is not None:
        if not isinstance(cfg["num_class_embeds"], int) or cfg["num_class_embeds"] < 1:
            raise ValueError(f"config num_class_embeds={cfg['num_class_embeds']!r}: must be a positive integer")
    if not 0.0 <= float(cfg["dropout"]) < 1.0:
        raise ValueError(f"config dropout={cfg['dropout']!r}: must be in [0, 1)")
    if float(cfg["norm_eps"]) <= 0:
        raise ValueError(f"config norm_eps={cfg['norm_eps']!r}: must be > 0")
    if float(cfg["mid_block_scale_factor"]) == 0:
        raise ValueError("config mid_block_scale_factor=0: must be non-zero (outputs are divided by it)")
    cfg["_class_name"] = "UNet2DModel"
    return cfg


# --------------------------------------------------------------------------------------------
# building blocks (attribute names match diffusers so state-dict keys match)

def _silu(x: torch.Tensor) -> torch.Tensor:
    # In place only when autograd is off: SiLU's backward needs its input.
    return F.silu(x, inplace=not torch.is_grad_enabled())


class Resample(nn.Module):
    """Parameter-free 2x resampling used inside a resampling ResNet block."""

    def __init__(self, direction: str):
        super().__init__()
        self.direction = direction

    def forward(self, x):
        if self.direction == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResnetBlock2D(nn.Module):
    def __init__(self, in_channels, out_channels, temb_channels, groups, eps, act, dropout,
                 scale_shift=False, output_scale_factor=1.0, resample=None):
        super().__init__()
        self.act = act
        self.scale_shift = scale_shift
        self.output_scale_factor = float(output_scale_factor)
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels * (2 if scale_shift else 1))
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.resample = Resample(resample) if resample else None
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, temb_act):
        """``temb_act`` is the time embedding after the activation (shared by all blocks)."""
        inplace = not torch.is_grad_enabled()
        h = self.act(F.group_norm(x, self.norm1.num_groups, self.norm1.weight, self.norm1.bias, self.norm1.eps))
        if self.resample is not None:
            x = self.resample(x)
            h = self.resample(h)
        h = self.conv1(h)
        t = self.time_emb_proj(temb_act)[:, :, None, None]
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)
            h = self.norm2(h)
            h = torch.addcmul(shift, h, 1 + scale)
        else:
            h = h.add_(t) if inplace else h + t
            h = self.norm2(h)
        h = self.act(h)
        h = self.dropout(h)
        h = self.conv2(h)
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        h = h.add_(x) if inplace else h + x
        if self.output_scale_factor != 1.0:
            h = h / self.output_scale_factor
        return h


class Attention(nn.Module):
    """Self-attention over the pixels of a feature map with GroupNorm and a residual."""

    def __init__(self, channels, head_dim, groups, eps, output_scale_factor=1.0):
        super().__init__()
        self.heads = channels // head_dim
        self.head_dim = head_dim
        inner = self.heads * head_dim
        self.output_scale_factor = float(output_scale_factor)
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps) if groups is not None else None
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, hgt, wid = x.shape
        keep_channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        h = self.group_norm(x) if self.group_norm is not None else x
        # [B, C, H, W] -> [B, HW, C]: a free view for channels_last input, one copy otherwise.
        tokens = h.permute(0, 2, 3, 1).reshape(b, hgt * wid, c)
        # One matmul for q, k and v instead of three.
        weight = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])
        bias = torch.cat([self.to_q.bias, self.to_k.bias, self.to_v.bias])
        qkv = F.linear(tokens, weight, bias).view(b, hgt * wid, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.transpose(1, 2).reshape(b, hgt * wid, self.heads * self.head_dim)
        out = self.to_out[1](self.to_out[0](out))
        out = out.view(b, hgt, wid, c).permute(0, 3, 1, 2)
        if not keep_channels_last:
            out = out.contiguous()
        out = out.add_(x) if not torch.is_grad_enabled() else out + x
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out


class Downsample2D(nn.Module):
    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=padding)

    def forward(self, x, temb_act=None):
        if self.padding == 0:
            # The original DDPM pads only right and bottom before a stride-2 conv.
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, temb_act=None):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, resnets, attentions, downsampler):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        self.has_attention = attentions is not None
        self.downsamplers = nn.ModuleList([downsampler]) if downsampler is not None else None

    def forward(self, x, temb_act):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb_act)
            if self.has_attention:
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x, temb_act)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    def __init__(self, resnets, attentions, upsampler):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        self.has_attention = attentions is not None
        self.upsamplers = nn.ModuleList([upsampler]) if upsampler is not None else None

    def forward(self, x, skips, temb_act):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb_act)
            if self.has_attention:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, temb_act)
        return x


class MidBlock(nn.Module):
    def __init__(self, resnets, attentions):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        # A list holding None registers no parameters, as in diffusers when add_attention=False.
        self.attentions = nn.ModuleList(attentions)

    def forward(self, x, temb_act):
        x = self.resnets[0](x, temb_act)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            if attn is not None:
                x = attn(x)
            x = resnet(x, temb_act)
        return x


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, out_channels)
        self.linear_2 = nn.Linear(out_channels, out_channels)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class SinusoidalProjection(nn.Module):
    """DDPM's sinusoidal embedding of a (possibly fractional) timestep; no parameters."""

    def __init__(self, channels, flip_sin_to_cos, freq_shift):
        super().__init__()
        self.channels = channels
        self.flip_sin_to_cos = bool(flip_sin_to_cos)
        self.freq_shift = float(freq_shift)

    def forward(self, t):
        half = self.channels // 2
        exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(exponent / (half - self.freq_shift))
        angles = t[:, None].float() * freqs[None, :]
        sin, cos = torch.sin(angles), torch.cos(angles)
        emb = torch.cat([cos, sin] if self.flip_sin_to_cos else [sin, cos], dim=-1)
        if self.channels % 2:
            emb = F.pad(emb, (0, 1))
        return emb


class FourierProjection(nn.Module):
    """Random Fourier features of log(t) (score-SDE style); ``weight`` is a fixed buffer-like
    parameter stored in the checkpoint as ``time_proj.weight``."""

    def __init__(self, channels, scale=16.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels) * scale, requires_grad=False)

    def forward(self, t):
        proj = torch.log(t.float())[:, None] * self.weight.float()[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class UNet2DModel(nn.Module):
    """diffusers-compatible UNet2DModel: ``UNet2DModel(config_dict)``; ``net(x, t, class_labels)``.

    ``config`` is a diffusers UNet2DModel config.json dict; missing keys take diffusers'
    constructor defaults. ``t`` is a float tensor of shape [batch] or a scalar (fractional
    timesteps are used as given, never truncated). ``scheduler_config`` is None until a
    loader attaches the checkpoint's scheduler_config.json.
    """

    def __init__(self, config: dict):
        super().__init__()
        cfg = resolve_config(config)
        self.config = cfg
        self.scheduler_config = None
        act = ACTIVATIONS[str(cfg["act_fn"]).lower()]
        if act is F.silu:
            act = _silu
        self._act = act
        channels = cfg["block_out_channels"]
        groups, eps = cfg["norm_num_groups"], float(cfg["norm_eps"])
        dropout = float(cfg["dropout"])
        scale_shift = cfg["resnet_time_scale_shift"] == "scale_shift"
        layers = cfg["layers_per_block"]
        temb_dim = cfg["time_embedding_dim"] or channels[0] * 4
        self.temb_dim = temb_dim

        def resnet(cin, cout, resample=None, output_scale_factor=1.0):
            return ResnetBlock2D(cin, cout, temb_dim, groups, eps, act, dropout, scale_shift,
                                 output_scale_factor, resample)

        def attention(ch, attn_groups=groups, output_scale_factor=1.0):
            head_dim = cfg["attention_head_dim"] if cfg["attention_head_dim"] is not None else ch
            if head_dim > ch:
                raise ValueError(f"config attention_head_dim={head_dim} is larger than a block's {ch} channels")
            return Attention(ch, head_dim, attn_groups, eps, output_scale_factor)

        self.conv_in = nn.Conv2d(cfg["in_channels"], channels[0], 3, padding=1)
        if cfg["time_embedding_type"] == "fourier":
            self.time_proj = FourierProjection(channels[0], scale=16.0)
            proj_dim = 2 * channels[0]
        else:
            self.time_proj = SinusoidalProjection(channels[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
            proj_dim = channels[0]
        self.time_embedding = TimestepEmbedding(proj_dim, temb_dim)

        class_type = cfg["class_embed_type"]
        if class_type is None and cfg["num_class_embeds"] is not None:
            self.class_embedding = nn.Embedding(cfg["num_class_embeds"], temb_dim)
        elif class_type == "timestep":
            self.class_embedding = TimestepEmbedding(proj_dim, temb_dim)
        elif class_type == "identity":
            self.class_embedding = nn.Identity()
        else:
            self.class_embedding = None

        self.down_blocks = nn.ModuleList()
        out_ch = channels[0]
        for i, block_type in enumerate(cfg["down_block_types"]):
            block_type = _strip_unetres(block_type)
            in_ch, out_ch = out_ch, channels[i]
            last = i == len(channels) - 1
            resnets = [resnet(in_ch if j == 0 else out_ch, out_ch) for j in range(layers)]
            attentions = [attention(out_ch) for _ in range(layers)] if block_type == "AttnDownBlock2D" else None
            down = None
            if not last:
                # diffusers honours downsample_type only in attention blocks.
                use_resnet = block_type == "ResnetDownsampleBlock2D" or (
                    block_type == "AttnDownBlock2D" and cfg["downsample_type"] == "resnet")
                down = resnet(out_ch, out_ch, resample="down") if use_resnet else Downsample2D(
                    out_ch, cfg["downsample_padding"])
            self.down_blocks.append(DownBlock(resnets, attentions, down))

        if cfg["mid_block_type"] is None:
            self.mid_block = None
        else:
            mid_ch = channels[-1]
            factor = float(cfg["mid_block_scale_factor"])
            attn_groups = cfg["attn_norm_num_groups"]
            if attn_groups is None:
                # diffusers drops the mid attention's GroupNorm with scale_shift ResNets.
                attn_groups = groups if not scale_shift else None
            mid_attn = [attention(mid_ch, attn_groups, factor) if cfg["add_attention"] else None]
            self.mid_block = MidBlock([resnet(mid_ch, mid_ch, output_scale_factor=factor),
                                       resnet(mid_ch, mid_ch, output_scale_factor=factor)], mid_attn)

        self.up_blocks = nn.ModuleList()
        rev = list(reversed(channels))
        out_ch = rev[0]
        for i, block_type in enumerate(cfg["up_block_types"]):
            block_type = _strip_unetres(block_type)
            prev_ch, out_ch = out_ch, rev[i]
            skip_in_ch = rev[min(i + 1, len(channels) - 1)]
            last = i == len(channels) - 1
            resnets = []
            for j in range(layers + 1):
                skip_ch = skip_in_ch if j == layers else out_ch
                resnets.append(resnet((prev_ch if j == 0 else out_ch) + skip_ch, out_ch))
            attentions = [attention(out_ch) for _ in range(layers + 1)] if block_type == "AttnUpBlock2D" else None
            up = None
            if not last:
                use_resnet = block_type == "ResnetUpsampleBlock2D" or (
                    block_type == "AttnUpBlock2D" and cfg["upsample_type"] == "resnet")
                up = resnet(out_ch, out_ch, resample="up") if use_resnet else Upsample2D(out_ch)
            self.up_blocks.append(UpBlock(resnets, attentions, up))

        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], cfg["out_channels"], 3, padding=1)

    # ----------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    def _timesteps(self, t, batch: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, device=device)
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
            raise ValueError(f"t must be a real number or tensor of timesteps, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.reshape(1).expand(batch)
        elif t.ndim != 1 or t.shape[0] not in (1, batch):
            raise ValueError(f"t must be a scalar or have shape [batch]=[{batch}], got shape {list(t.shape)}")
        elif t.shape[0] == 1:
            t = t.expand(batch)
        # Timestep embeddings are computed in float32 whatever the network's dtype.
        return t.to(torch.float32)

    def forward(self, x: torch.Tensor, t, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg["in_channels"]:
            raise ValueError(f"x must have shape [batch, {cfg['in_channels']}, H, W], got {list(x.shape)}")
        factor = 2 ** (len(cfg["block_out_channels"]) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"x height and width must be multiples of {factor}, got {x.shape[2]}x{x.shape[3]}")
        if cfg["center_input_sample"]:
            x = 2 * x - 1.0
        timesteps = self._timesteps(t, x.shape[0], x.device)
        emb = self.time_embedding(self.time_proj(timesteps).to(self.dtype))

        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("class_labels is required: this network is class-conditional")
            if cfg["class_embed_type"] == "timestep":
                class_labels = self.time_proj(torch.as_tensor(class_labels, device=x.device).reshape(-1)).to(self.dtype)
            elif cfg["class_embed_type"] is None:
                class_labels = torch.as_tensor(class_labels, device=x.device).long().reshape(-1)
            emb = emb + self.class_embedding(class_labels).to(self.dtype)
        elif class_labels is not None:
            raise ValueError("class_labels given but this network has no class embedding "
                             "(config num_class_embeds / class_embed_type unset)")

        temb_act = self._act(emb)  # every ResNet block applies its activation to the embedding first
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, temb_act)
            skips.extend(block_skips)
        if self.mid_block is not None:
            h = self.mid_block(h, temb_act)
        for block in self.up_blocks:
            h = block(h, skips, temb_act)
        h = _silu(self.conv_norm_out(h))
        h = self.conv_out(h)
        if cfg["time_embedding_type"] == "fourier":
            # Fourier models predict the score scaled by sigma; diffusers divides by t here.
            h = h / timesteps.to(h.dtype).reshape(-1, 1, 1, 1)
        return h

    def extra_repr(self) -> str:
        return f"block_out_channels={self.config['block_out_channels']}, temb_dim={self.temb_dim}"
