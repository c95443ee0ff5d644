"""The data behind the explanatory views (lab/analysis.py), checked against exact answers."""
import inspect
import math

import numpy as np
import pytest
import torch

import samplers
from lab import analysis
from samplers.core import Step
from models.analytic import GaussianData, GaussianMixture
from conftest import toy_model

T = 1000


def gaussian():
    """2-D Gaussian data with unequal variances: DDIM is not exact on it, the flow map is known."""
    return GaussianData([0.3, -0.2], [0.5, 2.0])


def noise(n, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def registered(name):
    if name not in samplers.REGISTRY:
        pytest.skip(f"sampler {name!r} is not registered")


# --- where the model is evaluated ---------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(samplers.REGISTRY))
def test_every_fixed_grid_sampler_shows_as_many_points_as_its_nfe_at_the_points_a_real_run_uses(method):
    for steps in (1, 2, 5, 12):
        try:
            sampler = samplers.create(method, steps)
        except ValueError:  # e.g. a step count the method does not take
            continue
        if analysis.is_adaptive(sampler):
            pytest.skip("adaptive: the points depend on the model (tested below)")
        rows = analysis.evaluation_points(sampler)
        assert len(rows) == sampler.nfe
        assert [r["index"] for r in rows] == list(range(1, sampler.nfe + 1))
        assert all(1 <= r["step"] <= steps for r in rows)
        assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)
        real = sampler.run(toy_model(), torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)),
                           torch.Generator().manual_seed(0))
        assert [r["t"] for r in rows] == pytest.approx([s.t for s in real], abs=1e-9)


def test_heun_evaluates_2n_minus_1_times_twice_at_every_interior_grid_point():
    registered("heun")
    sampler = samplers.create("heun", 8)
    rows = analysis.evaluation_points(sampler)
    assert len(rows) == 2 * 8 - 1
    sigmas = [r["sigma"] for r in rows]
    for k in sampler.grid.sigma[1:-1]:
        assert sum(math.isclose(s, k, rel_tol=1e-9) for s in sigmas) == 2
    assert all(r["on_grid"] for r in rows)
    assert [r["step"] for r in rows] == [1] + [i for i in range(1, 8) for _ in (0, 1)][1:] + [8]


def test_prk_warm_up_shows_four_evaluations_per_step_two_of_them_between_grid_points():
    rows = analysis.evaluation_points(samplers.create("f-pndm", 10))
    warm_up = rows[:12]
    assert [r["step"] for r in warm_up] == [1] * 4 + [2] * 4 + [3] * 4
    assert [r["on_grid"] for r in warm_up] == [True, False, False, True] * 3
    assert all(r["on_grid"] for r in rows[12:]) and len(rows) == 10 + 9


@pytest.mark.parametrize("steps", [1, 10, 50])
def test_leading_never_starts_at_the_last_train_step_while_trailing_does(steps):
    leading = analysis.evaluation_points(samplers.create("ddim", steps, spacing="leading"))
    trailing = analysis.evaluation_points(samplers.create("ddim", steps, spacing="trailing"))
    assert leading[0]["t"] < T - 1
    assert trailing[0]["t"] == T - 1


def test_lambda_is_minus_log_sigma_and_undefined_at_infinite_noise():
    rows = analysis.evaluation_points(samplers.create("ddim", 6, spacing="trailing"))
    assert all(r["lambda"] == pytest.approx(-math.log(r["sigma"])) for r in rows)
    zero_snr = samplers.create("ddim", 4, samplers.NoiseSchedule.from_config({"rescale_betas_zero_snr": True}),
                               spacing="trailing", prediction_type="v_prediction")
    first = analysis.evaluation_points(zero_snr)[0]
    assert first["sigma"] is None and first["lambda"] is None and first["t"] == T - 1


def test_schedule_table_labels_each_set_up():
    table = analysis.schedule_table({"leading": samplers.create("ddim", 5),
                                     "trailing": samplers.create("ddim", 5, spacing="trailing"),
                                     "pndm": samplers.create("pndm", 5)})
    counts = {label: sum(r["label"] == label for r in table) for label in ("leading", "trailing", "pndm")}
    assert counts == {"leading": 5, "trailing": 5, "pndm": 5 + 9}
    assert {r["method"] for r in table if r["label"] == "pndm"} == {"pndm"}


