"""Analytic models: predictions equal their closed forms (Gaussian closed forms), equal
-sigma_t times a finite-difference score of log p_t, and the Gaussian flow map solves the
probability-flow ODE."""
import math

import numpy as np
import pytest
import torch

import models
from models.analytic import GaussianData, GaussianMixture, IdealDenoiser, default_scheduler_config
from samplers.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule.from_config(default_scheduler_config())
F64 = torch.float64


def alpha_sigma(t):
    a, s = SCHEDULE.alpha_sigma_at(np.asarray(t, dtype=np.float64))
    return float(a), float(s)


def random_spd(dim, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, dim, generator=g, dtype=F64)
    return m @ m.T / dim + 0.05 * torch.eye(dim, dtype=F64)


def fd_directional_score(model, x, t, h=1e-5, seed=0):
    """(v . grad log p_t(x)) by central differences along a random unit direction v, per row."""
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    v = v / v.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
    return (model.log_prob(x + h * v, t) - model.log_prob(x - h * v, t)) / (2 * h), v


# ------------------------------------------------------------------------------------------------
# Gaussian data

@pytest.mark.parametrize("t", [0.0, 3.5, 250.0, 999.0])
def test_gaussian_predictions_equal_the_closed_form(t):
    dim = 4
    mu = torch.tensor([0.5, -0.3, 0.1, 0.8], dtype=F64)
    cov = random_spd(dim, 1)
    model = GaussianData(mu, cov)
    x = torch.randn(5, dim, generator=torch.Generator().manual_seed(2), dtype=F64)
    a, s = alpha_sigma(t)
    c_inv = torch.linalg.inv(a * a * cov + s * s * torch.eye(dim, dtype=F64))
    x0 = mu + (a * cov @ c_inv @ (x - a * mu).T).T
    eps = (s * c_inv @ (x - a * mu).T).T
    assert torch.allclose(model.x0(x, t), x0, rtol=1e-10, atol=1e-12)
    assert torch.allclose(model.eps(x, t), eps, rtol=1e-10, atol=1e-12)
    assert torch.allclose(model(x, t), eps, rtol=1e-10, atol=1e-12)
    assert model(x, t).dtype == F64


def test_gaussian_eps_is_minus_sigma_times_the_finite_difference_score():
    model = GaussianData(torch.zeros(3, dtype=F64) + 0.2, random_spd(3, 3))
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    for t in (10.0, 400.5, 990.0):
        _, s = alpha_sigma(t)
        fd, v = fd_directional_score(model, x, t)
        assert torch.allclose((-model.eps(x, t) / s * v).sum(1), fd, rtol=1e-6, atol=1e-6)


def test_gaussian_accepts_per_dimension_variances_and_event_shapes():
    mu = torch.linspace(-0.5, 0.5, 12, dtype=F64).reshape(3, 2, 2)
    variances = torch.linspace(0.01, 0.3, 12, dtype=F64).reshape(3, 2, 2)
    diag = GaussianData(mu, variances)
    full = GaussianData(mu.reshape(-1), torch.diag(variances.reshape(-1)))
    x = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert torch.allclose(diag.x0(x, 300.0).reshape(2, -1), full.x0(x.reshape(2, -1), 300.0), atol=1e-12)
    assert diag.config["in_channels"] == 3 and diag.config["sample_size"] == 2


def test_prediction_types_follow_the_scheduler_config():
    mu, cov = torch.tensor([0.3, -0.1], dtype=F64), torch.tensor([0.2, 0.05], dtype=F64)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    t = torch.tensor([5.0, 500.0, 900.25])
    eps_model = GaussianData(mu, cov)
    a = torch.tensor([alpha_sigma(v)[0] for v in t.tolist()], dtype=F64)[:, None]
    s = torch.tensor([alpha_sigma(v)[1] for v in t.tolist()], dtype=F64)[:, None]
    x0, eps = eps_model.x0(x, t), eps_model.eps(x, t)
    assert torch.allclose(GaussianData(mu, cov, prediction_type="sample")(x, t), x0)
    assert torch.allclose(GaussianData(mu, cov, prediction_type="v_prediction")(x, t), a * eps - s * x0)
    assert torch.allclose(x, a * x0 + s * eps)  # the two predictions are consistent
    config = GaussianData(mu, cov, prediction_type="v_prediction").scheduler_config
    assert config["prediction_type"] == "v_prediction" and config["_class_name"] == "DDIMScheduler"
    assert (config["num_train_timesteps"], config["beta_schedule"], config["beta_start"], config["beta_end"],
            config["clip_sample"], config["set_alpha_to_one"]) == (1000, "linear", 0.0001, 0.02, False, True)
    with pytest.raises(ValueError, match="prediction_type='x0'"):
        GaussianData(mu, cov, prediction_type="x0")
    with pytest.raises(ValueError, match="GaussianData is unconditional"):
        eps_model(x, t, class_labels=torch.tensor([1, 2, 3]))


