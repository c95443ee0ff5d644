"""CFG++ (Chung et al. 2024): the guided x0 re-noised along the unconditional noise.  Programs ask for
the unconditional branch with Eval(uncond=True); samplers.guided(...).with_uncond gives both."""
from __future__ import annotations

import pytest
import torch

import samplers
from models.analytic import GaussianData
from tests.test_convergence import gaussian_problem

CFG_PP = [n for n in samplers.REGISTRY if n.endswith("-cfg++")]
SHAPE = (1, 2, 2)


class TwoClassNet:
    """A class-conditional 'network': label 0 -> data around +0.5, label 1 (the null label) -> around -0.2."""
    config = {"num_class_embeds": 2}

    def __init__(self):
        var = torch.full(SHAPE, 0.3, dtype=torch.float64)
        self.models = [GaussianData(torch.full(SHAPE, 0.5, dtype=torch.float64), var),
                       GaussianData(torch.full(SHAPE, -0.2, dtype=torch.float64), var)]

    def __call__(self, x, t, class_labels):
        outs = [m(x, t) for m in self.models]
        pick = class_labels.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        return outs[0] * (1 - pick) + outs[1] * pick


def guided(scale):
    return samplers.guided(TwoClassNet(), torch.tensor(0), guidance_scale=scale)


def test_there_are_eight_cfg_pp_forms():
    assert sorted(CFG_PP) == sorted(["euler-cfg++", "euler-a-cfg++", "dpm++2s-a-cfg++", "dpm++2m-cfg++",
                                     "res-multistep-cfg++", "res-multistep-a-cfg++", "gradient-estimation-cfg++",
                                     "ddim-cfg++"])


@pytest.mark.parametrize("name", CFG_PP)
def test_cfg_pp_on_an_unguided_model_is_the_plain_sampler(name):
    model, noise = gaussian_problem(batch=2)
    pp = samplers.create(name, 6)
    plain = samplers.create(name, 6, cfg_pp=False)
    a, b = (s.sample(model, noise, torch.Generator().manual_seed(1)) for s in (pp, plain))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", CFG_PP)
def test_cfg_pp_uses_the_unconditional_branch(name):
    """At lambda = 0 the guided x0 is the unconditional one: CFG++ is the plain sampler on the unconditional
    model.  At lambda = 1 it differs from plain conditional sampling (the noise direction is unconditional)."""
    noise = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    uncond_model = lambda x, t: TwoClassNet()(x, t, torch.ones(x.shape[0], dtype=torch.long))  # noqa: E731
    run = lambda s, m: s.sample(m, noise, torch.Generator().manual_seed(1))  # noqa: E731
    pp, plain = samplers.create(name, 6), samplers.create(name, 6, cfg_pp=False)
    assert torch.allclose(run(pp, guided(0.0)), run(plain, uncond_model), atol=1e-12)
    assert not torch.allclose(run(pp, guided(1.0)), run(plain, guided(1.0)), atol=1e-6)


def test_a_first_order_cfg_pp_step_lands_on_guided_x0_plus_unconditional_noise():
    """Euler CFG++ in k form: x' = x0_guided + k' eps_uncond (the paper's DDIM CFG++ update, eq. 10)."""
    noise = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = samplers.create("euler-cfg++", 4)
    model = guided(0.6)
    steps = list(s.run(model, noise))
    k0, k1 = s.grid.sigma[0], s.grid.sigma[1]
    x_vp = noise * s.plan.init / (1 + k0 * k0) ** 0.5
    t0 = torch.full((2,), float(s.grid.t[0]), dtype=torch.float32)
    g, u = model.with_uncond(x_vp, t0)
    a = (1 + k0 * k0) ** -0.5
    x0_g = (x_vp - k0 * a * g) / a
    expected = (x0_g + k1 * u) / (1 + k1 * k1) ** 0.5
    assert torch.allclose(steps[0].x, expected, atol=1e-10)


def test_run_together_gives_cfg_pp_its_unconditional_branch():
    noise = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = guided(0.7)
    a, b = samplers.create("dpm++2m-cfg++", 6), samplers.create("euler", 6)
    alone = [a.sample(model, noise), b.sample(model, noise)]
    last = [None, None]
    for round_ in samplers.run_together(model, [(a, noise, None), (b, noise, None)]):
        for i, step in enumerate(round_):
            if step is not None:
                last[i] = step.x
    assert all(torch.allclose(x, y, atol=1e-12) for x, y in zip(last, alone))
