"""The Error vs steps view (views/errors.py), launched in-process and called through /errors."""
from __future__ import annotations

import math
import time

import pytest
import torch

import lab
import samplers
from lab import analysis
from tests.app_helpers import register_test_models, serve
from views import errors as view

register_test_models()

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LIMITS = lab.Limits(max_steps=200, max_images=8, max_points=2000, max_compare=6, concurrency=4, preview_fps=10,
                       reference_steps=60)
NFE = [4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50]
EMPTY = dict(sampler_1="", sampler_2="", sampler_3="", sampler_4="")   # the UI's default slots are not empty


@pytest.fixture(scope="module")
def client():
    yield from serve(LIMITS)


def as_rows(table) -> list[dict]:
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def run_errors(client, **values):
    """(every streamed update as (plot, status, rows), wall seconds) of one /errors call."""
    start = time.perf_counter()
    job = client.submit(api_name="/errors", **{**EMPTY, **values})
    job.result()
    seconds = time.perf_counter() - start
    return [(plot, status, as_rows(table)) for plot, status, table in job.outputs()], seconds


def test_gaussian_errors_are_the_exact_ones_and_show_each_methods_order(client):
    seed, count = 7, 64
    updates, _ = run_errors(client, model="gaussian", seed=seed, num_images=count, nfe=", ".join(map(str, NFE)),
                            sampler_1="ddim", spacing_1="logsnr", sampler_2="unipc", order_2=3, spacing_2="logsnr")
    plot, status, rows = updates[-1]
    assert "exact probability-flow map" in status
    curves = {s: [r for r in rows if r["setup"] == s] for s in (1, 2)}
    assert [r["nfe"] for r in curves[1]] == NFE == [r["nfe"] for r in curves[2]]   # one step per evaluation
    orders = {s: analysis.fit_order([r["nfe"] for r in c], [r["error"] for r in c])["order"] for s, c in curves.items()}
    print(f"\nfitted orders on the Gaussian (logsnr grid): ddim {orders[1]:.2f}, unipc order 3 {orders[2]:.2f}")
    assert 0.8 < orders[1] < 1.2 and orders[2] > 2.5
    assert all(u["error"] < d["error"] for d, u in zip(curves[1], curves[2]) if d["nfe"] >= 5)
    # the legend carries the fitted order (the plot comes as an update: its data and a colour per curve)
    legend = {row[plot["value"]["columns"].index("curve")] for row in plot["value"]["data"]}
    assert legend == set(plot["color_map"]) == {f"1: ddim (order {orders[1]:.1f})", f"2: unipc (order {orders[2]:.1f})"}
    assert f"1: ddim (logsnr) · fitted order {orders[1]:.2f}" in status

    # the same numbers as lab.analysis with the exact flow, from the app's samplers and noise
    net, info = lab.load_model("gaussian")
    noise = torch.randn((count, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float32).double()
    for setup, method, options in ((1, "ddim", {"spacing": "logsnr"}), (2, "unipc", {"spacing": "logsnr",
                                                                                      "order": 3})):
        sampler = samplers.from_diffusers_config(info.scheduler_config, 10, method=method, **options)
        direct = list(analysis.error_curve(method, sampler.options, net, noise, analysis.flow_reference(net), NFE,
                                           sampler.schedule, seed))
        assert [(r["steps"], r["nfe"]) for r in direct] == [(r["steps"], r["nfe"]) for r in curves[setup]]
        assert [r["error"] for r in curves[setup]] == pytest.approx([r["error"] for r in direct], rel=1e-9)
    # and one point against the closed form itself: the sampler's output vs the exact flow of the noise
    sampler = samplers.from_diffusers_config(info.scheduler_config, 20, method="ddim", spacing="logsnr")
    exact = net.flow(noise, float(sampler.schedule.t_of_sigma(sampler.grid.sigma[0])), "clean")
    error = float((sampler.sample(net, noise) - exact).norm() / exact.norm())
    assert [r["error"] for r in curves[1] if r["nfe"] == 20] == [pytest.approx(error, rel=1e-9)]


def test_the_curve_streams_one_run_at_a_time(client):
    updates, _ = run_errors(client, model="gaussian", nfe="4, 8, 16, 32", sampler_1="ddim",
                            sampler_2="dpm-solver++", order_2=2, spacing_2="karras")
    counts = [len(rows) for _, _, rows in updates]
    assert counts == sorted(counts) and counts[-1] == 8
    assert len(set(counts)) >= 5, counts   # several growing updates before the final one
    assert "NFE" in updates[0][1] and updates[-1][1].startswith("done")


def test_networks_use_the_cached_compare_reference_both_ways(client):
    lab.reference.cache_clear()
    setup = dict(sampler_1="dpm-solver++", order_1=2, spacing_1="trailing")
    updates, _ = run_errors(client, model="tiny-unet", seed=11, num_images=1, nfe="4, 8, 16, 32", **setup)
    _, status, rows = updates[-1]
    assert "f-pndm solve with 60 steps" in status and any("reference solve" in u[1] for u in updates)
    errors = [r["error"] for r in rows]
    print(f"\ntiny-unet, dpm-solver++ order 2 against the /compare reference: {errors}")
    assert [r["nfe"] for r in rows] == [4, 8, 16, 32] and all(a > b for a, b in zip(errors, errors[1:]))
    keys = list(lab.reference.cached())
    assert len(keys) == 1 and keys[0].model == "tiny-unet" and (keys[0].seed, keys[0].count) == (11, 1)

    # /compare finds that reference (no solve) and measures the same run the same way (RMS vs relative norm)
    job = client.submit(model="tiny-unet", seed=11, num_images=1, reference=True, api_name="/compare",
                        setups=[{"sampler": "dpm-solver++", "steps": 16, "order": 2, "spacing": "trailing"}])
    info = job.result()[4]
    assert not any("reference solve" in str(out[1]) for out in job.outputs())
    assert list(lab.reference.cached()) == keys
    ref = lab.reference.cached()[keys[0]].double()
    relative = info["results"][0]["distance"] * math.sqrt(ref.numel()) / float(ref.norm())
    assert relative == pytest.approx(rows[2]["error"], rel=1e-3)

    # and the other way round: a /compare reference makes the errors call skip its solve
    client.predict(model="tiny-unet", seed=12, num_images=1, reference=True, api_name="/compare",
                   setups=[{"sampler": "ddim", "steps": 4}])
    updates, _ = run_errors(client, model="tiny-unet", seed=12, num_images=1, nfe="4, 8", **setup)
    assert not any("reference solve" in u[1] for u in updates) and len(lab.reference.cached()) == 2


def test_stop_ends_the_run(client):
    job = client.submit(api_name="/errors", **{**EMPTY, "model": "tiny-slow", "seed": 3, "nfe": "30, 40, 50",
                                               "sampler_1": "ddim", "sampler_2": "ipndm"})
    deadline = time.time() + 60
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.02)
    job.cancel()
    record = [r for r in lab.RUNS if r.kind == "errors"][-1]
    deadline = time.time() + 10   # a Stop lands when the worker next hands over: within one run (<= 50 x 30 ms)
    while record.status == "running" and time.time() < deadline:
        time.sleep(0.05)
    assert record.status == "stopped" and record.nfe < record.total_nfe
    assert not [r for r in lab.active_runs() if r.kind == "errors"]


