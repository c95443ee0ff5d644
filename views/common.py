"""Pieces every view shares: set-up slots (sampler, steps, spacing), API naming, error display."""
from __future__ import annotations

# ZeroGPU wants `spaces` imported before torch; elsewhere the package is absent and nothing changes.
try:
    import spaces  # noqa: F401
except ImportError:
    spaces = None

import inspect
import logging

import gradio as gr

import lab
import samplers
from views.explain import GROUP_OF, GROUPS

SLOT_FIELDS = ("sampler", "steps", "spacing")
log = logging.getLogger("lab")


def gpu(duration_of):
    """spaces.GPU(duration=...) on ZeroGPU; the function itself everywhere else."""
    if spaces is None or not hasattr(spaces, "GPU"):
        return lambda fn: fn
    return spaces.GPU(duration=duration_of)


def named(fn, names):
    """Give a ``*values`` handler a signature with one named parameter per input (the API's keyword names)."""
    fn.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names])
    return fn


def errors_as_gradio(exc: Exception, endpoint: str = ""):
    """A refusal (ValueError / FileNotFoundError: they carry what is wrong and what is allowed) as the
    error the page shows and the API returns, logged as one line: a refusal is no fault of the server,
    so no traceback (faults, any other exception, keep theirs)."""
    text = str(exc)
    log.warning("refused%s: %s", f" /{endpoint}" if endpoint else "", " ".join(text.split()))
    return gr.Error(text, title="Invalid request" if isinstance(exc, ValueError) else "Not found",
                    print_exception=False)


def session_key(kind: str):
    """(session, kind) of the request being handled, or None outside a queued request."""
    from gradio.context import LocalContext

    session = getattr(LocalContext.request.get(None), "session_hash", None)
    return None if session is None else (session, kind)


def cancel_watch():
    """A check that turns true once this request is cancelled (the page's Stop, or an API client's cancel).

    Gradio stops a streaming handler by closing its generator, which it can only do between two
    updates; a run waiting for its next model evaluation is "busy" then and may finish first. A
    cancel also queues a "completed" message for the request's client (and, once sent, takes its
    event id out of the session's pending set): the sampling worker looks for either after every
    evaluation. A client that went away (its browser tab or its HTTP stream closed) leaves its
    running event marked not alive: that stops the run too, and frees its place.
    Reads only (from the worker thread); call this in the handler, where Gradio's context names the
    request.
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    session = getattr(LocalContext.request.get(None), "session_hash", None)
    queue = getattr(blocks, "_queue", None)
    pending = getattr(queue, "pending_event_ids_session", None)
    messages = getattr(queue, "pending_messages_per_session", None)
    if not (event_id and session and isinstance(pending, dict) and isinstance(messages, dict)
            and event_id in pending.get(session, ())):
        return lambda: False   # not a queued request (or a Gradio without this bookkeeping): close() only

    events = getattr(queue, "event_ids_to_events", None)
    event = events.get(event_id) if isinstance(events, dict) else None

    def cancelled() -> bool:
        if event_id not in dict.get(pending, session, ()) or (event is not None and not event.alive):
            return True
        waiting = dict.get(messages, session)   # plain dict.get: the LRU cache's own get reorders it
        return any(getattr(m, "event_id", None) == event_id and str(getattr(m, "msg", "")).endswith("process_completed")
                   for m in list(getattr(waiting, "_queue", ())))

    return cancelled


def sampler_choices():
    """(label, name) per sampler, family by family: "Karras ODE · Heun (2nd order, Karras)  [heun]"."""
    order = {name: i for i, name in enumerate(n for names in GROUPS.values() for n in names)}
    rows = sorted(samplers.describe(), key=lambda d: order.get(d["name"], len(order)))
    return [(f"{GROUP_OF.get(d['name'], 'Other')} · {d['title']}  [{d['name']}]", d["name"]) for d in rows]


def slot_params(count: int, fields=SLOT_FIELDS) -> list[str]:
    """API names of ``count`` set-up slots: sampler_1, steps_1, spacing_1, sampler_2, ..."""
    return [f"{field}_{i + 1}" for i in range(count) for field in fields]


def setup_slots(defaults, limits: lab.Limits) -> list:
    """One row of (sampler, steps, spacing) controls per default; "(none)" leaves a slot out."""
    controls = []
    for i, (name, steps, spacing) in enumerate(defaults):
        with gr.Row():
            controls.append(gr.Dropdown(choices=[("(none)", "")] + sampler_choices(), value=name,
                                        label=f"{i + 1}: Sampler", scale=3))
            controls.append(gr.Number(value=steps, precision=0, label="Steps", info=f"1 to {limits.max_steps}",
                                      scale=1))
            controls.append(gr.Dropdown(choices=[("sampler default", "")]
                                        + list(lab.option_choices(samplers.OPTIONS["spacing"])),
                                        value=spacing or "", label="Spacing", scale=2))
    return controls


def conditioning(values: dict) -> lab.Conditioning:
    zero_snr = values.get("rescale_betas_zero_snr")
    return lab.Conditioning(rescale_betas_zero_snr=lab.check_bool("rescale_betas_zero_snr", zero_snr)
                               if zero_snr not in (None, "") else False)


def slot_setups(values: dict, count: int, limits: lab.Limits, fields=SLOT_FIELDS,
                with_steps: bool = True) -> list[tuple[int, lab.SetupSpec]]:
    """The filled slots as (slot number, checked SetupSpec); at least one must be filled.
    ``with_steps=False``: slots without steps (the caller picks the step counts)."""
    setups = []
    for i in range(count):
        given = {f: values.get(f"{f}_{i + 1}") for f in fields}
        if given["sampler"] in (None, ""):   # an empty slot is simply not shown
            continue
        # "" is the dropdowns' "sampler default"; a str option would otherwise refuse it as a value
        given = {k: v for k, v in given.items() if v not in (None, "")}
        setups.append((i + 1, lab.check_setup(given, limits, where=f"set-up {i + 1}: ", with_steps=with_steps)))
    if not setups:
        raise ValueError(f"sampler_1..sampler_{count} are all empty; allowed: at least one sampler name, e.g. 'ddim'")
    return setups


def slot_samplers(values: dict, count: int, info: lab.ModelInfo, limits: lab.Limits):
    """The filled slots as (label, samplers.Sampler) on the model's noise schedule."""
    cond = conditioning(values)
    return [(f"{i}: {spec.label()}", lab.build_sampler(info, spec, cond, limits, where=f"set-up {i}: "))
            for i, spec in slot_setups(values, count, limits)]


