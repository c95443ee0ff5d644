"""``models.load``: one entry point for every kind of source (an embedded name, a local folder,
a hub repo id).  It sits above ``loading`` (checkpoints) and ``embedded`` (the shipped models), so
neither imports the other's caller.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import embedded, loading


def load(source, revision=None, subfolder=None, device=None, dtype=None, channels_last=False, *,
         max_bytes=None, allow_any_hub_model=None):
    """Load a model: a local folder, a hub repo id ``org/name`` or an embedded model's name.

    Returns a ``UNet2DModel`` (eval mode, no gradients; call it under ``torch.inference_mode()``)
    carrying ``.config`` and ``.scheduler_config``, or an analytic model for the analytic names.
    ``device`` defaults to CUDA when available; ``dtype`` float32 (default), float16 or bfloat16.
    Hub models outside ``loading.ALLOWED_HUB_MODELS`` need ``allow_any_hub_model=True`` (default: the
    environment variable ALLOW_ANY_HUB_MODEL=1). ``max_bytes`` caps a download (default: env
    MODEL_MAX_BYTES or 2 GiB).
    """
    revision = loading._check_revision(revision)
    subfolder = loading._check_subfolder(subfolder)
    target_dtype = loading._parse_dtype(dtype)
    target_device = loading._parse_device(device)
    if isinstance(source, str) and source in embedded.EMBEDDED:
        return embedded.load_embedded(source, device=target_device, dtype=target_dtype, channels_last=channels_last)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source={source!r} must be a local folder, a hub repo id 'org/name' or one of "
                         f"{sorted(embedded.EMBEDDED)}")

    path = Path(source).expanduser()
    if path.is_dir():
        where = f"folder {str(path)!r}"
        net = loading.load_folder(path.resolve(), subfolder, where)
        net.source = {"kind": "folder", "path": str(path.resolve()), "subfolder": subfolder}
        return loading._finish(net, target_device, target_dtype, channels_last)
    if os.path.exists(source):
        raise ValueError(f"source={source!r} is a file; a local model must be a folder holding "
                         f"{loading.CONFIG_NAME} and {loading.WEIGHTS_NAME}")
    if "://" in source:
        raise ValueError(f"source={source!r}: URLs are not accepted; give a hub repo id 'org/name' or a folder")
    looks_like_path = source.startswith(("/", ".", "~", "\\")) or "\\" in source or source.count("/") != 1
    if looks_like_path:
        if ".." in source:
            raise ValueError(f"source={source!r} is not a folder, and not a hub repo id of the form 'org/name' "
                             f"(no '..')")
        raise FileNotFoundError(f"source={source!r}: no such local folder (and it is not a hub repo id 'org/name' "
                                f"or one of {sorted(embedded.EMBEDDED)})")
    repo_id = loading.check_repo_id(source)
    allow_any = loading._truthy(os.environ.get("ALLOW_ANY_HUB_MODEL")) if allow_any_hub_model is None else bool(allow_any_hub_model)
    if not allow_any and repo_id not in loading.ALLOWED_HUB_MODELS:
        raise ValueError(f"hub repo {repo_id!r} is not in the allow-list {list(loading.ALLOWED_HUB_MODELS)}; "
                         f"set ALLOW_ANY_HUB_MODEL=1 (or pass allow_any_hub_model=True) to load other repos")
    root, where = loading.fetch_hub(repo_id, revision, subfolder, loading._max_bytes(max_bytes))
    net = loading.load_folder(root, subfolder, where)
    net.source = {"kind": "hub", "repo_id": repo_id, "revision": revision, "subfolder": subfolder}
    return loading._finish(net, target_device, target_dtype, channels_last)
