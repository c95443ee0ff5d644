"""The registry's claims: defaults a method is chosen for, stochastic flags, options that change
the result, the diffusers mapping as data, plans built once, and one name per option."""
from __future__ import annotations

import copy
import os
import subprocess

import pytest
import torch

import samplers
from samplers import diffusers_config

DDPM_CONFIG = {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "num_train_timesteps": 1000,
               "clip_sample": True, "variance_type": "fixed_large"}


def toy_model(x, t):
    return 0.3 * x + 0.01 * (t.reshape(-1, *([1] * (x.ndim - 1))) / 1000)


# --- 1. a method chosen by name keeps what defines it ----------------------------------------
def test_a_method_chosen_by_name_keeps_its_own_defaults():
    assert samplers.from_diffusers_config(DDPM_CONFIG, 10, method="dpm-solver").opt("algorithm_type") == "dpmsolver"
    assert samplers.from_diffusers_config(DDPM_CONFIG, 10, method="dpm-solver++").opt("algorithm_type") == "dpmsolver++"
    for name in ("ipndm", "dpm++2s-a", "unipc", "dpm++2m-sde"):
        sampler = samplers.from_diffusers_config(DDPM_CONFIG, 10, method=name)
        assert sampler.opt("spacing") == samplers.REGISTRY[name].defaults["spacing"], name
    # dpm-solver and dpm-solver++ are different samplers on the same config
    noise = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    a, b = (samplers.from_diffusers_config(DDPM_CONFIG, 8, method=m).sample(toy_model, noise)
            for m in ("dpm-solver", "dpm-solver++"))
    assert not torch.allclose(a, b)


def test_the_config_and_the_caller_still_win():
    cfg = dict(DDPM_CONFIG, timestep_spacing="leading")
    assert samplers.from_diffusers_config(cfg, 10, method="ipndm").opt("spacing") == "leading"
    cfg = {"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver++"}
    assert samplers.from_diffusers_config(cfg, 10, method="dpm-solver").opt("algorithm_type") == "dpmsolver++"
    got = samplers.from_diffusers_config(DDPM_CONFIG, 10, method="dpm-solver", algorithm_type="dpmsolver++")
    assert got.opt("algorithm_type") == "dpmsolver++"
    # a key the method fixes (narrowed to one value) cannot be taken from the config: the name decides
    assert samplers.from_diffusers_config(cfg, 10, method="dpm++2m-sde").opt("algorithm_type") == "sde-dpmsolver++"


def test_a_class_name_alone_still_takes_the_class_defaults():
    sampler = samplers.from_diffusers_config({"_class_name": "DPMSolverMultistepScheduler"}, 10)
    assert sampler.name == "dpm-solver++" and sampler.opt("spacing") == "linspace"
    assert samplers.from_diffusers_config({"_class_name": "PNDMScheduler", "skip_prk_steps": True}, 10).name == "plms"
    assert samplers.from_diffusers_config({"_class_name": "PNDMScheduler"}, 10).name == "pndm"


# --- 2. stochastic is true exactly where the default configuration draws noise ---------------
@pytest.mark.parametrize("method", list(samplers.REGISTRY))
def test_stochastic_flag_says_whether_the_default_draws_noise(method):
    sampler = samplers.create(method, 6)
    noise = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    a, b = (sampler.sample(toy_model, noise.clone(), torch.Generator().manual_seed(seed)) for seed in (1, 2))
    assert (not torch.equal(a, b)) == samplers.REGISTRY[method].stochastic


# --- 3. an option is offered only where it changes the result --------------------------------
@pytest.mark.parametrize("method", [n for n, m in samplers.REGISTRY.items() if "eta" in m.options])
def test_eta_changes_the_result_wherever_it_is_offered(method):
    noise = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    runs = [samplers.create(method, 6, eta=eta).sample(toy_model, noise.clone(), torch.Generator().manual_seed(1))
            for eta in (0.0, 0.5)]
    assert not torch.allclose(runs[0], runs[1])


