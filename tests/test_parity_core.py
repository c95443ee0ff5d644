"""Same settings, same seed, same model: the same image as diffusers (DDPM / DDIM / PNDM)."""
import pytest
import torch

import samplers
from conftest import rel_diff, toy_model

diffusers = pytest.importorskip("diffusers")


def diffusers_loop(scheduler, model, noise, steps, generator=None, **step_kwargs):
    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = model(scheduler.scale_model_input(x, t), t.float().reshape(1).expand(x.shape[0]))
        kw = dict(step_kwargs)
        if generator is not None:
            kw["generator"] = generator
        x = scheduler.step(out, t, x, **kw).prev_sample
    return x


def ours(config, steps, model, noise, seed=None, method=None, **options):
    sampler = samplers.from_diffusers_config(config, steps, method=method, **options)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return sampler.sample(model, noise, gen), sampler


DDIM_CASES = [
    dict(steps=10), dict(steps=10, timestep_spacing="linspace"), dict(steps=10, timestep_spacing="trailing"),
    dict(steps=10, steps_offset=1), dict(steps=1), dict(steps=2, timestep_spacing="trailing"),
    dict(steps=5, timestep_spacing="linspace"), dict(steps=50), dict(steps=1000),
    dict(steps=1000, timestep_spacing="linspace"), dict(steps=1000, timestep_spacing="trailing"),
    dict(steps=10, eta=0.5), dict(steps=10, eta=1.0, timestep_spacing="trailing"),
    dict(steps=20, eta=1.0, set_alpha_to_one=False), dict(steps=10, clip_sample=False),
    dict(steps=10, set_alpha_to_one=False, timestep_spacing="linspace"),
    dict(steps=10, prediction_type="v_prediction"), dict(steps=10, prediction_type="sample"),
    dict(steps=10, rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"),
    dict(steps=10, thresholding=True, sample_max_value=1.5, clip_sample=False),
    dict(steps=10, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False),
    dict(steps=10, beta_schedule="squaredcos_cap_v2", eta=0.3, use_clipped_model_output=True),
    dict(steps=25, clip_sample=True, clip_sample_range=0.5, eta=0.7, timestep_spacing="linspace"),
]


@pytest.mark.parametrize("case", DDIM_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_ddim_matches_diffusers(case):
    case = dict(case)
    steps, eta = case.pop("steps"), case.pop("eta", 0.0)
    clipped = case.pop("use_clipped_model_output", False)
    model, noise = toy_model(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref = diffusers_loop(diffusers.DDIMScheduler(**case), model, noise, steps,
                         torch.Generator().manual_seed(7) if eta else None, eta=eta,
                         use_clipped_model_output=clipped)
    got, _ = ours(dict(case, _class_name="DDIMScheduler"), steps, model, noise, seed=7, eta=eta,
                  use_clipped_model_output=clipped)
    assert torch.isfinite(ref).all()
    assert rel_diff(got, ref) < 1e-4


DDPM_CASES = [
    dict(steps=10), dict(steps=10, timestep_spacing="trailing"), dict(steps=10, timestep_spacing="linspace"),
    dict(steps=10, steps_offset=1), dict(steps=1000), dict(steps=50, variance_type="fixed_large"),
    dict(steps=10, variance_type="fixed_small_log"), dict(steps=10, variance_type="learned_range"),
    dict(steps=10, variance_type="learned"), dict(steps=10, prediction_type="v_prediction", clip_sample=False),
    dict(steps=10, prediction_type="sample"), dict(steps=10, thresholding=True),
    dict(steps=2, timestep_spacing="trailing", rescale_betas_zero_snr=True, prediction_type="v_prediction"),
]


@pytest.mark.parametrize("case", DDPM_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_ddpm_matches_diffusers(case):
    case = dict(case)
    steps = case.pop("steps")
    learned = case.get("variance_type", "").startswith("learned")
    model = toy_model(2 if learned else 1)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    ref = diffusers_loop(diffusers.DDPMScheduler(**case), model, noise, steps, torch.Generator().manual_seed(3))
    got, _ = ours(dict(case, _class_name="DDPMScheduler"), steps, model, noise, seed=3)
    assert torch.isfinite(ref).all()
    assert rel_diff(got, ref) < 1e-4


PNDM_CASES = [
    dict(steps=10), dict(steps=4), dict(steps=50), dict(steps=10, timestep_spacing="trailing"),
    dict(steps=10, timestep_spacing="linspace"), dict(steps=10, steps_offset=1, set_alpha_to_one=True),
    dict(steps=10, skip_prk_steps=True), dict(steps=1, skip_prk_steps=True), dict(steps=2, skip_prk_steps=True),
    dict(steps=5, skip_prk_steps=True, timestep_spacing="linspace"),
    dict(steps=10, skip_prk_steps=True, timestep_spacing="trailing", prediction_type="v_prediction"),
    dict(steps=50, skip_prk_steps=True, steps_offset=1),
    dict(steps=10, prediction_type="v_prediction", beta_schedule="scaled_linear", beta_start=0.00085,
         beta_end=0.012),
]


@pytest.mark.parametrize("case", PNDM_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_pndm_matches_diffusers(case):
    case = dict(case)
    steps = case.pop("steps")
    model, noise = toy_model(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    scheduler = diffusers.PNDMScheduler(**case)
    calls = []
    counted = lambda x, t: calls.append(1) or model(x, t)  # noqa: E731
    ref = diffusers_loop(scheduler, counted, noise, steps)
    got, sampler = ours(dict(case, _class_name="PNDMScheduler"), steps, model, noise)
    assert sampler.nfe == len(calls) == len(scheduler.timesteps)
    assert rel_diff(got, ref) < 1e-4