def rk4_flow(model, x, t_from, t_to, steps=400):
    """Reference solution of the PF-ODE: with y = x / alpha and k = sigma / alpha, dy/dk = eps."""
    def k_of(t):
        a, s = alpha_sigma(t)
        return s / a

    def t_of_k(k):
        return float(SCHEDULE.t_of_sigma(k))

    def f(y, k):
        a = 1 / math.sqrt(1 + k * k)
        return model.eps(y * a, t_of_k(k))

    k0, k1 = k_of(t_from), k_of(t_to)
    a0, _ = alpha_sigma(t_from)
    y = x / a0
    # Uniform steps in log k keep the step relative to the noise level.
    ks = np.exp(np.linspace(math.log(k0), math.log(k1), steps + 1))
    for ka, kb in zip(ks[:-1], ks[1:]):
        h = kb - ka
        k1_ = f(y, ka)
        k2_ = f(y + h / 2 * k1_, ka + h / 2)
        k3_ = f(y + h / 2 * k2_, ka + h / 2)
        k4_ = f(y + h * k3_, kb)
        y = y + h / 6 * (k1_ + 2 * k2_ + 2 * k3_ + k4_)
    a1, _ = alpha_sigma(t_to)
    return y * a1


def test_gaussian_flow_map_solves_the_probability_flow_ode():
    model = GaussianData(torch.tensor([0.4, -0.2, 0.1], dtype=F64), random_spd(3, 7))
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(8), dtype=F64)
    for t_from, t_to in ((999.0, 0.0), (800.5, 120.25), (50.0, 700.0)):
        exact = model.flow(x, t_from, t_to)
        assert torch.allclose(exact, rk4_flow(model, x, t_from, t_to), rtol=1e-7, atol=1e-7), (t_from, t_to)


def test_gaussian_flow_map_composes_and_carries_p_s_to_p_t():
    mu, cov = torch.tensor([0.4, -0.2], dtype=F64), random_spd(2, 9)
    model = GaussianData(mu, cov)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(10), dtype=F64)
    two_steps = model.flow(model.flow(x, 900.0, 400.0), 400.0, 10.0)
    assert torch.allclose(two_steps, model.flow(x, 900.0, 10.0), atol=1e-12)
    # The map is affine, x -> A x + b; it must send N(a_s mu, C_s) to N(a_t mu, C_t).
    t_s, t_t = 700.0, "clean"
    a_s, s_s = alpha_sigma(t_s)
    b = model.flow(torch.zeros(1, 2, dtype=F64), t_s, t_t)[0]
    A = torch.stack([model.flow(torch.eye(2, dtype=F64)[i:i + 1], t_s, t_t)[0] - b for i in range(2)], dim=1)
    c_s = a_s ** 2 * cov + s_s ** 2 * torch.eye(2, dtype=F64)
    assert torch.allclose(A @ c_s @ A.T, cov, atol=1e-12)
    assert torch.allclose(A @ (a_s * mu) + b, mu, atol=1e-12)


def test_gaussian_flow_to_clean_lands_on_the_data_distribution_in_float64():
    model = GaussianData([0.0, 0.0], [[1.0, 0.0], [0.0, 0.0]])  # singular: all mass on the first axis
    x = torch.randn(5, 2, dtype=F64)
    clean = model.flow(x, 999.0, "clean")
    assert clean.dtype == F64
    assert torch.all(clean[:, 1] == 0)
    with pytest.raises(ValueError, match="'dirty'"):
        model.flow(x, 999.0, "dirty")


# ------------------------------------------------------------------------------------------------
# Gaussian mixtures