def admission_validator(demo: gr.Blocks, fn, limits: lab.Limits, check=None):
    """A Gradio validator for a model event: the request's own cost first (``check(values)`` raises a
    ValueError naming the budget), then this visitor's places in the queue. Runs before the event is
    queued, so a refusal takes no place; it is one log line and the page shows its message."""
    names = list(inspect.signature(fn.fn).parameters) if fn.fn is not None else []
    names = names[:len(fn.inputs)] + [f"input_{i}" for i in range(len(names), len(fn.inputs))]

    def validate(*args):
        *values, request = args
        refusal = None
        if check is not None:
            try:
                check(dict(zip(names, values)))
            except lab.budget.BudgetExceeded as exc:
                refusal = str(exc)
            except (ValueError, FileNotFoundError, OSError):
                pass   # any other refusal: the handler names it (the page's own checks ran first)
        if refusal is None:
            visitor = lab.admission.visitor_of(getattr(request, "session_hash", None),
                                               getattr(request, "headers", None))
            refusal = lab.admission.admit(demo._queue, visitor, limits.visitor_slots)
        if refusal is None:
            return [gr.validate(True, "")] * len(names)
        log.warning("refused /%s: %s", fn.api_name, refusal)
        return [gr.validate(False, refusal)] + [gr.validate(True, "")] * (len(names) - 1)

    validate.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
        + [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request)])
    validate.__annotations__ = {"request": gr.Request}
    return validate


def admit_fairly(demo: gr.Blocks, limits: lab.Limits, checks: dict, concurrency_id: str = "model") -> list[str]:
    """Put the admission validator on every public event of the model group (``checks``: api name ->
    budget check of its raw values). Returns the api names it guards."""
    guarded = []
    for fn in demo.fns.values():
        if fn.concurrency_id == concurrency_id and fn.api_name and not fn.is_validator_function \
                and fn.validator is None and fn.api_visibility != "private":
            fn.validator = admission_validator(demo, fn, limits, checks.get(fn.api_name))
            guarded.append(fn.api_name)
    return guarded