def test_eta_on_an_ode_algorithm_type_is_refused_by_name_and_value():
    assert "eta" not in samplers.REGISTRY["dpm-solver"].options
    assert "eta" not in samplers.REGISTRY["dpm-solver-singlestep"].options
    with pytest.raises(ValueError, match=r"eta=0\.5 has no effect with algorithm_type='dpmsolver\+\+'"):
        samplers.create("sde-dpm-solver++", 10, algorithm_type="dpmsolver++", eta=0.5)
    with pytest.raises(ValueError, match=r"option\(s\) eta do not apply to sampler 'dpm-solver'"):
        samplers.create("dpm-solver", 10, eta=0.5)


# --- orders are stated honestly ----------------------------------------------------------------
def test_describe_states_measured_and_nominal_orders():
    rows = {r["name"]: r for r in samplers.describe(10)}
    assert all(r["order"] != 0 for r in rows.values())   # no "order 0": None where there is no ODE path
    assert rows["ipndm"]["order"] == 2 and rows["ipndm"]["nominal_order"] == 4 and "equal steps" in rows["ipndm"]["order_note"]
    assert rows["unipc"]["order"] == 3 and "p + 1" in rows["unipc"]["order_note"]
    assert rows["euler-a"]["stochastic"] and rows["euler-a"]["order"] == 1
    assert rows["ddpm"]["order"] is None and rows["ddpm"]["order_note"]


# --- 5. structure: the diffusers mapping is data; an alias is one entry; plans built once ----
def test_the_diffusers_mapping_is_read_from_the_registry():
    for table in ("CLASS_TO_METHOD", "METHOD_TO_CLASS", "CLASS_DEFAULTS", "TRANSLATORS"):
        assert not hasattr(diffusers_config, table)
    classes = diffusers_config.classes()
    for cls, names in classes.items():
        assert samplers.from_diffusers_config({"_class_name": cls}, 10).name in names
    assert diffusers_config.class_of("dpm++3m-sde") == "DPMSolverMultistepScheduler"
    with pytest.raises(ValueError, match=r"_class_name='FooScheduler' is not a scheduler we can mirror"):
        samplers.from_diffusers_config({"_class_name": "FooScheduler"}, 10)


def test_a_new_alias_is_one_registry_entry():
    from samplers.core import REGISTRY, alias
    try:
        alias("dpm-solver++", "dpm-solver++-3", "DPM-Solver++ (3M)", defaults=dict(order=3), order=2, nominal_order=3,
              order_note="diffusers' third-order weights are second-order accurate")
        sampler = samplers.from_diffusers_config(DDPM_CONFIG, 10, method="dpm-solver++-3")
        assert sampler.opt("order") == 3 and sampler.opt("algorithm_type") == "dpmsolver++"
        assert sampler.sample(toy_model, torch.randn(1, 3, 4, 4)).isfinite().all()
    finally:
        REGISTRY.pop("dpm-solver++-3", None)


@pytest.mark.parametrize("method", list(samplers.REGISTRY))
def test_the_plan_is_built_with_the_sampler_and_nfe_only_reads(method):
    sampler = samplers.create(method, 7)
    before = copy.copy(vars(sampler))
    sampler.nfe
    assert vars(sampler) == before
    if samplers.REGISTRY[method].plan is not None:
        assert sampler.plan is not None
        other = sampler.with_grid(sampler.grid)
        assert other.plan is not sampler.plan and sampler.plan is before["plan"]


# --- 6. one name per option, from the page to the kernel ----------------------------------------
def test_solver_order_is_named_order_everywhere_in_the_kernel():
    assert "order" in samplers.OPTIONS and "solver_order" not in samplers.OPTIONS
    assert diffusers_config.RENAMED["solver_order"] == "order"
    with pytest.raises(ValueError, match=r"scheduler config key 'solver_order': order=9 is out of range"):
        samplers.from_diffusers_config({"_class_name": "UniPCMultistepScheduler", "solver_order": 9}, 10)


# --- 4. nothing in the repository points outside it --------------------------------------------
def test_no_file_points_outside_the_repository():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    bad = []
    me = os.path.relpath(__file__, root)
    for f in files:
        if f == me or not f.endswith((".py", ".md", ".txt", ".toml", ".ini", ".cfg", ".yml", ".yaml", ".sh")):
            continue
        path = os.path.join(root, f)
        if not os.path.isfile(path):
            continue
        text = open(path, encoding="utf-8", errors="replace").read()
        for needle in ("REFERENCE.md", "../shared", "shared/"):
            if needle in text:
                bad.append(f"{f}: {needle}")
    assert not bad, bad
