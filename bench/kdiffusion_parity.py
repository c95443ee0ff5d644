"""Our samplers and schedules against k-diffusion 0.1.1.post1 (test-only oracle) on the same sigmas.

Same model convention on both sides: a smooth eps model of (VP sample, fractional train timestep);
k-diffusion gets it as a denoiser D(x, sigma) = x - sigma eps(x / sqrt(1 + sigma^2), t(sigma)) with
t(sigma) the log-sigma interpolation of the train table (k-diffusion's DiscreteSchedule with
quantize=False). The SDE / ancestral samplers use the same Brownian trees: ours with
noise='brownian' and the seed s, k-diffusion's BrownianTreeNoiseSampler with seeds [s, s + 1, ...].

    python bench/kdiffusion_parity.py      # writes bench/results/kdiffusion-parity.md
"""
from __future__ import annotations

import importlib.util
import math
import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import samplers  # noqa: E402

SEED, STEPS, BATCH = 11, 8, 2
DTYPE = torch.float64   # float64 on both sides: what is left is the method, not float32 rounding
SCHEDULE = samplers.NoiseSchedule.from_config({})


def load_sampling():
    """k-diffusion's sampling.py by file path: the package __init__ (and its utils.py) import
    torchvision, clip, wandb; sampling.py needs only utils.append_dims, given here."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0]) / "sampling.py"
    utils = type(sys)("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    pkg = type(sys)("k_diffusion")        # a bare package so sampling's "from . import utils" works
    pkg.__path__, pkg.utils = [str(path.parent)], utils
    saved = {k: sys.modules.get(k) for k in ("k_diffusion", "k_diffusion.utils")}
    sys.modules.update({"k_diffusion": pkg, "k_diffusion.utils": utils})
    try:
        sub = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
        module = importlib.util.module_from_spec(sub)
        sub.loader.exec_module(module)
        return module
    except ImportError:
        return None
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def eps_model(x, t):
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(x.shape[0])
    c = torch.cos(t / 1000 * 1.3).view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    return 0.6 * c * x + 0.2 * torch.sin(2 * x) + 0.05 * (1 - c)


def denoiser(x, sigma):
    k = float(sigma.reshape(-1)[0])
    t = float(SCHEDULE.t_of_sigma(k))
    return x - k * eps_model(x / math.sqrt(1 + k * k), t)


def start_noise():
    return torch.randn(BATCH, 3, 4, 4, generator=torch.Generator().manual_seed(5), dtype=DTYPE)


# (label, k-diffusion function, our method, our options, family, sde[, k-diffusion's options]): "ve"
# programs start at sigma_0 z, "vp" ones take the unit-variance VP sample; "sde" ones share the Brownian tree.
SAMPLER_CASES = [
    ("euler", "sample_euler", "euler", {}, "ve", False),
    ("euler_ancestral", "sample_euler_ancestral", "euler-a", {}, "ve", True),
    ("heun", "sample_heun", "heun", {}, "ve", False),
    ("dpm_2", "sample_dpm_2", "dpm2", {}, "ve", False),
    ("dpm_2_ancestral", "sample_dpm_2_ancestral", "dpm2-a", {}, "ve", True),
    ("lms", "sample_lms", "lms", {}, "ve", False),
    ("dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral", "dpm++2s-a", {}, "ve", True),
    ("dpmpp_sde", "sample_dpmpp_sde", "dpm++sde", {}, "ve", True),
    ("dpmpp_2m", "sample_dpmpp_2m", "dpmpp_2m", {}, "vp", False),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", "dpm++2m-sde", {}, "vp", True),
    ("dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde", "dpm++2m-sde-heun", {}, "vp", True, {"solver_type": "heun"}),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde", "dpm++3m-sde", {}, "vp", True),
]
SCHEDULES = ["karras", "exponential", "normal"]
NOT_COMPARABLE = {"dpm_adaptive": "k-diffusion's PID step-size controller (accept_safety 0.81, error norm over "
                                  "the batch) is not ours: the same method, other step sizes"}


def brownian(ks, x, sigmas):
    positive = sigmas[sigmas > 0]
    return ks.BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=[SEED + i for i in range(x.shape[0])])


def sampler_case(ks, label, fn, method, options, family, sde, kd_options=None, spacing="karras"):
    """max |ours - k-diffusion| for one sampler on one schedule; None where ours is not registered."""
    try:
        method_name = samplers.resolve(method)[0]
    except ValueError:
        return None
    extra = {"noise": "brownian"} if sde else {}
    if family == "ve":
        extra["init_noise"] = "ve"
    ours = samplers.create(method, STEPS, SCHEDULE, spacing=spacing, **options, **extra)
    sigmas = torch.tensor(ours.grid.sigma, dtype=torch.float64)
    z = start_noise()
    got = ours.sample(eps_model, z.clone(), torch.Generator().manual_seed(SEED))
    x = z * float(sigmas[0]) if family == "ve" else z * math.sqrt(1 + float(sigmas[0]) ** 2)
    kwargs = {"disable": True, **(kd_options or {})}
    if sde:
        kwargs["noise_sampler"] = brownian(ks, x, sigmas)
    ref = getattr(ks, fn)(denoiser, x, sigmas, **kwargs)
    assert method_name == ours.name
    return float((got - ref).abs().max())


def dpm_fast_case(ks):
    lo, hi = SCHEDULE.sigma_min, SCHEDULE.sigma_max
    ours = samplers.create("dpm_fast", 10, SCHEDULE, sigma_min=lo, sigma_max=hi)
    z = start_noise()
    got = ours.sample(eps_model, z.clone()) * math.sqrt(1 + lo * lo)   # ours ends in VP scale at sigma_min
    ref = ks.sample_dpm_fast(denoiser, z * math.sqrt(1 + hi * hi), lo, hi, 10, disable=True)
    return float((got - ref).abs().max())


def schedule_cases(ks):
    lo, hi, n = SCHEDULE.sigma_min, SCHEDULE.sigma_max, 10
    pairs = {
        "karras": (samplers.build_grid(SCHEDULE, n, "karras"), ks.get_sigmas_karras(n, lo, hi, 7.0)),
        "exponential": (samplers.build_grid(SCHEDULE, n, "exponential"), ks.get_sigmas_exponential(n, lo, hi)),
        "polyexponential": (samplers.build_grid(SCHEDULE, n, "polyexponential", rho=1.7),
                            ks.get_sigmas_polyexponential(n, lo, hi, 1.7)),
        "vp": (samplers.build_grid(SCHEDULE, n, "vp"), ks.get_sigmas_vp(n)),
    }
    return {k: float((torch.tensor(g.sigma) - ref.double()).abs().max() / ref.double().abs().max())
            for k, (g, ref) in pairs.items()}


def table() -> list[tuple[str, str, float | None, str]]:
    ks = load_sampling()
    if ks is None:
        raise RuntimeError("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1 "
                           "torchsde torchdiffeq trampoline)")
    rows = []
    for case in SAMPLER_CASES:
        for spacing in SCHEDULES:
            diff = sampler_case(ks, *case, spacing=spacing)
            rows.append((case[0], spacing, diff, "" if diff is not None else "not registered in this build"))
    rows.append(("dpm_fast", "log-SNR uniform (its own)", dpm_fast_case(ks), ""))
    for label, why in NOT_COMPARABLE.items():
        rows.append((label, "-", None, why))
    for name, diff in schedule_cases(ks).items():
        rows.append((f"get_sigmas_{name}", name, diff, "relative, sigmas"))
    return rows


def main():
    rows = table()
    lines = ["# Parity with k-diffusion 0.1.1.post1", "",
             f"toy eps model, float64, batch {BATCH} x 3 x 4 x 4, {STEPS} steps (dpm_fast: 10 evaluations), seed {SEED}; "
             "SDE / ancestral samplers on the same Brownian trees (ours: noise='brownian'). "
             "Written by `python bench/kdiffusion_parity.py`.", "",
             "| k-diffusion | schedule | max abs diff | note |", "|---|---|---|---|"]
    for label, spacing, diff, note in rows:
        lines.append(f"| {label} | {spacing} | {'-' if diff is None else f'{diff:.2e}'} | {note} |")
    out = ROOT / "bench" / "results" / "kdiffusion-parity.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
