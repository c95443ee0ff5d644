"""Load on the app over loopback: many clients at once, then a burst beyond the queue.

Starts the app in a subprocess (this script with ``--serve``) on a free 127.0.0.1 port with its
own Gradio temp folder, then:

1. solo runs: one streamed /generate per seed, one after another (the expected images);
2. burst: ``--clients`` (16) clients at once, each streaming a ``--steps`` (20)-step run;
3. queued: ``--queued`` (64) clients at once: each finishes, or is turned away with Gradio's
   queue-full message (QUEUE_SIZE) instead of piling up.

Checks that every finished same-seed result equals its solo run pixel for pixel, and reports
latency p50/p95 (submit -> final result), throughput, refusals, the server's RSS before and after,
and the size of its temp folder. Loopback only; bounded in clients and in time (``--time-limit``);
the server is stopped at the end however the script ends (and stops itself if orphaned).

    python bench/load.py              # 16 clients, then 64 queued (QUEUE_SIZE 16, 1 run at a time)
    python bench/load.py --quick      # 4 clients, then 12 queued with QUEUE_SIZE 4 (CI, < 60 s)
    python bench/load.py --flood      # one visitor floods: a second visitor's wait, before / after the cap
    python bench/load.py --flood --quick

The flood scenario (``--flood``) starts the server twice, without the per-visitor cap
(VISITOR_SLOTS=1000: Gradio's plain first-in first-out queue) and with the default cap: one
visitor submits ``--flood-jobs`` (20) heavy runs and never reads them while ``--visitors`` (5)
other visitors each ask for a 5-step DDIM picture; it reports the flooder's places, the visitors'
p50 / p95 wait and refusals, then ``--mixed`` (200) mixed runs (Generate, Compare, cancelled and
refused ones) with the server's RSS and temp folder before and after.

Exit status 1 when a result differs from its solo run, a client fails with anything but the
queue-full refusal, a client is unaccounted for, or the temp folder / RSS grows past a bound.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODEL = "tiny-unet"       # a real (tiny) UNet with classifier-free guidance: cheap on a shared 2-core machine
RSS_GROWTH_LIMIT_MB = 300
TEMP_LIMIT_MB = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def folder_size(folder: Path) -> tuple[float, int]:
    total, count = 0, 0
    for base, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(base, name))
                count += 1
            except OSError:
                pass
    return total / 2**20, count


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# ---------------------------------------------------------------------------------------------
# the server (subprocess)


def start_server(args, temp: Path, extra_env: dict, deadline: float | None = None) -> tuple[subprocess.Popen, str]:
    """The app in a subprocess (this script with ``--serve``) on a free port, its own temp folder; waits
    until it answers (by ``deadline``, default 120 s from now)."""
    import httpx

    port = free_port()
    env = dict(os.environ, GRADIO_TEMP_DIR=str(temp / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
               QUEUE_SIZE=str(args.queue_size), MAX_CONCURRENCY=str(args.concurrency), PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1", **extra_env)
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(port),
                               "--time-limit", str(args.time_limit + 30)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120 if deadline is None else deadline
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{server.stdout.read()[-3000:]}")
        if time.time() > deadline:
            server.kill()
            raise RuntimeError("the server did not start within the time limit")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()


def flood_round(url: str, jobs: int, visitors: int, timeout: float, heavy: dict) -> dict:
    """One visitor submits ``jobs`` heavy runs and walks away; ``visitors`` others ask for 5 steps."""
    from gradio_client import Client

    flooder = Client(url, verbose=False)
    submitted = [flooder.submit(**heavy, api_name="/generate") for _ in range(jobs)]
    time.sleep(1.0)   # the flood is in the queue before anyone else arrives
    waits, refused, messages = [], 0, set()
    out = [dict() for _ in range(visitors)]

    def visit(i):
        start = time.perf_counter()
        try:
            Client(url, verbose=False).predict(model=heavy["model"], sampler="ddim", steps=5, seed=i,
                                               api_name="/generate")
            out[i]["wait"] = time.perf_counter() - start
        except Exception as exc:
            out[i]["error"] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=visit, args=(i,), daemon=True) for i in range(visitors)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=timeout)
    for o in out:
        if "wait" in o:
            waits.append(o["wait"])
        else:
            refused += 1
            messages.add(o.get("error", "no answer in time")[:120])
    refused_flood = [j for j in submitted if j.done() and j.exception() is not None
                     and "cancel" not in type(j.exception()).__name__.lower()]
    held = jobs - len(refused_flood)   # places the flood took (ran, runs or waits)
    flood_refusals = {str(j.exception())[:120] for j in refused_flood}
    return dict(flood_jobs=jobs, flood_held=held, visitors=visitors, served=len(waits), refused=refused,
                p50_s=round(percentile(waits, 50), 2), p95_s=round(percentile(waits, 95), 2),
                visitor_errors=sorted(messages), flood_refusal=sorted(flood_refusals)[:1])


def mixed_runs(url: str, count: int, timeout: float) -> dict:
    """``count`` mixed requests, one after another: Generate, Compare, a cancelled run, a refused one."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    kinds = {"generate": 0, "compare": 0, "cancelled": 0, "refused": 0}
    end = time.time() + timeout
    for i in range(count):
        if time.time() > end:
            break
        kind = ("generate", "compare", "cancelled", "refused")[i % 4]
        try:
            if kind == "generate":
                client.predict(model=MODEL, sampler="ddim", steps=5, seed=i, num_images=2, api_name="/generate")
            elif kind == "compare":
                client.predict(model=MODEL, setups=[{"sampler": "ddim", "steps": 4}, {"sampler": "unipc", "steps": 4}],
                               seed=i, reference=False, api_name="/compare")
            elif kind == "cancelled":
                job = client.submit(model="tiny-slow", sampler="ddim", steps=100, seed=i, api_name="/generate")
                time.sleep(0.3)
                job.cancel()
                time.sleep(0.3)
            else:
                client.predict(model=MODEL, steps=5000, api_name="/generate")
        except Exception:   # the refused kind (and any other refusal) answers with an error
            pass
        kinds[kind] += 1
    return kinds


