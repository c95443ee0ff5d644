"""ComfyUI / A1111 names resolve to (method, options) and sample; ours keep their meaning."""
import pytest
import torch

import models
import lab
import samplers
from samplers import names

# ComfyUI's KSampler lists (comfy/samplers.py), written out here so the table cannot drift silently
COMFY_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2", "exp_heun_2_x0",
    "exp_heun_2_x0_sde", "dpm_2",
    "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm",
    "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde", "seeds_2",
    "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"]
COMFY_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
                    "linear_quadratic", "kl_optimal"]
A1111_SAMPLERS = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
                  "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart"]
A1111_SCHEDULES = ["Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
                   "Simple", "Normal", "DDIM", "Beta", "Turbo"]
# names whose samplers are not built yet (SA-Solver, Restart): exactly these, so a name that stops
# resolving (or a newly built sampler) fails the test below instead of being skipped
NOT_BUILT = {"sa_solver", "sa_solver_pece", "Restart"}
# the names issue 16's samplers made resolvable: name -> registry method
ISSUE_16 = {"euler_cfg_pp": "euler-cfg++", "euler_ancestral_cfg_pp": "euler-a-cfg++", "heunpp2": "heunpp2",
            "exp_heun_2_x0": "exp-heun-2-x0", "exp_heun_2_x0_sde": "exp-heun-2-x0-sde",
            "dpmpp_2s_ancestral_cfg_pp": "dpm++2s-a-cfg++", "dpmpp_sde": "dpm++sde", "dpmpp_sde_gpu": "dpm++sde",
            "dpmpp_2m_cfg_pp": "dpm++2m-cfg++", "dpmpp_2m_sde_heun": "dpm++2m-sde-heun",
            "dpmpp_2m_sde_heun_gpu": "dpm++2m-sde-heun", "lcm": "lcm", "ipndm_v": "ipndm-v",
            "res_multistep": "res-multistep", "res_multistep_cfg_pp": "res-multistep-cfg++",
            "res_multistep_ancestral": "res-multistep-a", "res_multistep_ancestral_cfg_pp": "res-multistep-a-cfg++",
            "gradient_estimation": "gradient-estimation", "gradient_estimation_cfg_pp": "gradient-estimation-cfg++",
            "er_sde": "er-sde", "seeds_2": "seeds-2", "seeds_3": "seeds-3", "comfy:ddpm": "ddpm-k",
            "DPM++ SDE": "dpm++sde", "DPM++ 2M SDE Heun": "dpm++2m-sde-heun", "LCM": "lcm", "DDIM CFG++": "ddim-cfg++",
            "DPM++ SDE Karras": "dpm++sde", "DPM++ 2M SDE Heun Karras": "dpm++2m-sde-heun",
            "DPM++ 2M SDE Heun Exponential": "dpm++2m-sde-heun"}
GAUSSIAN = models.load("gaussian")


def resolvable(name):
    return name in samplers.REGISTRY or name in names.aliases()


def test_the_tables_hold_every_listed_name():
    table = names.sampler_table()
    for name in COMFY_SAMPLERS + A1111_SAMPLERS:
        assert name in table or name in samplers.REGISTRY, name
    for name in COMFY_SCHEDULERS + A1111_SCHEDULES:
        assert name in names.schedule_table(), name


def test_names_not_yet_resolvable():
    missing = {n for n in COMFY_SAMPLERS + A1111_SAMPLERS + list(names.sampler_table()) if not resolvable(n)}
    assert missing == NOT_BUILT
    assert set(names.unresolved()) == NOT_BUILT
    for name in NOT_BUILT:
        with pytest.raises(ValueError, match=rf"sampler={name!r} is unknown \({name!r} is a known name whose "
                                             r"sampler is not in this build\)"):
            samplers.resolve(name)


def test_issue_16_names_resolve_to_their_samplers():
    for name, method in ISSUE_16.items():
        assert samplers.resolve(name)[0] == method, name
    assert samplers.resolve("dpmpp_sde") == ("dpm++sde", {"noise": "brownian"})   # k-diffusion's Brownian tree
    assert samplers.resolve("DPM++ 2M SDE Heun Karras") == ("dpm++2m-sde-heun",
                                                             {"noise": "brownian", "spacing": "karras"})
    assert samplers.resolve("comfy:ddpm") == ("ddpm-k", {}) and samplers.resolve("ddpm") == ("ddpm", {})


