"""Our UNet2DModel gives diffusers' UNet2DModel outputs (to 1e-4 relative, float32) on random
weights that diffusers itself saved, for the configurations hub checkpoints and users use."""
import copy
import re

import pytest
import torch

import models
from conftest import rel_diff
from models.unet import UNET2D_DEFAULTS, UNet2DModel

diffusers = pytest.importorskip("diffusers")

CIFAR10 = {
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}
# google/ddpm-celebahq-256 (and -church-256) structure; channels divided by 4 to keep the test fast.
CELEBAHQ_SMALL = {
    **CIFAR10,
    "block_out_channels": [32, 32, 64, 64, 128, 128], "sample_size": 256,
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
}
MULTIHEAD_SCALE_SHIFT = {
    "block_out_channels": [32, 64, 64], "norm_num_groups": 8, "attention_head_dim": 8, "layers_per_block": 1,
    "down_block_types": ["ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"],
    "resnet_time_scale_shift": "scale_shift", "downsample_type": "resnet", "upsample_type": "resnet",
    "mid_block_scale_factor": 2 ** -0.5, "dropout": 0.1,
}
MULTIHEAD_ATTN_GROUPS = {**MULTIHEAD_SCALE_SHIFT, "attn_norm_num_groups": 4, "resnet_time_scale_shift": "default",
                         "downsample_padding": 1, "freq_shift": 1, "flip_sin_to_cos": False, "norm_eps": 1e-6}
CLASS_CONDITIONAL = {
    "block_out_channels": [32, 64], "norm_num_groups": 8, "layers_per_block": 1, "attention_head_dim": 16,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "num_class_embeds": 10,
}
FOURIER = {
    "block_out_channels": [32, 64], "norm_num_groups": 8, "layers_per_block": 1,
    "down_block_types": ["AttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "AttnUpBlock2D"],
    "time_embedding_type": "fourier", "center_input_sample": True, "attention_head_dim": None,
}
NO_MID_BLOCK = {**CLASS_CONDITIONAL, "num_class_embeds": None, "mid_block_type": None,
                "time_embedding_dim": 96, "act_fn": "mish"}
NO_MID_ATTENTION = {**CLASS_CONDITIONAL, "num_class_embeds": None, "add_attention": False, "in_channels": 1,
                    "out_channels": 2}


def diffusers_net(config, seed=0):
    torch.manual_seed(seed)
    net = diffusers.UNet2DModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.no_grad():  # the default init zeroes some layers; random everywhere tests every path
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net.eval()


def saved_by_diffusers(config, folder, seed=0):
    ref = diffusers_net(config, seed)
    ref.save_pretrained(folder)
    return ref


def both_outputs(ref, ours, x, t, **kw):
    with torch.inference_mode():
        return ours(x, t, **kw), ref(x, t, **kw).sample


PARITY_CASES = {
    "cifar10-32": (CIFAR10, 32, {}),
    "celebahq-256 structure at 64x64": (CELEBAHQ_SMALL, 64, {}),
    "multi-head, scale_shift, resnet up/down": (MULTIHEAD_SCALE_SHIFT, 16, {}),
    "multi-head, attn_norm_num_groups, padding 1": (MULTIHEAD_ATTN_GROUPS, 16, {}),
    "class-conditional (num_class_embeds)": (CLASS_CONDITIONAL, 16, {"class_labels": torch.tensor([3, 7])}),
    "class-conditional (timestep embed)": ({**CLASS_CONDITIONAL, "num_class_embeds": None,
                                            "class_embed_type": "timestep"}, 16,
                                           {"class_labels": torch.tensor([2.0, 9.0])}),
    "class-conditional (identity)": ({**CLASS_CONDITIONAL, "num_class_embeds": None, "class_embed_type": "identity"},
                                     16, {"class_labels": torch.randn(2, 128, generator=torch.Generator().manual_seed(1))}),
    "fourier embedding, centred input": (FOURIER, 16, {}),
    "no mid block, custom time dim, mish": (NO_MID_BLOCK, 16, {}),
    "mid block without attention, 1->2 channels": (NO_MID_ATTENTION, 16, {}),
}


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_loaded_checkpoint_matches_diffusers_output(name, tmp_path):
    config, size, kwargs = PARITY_CASES[name]
    ref = saved_by_diffusers(config, tmp_path)
    ours = models.load(tmp_path, device="cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, ref.config.in_channels, size, size, generator=gen)
    # Fractional timesteps (diffusers keeps the fraction of a float tensor); Fourier models take sigmas.
    t = torch.tensor([0.35, 20.0]) if config.get("time_embedding_type") == "fourier" else torch.tensor([10.5, 700.25])
    mine, theirs = both_outputs(ref, ours, x, t, **kwargs)
    assert mine.shape == theirs.shape
    assert rel_diff(mine, theirs) < 1e-4, name


def test_state_dict_keys_are_diffusers_keys_for_every_config():
    for name, (config, _, _) in PARITY_CASES.items():
        with torch.device("meta"):
            ref = diffusers.UNet2DModel(**{k: v for k, v in config.items() if not k.startswith("_")})
            ours = UNet2DModel(config)
        theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert mine == theirs, name


def test_missing_config_keys_take_diffusers_constructor_defaults():
    import inspect

    signature = inspect.signature(diffusers.UNet2DModel.__init__)
    for key, value in UNET2D_DEFAULTS.items():
        default = signature.parameters[key].default
        assert value == (list(default) if isinstance(default, tuple) else default), key
    small = {"block_out_channels": [32, 32, 64, 64], "norm_num_groups": 8, "layers_per_block": 1}
    with torch.device("meta"):
        ref = diffusers.UNet2DModel(**small)
        ours = UNet2DModel(small)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_scalar_and_batch_timesteps_agree():
    torch.manual_seed(0)
    net = UNet2DModel(CLASS_CONDITIONAL | {"num_class_embeds": None}).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        batch = net(x, torch.full((3,), 123.75))
        assert torch.equal(net(x, 123.75), batch)
        assert torch.equal(net(x, torch.tensor(123.75)), batch)
        assert torch.equal(net(x, torch.tensor([123.75])), batch)
        # the fraction is used, not truncated
        assert not torch.allclose(net(x, 123.0), batch)


def test_saved_by_us_loads_in_diffusers(tmp_path):
    torch.manual_seed(0)
    ours = UNet2DModel(MULTIHEAD_SCALE_SHIFT).eval()
    schedule = models.default_scheduler_config("v_prediction")
    models.save_pretrained(ours, tmp_path, scheduler_config=schedule)
    ref = diffusers.UNet2DModel.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 16, 16)
    mine, theirs = both_outputs(ref, ours, x, torch.tensor([1.0, 999.0]))
    assert rel_diff(mine, theirs) < 1e-4
    assert models.load(tmp_path).scheduler_config == schedule


def test_save_in_float16_halves_the_file_and_still_matches(tmp_path):
    torch.manual_seed(0)
    ours = UNet2DModel(CLASS_CONDITIONAL).eval()
    models.save_pretrained(ours, tmp_path / "fp32")
    models.save_pretrained(ours, tmp_path / "fp16", dtype=torch.float16)
    size32 = (tmp_path / "fp32" / "diffusion_pytorch_model.safetensors").stat().st_size
    size16 = (tmp_path / "fp16" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert size16 < 0.55 * size32
    loaded = models.load(tmp_path / "fp16", device="cpu")
    assert loaded.dtype == torch.float32  # upcast on load for the CPU
    x, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 9])
    with torch.inference_mode():
        assert rel_diff(loaded(x, 50.0, class_labels=labels), ours(x, 50.0, class_labels=labels)) < 2e-2