def test_adaptive_points_come_from_the_given_model():
    adaptive = [n for n in samplers.REGISTRY if analysis.is_adaptive(samplers.create(n, 20))]
    if not adaptive:
        pytest.skip("no adaptive sampler registered")
    model, x = gaussian(), noise(4)
    sampler = samplers.create(adaptive[0], 20)
    rows = analysis.evaluation_points(sampler, model, x)
    real = list(sampler.run(model, x))
    assert [r["sigma"] for r in rows] == pytest.approx([s.sigma for s in real])
    assert all(r["model"] == "given" and r["adaptive"] for r in rows)


# --- the 2-D view ----------------------------------------------------------------------------------
def test_reference_trajectory_follows_the_exact_gaussian_flow_through_repeated_levels():
    model, x = gaussian(), noise(32)
    sampler = samplers.create("ddim", 8, spacing="trailing")
    paths, sigmas = analysis.trajectories(sampler, model, x, with_sigmas=True)
    levels = list(sigmas[:4]) + [sigmas[3]] + list(sigmas[4:])  # a level twice, as Heun's corrector shows
    ref = analysis.reference_trajectory(model, paths[0], levels)
    flow = analysis.flow_reference(model)
    exact = np.stack([flow(torch.as_tensor(paths[0]), levels[0], k).numpy() for k in levels])
    assert ref.shape == (len(levels), 32, 2)
    assert np.abs(ref - exact).max() < 1e-7
    assert np.abs(ref[-1] - exact[-1]).max() / np.abs(exact[-1]).max() < 1e-7


def test_a_model_known_only_through_model_x_t_gets_the_flow_down_to_the_first_train_step():
    model = gaussian()
    network_like = lambda x, t: model(x, t)  # noqa: E731  (no flow map, no direct denoiser)
    network_like.scheduler_config = model.scheduler_config
    x = noise(16)
    k_start, k_end = float(model.schedule.sigma_at(999.0)), model.schedule.sigma_min
    ref = analysis.reference_trajectory(network_like, x, [k_start, k_end])[-1]
    exact = model.flow(x, 999.0, 0.0).numpy()
    assert np.abs(ref - exact).max() < 1e-7


def test_trajectories_start_at_the_samplers_first_sample_and_end_at_its_result():
    model, x = gaussian(), noise(20)
    for method in ("ddim", "pndm"):
        sampler = samplers.create(method, 6)
        paths, sigmas = analysis.trajectories(sampler, model, x, with_sigmas=True)
        assert paths.shape == (sampler.nfe + 1, 20, 2) and len(sigmas) == sampler.nfe + 1
        assert np.array_equal(paths[0], x.numpy())  # VP samplers start from the noise itself
        assert np.allclose(paths[-1], sampler.sample(model, x).numpy(), atol=1e-12)
        assert sigmas[-1] == sampler.grid.sigma[-1]


def test_more_ddim_steps_bring_the_mixture_end_points_closer_to_the_reference():
    model, x = GaussianMixture.two_d(), noise(16)
    first = samplers.create("ddim", 4, spacing="trailing")  # trailing grids all start at t = 999
    ref = analysis.reference_trajectory(model, x, [first.grid.sigma[0], 0.0], tolerance=1e-5)[-1]
    distances = []
    for steps in (4, 16, 64):
        paths = analysis.trajectories(samplers.create("ddim", steps, spacing="trailing"), model, x)
        distances.append(analysis.endpoint_distances(paths[-1], ref, paths[-1])["mean_distance"])
    assert distances[0] > distances[1] > distances[2]
    assert distances[2] < 0.3 * distances[1]


def test_density_grid_is_a_normalised_density_peaking_on_a_mode():
    model = GaussianMixture.two_d()
    density = analysis.density_grid(model, [0, "clean", 999], extent=1.5, n=121)
    assert density["log_prob"].shape == (3, 121, 121)
    cell = (density["x"][1] - density["x"][0]) * (density["y"][1] - density["y"][0])
    for grid in density["log_prob"][:2]:
        assert np.exp(grid).sum() * cell == pytest.approx(1.0, abs=0.01)
        iy, ix = np.unravel_index(grid.argmax(), grid.shape)
        peak = np.array([density["x"][ix], density["y"][iy]])
        assert np.linalg.norm(model.means.numpy() - peak, axis=1).min() < 0.05
    centre = density["log_prob"][2][60, 60]  # at t = 999 p_t is nearly N(0, I)
    assert centre == pytest.approx(-math.log(2 * math.pi), abs=0.01)
    rows = analysis.density_rows(analysis.density_grid(model, 500, extent=1.0, n=4))
    assert len(rows) == 16 and rows[0]["t"] == 500.0 and rows[0]["density"] == pytest.approx(
        math.exp(rows[0]["log_prob"]))


