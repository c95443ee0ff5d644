"""The sampler lab's training-free diffusion samplers.

    sampler = samplers.create("ddim", steps=20, spacing="trailing", eta=0.0)
    image = sampler.sample(model, torch.randn(1, 3, 32, 32))
    for step in sampler.run(model, noise):   # one record per model evaluation
        ...

Layers: ``schedule`` (alpha, sigma, lambda), ``grids`` (where to evaluate),
``model_wrapper`` (eps / x0 / v, clipping, guidance), one module per solver family, and
``core`` (options, registry, the driver loop).
"""
from . import ddim, ddpm, pndm  # noqa: F401  (register the methods)
from . import karras  # noqa: F401  (the k-diffusion family)
from . import deis, ipndm, unipc  # noqa: F401  (UniPC, DEIS, iPNDM)
from . import dpm_solver  # noqa: F401  (the DPM-Solver family)
from . import kexp  # noqa: F401  (RES, DPM++ SDE, SEEDS, exponential Heun in k form)
from . import er_sde, kextra  # noqa: F401  (Heun++, gradient estimation, iPNDM-v, LCM, DDPM in k form, CFG++ forms)
from .core import (OPTIONS, REGISTRY, Eval, Method, NonFiniteError, Option, Sampler, Step, describe,
                   run_together)
from .diffusers_config import from_diffusers_config
from .names import resolve, resolve_schedule
from .grids import SPACINGS, Grid, build_grid
from .model_wrapper import PREDICTION_TYPES, Prediction, guided
from .schedule import NoiseSchedule


def create(method: str, steps: int, schedule: NoiseSchedule | dict | None = None, **options) -> Sampler:
    """A sampler by registry name; ``schedule`` is a NoiseSchedule or a scheduler config dict."""
    if isinstance(schedule, dict):
        schedule = NoiseSchedule.from_config(schedule)
    return Sampler(method, steps, schedule, **options)


__all__ = ["NoiseSchedule", "Sampler", "Step", "Eval", "Method", "Option", "OPTIONS", "REGISTRY", "Grid",
           "Prediction", "NonFiniteError", "SPACINGS", "PREDICTION_TYPES", "build_grid", "create",
           "describe", "from_diffusers_config", "guided", "resolve", "resolve_schedule", "run_together"]
