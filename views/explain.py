"""Words for students: what each sampler does, why its evaluations differ from its steps, the
labels of the controls, and the presets that show what each setting changes.

Only text and small dicts here (no Gradio): the page and the tests read the same sentences.
"""
from __future__ import annotations

import samplers
from samplers.schedules import READ_BY

# One or two plain sentences per sampler; its paper and order come from the registry beside it.
SAMPLERS = {
    "ddim": "Jumps straight along the line from the noise to the model's guess of the clean image; eta adds "
            "fresh noise each step (eta 1 is DDPM).",
    "ddpm": "The original sampler: each step removes a little predicted noise and adds fresh random noise back. "
            "Needs many steps; at few steps the result stays grainy.",
    "pndm": "Starts with Runge-Kutta steps (4 evaluations each) to collect a history, then reuses past "
            "evaluations (a linear multistep). Faithful to diffusers' PNDMScheduler.",
    "plms": "PNDM without the Runge-Kutta warm-up: the multistep formula from the start, lower orders first; "
            "only the first step evaluates twice.",
    "f-pndm": "The paper's PNDM: Runge-Kutta warm-up steps, then a fourth-order multistep that reuses the last "
              "four evaluations.",
    "s-pndm": "The paper's second-order pseudo multistep: a first step that evaluates twice, then it combines "
              "the last two evaluations.",
    "euler": "The simplest ODE step in sigma: follow the current slope (noise prediction) down to the next "
             "noise level.",
    "euler-a": "An Euler step to a lower noise level, then fresh noise brings it back up: stochastic "
               "(ancestral), so it never settles on one image as steps grow.",
    "heun": "Takes an Euler step, looks at the slope where it landed, and averages the two: second order, two "
            "evaluations per step (2N - 1: the last step has none to correct).",
    "dpm2": "A midpoint method: one extra evaluation half-way (in log sigma) through each step but the last.",
    "dpm2-a": "DPM2 with ancestral noise after each step: stochastic, an extra midpoint evaluation per step.",
    "lms": "Linear multistep in sigma: fits a polynomial through the last few slopes, one evaluation per step.",
    "dpm++2s-a": "A second-order single-step DPM-Solver++ update followed by ancestral noise: two evaluations "
                 "per step, one on the last.",
    "dpm-solver": "Solves the ODE exactly in its linear part and approximates only the network's output, in "
                  "terms of the noise prediction; reuses past evaluations.",
    "dpm-solver++": "DPM-Solver in terms of the predicted clean image (stable with guidance); the usual "
                    "default of modern pipelines.",
    "sde-dpm-solver++": "DPM-Solver++ for the reverse SDE: adds fresh noise each step, so it is stochastic.",
    "dpm++2m-sde": "k-diffusion's second-order multistep SDE solver: DPM-Solver++ with noise added each step.",
    "dpm++3m-sde": "The third-order multistep SDE version: combines three past evaluations, adds noise.",
    "dpm-solver-singlestep": "Higher-order DPM-Solver steps that make their extra evaluations inside the step "
                             "instead of reusing old ones.",
    "dpm-solver-fast": "DPM-Solver's recipe for a fixed budget: mostly third-order single steps, the rest lower "
                       "order, so the evaluations add up to the number asked for.",
    "dpm-solver-adaptive": "Chooses its own step sizes: compares a second- and third-order step and shrinks "
                           "the step where they disagree.",
    "unipc": "A predictor step followed by a corrector that reuses the next evaluation: higher accuracy at no "
             "extra cost.",
    "deis": "An exponential integrator that fits a polynomial through past noise predictions in time.",
    "ipndm": "Adams-Bashforth multistep on the noise prediction with no warm-up: the first steps simply use "
             "lower orders, one evaluation per step.",
    "dpm++sde": "Two-stage DPM-Solver++ (a half-way evaluation in log sigma, then the full step) that adds "
                "fresh noise from a Brownian path: two evaluations per step, stochastic.",
    "dpm++2m-sde-heun": "DPM++ 2M SDE with the Heun form of its correction term: one evaluation per step, "
                        "noise added each step.",
    "res-multistep": "An exponential integrator (RES) that reuses the previous prediction of the clean image "
                     "for a second-order step: one evaluation per step.",
    "res-multistep-a": "RES multistep with ancestral noise after each step: stochastic.",
    "seeds-2": "A stochastic exponential Runge-Kutta method (SEEDS) with two evaluations per step: it solves "
               "the reverse SDE directly, with the noise computed exactly over each step.",
    "seeds-3": "The three-stage SEEDS: three evaluations per step, higher accuracy per step, stochastic.",
    "exp-heun-2-x0": "An exponential Heun step on the predicted clean image: predict, evaluate at the end of "
                     "the step, average; two evaluations per step, deterministic.",
    "exp-heun-2-x0-sde": "The exponential Heun step on the SDE: the same two evaluations, with fresh noise "
                         "each step.",
    "er-sde": "ER-SDE-Solver: a reverse SDE whose noise scale is chosen to keep the error small, solved with "
              "Taylor terms from past evaluations; one evaluation per step.",
    "heunpp2": "A Heun variant that also looks one or two noise levels ahead and weights those slopes by the "
               "noise level, so late steps become plain Euler steps.",
    "gradient-estimation": "Euler with a correction from the last two slopes (weight 2 on the newest): the "
                           "change between them estimates the denoiser's error; one evaluation per step.",
    "ipndm-v": "iPNDM with weights computed from the actual step sizes, so uneven grids (Karras, log-SNR) "
               "keep the multistep accurate; one evaluation per step.",
    "lcm": "Consistency sampling: jump to the predicted clean image, then add fresh noise down to the next "
           "level. Made for distilled (LCM) models; on others it stays noisy.",
    "ddpm-k": "DDPM's ancestral step written on the continuous noise levels (ComfyUI's ddpm): stochastic, "
              "needs many steps.",
    "euler-cfg++": "Euler with CFG++: the step's noise direction comes from the unconditional prediction, "
                   "which keeps guided samples on the data manifold at low guidance scales.",
    "euler-a-cfg++": "Euler ancestral with the CFG++ rule for guidance: stochastic.",
    "dpm++2s-a-cfg++": "DPM++ 2S ancestral with the CFG++ rule for guidance: two evaluations per step, "
                       "stochastic.",
    "dpm++2m-cfg++": "DPM++ 2M with the CFG++ rule for guidance: one evaluation per step.",
    "res-multistep-cfg++": "RES multistep with the CFG++ rule for guidance.",
    "res-multistep-a-cfg++": "RES multistep ancestral with the CFG++ rule for guidance: stochastic.",
    "gradient-estimation-cfg++": "Gradient estimation with the CFG++ rule for guidance.",
    "ddim-cfg++": "DDIM with the CFG++ rule: the guided clean image, but the unconditional noise to re-noise "
                  "it; without guidance it is DDIM.",
}

