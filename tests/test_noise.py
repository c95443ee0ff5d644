"""The noise option: per-image and brownian runs are batch-invariant; diffusers mode is today's."""
import pytest
import torch

import samplers
from conftest import toy_model
from samplers.noise import NoiseSource, noise_seed

# methods that offer the noise option but never draw: their choices rule the noisy paths out
NEVER_DRAW = {"dpm++2m-cfg++"}   # DPM++ 2M CFG++: algorithm_type narrowed to dpmsolver++ (an ODE)


def noisy_options(row) -> dict | None:
    """Options under which a registered method draws fresh noise (its defaults where it is stochastic)."""
    if row["stochastic"]:
        return {}
    if "eta" in row["options"] and "eta" not in row["choices"]:
        return {"eta": 1.0}
    if "s_churn" in row["options"]:
        return {"s_churn": 10.0}
    if "sde-dpmsolver++" in row["choices"].get("algorithm_type", ()):
        return {"algorithm_type": "sde-dpmsolver++"}
    return None


# (method, options) that draw noise with their defaults or the options given: every registered method
# that offers the noise option (so a new stochastic sampler is covered as soon as it is registered)
STOCHASTIC = [(r["name"], noisy_options(r)) for r in samplers.describe()
              if "noise" in r["options"] and r["name"] not in NEVER_DRAW]


def run(method, mode, n, seed=3, **options):
    sampler = samplers.create(method, 6, noise=mode, **options)
    start = torch.cat([torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(100 + i)) for i in range(n)])
    return sampler.sample(toy_model(), start, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method,options", STOCHASTIC, ids=[m for m, _ in STOCHASTIC])
@pytest.mark.parametrize("mode", ["per-image", "brownian"])
def test_image_zero_does_not_depend_on_the_batch(method, options, mode):
    one, three = run(method, mode, 1, **options), run(method, mode, 3, **options)
    assert torch.equal(one[0], three[0])
    assert not torch.equal(three[0], three[1])      # images get different noise
    other_seed = samplers.create(method, 6, noise=mode, **options).sample(
        toy_model(), torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(100)),
        torch.Generator().manual_seed(4))
    assert not torch.allclose(other_seed[0], one[0])   # the seed matters


@pytest.mark.parametrize("method,options", [("ddpm", {}), ("euler-a", {}), ("dpm++2m-sde", {})],
                         ids=["ddpm", "euler-a", "dpm++2m-sde"])
def test_diffusers_mode_depends_on_the_batch_as_before(method, options):
    """The complaint per-image fixes: one generator for the batch gives image 0 other noise."""
    one, three = run(method, "diffusers", 1, **options), run(method, "diffusers", 3, **options)
    assert not torch.allclose(one[0], three[0])
    assert torch.equal(three, run(method, "diffusers", 3, **options))
    default = samplers.create(method, 6, **options)
    assert default.options["noise"] == "diffusers"


def test_stochastic_methods_offer_noise():
    for row in samplers.describe():
        if row["stochastic"]:
            assert "noise" in row["options"], row["name"]


def test_every_method_offering_noise_is_covered():
    """The noise option appears exactly where a method can draw (its options say how), except the
    listed ones; each of those draws (test above: the seed matters)."""
    offering = {r["name"]: r for r in samplers.describe() if "noise" in r["options"]}
    assert NEVER_DRAW <= set(offering)
    assert {name: noisy_options(r) for name, r in offering.items() if name not in NEVER_DRAW} == dict(STOCHASTIC)
    assert all(options is not None for _, options in STOCHASTIC), [m for m, o in STOCHASTIC if o is None]
    # the methods that draw must offer the option: every stochastic one, and those with eta / churn / SDE paths
    for row in samplers.describe():
        if noisy_options(row) is not None and row["name"] not in offering:
            pytest.fail(f"{row['name']} can draw noise ({noisy_options(row)}) but has no noise option")
    # the new stochastic samplers (issue 16) are among them
    assert {"dpm++sde", "dpm++2m-sde-heun", "res-multistep-a", "res-multistep-a-cfg++", "seeds-2", "seeds-3",
            "exp-heun-2-x0-sde", "er-sde", "lcm", "ddpm-k", "euler-a-cfg++", "dpm++2s-a-cfg++", "heunpp2",
            "res-multistep", "exp-heun-2-x0", "ddim-cfg++"} <= set(dict(STOCHASTIC))


def test_brownian_increments_are_the_tree_increments():
    """Two halves of an interval add up to the whole (one Brownian path), scaled to unit variance."""
    src = NoiseSource(torch.Generator().manual_seed(5), "brownian", [4.0, 2.0, 1.0, 0.0])
    x = torch.zeros(2, 1000, dtype=torch.float64)
    whole = src.randn_like(x, 4.0, 1.0) * 3 ** 0.5
    halves = src.randn_like(x, 4.0, 2.0) * 2 ** 0.5 + src.randn_like(x, 2.0, 1.0)
    assert torch.allclose(whole, halves, atol=1e-9)
    z = src.randn_like(x, 2.0, 1.0)
    assert abs(float(z.std()) - 1) < 0.08 and abs(float(z.mean())) < 0.08
    # outside the tree (sigma_next = 0, or no sigmas): a per-image draw, still standard normal
    assert src.randn_like(x, 1.0, 0.0).shape == x.shape and src.randn_like(x).shape == x.shape


def test_seeds_derive_from_the_generator():
    assert noise_seed(0, 0) != noise_seed(0, 1) != noise_seed(1, 0)
    assert 0 <= noise_seed(2**64 - 1, 7) < 2**63
    a = NoiseSource(torch.Generator().manual_seed(9), "per-image").randn_like(torch.zeros(2, 5))
    b = NoiseSource(9, "per-image").randn_like(torch.zeros(2, 5))
    assert torch.equal(a, b)
    # image 0's step noise is not the stream that made the starting noise from the same seed
    assert not torch.allclose(a[0], torch.randn(5, generator=torch.Generator().manual_seed(9)))


def test_bad_noise_inputs_are_named():
    with pytest.raises(ValueError, match=r"noise='gpu' is not allowed; allowed: diffusers, per-image, brownian"):
        samplers.create("ddpm", 5, noise="gpu")
    with pytest.raises(ValueError, match=r"generator=.*allowed: a torch.Generator"):
        samplers.create("ddpm", 5, noise="per-image").sample(toy_model(), torch.randn(2, 3),
                                                             [torch.Generator(), torch.Generator()])


def test_the_apps_starting_noise_keeps_image_i_whatever_the_batch():
    """What samplers/noise.py says of lab.make_noise: one batch draw, image i unchanged by the
    batch size when an image holds a multiple of 16 values (the emoji images: 3 x 32 x 32)."""
    import lab
    one, g1 = lab.make_noise(7, 1, (3, 32, 32))
    three, g3 = lab.make_noise(7, 3, (3, 32, 32))
    assert torch.equal(one[0], three[0]) and g1.initial_seed() == g3.initial_seed() == 7
    assert torch.equal(lab.make_noise(7, 2, (3, 32, 32))[0][1], three[1])
