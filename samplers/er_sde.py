"""ER-SDE-Solver (Cui et al., WACV 2025, arXiv:2309.06169), the VP form ComfyUI calls er_sde, in k form.

The extended reverse-time SDE family is indexed by a noise-scale function f(k); its solution from
k_s to k_t is x_t = r x_s + (1 - r) D + (corrections) + sqrt(k_t^2 - k_s^2 r^2) z with r = f(k_t) / f(k_s).
f(k) = k is the probability-flow ODE (no noise); the paper's (and ComfyUI's) default
f(k) = k (e^{k^0.3} + 10) injects noise.  Here f(k) = k (e^{k^0.3} + 10)^eta, so eta = 0 is the
ODE and eta = 1 the default.  Orders 2 and 3 add the Taylor terms of the x0 in k with backward
differences; their integrals int 1/f and int (k - k_s)/f are taken by Gauss-Legendre in log k
(ComfyUI sums 200 points: the same picture to about 1e-3).
"""
from __future__ import annotations

import math

import numpy as np

from .core import Eval
from .karras import _register, finish

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)


def noise_scale(k, eta: float):
    return k * (np.exp(k ** 0.3) + 10.0) ** eta


def integrals(k_s: float, k_t: float, eta: float) -> tuple[float, float]:
    """(int_{k_t}^{k_s} dk / f, int_{k_t}^{k_s} (k - k_s) dk / f), in u = log k."""
    a, b = math.log(k_t), math.log(k_s)
    u = 0.5 * (b - a) * _NODES + 0.5 * (a + b)
    k = np.exp(u)
    w = 0.5 * (b - a) * _WEIGHTS * k / noise_scale(k, eta)
    return float(w.sum()), float((w * (k - k_s)).sum())


def er_sde_program(sampler, x, rng):
    p = sampler.plan
    eta, s_noise, max_stage = sampler.opt("eta"), sampler.opt("s_noise"), sampler.opt("order")
    ks = p.ks
    x = x * p.init
    old, old_d = None, None
    for i in range(p.steps):
        k, k_t = ks[i], ks[i + 1]
        pred = yield Eval(x * p.c_in[i], p.model_t[i], k)
        d0 = pred.x0
        if k_t == 0:
            x = d0
            continue
        f_t = float(noise_scale(k_t, eta))
        r = f_t / float(noise_scale(k, eta))
        x = x * r + d0 * (1 - r)
        stage = min(max_stage, i + 1)
        if stage >= 2:
            dt = k_t - k
            s, s_u = integrals(k, k_t, eta)
            d1 = (d0 - old) / (k - ks[i - 1])
            x = x + d1 * (dt + s * f_t)
            if stage >= 3:
                d2 = (d1 - old_d) / ((k - ks[i - 2]) / 2)
                x = x + d2 * (dt * dt / 2 + s_u * f_t)
            old_d = d1
        std = math.sqrt(max(k_t * k_t - k * k * r * r, 0.0)) * s_noise
        if eta > 0 and std > 0:   # at eta = 0 the std is 0 up to rounding: the ODE draws nothing
            x = x + rng.randn_like(x, sigma=k, sigma_next=k_t) * std
        old = d0
    return finish(x, ks[-1])


_register("er-sde", "ER-SDE-Solver-3", 2, True, er_sde_program, ("eta", "s_noise", "noise", "order"),
          defaults={"eta": 1.0, "order": 3}, choices={"order": (1, 2, 3), "interpolation_type": ("linear", "log")},
          paper="Cui, Zhang, Wang, Liu, Lu, Bai 2025, ER-SDE-Solver (arXiv:2309.06169)", nominal_order=3,
          order_note="stochastic: the order is that of its eta = 0 path (the ODE, f(k) = k); its derivatives are "
                     "backward differences in k whose first-order error the third stage does not cancel, so it "
                     "measures about 2")
