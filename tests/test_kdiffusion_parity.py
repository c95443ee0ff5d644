"""Second oracle: k-diffusion 0.1.1.post1 (test-only) on the same sigmas, model convention and
Brownian trees -> the same image (float64 on both sides, to 1e-4; measured ~1e-13)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import kdiffusion_parity as kp  # noqa: E402

pytest.importorskip("torchsde")
KS = kp.load_sampling()
if KS is None:
    pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1)",
                allow_module_level=True)


@pytest.mark.parametrize("spacing", kp.SCHEDULES)
@pytest.mark.parametrize("case", kp.SAMPLER_CASES, ids=[c[0] for c in kp.SAMPLER_CASES])
def test_sampler_matches_kdiffusion(case, spacing):
    diff = kp.sampler_case(KS, *case, spacing=spacing)
    assert diff is not None, f"{case[0]}: our {case[2]!r} is not registered"
    assert diff < 1e-4


def test_dpm_fast_matches_kdiffusion():
    # k-diffusion places dpm_fast's log-SNR points in float32 (torch.tensor(sigma)): ~2e-5 apart
    assert kp.dpm_fast_case(KS) < 1e-4


def test_schedules_match_kdiffusion():
    # k-diffusion builds its sigmas in float32: relative 1e-6
    for name, diff in kp.schedule_cases(KS).items():
        assert diff < 1e-6, name


def test_brownian_image_zero_is_the_one_seed_tree_of_a_batch_of_one():
    """ComfyUI's tree (one seed, the batch's shape) for one image = our brownian image 0."""
    import torch
    import samplers
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    theirs = KS.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=kp.SEED)
    ours = samplers.core.NoiseSource(torch.Generator().manual_seed(kp.SEED), "brownian", [10.0, 3.0, 0.1, 0.0])
    for a, b in [(10.0, 3.0), (3.0, 0.1)]:
        assert torch.allclose(ours.randn_like(x, a, b), theirs(torch.tensor(a), torch.tensor(b)), atol=1e-12)

