"""iPNDM (Zhang & Chen 2023, the DEIS paper, section on improved PNDM).

PNDM's linear multistep without its Runge-Kutta warm-up: every step moves along the DDIM map
with an Adams-Bashforth combination of the past eps, and the first steps simply use the orders
the history allows (1, 2, 3, then ``order``, at most 4), so it costs exactly one
evaluation per step.  In the k-diffusion sigma the DDIM map is an Euler step of
d(x / alpha) / d sigma = eps, so this is Adams-Bashforth (with its fixed, equal-step weights)
on that ODE.
"""
from __future__ import annotations

from .core import GRID_OPTIONS, Eval, Method, register
from .ddim import transfer
from .expint import multistep_grid
from .pndm import FIXED_WEIGHTS_NOTE, adams_bashforth


def ipndm_grid(sampler):
    # the DDPM-family tables; the DDIM map divides by alpha, so a zero-SNR start is clamped
    return multistep_grid(sampler, family="ddim")


def ipndm_program(sampler, x, rng):
    g, max_order = sampler.grid, sampler.opt("order")
    history = []   # eps at the start of each step, newest last
    for t, k, k_to in zip(g.t[:-1], g.sigma[:-1], g.sigma[1:]):
        pred = yield Eval(x, t, k)
        history = (history + [pred.eps])[-max_order:]
        x = transfer(x, adams_bashforth(history), k, k_to)
    return x


register(Method(
    name="ipndm", title="iPNDM (Adams-Bashforth, no warm-up cost)", paper="Zhang, Chen 2023 (arXiv:2204.13902)",
    order=2, nominal_order=4, order_note=FIXED_WEIGHTS_NOTE.format(nominal=4, order=2), stochastic=False,
    options=GRID_OPTIONS + ("final_sigmas_type", "order"),
    program=ipndm_program, grid=ipndm_grid,
    defaults={"spacing": "trailing", "order": 4, "final_sigmas_type": "zero"},
    choices={"order": (1, 2, 3, 4)}))