@pytest.mark.parametrize("name", COMFY_SAMPLERS + A1111_SAMPLERS)
def test_every_sampler_name_resolves_and_samples_two_steps(name):
    if name in NOT_BUILT:   # refused by name (test_names_not_yet_resolvable holds the list)
        with pytest.raises(ValueError, match="is a known name whose sampler is not in this build"):
            samplers.from_diffusers_config(GAUSSIAN.scheduler_config, 2, method=name)
        return
    method, options = samplers.resolve(name)
    steps = 3 if method == "dpm-solver-adaptive" else 2   # its steps are an evaluation budget, 3 per step
    sampler = samplers.from_diffusers_config(GAUSSIAN.scheduler_config, steps, method=name)
    assert sampler.name == method and all(sampler.options[k] == v for k, v in options.items())
    x = sampler.sample(GAUSSIAN, torch.randn(3, 2, generator=torch.Generator().manual_seed(0)),
                       torch.Generator().manual_seed(1))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("name", COMFY_SCHEDULERS + A1111_SCHEDULES)
def test_every_scheduler_name_gives_a_grid_and_samples(name):
    options = samplers.resolve_schedule(name)
    for method in ("euler", "dpmpp_2m", "DPM++ 2M SDE"):
        sampler = samplers.create(method, 2, GAUSSIAN.scheduler_config, spacing=name)
        if options["spacing"] is not None:
            assert sampler.options["spacing"] == options["spacing"]
        x = sampler.sample(GAUSSIAN, torch.randn(2, 2, generator=torch.Generator().manual_seed(0)),
                           torch.Generator().manual_seed(1))
        assert torch.isfinite(x).all()


def test_aliases_mean_their_home_tool():
    assert samplers.resolve("uni_pc") == ("unipc", {"solver_type": "bh1", "order": 3})
    assert samplers.resolve("uni_pc_bh2")[1]["solver_type"] == "bh2"
    assert samplers.resolve("euler_ancestral") == ("euler-a", {})
    assert samplers.resolve("dpm_2_ancestral") == ("dpm2-a", {})
    assert samplers.resolve("dpmpp_2m_sde_gpu") == samplers.resolve("dpmpp_2m_sde") == \
        ("dpm++2m-sde", {"noise": "brownian"})
    assert samplers.resolve("DPM++ 2M Karras") == ("dpm-solver++", dict(samplers.resolve("dpmpp_2m")[1],
                                                                         spacing="karras"))
    assert samplers.resolve_schedule("Automatic") == {"spacing": None}
    assert samplers.create("euler", 5, spacing="Automatic").options["spacing"] == "linspace"   # the method's own
    assert samplers.resolve_schedule("Turbo") == {"spacing": "trailing"}


def test_colliding_names_keep_our_meaning_and_comfy_is_prefixed():
    assert samplers.resolve("ddim") == ("ddim", {}) and samplers.resolve("ddpm") == ("ddpm", {})
    assert samplers.resolve("comfy:ddim") == ("euler", {})
    rows = {r["name"]: r for r in samplers.describe()}
    assert "comfy:ddim" in rows["euler"]["aliases"] and "dpmpp_2m" in rows["dpm-solver++"]["aliases"]
    assert rows["unipc"]["aliases"]["uni_pc"] == {"solver_type": "bh1", "order": 3}
    every = [a for r in rows.values() for a in r["aliases"]]
    assert len(every) == len(set(every)) == len(names.aliases())   # each alias on exactly one row


def test_unknown_names_are_named_with_what_is_allowed():
    with pytest.raises(ValueError, match=r"sampler='eulr' is unknown; allowed: ddim, .*ComfyUI / A1111"):
        samplers.create("eulr", 5)
    with pytest.raises(ValueError, match=r"spacing='Align Your Steps': .*schedule-optimiser"):
        samplers.create("euler", 5, spacing="Align Your Steps")
    with pytest.raises(ValueError, match=r"spacing='wavy' is not allowed; allowed: leading"):
        samplers.create("euler", 5, spacing="wavy")


def test_the_app_takes_the_names():
    limits = lab.Limits()
    setup = lab.check_setup({"sampler": "DPM++ 2M SDE", "spacing": "Karras", "steps": 4}, limits)
    assert setup.options == {"spacing": "karras"}
    req = lab.parse_generate({"model": "gaussian", "sampler": "dpmpp_2m_sde", "spacing": "kl_optimal",
                                 "steps": 4, "num_images": 2}, limits)
    final = list(lab.generate(req, limits))[-1]
    assert final.done if hasattr(final, "done") else True
    with pytest.raises(ValueError, match=r"sampler='eulr' is unknown"):
        lab.check_setup({"sampler": "eulr"}, limits)