def flood(args) -> int:
    temp = Path(tempfile.mkdtemp(prefix="sampler-lab-flood-"))
    rounds, memory = [], {}
    heavy = dict(model=args.flood_model, sampler="ddpm", steps=args.flood_steps, num_images=args.flood_images)
    try:
        for label, env in (("before: no per-visitor cap (VISITOR_SLOTS=1000)", {"VISITOR_SLOTS": "1000"}),
                           ("after: the default cap", {})):
            server, url = start_server(args, temp / label[:5], env)
            try:
                result = flood_round(url, args.flood_jobs, args.visitors, args.time_limit / 2, heavy)
                rounds.append(dict(setting=label, **result))
                if not env:   # memory over mixed runs, on the capped server once its flood has drained
                    time.sleep(1.0)
                    memory["rss_before_mb"] = round(rss_mb(server.pid), 1)
                    memory["runs"] = mixed_runs(url, args.mixed, timeout=args.time_limit / 2)
                    memory["rss_after_mb"] = round(rss_mb(server.pid), 1)
                    memory["temp_mb"], memory["temp_files"] = folder_size(temp / label[:5] / "gradio")
            finally:
                stop_server(server)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    print(f"flood over loopback: one visitor submits {args.flood_jobs} runs ({args.flood_model}, DDPM "
          f"{args.flood_steps} steps, {args.flood_images} images) and never reads them; {args.visitors} other "
          f"visitors each ask for a 5-step DDIM picture of the same model; "
          f"QUEUE_SIZE={args.queue_size}, MAX_CONCURRENCY={args.concurrency}\n")
    print("| setting | flood places held | visitors served | visitors refused | visitor wait p50 s | p95 s |")
    print("|---|---|---|---|---|---|")
    for r in rounds:
        print(f"| {r['setting']} | {r['flood_held']}/{r['flood_jobs']} | {r['served']}/{r['visitors']} | "
              f"{r['refused']} | {r['p50_s']} | {r['p95_s']} |")
    for r in rounds:
        for e in r["visitor_errors"] + r["flood_refusal"]:
            print(f"{r['setting'][:6]} refusal: {e!r}")
    print(f"\nmixed runs {memory.get('runs')}: server RSS {memory.get('rss_before_mb')} MB before, "
          f"{memory.get('rss_after_mb')} MB after; Gradio temp folder {round(memory.get('temp_mb', 0), 2)} MB "
          f"in {memory.get('temp_files')} files")
    if args.json:
        args.json.write_text(json.dumps(dict(rounds=rounds, memory=memory), indent=2))
    after = rounds[-1]
    ok = (after["served"] == after["visitors"] and after["p95_s"] <= 30
          and memory["rss_after_mb"] < memory["rss_before_mb"] + RSS_GROWTH_LIMIT_MB and memory["temp_mb"] < TEMP_LIMIT_MB)
    return 0 if ok else 1