# The sampler list in the families people know them by (ComfyUI / A1111 users look for these), in this order.
GROUPS = {
    "DDPM / DDIM": ("ddim", "ddpm", "ddpm-k", "lcm"),
    "Multistep (PNDM, LMS)": ("pndm", "plms", "f-pndm", "s-pndm", "ipndm", "ipndm-v", "lms"),
    "Karras ODE": ("euler", "heun", "heunpp2", "dpm2", "gradient-estimation"),
    "DPM-Solver, UniPC, DEIS": ("dpm-solver++", "dpm-solver", "dpm-solver-singlestep", "dpm-solver-fast",
                                "dpm-solver-adaptive", "unipc", "deis", "res-multistep", "exp-heun-2-x0"),
    "Ancestral and SDE": ("euler-a", "dpm2-a", "dpm++2s-a", "sde-dpm-solver++", "dpm++sde", "dpm++2m-sde",
                          "dpm++2m-sde-heun", "dpm++3m-sde", "res-multistep-a", "exp-heun-2-x0-sde", "seeds-2",
                          "seeds-3", "er-sde"),
    "CFG++ guidance": ("euler-cfg++", "euler-a-cfg++", "dpm++2s-a-cfg++", "dpm++2m-cfg++", "res-multistep-cfg++",
                       "res-multistep-a-cfg++", "gradient-estimation-cfg++", "ddim-cfg++"),
}
GROUP_OF = {name: group for group, names in GROUPS.items() for name in names}


