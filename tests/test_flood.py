"""A public Space under a flood: one visitor holds at most VISITOR_SLOTS places, a second visitor is
served meanwhile, abandoned runs stop, over-budget requests are refused by name before they run.
Loopback only: every client has the same address here, so visitors are told apart by session."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import ValidationError

import lab
from lab import admission, budget
from tests.app_helpers import launch, register_test_models

register_test_models()
LIMITS = lab.Limits(concurrency=1, visitor_slots=2, queue_size=16, preview_fps=2)


@pytest.fixture(scope="module")
def server():
    import app

    demo = app.build_app(LIMITS)
    url = launch(demo)
    yield url, demo
    demo.close()


def wait_idle(timeout=60.0):
    deadline = time.time() + timeout
    while lab.active_runs() and time.time() < deadline:
        time.sleep(0.1)
    assert not lab.active_runs()


def test_one_visitor_holds_two_places_and_a_second_visitor_is_served_meanwhile(server):
    url, demo = server
    flooder = Client(url, verbose=False)
    jobs = [flooder.submit(model="tiny-slow", sampler="ddpm", steps=200, num_images=2, api_name="/generate")
            for _ in range(6)]
    refused, accepted = [], []
    for job in jobs:
        try:
            job.result(timeout=5)   # a refusal answers at once; an admitted run takes 6 s or more
            accepted.append(job)
        except ValidationError as exc:
            refused.append(str(exc))
        except Exception:   # still running or waiting: it holds a place
            accepted.append(job)
    assert len(refused) == 4 and len(accepted) == 2, refused
    assert all("VISITOR_SLOTS" in r and "2 per visitor" in r for r in refused)
    # the second visitor's short request gets a place during the flood, behind at most the flood's two
    visitor = Client(url, verbose=False)
    job = visitor.submit(model="tiny-slow", sampler="ddim", steps=5, api_name="/generate")
    time.sleep(0.5)
    rank = job.status().rank
    assert rank is None or rank <= 2, rank
    out = job.result(timeout=120)
    assert "done" in out[1]
    for j in accepted:
        j.cancel()
    wait_idle()


def test_simultaneous_submissions_of_one_session_cannot_race_past_the_cap():
    queue = SimpleNamespace(event_ids_to_events={}, event_analytics={})
    admission.forget()
    me = admission.Visitor("s1", None)
    answers = []
    barrier = threading.Barrier(8)

    def submit():
        barrier.wait()
        answers.append(admission.admit(queue, me, 2))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a is None for a in answers) == 2   # no event registered yet: the admissions themselves count
    # once their events are registered and have finished, the places are free again
    now = time.time()
    queue.event_analytics.update({"e1": {"time": now, "session_hash": "s1"}, "e2": {"time": now, "session_hash": "s1"}})
    assert admission.admit(queue, me, 2) is None
    assert admission.admit(queue, admission.Visitor("s2", None), 2) is None   # another visitor: own places
    admission.forget()


def test_a_forwarded_address_counts_only_behind_a_trusted_proxy():
    headers = {"x-forwarded-for": "203.0.113.7, 10.0.0.1"}
    assert admission.address_of(headers, {}) is None                       # anyone can write the header
    assert admission.address_of(headers, {"SPACE_ID": "me/lab"}) == "203.0.113.7"
    a = admission.visitor_of("s1", headers, {"SPACE_ID": "me/lab"})
    assert a.owns("another session", "203.0.113.7")    # new session hashes from one address: one visitor


def test_a_closed_http_stream_stops_its_run_and_frees_its_place(server):
    url, demo = server
    wait_idle()
    fn = next(f for f in demo.fns.values() if f.api_name == "generate")
    data = [getattr(c, "value", None) for c in fn.inputs]
    data[:3] = ["tiny-slow", "ddim", 200]    # model, sampler, steps: ~6 s
    call = f"{url}gradio_api/call/generate"
    event_id = httpx.post(call, json={"data": data}, timeout=30).json()["event_id"]
    with httpx.stream("GET", f"{call}/{event_id}", timeout=60) as stream:
        for i, _ in enumerate(stream.iter_lines()):
            if lab.active_runs() and i > 2:
                break
    started = time.time()
    wait_idle(timeout=20)
    run = next(r for r in reversed(lab.RUNS) if r.kind == "generate")
    assert run.nfe < 200 and time.time() - started < 20, run


def test_an_over_budget_request_is_refused_by_name_before_it_runs(server):
    url, demo = server
    prepared = lab.prepare("tiny-slow", 1, lab.Conditioning(), LIMITS)
    budget.record(prepared, 0.5, 0.5)    # as if this machine took 0.5 s + 0.5 s per image per evaluation
    try:
        client = Client(url, verbose=False)
        before = len(lab.RUNS)
        with pytest.raises(ValidationError, match=r"MAX_SECONDS.*lower steps or num_images"):
            client.predict(model="tiny-slow", sampler="heun", steps=40, num_images=4, api_name="/generate")
        with pytest.raises(ValidationError, match=r"MAX_SECONDS.*number of setups"):
            client.predict(model="tiny-slow", setups=[{"sampler": "ddim", "steps": 40}] * 3, api_name="/compare")
        assert len(lab.RUNS) == before          # nothing ran
        # the estimate counts each sampler's real evaluations: Heun's 2 per step, PNDM's warm-up
        request = lab.parse_generate({"model": "tiny-slow", "sampler": "heun", "steps": 40, "num_images": 4}, LIMITS)
        cost = budget.generate_cost(request, LIMITS)
        assert cost.evaluations == 79 and cost.seconds == pytest.approx(79 * (0.5 + 4 * 0.5))
        with pytest.raises(ValueError, match="MAX_SECONDS"):   # the run itself checks too
            next(lab.generate(request, LIMITS))
        # a request within budget runs
        assert "done" in client.predict(model="tiny-slow", sampler="ddim", steps=3, api_name="/generate")[1]
    finally:
        budget.forget()


def test_zero_gpu_durations_come_from_the_same_estimate():
    small = budget.generate_gpu_seconds({"model": "tiny-unet", "sampler": "ddim", "steps": 10}, LIMITS)
    heun = budget.generate_gpu_seconds({"model": "tiny-unet", "sampler": "heun", "steps": 200, "num_images": 8},
                                       LIMITS)
    assert 15 <= small <= heun <= 120
    assert budget.generate_gpu_seconds({"model": "tiny-unet", "steps": "many"}, LIMITS) == 15   # refused anyway
    budget.forget()