def serve(port: int, lifetime: float) -> None:
    import torch

    torch.set_num_threads(1)   # tiny network: a second thread only adds contention on a shared machine
    import app
    import lab
    from tests.app_helpers import register_test_models

    register_test_models()
    demo = app.build_app()     # limits from the environment (QUEUE_SIZE, MAX_CONCURRENCY, ...)
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
               show_error=True)
    print(f"serving on {port}: {lab.Limits.from_env().describe()}", flush=True)
    parent = os.getppid()
    end = time.time() + lifetime
    while time.time() < end and os.getppid() == parent:   # stops by itself if the driver is gone
        time.sleep(0.5)
    demo.close()


# ---------------------------------------------------------------------------------------------
# the driver


def read_pixels(path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def one_client(url: str, seed: int, steps: int, timeout: float, out: dict, downloads: Path) -> None:
    from gradio_client import Client

    start = time.perf_counter()
    try:
        # a folder per client: gradio_client names a download by its content, so two same-seed clients
        # sharing one folder write and read the same file at once (a half-written PNG)
        client = Client(url, verbose=False, download_files=str(downloads))
        job = client.submit(model=MODEL, sampler="ddim", steps=steps, seed=seed, num_images=2, class_label=1,
                            guidance_scale=2.0, api_name="/generate")
        # streamed: every step's status (and throttled previews) arrives as it is made. Polled rather than
        # iterated: iterating a job the queue turned away waits forever in gradio_client
        end = time.time() + timeout
        while not job.done() and time.time() < end:
            time.sleep(0.05)
        updates = len(job.outputs())
        result = job.result(timeout=max(0.1, end - time.time()))
        out.update(ok=True, seconds=time.perf_counter() - start, updates=updates,
                   pixels=[read_pixels(g["image"]) for g in result[2]], status=result[1])
    except Exception as exc:   # classified by the caller: queue-full refusal or a failure
        out.update(ok=False, seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")


def phase(url: str, name: str, clients: int, steps: int, seeds: int, timeout: float,
          downloads: Path) -> tuple[dict, list, list]:
    results = [dict() for _ in range(clients)]
    threads = [threading.Thread(target=one_client, daemon=True,
                                args=(url, i % seeds, steps, timeout, results[i], downloads / f"{name}-{i}"))
               for i in range(clients)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=max(1.0, timeout - (time.perf_counter() - start)))
    wall = time.perf_counter() - start
    finished = [r for r in results if r.get("ok")]
    refused = [r for r in results if not r.get("ok") and "queue is full" in r.get("error", "").lower()]
    failed = [r for r in results if not r.get("ok") and "queue is full" not in r.get("error", "").lower()]
    latencies = [r["seconds"] for r in finished]
    summary = dict(phase=name, clients=clients, finished=len(finished), refused=len(refused),
                   failed=len(failed), wall_s=round(wall, 2),
                   p50_s=round(percentile(latencies, 50), 3), p95_s=round(percentile(latencies, 95), 3),
                   runs_per_s=round(len(finished) / wall, 2) if wall > 0 else None,
                   refusal_message=refused[0]["error"] if refused else None)
    errors = [r.get("error", "no answer within the time limit") for r in failed]
    return summary, list(zip(range(clients), results)), errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 clients, then 12 queued, QUEUE_SIZE 4 (for CI)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queued", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds for the whole script")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--flood", action="store_true", help="the flood scenario (see above)")
    parser.add_argument("--flood-jobs", type=int, default=20)
    parser.add_argument("--visitors", type=int, default=5)
    parser.add_argument("--flood-model", default="default", help="the flood's and the visitors' model")
    parser.add_argument("--flood-steps", type=int, default=200)
    parser.add_argument("--flood-images", type=int, default=8)
    parser.add_argument("--mixed", type=int, default=200, help="mixed runs for the memory bound (--flood)")
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.time_limit)
        return 0
    if args.flood:
        if args.quick:
            args.flood_jobs, args.visitors, args.mixed, args.time_limit = 8, 2, 24, min(args.time_limit, 150.0)
            args.flood_model, args.flood_steps, args.flood_images = "tiny-slow", 40, 2
        return flood(args)
    if args.quick:
        args.clients, args.queued, args.queue_size, args.time_limit = 4, 12, 4, min(args.time_limit, 90.0)
    for name in ("clients", "queued"):
        if not 1 <= getattr(args, name) <= 256:
            parser.error(f"--{name}={getattr(args, name)} is out of range (allowed: 1..256)")
    if not 1 <= args.steps <= 200:
        parser.error(f"--steps={args.steps} is out of range (allowed: 1..200)")
    deadline = time.time() + args.time_limit
    seeds = 4

    temp = Path(tempfile.mkdtemp(prefix="sampler-lab-load-"))
    server, url = None, None
    report = {"errors": [], "mismatches": 0}
    try:
        server, url = start_server(args, temp, {}, deadline)

        def left() -> float:
            return max(5.0, deadline - time.time())

        # solo runs first: the expected images, and the server warmed up (model loaded) before RSS is read
        solo = {}
        for seed in range(seeds):
            out: dict = {}
            one_client(url, seed, args.steps, left(), out, temp / "client" / f"solo-{seed}")
            if not out.get("ok"):
                raise RuntimeError(f"solo run seed {seed} failed: {out.get('error')}")
            solo[seed] = out["pixels"]
        rss_before = rss_mb(server.pid)

        phases = []
        for name, count in (("burst", args.clients), ("queued", args.queued)):
            summary, results, errors = phase(url, name, count, args.steps, seeds, left(), temp / "client")
            for i, r in results:
                if r.get("ok"):
                    same = len(r["pixels"]) == len(solo[i % seeds]) and all(
                        (a == b).all() for a, b in zip(r["pixels"], solo[i % seeds]))
                    report["mismatches"] += 0 if same else 1
            report["errors"] += errors
            phases.append(summary)
        rss_after = rss_mb(server.pid)
        temp_mb, temp_files = folder_size(temp / "gradio")   # the server's; the clients' downloads are apart
        report.update(phases=phases, rss_before_mb=round(rss_before, 1), rss_after_mb=round(rss_after, 1),
                      temp_mb=round(temp_mb, 2), temp_files=temp_files, steps=args.steps,
                      queue_size=args.queue_size, concurrency=args.concurrency)
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(temp, ignore_errors=True)

    print(f"load over loopback: model {MODEL}, {args.steps}-step DDIM runs streamed, 2 images each, "
          f"QUEUE_SIZE={args.queue_size}, MAX_CONCURRENCY={args.concurrency}\n")
    print("| phase | clients | finished | refused (queue full) | failed | p50 s | p95 s | runs/s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in report["phases"]:
        print(f"| {p['phase']} | {p['clients']} | {p['finished']} | {p['refused']} | {p['failed']} | {p['p50_s']} "
              f"| {p['p95_s']} | {p['runs_per_s']} | {p['wall_s']} |")
    refusal = next((p["refusal_message"] for p in report["phases"] if p["refusal_message"]), None)
    print(f"\nrefusal message: {refusal!r}")
    print(f"same-seed results differing from their solo run: {report['mismatches']}")
    print(f"server RSS: {report['rss_before_mb']} MB before, {report['rss_after_mb']} MB after")
    print(f"Gradio temp folder: {report['temp_mb']} MB in {report['temp_files']} files")
    for e in report["errors"][:5]:
        print(f"error: {e}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = (report["mismatches"] == 0 and not report["errors"]
          and all(p["finished"] + p["refused"] == p["clients"] for p in report["phases"])
          and report["rss_after_mb"] < report["rss_before_mb"] + RSS_GROWTH_LIMIT_MB
          and report["temp_mb"] < TEMP_LIMIT_MB)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
