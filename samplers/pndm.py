"""Pseudo numerical methods (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models
on Manifolds").

Every step moves along the DDIM map ("transfer") with an eps estimate built by a classical
method: pseudo Runge-Kutta (4 evaluations, RK4 weights), pseudo improved Euler (2
evaluations) or pseudo linear multistep (Adams-Bashforth weights on past eps, 1 evaluation).

- ``pndm``:   diffusers' PNDMScheduler: 3 PRK warm-up steps then 4th-order PLMS (N + 9 NFE).
- ``plms``:   diffusers' skip_prk_steps=True: an improved-Euler first step, then PLMS (N + 1).
- ``f-pndm``: the paper's F-PNDM (PRK warm-up, 4th-order PLMS), on the grid itself.
- ``s-pndm``: the paper's S-PNDM (improved-Euler warm-up, 2nd-order PLMS), N + 1 NFE.
"""
from __future__ import annotations


from .core import GRID_OPTIONS, Diffusers, Eval, Method, Option, add_options, register
from .diffusers_config import COMMON
from .ddim import TABLE_SPACINGS, ddim_end, step_targets, transfer
from .model_wrapper import predict
from .schedule import vp_coefficients

add_options(Option("combine", "eps", "what the multistep formulas combine: the predicted eps (the paper), "
                   "or the raw model output converted to eps at the step's start (diffusers' PNDMScheduler; "
                   "differs only for v_prediction / sample models)", str, ("eps", "model_output")))

# Adams-Bashforth weights on eps, newest first, for 1..4 past values.
ADAMS_BASHFORTH = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12),
                   4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def adams_bashforth(history):
    """Combination of the newest len(history) <= 4 eps values (history newest last)."""
    weights = ADAMS_BASHFORTH[len(history)]
    out = weights[0] * history[-1]
    for w, e in zip(weights[1:], reversed(history[:-1])):
        out = out + w * e
    return out


def _diffusers_rule(sampler) -> bool:
    return (sampler.opt("prev_timestep") == "diffusers" and sampler.opt("spacing") in TABLE_SPACINGS
            and sampler.opt("timesteps") is None)


def _prk_points(sampler, t: float, t_to: float, k: float) -> tuple[float, float, float]:
    """(k of the first half-step, model time and k of the midpoint evaluations) of a PRK step.

    The paper takes the middle in t.  diffusers evaluates at t_to + (T//N)//2 but transfers
    the first half-step to t - (T//N)//2: the same point on evenly spaced tables, not on linspace.
    """
    half = sampler.schedule.num_train_timesteps // sampler.steps // 2
    tm, t_first = t_to + half, t - half
    if not (_diffusers_rule(sampler) and t_to <= t_first <= t and t_to <= tm <= t):
        # the paper's point; also where diffusers' rule would leave the step (N < 4 or the
        # step onto the end point, which diffusers never takes with PRK)
        tm = t_first = 0.5 * (t + t_to)
    km, k_first = (float(v) for v in sampler.schedule.sigma_at([tm, t_first]))
    return k_first, tm, km