def test_energy_distance_is_about_zero_between_true_samples_and_grows_with_a_shift():
    model = GaussianMixture.two_d()
    true = model.sample(400, torch.Generator().manual_seed(1))
    fresh = model.sample(400, torch.Generator().manual_seed(2))
    same = analysis.endpoint_distances(true, true, fresh)
    shifted = analysis.endpoint_distances(true + torch.tensor([0.3, 0.0], dtype=torch.float64), true, fresh)
    assert same["mean_distance"] == 0.0 and same["energy_distance"] < 0.01
    assert shifted["mean_distance"] == pytest.approx(0.3)
    assert shifted["energy_distance"] > 0.05 and shifted["energy_distance"] > 10 * same["energy_distance"]


def test_trajectory_rows_flatten_paths_for_a_line_plot():
    paths = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    rows = analysis.trajectory_rows(paths, "ddim", sigmas=[2.0, 1.0, 0.0])
    assert len(rows) == 6
    assert rows[1] == dict(label="ddim", point=0, index=1, x=4.0, y=5.0, sigma=1.0)


# --- error against model evaluations ------------------------------------------------------------
def test_ddim_error_on_gaussian_data_falls_at_first_order_on_a_logsnr_grid():
    curve = analysis.error_curve("ddim", {"spacing": "logsnr"}, gaussian(), noise(16), nfe_targets=range(4, 51, 3))
    assert inspect.isgenerator(curve)  # the UI streams it
    rows = list(curve)
    assert [r["nfe"] for r in rows] == list(range(4, 51, 3)) == [r["steps"] for r in rows]
    errors = [r["error"] for r in rows]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert analysis.fit_order([r["nfe"] for r in rows], errors)["order"] == pytest.approx(1.0, abs=0.1)


def test_error_curve_uses_the_step_count_whose_nfe_is_closest_and_never_repeats_a_run():
    rows = list(analysis.error_curve("pndm", {}, gaussian(), noise(4), nfe_targets=range(4, 15)))
    # pndm costs N + 3 min(3, N): 4, 8, 12, 13, 14 evaluations for N = 1..5
    assert [(r["steps"], r["nfe"]) for r in rows] == [(1, 4), (2, 8), (3, 12), (4, 13), (5, 14)]
    # 5 and 6 are closest to (6: as close to, and cheaper than 8) the 4 already measured
    assert [r["target"] for r in rows] == [4, 7, 11, 13, 14]


def test_the_ode_reference_agrees_with_the_exact_flow_in_the_error_curve():
    model, x = gaussian(), noise(8)
    network_like = lambda x, t: model(x, t)  # noqa: E731
    network_like.scheduler_config = model.scheduler_config
    options = {"spacing": "trailing", "set_alpha_to_one": False}  # ends at sigma(t=0): reachable without x0_at
    exact = list(analysis.error_curve("ddim", options, model, x, nfe_targets=[5, 10]))
    solved = list(analysis.error_curve("ddim", options, network_like, x, nfe_targets=[5, 10],
                                       reference=analysis.ode_reference(network_like)))
    assert [r["error"] for r in solved] == pytest.approx([r["error"] for r in exact], rel=1e-6)


def test_fit_order_recovers_a_power_law_and_skips_exact_answers():
    nfe = np.arange(4, 40)
    assert analysis.fit_order(nfe, 3.0 * nfe ** -2.5)["order"] == pytest.approx(2.5)
    errors = list(5.0 / nfe)
    errors[3] = 0.0
    fit = analysis.fit_order(nfe, errors)
    assert fit["order"] == pytest.approx(1.0) and fit["points"] == len(nfe) - 1