def test_channels_last_and_bfloat16_options(tmp_path):
    ref = saved_by_diffusers(MULTIHEAD_SCALE_SHIFT, tmp_path)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5.0, 500.0])
    with torch.inference_mode():
        expected = ref(x, t).sample
        cl = models.load(tmp_path, device="cpu", channels_last=True)
        assert cl.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert rel_diff(cl(x.to(memory_format=torch.channels_last), t), expected) < 1e-4
        bf16 = models.load(tmp_path, device="cpu", dtype="bf16")
        out = bf16(x.bfloat16(), t)
    assert out.dtype == torch.bfloat16
    assert rel_diff(out.float(), expected) < 5e-2


def test_loaded_network_is_frozen_and_in_eval_mode(tmp_path):
    saved_by_diffusers(CLASS_CONDITIONAL, tmp_path)
    net = models.load(tmp_path)
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_network_trains_gradients_reach_every_learned_weight():
    torch.manual_seed(0)
    net = UNet2DModel(MULTIHEAD_SCALE_SHIFT).train()
    x = torch.randn(2, 3, 16, 16)
    loss = net(x, torch.tensor([3.0, 400.0])).square().mean()
    loss.backward()
    without_grad = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert without_grad == []
    # dropout is active in training mode only
    with torch.no_grad():
        assert not torch.equal(net(x, 3.0), net(x, 3.0))
        net.eval()
        assert torch.equal(net(x, 3.0), net(x, 3.0))


@pytest.mark.parametrize("field, value, named", [
    ("down_block_types", ["CrossAttnDownBlock2D", "DownBlock2D"], "CrossAttnDownBlock2D"),
    ("up_block_types", ["UpBlock2D", "SkipUpBlock2D"], "SkipUpBlock2D"),
    ("mid_block_type", "UNetMidBlock2DCrossAttn", "UNetMidBlock2DCrossAttn"),
    ("time_embedding_type", "learned", "learned"),
    ("resnet_time_scale_shift", "spatial", "spatial"),
    ("class_embed_type", "projection", "projection"),
    ("downsample_type", "fir", "fir"),
    ("act_fn", "tanh", "tanh"),
    ("cross_attention_dim", 768, "cross_attention_dim"),
    ("block_out_channels", [32, 60], "block_out_channels[1]"),
    ("attention_head_dim", 0, "attention_head_dim"),
])
def test_unsupported_config_is_refused_with_the_field_named(field, value, named):
    config = copy.deepcopy(CLASS_CONDITIONAL)
    config[field] = value
    with pytest.raises(ValueError, match=re.escape(named)):
        UNet2DModel(config)


def test_class_labels_are_required_exactly_when_the_network_is_conditional():
    conditional = UNet2DModel(CLASS_CONDITIONAL).eval()
    plain = UNet2DModel({**CLASS_CONDITIONAL, "num_class_embeds": None}).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        with pytest.raises(ValueError, match="class_labels is required"):
            conditional(x, 10.0)
        with pytest.raises(ValueError, match="no class embedding"):
            plain(x, 10.0, class_labels=torch.tensor([1]))
        with pytest.raises(ValueError, match="multiples of 2"):
            plain(torch.randn(1, 3, 15, 16), 10.0)
        with pytest.raises(ValueError, match=r"shape \[batch\]"):
            plain(x.expand(2, -1, -1, -1), torch.tensor([1.0, 2.0, 3.0]))
