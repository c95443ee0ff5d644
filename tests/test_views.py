"""The app's extra views, launched in-process and called through their named API endpoints."""
from __future__ import annotations

import pytest

import lab
from tests.app_helpers import register_test_models, serve

register_test_models()

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LIMITS = lab.Limits(max_steps=200, max_images=8, max_points=2000, max_compare=6, concurrency=4, preview_fps=10,
                       reference_steps=60)


@pytest.fixture(scope="module")
def client():
    yield from serve(LIMITS)


def fetch_schedule(client, **setups):
    table = client.predict(model="tiny-unet", api_name="/schedule", **setups)[1]
    columns = table["headers"]
    return [dict(zip(columns, row)) for row in table["data"]]


def test_schedule_lists_every_model_evaluation_of_each_setup(client):
    rows = fetch_schedule(client, sampler_1="heun", steps_1=5, spacing_1="karras",
                          sampler_2="ddim", steps_2=10, spacing_2="leading",
                          sampler_3="dpm-solver-fast", steps_3=6, spacing_3="", sampler_4="")
    heun = [r for r in rows if r["method"] == "heun"]
    ddim = [r for r in rows if r["method"] == "ddim"]
    assert len(heun) == 2 * 5 - 1   # a corrector evaluation in every step but the last (to sigma 0)
    assert len(ddim) == 10
    # an empty spacing is the dropdown's "sampler default", not a bad value: one evaluation per step
    assert len([r for r in rows if r["method"] == "dpm-solver-fast"]) == 6
    assert [r["index"] for r in ddim] == list(range(1, 11))
    # leading spacing never starts at the last train step (999): it starts at 900 for 10 steps of 1000
    assert ddim[0]["t"] < 999
    assert all(a["sigma"] > b["sigma"] for a, b in zip(ddim, ddim[1:]))
    assert len({r["label"] for r in heun}) == 1 and heun[0]["label"] != ddim[0]["label"]


def test_schedule_names_the_bad_parameter(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"set-up 1: sampler='nope' is unknown"):
        fetch_schedule(client, sampler_1="nope", steps_1=5, sampler_2="", sampler_3="", sampler_4="")
    with pytest.raises(AppError, match=r"set-up 2: steps=0 is out of range"):
        fetch_schedule(client, sampler_1="ddim", steps_1=5, sampler_2="ddim", steps_2=0, sampler_3="", sampler_4="")
    # the server keeps serving after an error
    assert len(fetch_schedule(client, sampler_1="ddim", steps_1=3, sampler_2="", sampler_3="", sampler_4="")) == 3


def test_schedule_plots_lambda_on_request_and_refuses_an_unknown_axis(client):
    from gradio_client.exceptions import AppError

    plot, table = client.predict(model="tiny-unet", sampler_1="ddim", steps_1=4, spacing_1="trailing", sampler_2="",
                                 sampler_3="", sampler_4="", y_axis="lambda", api_name="/schedule")
    lambdas = [row[table["headers"].index("lambda")] for row in table["data"]]
    plot = plot["value"]     # an update: the plot's value and its y-axis title
    plotted = [row[plot["columns"].index("value")] for row in plot["data"]]
    assert plotted == pytest.approx(lambdas[:len(plotted)], rel=1e-9)   # lambda = -log sigma
    with pytest.raises(AppError, match=r"y_axis='lambdas' is not allowed; allowed: log10 sigma, lambda"):
        client.predict(model="tiny-unet", sampler_1="ddim", steps_1=4, y_axis="lambdas", api_name="/schedule")


def test_the_public_api_is_generate_compare_and_one_endpoint_per_view(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(named) == ["/compare", "/errors", "/generate", "/schedule", "/teaching", "/training_set"]
    import views.errors
    import views.schedule
    import views.teaching
    import views.training_set

    for api, module in (("/schedule", views.schedule), ("/teaching", views.teaching), ("/errors", views.errors),
                        ("/training_set", views.training_set)):
        assert [p["parameter_name"] for p in named[api]["parameters"]] == list(module.PARAMS)
