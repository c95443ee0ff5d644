"""iPNDM (Zhang & Chen 2023, the DEIS paper, section on improved PNDM).

PNDM's linear multistep without its Runge-Kutta warm-up: every step moves along the DDIM map
with an Adams-Bashforth combination of the past eps, and the first steps simply use the orders
the history allows (1, 2, 3, then ``solver_order``, at most 4), so it costs exactly one
evaluation per step.  In the k-diffusion sigma the DDIM map is an Euler step of
d(x / alpha) / d sigma = eps, so this is Adams-Bashforth (with its fixed, equal-step weights)
on that ODE.
"""
from __future__ import annotations

import numpy as np

from .core import GRID_OPTIONS, Eval, Method, register
from .ddim import transfer
from .grids import Grid
from .pndm import adams_bashforth


def ipndm_grid(sampler) -> Grid:
    grid = sampler.make_grid(final="zero")
    # the DDIM map divides by alpha: start a zero-SNR schedule at its largest finite sigma
    t, sigma = grid.t.copy(), np.where(np.isinf(grid.sigma), sampler.schedule.sigma_max, grid.sigma)
    if sampler.opt("final_sigmas_type") == "sigma_min":   # (an empty step if the grid already ends there)
        sigma[-1] = min(sampler.schedule.sigma_min, sigma[-2])
        t[-1] = float(sampler.schedule.t_of_sigma(sigma[-1]))
    return Grid(t=t, sigma=sigma)


def ipndm_program(sampler, x, rng):
    g, max_order = sampler.grid, sampler.opt("solver_order")
    history = []   # eps at the start of each step, newest last
    for t, k, k_to in zip(g.t[:-1], g.sigma[:-1], g.sigma[1:]):
        pred = yield Eval(x, t, k)
        history = (history + [pred.eps])[-max_order:]
        x = transfer(x, adams_bashforth(history), k, k_to)
    return x


register(Method(
    name="ipndm", title="iPNDM (Adams-Bashforth, no warm-up cost)", paper="Zhang, Chen 2023 (arXiv:2204.13902)",
    order=4, stochastic=False, options=GRID_OPTIONS + ("final_sigmas_type", "solver_order"),
    program=ipndm_program, grid=ipndm_grid,
    defaults={"spacing": "trailing", "solver_order": 4, "final_sigmas_type": "zero"},
    choices={"solver_order": (1, 2, 3, 4)}))
