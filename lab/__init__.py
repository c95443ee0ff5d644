"""What the app does, without the page: limits, requests and their checks, models, runs, comparisons,
the reference, pictures and streaming. ``app.py`` and ``views/`` only draw controls and call this.

    limits.py     machine limits from the environment; ZeroGPU durations
    values.py     checks of single values (int, float, bool, known parameters)
    options.py    sampler options as request parameters (the one name table, PARAM_OF_OPTION)
    catalog.py    the models on offer, model ids, ModelInfo, loading through models.get
    requests.py   raw /generate and /compare values -> requests
    runs.py       preparing a run (model function, sampler, noise); run records; Live (for Stop)
    generate.py   one streamed run          compare.py   set-ups batched from the same noise
    reference.py  the one reference solve   trace.py     how a run's picture formed
    admission.py  fair queueing: places per visitor (session, forwarded address)
    budget.py     what a request costs this machine (seconds), refused above MAX_SECONDS; ZeroGPU durations
    reproduce.py  settings and the Python that repeats a run
    pictures.py   images, previews, scatter plots    streaming.py  worker thread, preview throttle
    tables.py     numbers for tables (significant digits)    analysis.py  page data: error curves, densities, traces, schedule table
"""
from lab import reference, tables  # noqa: F401
from lab.catalog import (FALLBACK_MODEL, HUB_RESOLUTION, EXTRA_MODELS, ModelInfo, allow_any_hub_model,  # noqa: F401
                         check_model, default_model_available, emoji_categories, forget_models, initial_model,
                         offered_models,
                         load_model, model_choices, model_description, register_model)
from lab.compare import CompareProgress, compare  # noqa: F401
from lab.generate import Progress, generate  # noqa: F401
from lab import admission, budget  # noqa: F401
from lab.budget import compare_gpu_seconds, generate_gpu_seconds  # noqa: F401
from lab.limits import Limits, gpu_seconds  # noqa: F401
from lab.options import (CLIPPING_OPTIONS, MAIN_PARAMS, MODEL_OWNED_OPTIONS, check_option,  # noqa: F401
                         generate_params, is_main, jsonable, kernel_options, kernel_text, method, method_applies, option_choices,
                         option_name, option_of, param_name, public_options, request_options)
from lab.pictures import (PREVIEW_PANEL, SCATTER_EXTENT, PreviewFile, final_pictures, font, labelled_strip,  # noqa: F401
                          picture, preview, scatter, side_by_side, stack, tile, to_uint8, upscale)
from lab.reproduce import reproduction_code  # noqa: F401
from lab.requests import (COMPARE_PARAMS, MAX_SEED, CompareRequest, Conditioning, GenerateRequest,  # noqa: F401
                          SetupSpec, check_conditioning, check_count, check_seed, check_setup, parse_compare,
                          parse_generate)
from lab.runs import (RUNS, Live, Prepared, Resolved, Tracked, active_runs, build_sampler, default_options,  # noqa: F401
                      make_noise, model_function, new_run, prepare, resolve_conditioning, setup_options, step_of)
from lab.streaming import Throttle, in_background, relay  # noqa: F401
from lab.trace import COMMIT_FRACTION, TRACE_SIDE, TRACE_THUMBNAILS, Tracer  # noqa: F401
from lab.values import check_bool, check_float, check_int, check_known_params, short  # noqa: F401


def cache_clear() -> None:
    """Forget every loaded model and every cached reference solve."""
    forget_models()
    reference.cache_clear()