@pytest.mark.parametrize("values, message", [
    (dict(nfe="3, x"), r"nfe='x' must be an integer"),
    (dict(nfe="4, 500"), r"nfe='500' is out of range \(allowed: 1 <= nfe <= 400"),
    (dict(nfe=", ".join(str(n) for n in range(4, 40))), r"must be 1 to 30 integers"),
    (dict(nfe="390", sampler_1="ddim"), r"set-up 1: nfe=390 needs 390 steps.*MAX_STEPS=200"),
    (dict(sampler_1=""), r"sampler_1..sampler_4 are all empty"),
    (dict(sampler_2="nope"), r"set-up 2: sampler='nope' is unknown"),
    (dict(order_1=7, sampler_1="unipc"), r"set-up 1: order=7"),
    (dict(nfe="100, 200, 300, 390", sampler_1="heun", sampler_2="heun", sampler_3="heun", sampler_4="heun"),
     r"needs \d+ model evaluations in all; allowed: at most 2400 \(MAX_NFE x MAX_COMPARE\)"),
    (dict(model="tiny-unet", num_images=9), r"num_images=9 is out of range"),
])
def test_bad_input_names_the_parameter_and_the_server_keeps_serving(client, values, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(api_name="/errors", **{**EMPTY, "model": "gaussian", "sampler_1": "ddim", **values})
    assert len(client.predict(api_name="/errors", **{**EMPTY, "model": "gaussian", "nfe": "4, 8",
                                                      "sampler_1": "ddim"})[2]["data"]) == 2
