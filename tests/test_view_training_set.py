"""Network vs training set (views/training_set.py): the default network beside its ideal-denoiser twin."""
from __future__ import annotations

import pytest
import torch

import models
import lab
from tests.app_helpers import read_png, serve
from views import training_set as view

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LIMITS = lab.Limits(max_steps=200, max_images=8, max_points=2000, max_compare=6, concurrency=4, preview_fps=10,
                       reference_steps=60)
BASE = dict(model="default", sampler="ddim", steps=10, seed=5, num_images=3, class_label="Flags", guidance_scale=3.0)


@pytest.fixture(scope="module")
def client():
    yield from serve(LIMITS)


def final(values: dict):
    *_, (status, picture, result) = view.rows(values, LIMITS)
    return status, picture, result


def solo(model: str, values: dict) -> torch.Tensor:
    """The run Generate makes for this model and these settings."""
    _, setup, seed, count, cond = view.check(values, LIMITS)
    *_, last = lab.generate(lab.GenerateRequest(model, setup, seed, count, cond), LIMITS)
    return last.sample.double().cpu()


def rms_255(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).pow(2).mean(1).sqrt() * 127.5


def test_the_twin_lands_on_training_images_of_the_class_and_the_network_is_measured_against_the_set():
    status, picture, result = final(BASE)
    rows = result["rows"]
    twin = models.load("ideal-emoji")
    flags = twin.categories.index("Flags")
    # the exact posterior mean over a finite set ends on its images, and keeps to the asked class
    assert all(r["twin_to_nearest"] < 1.0 for r in rows), rows
    assert all(int(twin.labels[twin.names.index(r["twin_nearest"])]) == flags for r in rows)
    # both runs are the ones Generate makes, from the same noise: the distances are between those
    network, ideal = solo("default", BASE), solo("ideal-emoji", BASE)
    images = twin.images.double().reshape(-1, *twin.event_shape)
    to_set = torch.cdist(network.flatten(1), images.flatten(1))
    nearest = to_set.argmin(1)
    assert [r["nearest"] for r in rows] == [twin.names[i] for i in nearest]
    assert [r["network_to_nearest"] for r in rows] == pytest.approx(rms_255(network, images[nearest]).tolist(),
                                                                    abs=0.01)
    assert [r["network_to_twin"] for r in rows] == pytest.approx(rms_255(network, ideal).tolist(), abs=0.01)
    assert all(r["nearest_class"] in twin.categories for r in rows)
    # one line per image: network | twin | nearest training image, each 96 px with two lines of text under it
    assert picture.shape[0] > 3 * 96 and picture.shape[1] == 3 * 96 + 2 * 4
    assert "done in" in status and "the twin's" in status


def test_a_stochastic_sampler_shares_its_later_noise_too():
    values = dict(BASE, sampler="ddpm", steps=8, num_images=2, class_label="Smileys & Emotion")
    _, _, result = final(values)
    network, ideal = solo("default", values), solo("ideal-emoji", values)
    assert [r["network_to_twin"] for r in result["rows"]] == pytest.approx(rms_255(network, ideal).tolist(), abs=0.01)


def test_the_endpoint_streams_both_runs_then_the_picture_and_the_table(client):
    job = client.submit(api_name="/training_set", **dict(BASE, num_images=2))
    job.result()
    updates = job.outputs()
    statuses = [status for status, _, _ in updates]
    network = [i for i, s in enumerate(statuses) if s.startswith("network:")]
    twin = [i for i, s in enumerate(statuses) if s.startswith("training set:")]
    assert network and twin and max(network) < min(twin) and statuses[-1].startswith("done in")
    status, picture, table = updates[-1]
    assert table["headers"] == list(view.COLUMNS) and len(table["data"]) == 2
    assert read_png(picture).shape[1] == 3 * 96 + 2 * 4


@pytest.mark.parametrize("values, message", [
    (dict(steps=0), r"steps=0 is out of range"),
    (dict(num_images=9), r"num_images=9 is out of range \(allowed: 1 <= num_images <= 8"),
    (dict(sampler="nope"), r"sampler='nope' is unknown"),
    (dict(class_label="Dinosaurs"), r"class_label='Dinosaurs' is not a class of model 'default'.*Flags"),
    (dict(guidance_scale=50), r"guidance_scale=50"),
    (dict(seed=-1), r"seed=-1"),
    (dict(model="gaussian"), r"model='gaussian' has no training-set twin here; allowed: default"),
])
def test_bad_input_names_the_parameter_and_the_server_keeps_serving(client, values, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(api_name="/training_set", **dict(BASE, **values))
    assert len(client.predict(api_name="/training_set", **dict(BASE, steps=2, num_images=1))[2]["data"]) == 1


def test_without_the_trained_network_the_view_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(models.embedded, "DEFAULT_MODEL_DIR", tmp_path / "not-trained-yet")
    with pytest.raises(FileNotFoundError, match="default network is not available.*train_default_model"):
        final(BASE)
    with pytest.raises(ValueError, match="unknown parameter"):
        final(dict(BASE, network="default"))