def pndm_program(sampler, x, rng, warmup: str, max_order: int, warmup_steps: int):
    g = sampler.grid
    t_next, k_next = step_targets(sampler)
    raw = sampler.opt("combine") == "model_output"

    def value(pred):  # what the formulas combine
        return pred.output if raw else pred.eps

    def move(x, q, k_from, k_to):  # DDIM transfer with a combined value q
        if raw:
            q = predict(q, x, *vp_coefficients(k_from), sampler.prediction_type).eps
        return transfer(x, q, k_from, k_to)

    history = []  # the combined value at the start of each step, newest last
    for i, (t, k) in enumerate(zip(g.t[:-1], g.sigma[:-1])):
        e1 = value((yield Eval(x, t, k)))
        history = (history + [e1])[-max_order:]
        if i < warmup_steps and warmup == "prk":
            # PRK steps always run between grid points (also in diffusers, whose PRK table is
            # built from consecutive timesteps)
            t_to, k_to = g.t[i + 1], g.sigma[i + 1]
            k_first, tm, km = _prk_points(sampler, t, t_to, k)
            e2 = value((yield Eval(move(x, e1, k, k_first), tm, km)))
            e3 = value((yield Eval(move(x, e2, k, km), tm, km)))
            e4 = value((yield Eval(move(x, e3, k, k_to), t_to, k_to)))
            x = move(x, (e1 + 2 * e2 + 2 * e3 + e4) / 6, k, k_to)
        elif i < warmup_steps and warmup == "euler" and i + 1 < len(g.t) - 1:
            # improved Euler: a trial DDIM step, then the model re-evaluated where the next step starts
            t2, k2 = g.t[i + 1], g.sigma[i + 1]
            e2 = value((yield Eval(move(x, e1, k, k_next[i]), t2, k2)))
            k_from = k
            if _diffusers_rule(sampler):  # diffusers transfers from t2 + T//N instead of from t
                k_from = float(sampler.schedule.sigma_at(
                    min(t2 + sampler.schedule.num_train_timesteps // sampler.steps, g.t[0])))
            x = move(x, (e1 + e2) / 2, k_from, k2)
        else:
            x = move(x, adams_bashforth(history), k, k_next[i])
    return x


def _grid(s):
    return s.make_grid(final=ddim_end(s))


# Measured vs nominal order: Adams-Bashforth with fixed weights is order p only on steps equal in
# the variable it integrates; the DDIM map integrates in k-sigma, where a log-SNR grid's steps are far
# from equal, so the equal-step weights lose accuracy (tests/test_convergence.py measures it).
FIXED_WEIGHTS_NOTE = ("nominal order {nominal} on equal steps (fixed Adams-Bashforth weights); on steps that are "
                      "not equal in sigma, such as a grid uniform in log-SNR, it measures about {order}")


def _register(name, title, warmup, nominal, order, warmup_steps, nfe, defaults, diffusers=None):
    register(Method(
        name=name, title=title, paper="Liu, Ren, Lin, Zhao 2022 (arXiv:2202.09778)", order=order,
        nominal_order=nominal if nominal != order else None,
        order_note=FIXED_WEIGHTS_NOTE.format(nominal=nominal, order=order) if nominal != order else "",
        stochastic=False, options=GRID_OPTIONS + ("set_alpha_to_one", "prev_timestep", "combine"),
        program=lambda s, x, rng: pndm_program(s, x, rng, warmup, nominal, warmup_steps),
        grid=_grid, nfe=nfe, defaults=defaults, diffusers=diffusers))


# diffusers' PNDMScheduler is pndm, or plms with skip_prk_steps
_PNDM_DEFAULTS = dict(COMMON, skip_prk_steps=False, set_alpha_to_one=False)
_register("pndm", "PNDM (PRK warm-up + PLMS, diffusers)", "prk", 4, 2, 3,
          lambda s: s.steps + 3 * min(3, s.steps), {"set_alpha_to_one": False, "combine": "model_output"},
          Diffusers("PNDMScheduler", _PNDM_DEFAULTS, picks=lambda cfg: not cfg.get("skip_prk_steps")))
_register("plms", "PLMS (diffusers skip_prk_steps)", "euler", 4, 2, 1,
          lambda s: s.steps + (s.steps > 1), {"set_alpha_to_one": False, "combine": "model_output"},
          Diffusers("PNDMScheduler", _PNDM_DEFAULTS, picks=lambda cfg: bool(cfg.get("skip_prk_steps"))))
_register("f-pndm", "F-PNDM (paper)", "prk", 4, 2, 3,
          lambda s: s.steps + 3 * min(3, s.steps), {"set_alpha_to_one": False, "prev_timestep": "grid"})
_register("s-pndm", "S-PNDM (paper)", "euler", 2, 2, 1,
          lambda s: s.steps + (s.steps > 1), {"set_alpha_to_one": False, "prev_timestep": "grid"})