def mixture_closed_form(weights, means, covs, x, t):
    """The Gaussian closed forms, written with explicit matrix inverses."""
    a, s = alpha_sigma(t)
    dim = means.shape[1]
    logs, x0s = [], []
    for w, mu, cov in zip(weights, means, covs):
        c = a * a * cov + s * s * torch.eye(dim, dtype=F64)
        c_inv = torch.linalg.inv(c)
        d = x - a * mu
        logs.append(math.log(w) - 0.5 * ((d @ c_inv) * d).sum(1) - 0.5 * torch.logdet(c) - dim / 2 * math.log(2 * math.pi))
        x0s.append(mu + a * d @ c_inv @ cov)
    post = torch.softmax(torch.stack(logs, 1), dim=1)
    return (post[:, :, None] * torch.stack(x0s, 1)).sum(1)


@pytest.mark.parametrize("t", [1.0, 150.0, 600.0])
def test_mixture_posterior_mean_equals_the_closed_form(t):
    weights = [0.5, 0.3, 0.2]
    means = torch.tensor([[0.5, 0.5, 0.0], [-0.5, 0.2, 0.1], [0.0, -0.6, 0.3]], dtype=F64)
    covs = [random_spd(3, 20 + i) * 0.1 for i in range(3)]
    model = GaussianMixture(weights, means, covs)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(11), dtype=F64) * 0.6
    assert torch.allclose(model.x0(x, t), mixture_closed_form(weights, means, covs, x, t), rtol=1e-9, atol=1e-10)
    a, s = alpha_sigma(t)
    assert torch.allclose(model.eps(x, t), (x - a * model.x0(x, t)) / s, rtol=1e-8, atol=1e-8)


def test_two_d_mixture_has_well_separated_modes_and_matches_finite_differences():
    model = GaussianMixture.two_d()
    k = model.means.shape[0]
    assert 3 <= k <= 8
    gaps = torch.cdist(model.means, model.means) + torch.eye(k) * 1e9
    assert gaps.min() > 8 * model.lams.sqrt().max()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(12), dtype=F64) * 0.8
    for t in (20.0, 300.0, 800.0):
        _, s = alpha_sigma(t)
        fd, v = fd_directional_score(model, x, t)
        assert torch.allclose((-model.eps(x, t) / s * v).sum(1), fd, rtol=1e-5, atol=1e-5)


def test_mixture_near_a_mode_at_low_noise_predicts_that_mode():
    model = GaussianMixture.two_d()
    a, s = alpha_sigma(5.0)
    x = a * model.means.clone()
    assert torch.allclose(model.x0(x, 5.0), model.means, atol=1e-3)


def test_image_shaped_mixture_matches_finite_differences():
    model = GaussianMixture.image_shaped(shape=(3, 4, 4), num_modes=3, std=0.2)
    assert model.event_shape == (3, 4, 4) and model.config["sample_size"] == 4
    x = model.sample(4, torch.Generator().manual_seed(13)) * 0.9
    for t in (50.0, 500.0):
        a, s = alpha_sigma(t)
        xt = a * x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(14), dtype=F64)
        fd, v = fd_directional_score(model, xt, t)
        assert torch.allclose((-model.eps(xt, t) / s * v).flatten(1).sum(1), fd, rtol=1e-5, atol=1e-4)
    out = model(x.float(), torch.tensor([10.0, 20.0, 30.0, 40.0]))
    assert out.dtype == torch.float32 and out.shape == x.shape


# ------------------------------------------------------------------------------------------------
# the ideal denoiser

def small_image_set(n=6, seed=15):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 2, 2, generator=g, dtype=F64) * 2 - 1


@pytest.mark.parametrize("t", [30.0, 200.0, 700.0])
def test_ideal_denoiser_is_the_softmax_weighted_mean_of_the_images(t):
    images = small_image_set()
    model = IdealDenoiser(images, chunk_size=4)
    x = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(16), dtype=F64)
    a, s = alpha_sigma(t)
    dist = ((x.flatten(1)[:, None, :] - a * images.flatten(1)[None]) ** 2).sum(-1)
    w = torch.softmax(-dist / (2 * s * s), dim=1)
    expected = (w @ images.flatten(1)).reshape(x.shape)
    assert torch.allclose(model.x0(x, t), expected, rtol=1e-6, atol=1e-6)  # images stored in float32
    assert torch.allclose(model.x0(x, t), IdealDenoiser(images, chunk_size=1000).x0(x, t), atol=1e-12)


