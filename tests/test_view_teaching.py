"""The 2-D teaching view: its /teaching endpoint (in-process app) and its picture."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
import lab
from tests.app_helpers import read_png, register_test_models, serve
from views import teaching

register_test_models()

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LIMITS = lab.Limits(max_steps=200, max_images=8, max_points=2000, max_compare=6, concurrency=4, preview_fps=10,
                       reference_steps=60)
EMPTY = dict(sampler_1="", sampler_2="", sampler_3="")


@pytest.fixture(scope="module")
def client():
    yield from serve(LIMITS)


def table(value) -> list[dict]:
    return [dict(zip(value["headers"], row)) for row in value["data"]]


def fetch(client, **values):
    picture, ends, distances, trajectories, density, slider = client.predict(api_name="/teaching",
                                                                             **{**EMPTY, **values})
    return dict(picture=picture, ends=ends, distances=table(distances), trajectories=table(trajectories),
                density=table(density), slider=slider)


def test_the_reference_is_the_exact_gaussian_flow_and_every_row_is_there(client):
    out = fetch(client, model="gaussian", points=6, seed=5, sampler_1="ddim", steps_1=4, spacing_1="trailing",
                sampler_2="unipc", steps_2=3, spacing_2="leading", sampler_3="euler-a", steps_3=3, spacing_3="")
    gaussian = models.load("gaussian")
    labels = [r["label"] for r in out["distances"]]
    assert [r["nfe"] for r in out["distances"]] == [4, 3, 3] and len(set(labels)) == 3
    for label, row in zip(labels, out["distances"]):
        assert all(math.isfinite(row[c]) for c in teaching.DISTANCE_COLUMNS[1:]), row
        assert row["energy_to_data"] >= 0 and row["reference_energy_to_data"] >= 0
        mine = [r for r in out["trajectories"] if r["label"] == label]
        for kind in ("sampler", "reference"):
            assert len([r for r in mine if r["kind"] == kind]) == 6 * (row["nfe"] + 1)
        ref = [r for r in mine if r["kind"] == "reference"]
        start = [r for r in ref if r["index"] == 0]
        end = [r for r in ref if r["index"] == row["nfe"]]
        # the exact flow map from the set-up's first noise level (its own start: leading starts lower) to clean
        t0 = float(gaussian.schedule.t_of_sigma(start[0]["sigma"]))
        x = torch.tensor([[r["x"], r["y"]] for r in start], dtype=torch.float64)
        exact = gaussian.flow(x, t0, "clean").numpy()
        got = np.array([[r["x"], r["y"]] for r in end])
        assert np.abs(got - exact).max() / np.abs(exact).max() < 1e-5, label
        assert end[0]["sigma"] == 0.0
    # the stochastic set-up leaves the flow; the deterministic ones stay near it
    assert out["distances"][2]["mean_to_reference"] > out["distances"][0]["mean_to_reference"]
    assert out["slider"]["value"] == out["slider"]["maximum"] > 0
    assert read_png(out["picture"]).shape[:2][1] == teaching.SIZE
    assert {r["t"] for r in out["density"]} >= {"clean"}
    ends = out["ends"]["value"]
    assert {dict(zip(ends["columns"], row))["label"] for row in ends["data"]} == set(labels) | {"reference", "data"}


def test_more_steps_bring_the_end_points_much_closer_to_the_reference(client):
    out = fetch(client, model="mixture-2d", points=8, seed=1, sampler_1="ddim", steps_1=5, spacing_1="trailing",
                sampler_2="ddim", steps_2=200, spacing_2="trailing")
    few, many = out["distances"]
    assert many["mean_to_reference"] < 0.05 * few["mean_to_reference"]
    # the reference clouds of both set-ups are the same flow from the same start: the same energy distance
    assert many["reference_energy_to_data"] == pytest.approx(few["reference_energy_to_data"], rel=1e-4)


@pytest.mark.parametrize("values, message", [
    (dict(model="default", sampler_1="ddim"), r"model='default' is not a 2-D model; allowed: mixture-2d, gaussian"),
    (dict(model="tiny-unet", sampler_1="ddim"), r"model='tiny-unet' is not a 2-D model"),
    (dict(sampler_1="ddim", points=0), r"points=0 is out of range \(allowed: 1 <= points <= 200\)"),
    (dict(sampler_1="ddim", seed=-1), r"seed=-1 is out of range"),
    (dict(sampler_1="nope"), r"set-up 1: sampler='nope' is unknown; allowed: ddim"),
    (dict(sampler_1="ddim", steps_1=200, points=100), r"points=100 with set-up 1: ddim .* makes 20100 trajectory rows"),
    (dict(), r"sampler_1..sampler_3 are all empty"),
])
def test_bad_input_names_the_parameter_and_the_server_keeps_serving(client, values, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        fetch(client, **values)
    assert len(fetch(client, points=2, sampler_1="ddim", steps_1=2)["trajectories"]) == 2 * 3 * 2


def test_the_picture_scrubs_through_the_steps():
    data = teaching.rows(dict(model="mixture-2d", points=16, seed=0, **{
        f"{f}_{i + 1}": v for i, setup in enumerate(teaching.DEFAULTS) for f, v in zip(("sampler", "steps", "spacing"),
                                                                                       setup)}), LIMITS)
    last = len(data["timeline"]) - 1
    start, end = teaching.render(data, 0), teaching.render(data, last)
    assert start.shape == end.shape and start.shape[1] == teaching.SIZE and start.dtype == np.uint8
    assert np.array_equal(end, teaching.render(data))   # the default is the end
    assert np.abs(start.astype(int) - end).sum(-1).astype(bool).mean() > 0.05
    middle = teaching.render(data, last // 2)
    assert not np.array_equal(middle, start) and not np.array_equal(middle, end)
    # its cost (a few ms, no model call) is measured in bench/views.py