# Labels of the controls: words, not the API's parameter names (the settings JSON keeps those).
LABELS = {
    "model": "Model", "sampler": "Sampler", "steps": "Steps", "seed": "Seed", "num_images": "Images",
    "class_label": "Class", "guidance_scale": "Guidance scale", "guidance_rescale": "Guidance rescale",
    "rescale_betas_zero_snr": "Zero terminal SNR",
    "spacing": "Spacing", "steps_offset": "Steps offset", "rho": "Karras rho", "sigma_min": "Smallest sigma",
    "sigma_max": "Largest sigma", "timesteps": "Timesteps", "final_sigmas_type": "Last noise level",
    "round_timesteps": "Round timesteps", "timestep_rounding": "Timestep rounding", "eta": "Eta (noise per step)",
    "clip_sample": "Clip x0", "clip_sample_range": "Clip range", "thresholding": "Dynamic thresholding",
    "dynamic_thresholding_ratio": "Threshold quantile", "sample_max_value": "Threshold maximum",
    "solver_order": "Order", "order": "Order", "lower_order_final": "Lower order at the end",
    "euler_at_final": "Euler last step", "algorithm_type": "Algorithm", "solver_type": "Second-order rule",
    "set_alpha_to_one": "End fully clean", "prev_timestep": "Step target", "use_clipped_model_output":
    "Use clipped output", "variance_type": "Variance", "combine": "Multistep combines", "s_churn": "Churn",
    "s_tmin": "Churn from sigma", "s_tmax": "Churn up to sigma", "s_noise": "Noise scale",
    "churn_rule": "Churn rule", "interpolation_type": "Sigma interpolation", "init_noise": "Starting noise",
    "sigma_range": "Sigma range", "timestep_type": "Model time input", "lambda_min": "Lowest lambda",
    "third_order": "Third-order weights", "rtol": "Relative tolerance", "atol": "Absolute tolerance",
    "predict_x0": "Predict x0", "use_corrector": "Corrector", "disable_corrector": "Corrector off at steps",
    "reference": "Distance to the reference", "points": "Points", "nfe": "Evaluations to try",
    "y_axis": "Vertical axis", "prediction_type": "Prediction", "noise": "Noise source",
    "beta_alpha": "Beta shape a", "beta_beta": "Beta shape b", "beta_d": "VP beta range", "beta_min": "VP smallest beta",
    "eps_s": "VP end time", "laplace_mu": "Laplace centre", "laplace_beta": "Laplace width",
    "cfg_pp": "CFG++ guidance", "r": "Inner evaluation point", "stage_rule": "Second-stage weight",
    "ge_gamma": "Newest slope weight",
}

# Options that only some grids read: hidden for the others.
SPACING_ONLY = {**READ_BY, "steps_offset": ("leading",), "timesteps": ("custom",)}

# What the settings change, for the help lines and the "Try" presets.
CONCEPTS = {
    "eta": "Eta: how much fresh noise each step adds. 0 follows the deterministic ODE (the same noise always "
           "gives the same picture); 1 is as noisy as DDPM.",
    "spacing": "Spacing: where the steps sit on the noise axis. 'leading' never starts at pure noise (its first "
               "step is below the top), 'trailing' does; 'karras' and 'logsnr' crowd the steps near the end, "
               "where detail forms.",
    "zero_snr": "Zero terminal SNR: rescales the noise schedule so the last training step is pure noise (Lin et "
                "al. 2023). Only for models trained that way (v-prediction).",
    "guidance_rescale": "Guidance rescale: strong guidance inflates contrast; rescaling pulls the guided "
                        "prediction's spread back towards the unguided one (0.7 is typical).",
    "pndm": "PNDM's evaluations: its first three steps are Runge-Kutta steps of 4 evaluations each, so 5 steps "
            "cost 14 evaluations; at so few steps its picture ends noisy, exactly as diffusers' PNDMScheduler's.",
}