def test_ideal_denoiser_matches_finite_differences_and_recovers_images_at_low_noise():
    images = small_image_set()
    model = IdealDenoiser(images)
    x = torch.randn(4, 1, 2, 2, generator=torch.Generator().manual_seed(17), dtype=F64)
    for t in (100.0, 600.0):
        _, s = alpha_sigma(t)
        fd, v = fd_directional_score(model, x, t)
        assert torch.allclose((-model.eps(x, t) / s * v).flatten(1).sum(1), fd, rtol=1e-5, atol=1e-5)
    a, s = alpha_sigma(2.0)
    near = a * images.float().double() + s * 0.1 * torch.randn(images.shape, dtype=F64)
    assert torch.allclose(model.x0(near, 2.0), images.float().double(), atol=1e-6)


def test_ideal_denoiser_class_labels_restrict_the_set():
    images = small_image_set()
    labels = [0, 0, 1, 1, 2, 2]
    model = IdealDenoiser(images, labels=labels)
    x = torch.zeros(2, 1, 2, 2, dtype=F64)
    w = model.posterior_weights(x, 500.0, class_labels=torch.tensor([1, 2]))
    assert torch.allclose(w.sum(1), torch.ones(2, dtype=F64))
    assert torch.all(w[0, [0, 1, 4, 5]] == 0) and torch.all(w[1, :4] == 0)
    with pytest.raises(ValueError, match="no images"):
        model(x, 500.0, class_labels=torch.tensor([7, 1]))


def test_ideal_denoiser_refuses_bad_images():
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        IdealDenoiser(torch.full((2, 1, 2, 2), 3.0))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        IdealDenoiser(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        IdealDenoiser(small_image_set())(torch.zeros(1, 3, 2, 2), 10.0)


def test_nearest_finds_the_closest_training_image_by_brute_force():
    images = small_image_set(n=9)
    model = IdealDenoiser(images, chunk_size=4, names=[f"img{i}" for i in range(9)])   # chunks 4 + 4 + 1
    x = torch.randn(5, 1, 2, 2, generator=torch.Generator().manual_seed(18), dtype=F64)
    x[0] = images[8].float().double()                                    # exactly a training image, last chunk
    index, dist = model.nearest(x)
    all_dist = torch.cdist(x.flatten(1), images.float().double().flatten(1))
    assert index.tolist() == all_dist.argmin(1).tolist() and index[0] == 8
    assert torch.allclose(dist, all_dist.min(1).values, atol=1e-7) and dist[0] < 1e-6
    with pytest.raises(ValueError, match="names must have one entry per image"):
        IdealDenoiser(images, names=["a"])
    with pytest.raises(ValueError, match="do not match"):
        model.nearest(torch.zeros(1, 3, 2, 2))


def test_ideal_emoji_loads_the_shipped_image_set():
    model = models.load("ideal-emoji")
    data = np.load(models.embedded.EMOJI_IMAGES)
    assert model.images.shape[0] == data["images"].shape[0] and model.event_shape == (3, 32, 32)
    assert model.names == [str(n) for n in data["names"]]
    i = 3
    image = torch.from_numpy(data["images"][i]).permute(2, 0, 1).double()[None] / 127.5 - 1
    a, s = alpha_sigma(1.0)
    assert torch.allclose(model.x0(a * image, 1.0), image, atol=1e-5)
    assert model(image.float(), torch.tensor([999.0])).shape == (1, 3, 32, 32)


def test_x0_at_any_noise_level_is_the_posterior_mean_also_below_the_first_train_step():
    for net in (models.load("gaussian"), GaussianMixture.two_d()):
        x = torch.randn(4, *net.event_shape, dtype=torch.float64)
        a, s = net.alpha_sigma(500, x)
        # at a train time it is the model's own x0
        assert torch.allclose(net.x0_at(x, float(a[0]), float(s[0])), net.x0(x, 500), atol=1e-12)
        # far below the first train step (sigma(t=0) ~ 1e-2): the posterior mean of x0 given x0 = x is x
        assert torch.allclose(net.x0_at(x, 1.0, 1e-9), x, atol=1e-6)