# --- one run, step by step -----------------------------------------------------------------------
def test_trace_measures_each_step_and_ends_on_the_result():
    model, x = gaussian(), noise(6)
    sampler = samplers.create("ddim", 10)
    steps = list(sampler.run(model, x))
    out = analysis.trace(steps, start=x)
    rows = out["rows"]
    assert [r["nfe"] for r in rows] == list(range(1, 11))
    second = (steps[1].x - steps[0].x).norm() / steps[1].x.norm()
    assert rows[1]["change"] == pytest.approx(float(second))
    assert rows[0]["change"] == pytest.approx(float((steps[0].x - x).norm() / steps[0].x.norm()))
    assert rows[-1]["x0_to_final"] == pytest.approx(0.0, abs=1e-12)  # DDIM's last step lands on x0
    assert rows[0]["x0_rms"] == pytest.approx(float(steps[0].x0.pow(2).mean().sqrt()))
    assert analysis.trace(steps)["rows"][0]["change"] is None
    assert [n for n, _ in out["thumbnails"]] == list(range(1, 11))


def test_image_thumbnails_are_uint8_pictures():
    sampler = samplers.create("ddim", 4)
    steps = list(sampler.run(toy_model(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))))
    thumbs = analysis.trace(steps, thumbnails_every=3)["thumbnails"]
    assert [n for n, _ in thumbs] == [1, 4]
    assert thumbs[0][1].dtype == np.uint8 and thumbs[0][1].shape == (8, 8, 3)


def made_up_run(distances):
    """Steps whose predicted x0 is at the given relative distances from a result of ones."""
    final = torch.ones(1, 4, dtype=torch.float64)
    return [Step(i + 1, len(distances), 0.0, 0.0, final.clone(), final * (1 + d), i == len(distances) - 1)
            for i, d in enumerate(distances)]


def test_commit_index_is_the_first_evaluation_from_which_every_prediction_stays_close():
    run = made_up_run([1.0, 0.5, 0.03, 0.2, 0.04, 0.01, 0.0])
    assert analysis.commit_index(run, 0.05) == 5   # the 0.03 at evaluation 3 does not last
    assert analysis.commit_index(run, 0.25) == 3
    assert analysis.commit_index(analysis.trace(run)["rows"], 0.05) == 5
    assert analysis.commit_index(made_up_run([1.0, 0.5]), 0.05) is None


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call,message", [
    (lambda: analysis.evaluation_points("ddim"), r"sampler must be a samplers.Sampler"),
    (lambda: analysis.schedule_table({}), r"setups is empty"),
    (lambda: analysis.density_grid(GaussianMixture.two_d(), 0, n=1), r"n=1 must be an integer in \[2, 1000\]"),
    (lambda: analysis.density_grid(GaussianMixture.two_d(), 0, extent=(1, -1, 0, 1)), r"extent=\(1, -1, 0, 1\)"),
    (lambda: analysis.density_grid(lambda x, t: x, 0), r"model must have log_prob"),
    (lambda: analysis.reference_trajectory(gaussian(), noise(2), [1.0, 0.0], tolerance=0), r"tolerance=0"),
    (lambda: analysis.reference_trajectory(gaussian(), noise(2), [0.0, 1.0]), r"sigmas go up from 0"),
    (lambda: analysis.endpoint_distances(noise(3), noise(4), noise(5)), r"ends \[3, 2\] and reference_ends \[4, 2\]"),
    (lambda: analysis.fit_order([4], [0.1]), r"at least 2 distinct NFE"),
    (lambda: list(analysis.error_curve("ddim", {"etaa": 1}, gaussian(), noise(2))), r"etaa do not apply"),
    (lambda: list(analysis.error_curve("ddim", {}, gaussian(), noise(2), nfe_targets=[])), r"nfe_targets=\[\]"),
    (lambda: analysis.commit_index(made_up_run([0.1]), 0), r"fraction=0 must be a number > 0"),
    (lambda: analysis.trace([]), r"steps must be a non-empty list"),
])
def test_bad_input_names_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_analysis_layer_imports_neither_models_nor_the_ui():
    import ast
    tree = ast.parse(open(analysis.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name.split(".")[0] for name in imported} & {"models", "gradio", "diffusers", "app", "lab"}


def test_planned_runs_pick_the_closest_nfe_and_never_repeat_a_step_count():
    schedule = samplers.NoiseSchedule.from_config({})
    assert analysis.planned_runs("ddim", {}, schedule, [4, 4, 5]) == [(4, 4, 4), (5, 5, 5)]
    # Heun evaluates 2N - 1 times: NFE 6 is as close to 3 steps (5) as to 4 steps (7); the cheaper wins
    assert analysis.planned_runs("heun", {}, schedule, [5, 6, 7]) == [(5, 3, 5), (7, 4, 7)]
    with pytest.raises(ValueError, match="nfe_targets"):
        analysis.planned_runs("ddim", {}, schedule, [0])