# Compare presets: (title, what it shows, set-ups as /compare takes them, shared settings or {}).
ARRIVAL = [{"sampler": "ddim", "steps": 5}, {"sampler": "pndm", "steps": 5}, {"sampler": "unipc", "steps": 5},
           {"sampler": "ddpm", "steps": 5}]
PRESETS = [
    ("Same steps, different samplers", "Five steps each: a deterministic first-order step (DDIM), PNDM with its "
     "warm-up (more evaluations), a predictor-corrector (UniPC) and the stochastic DDPM.", ARRIVAL, {}),
    ("Eta: deterministic to stochastic", CONCEPTS["eta"],
     [{"sampler": "ddim", "steps": 10, "eta": 0.0}, {"sampler": "ddim", "steps": 10, "eta": 0.5},
      {"sampler": "ddim", "steps": 10, "eta": 1.0}], {}),
    ("Spacing: where the steps go", CONCEPTS["spacing"],
     [{"sampler": "euler", "steps": 6, "spacing": "leading"}, {"sampler": "euler", "steps": 6, "spacing": "trailing"},
      {"sampler": "euler", "steps": 6, "spacing": "karras"}], {}),
    ("PNDM's warm-up costs evaluations", CONCEPTS["pndm"],
     [{"sampler": "pndm", "steps": 5}, {"sampler": "plms", "steps": 5}, {"sampler": "ipndm", "steps": 5},
      {"sampler": "pndm", "steps": 2}], {}),
    ("Guidance rescale", CONCEPTS["guidance_rescale"] + " This preset sets guidance 3 and rescale 0.7 for every "
     "row: compare with guidance rescale 0.",
     [{"sampler": "dpm-solver++", "steps": 10}, {"sampler": "ddim", "steps": 10}], {"guidance_scale": 3.0,
                                                                                     "guidance_rescale": 0.7}),
    ("Zero terminal SNR", CONCEPTS["zero_snr"] + " This preset turns it on (where the model offers it) with "
     "trailing grids, which start at the pure-noise step.",
     [{"sampler": "ddim", "steps": 10, "spacing": "trailing"}, {"sampler": "euler", "steps": 10,
                                                                "spacing": "trailing"}],
     {"rescale_betas_zero_snr": True}),
]


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def sampler_text(name: str) -> str:
    """**Title**, paper, order, deterministic or not, and the plain sentences: the sampler's summary line."""
    m = samplers.REGISTRY.get(name)
    if m is None:
        return ""
    # the kernel's honest metadata: the measured order, the textbook one where it differs, and whether the
    # DEFAULT configuration draws noise (ddim and euler only do with eta / s_churn > 0)
    kind = "stochastic (draws fresh noise by default)" if m.stochastic else "deterministic by default"
    if m.order:
        order = f"measured order {m.order}"
        if m.nominal_order is not None and m.nominal_order != m.order:
            order += f" (nominal {m.nominal_order})"
    else:
        order = "no ODE order (it samples the SDE)"
    note = m.order_note
    if note.startswith("deterministic by default"):   # the note says what turns noise on: it is the kind
        kind, note = note, ""
    elif note.startswith("stochastic: "):
        kind, note = "stochastic (draws fresh noise by default)", note[len("stochastic: "):]
    note = f" About the order: {note}." if note else ""
    return f"**{m.title}** · {m.paper} · {order}, {kind}. {SAMPLERS.get(name, '')}{note}"


def nfe_note(name: str, steps: int, nfe: int | None) -> str:
    """'N steps = K model evaluations (NFE)' with the reason when they differ."""
    if nfe is None:
        return ""
    if nfe == steps:
        return f"{steps} steps = {nfe} model evaluations (NFE): one per step."
    warm_up = "its first steps (up to 3) are Runge-Kutta warm-up steps of 4 evaluations each, then 1 per step"
    double_start = "its first step evaluates twice (a second-order start), then 1 per step"
    two = "2 per step, 1 on the last (2N - 1)"
    why = {"pndm": warm_up, "f-pndm": warm_up, "plms": double_start, "s-pndm": double_start, "heun": two,
           "dpm2": two, "dpm2-a": two, "dpm++2s-a": two}.get(name, "its update evaluates more than once per step")
    return f"{steps} steps = **{nfe} model evaluations (NFE)**: {why}."
