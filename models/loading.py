"""Load and save diffusers-format UNet2DModel checkpoints safely: local folders and the Hub.

Weights are read only from safetensors (never pickle). Hub access goes through
huggingface_hub and fetches only the few files a UNet2DModel needs. Every failure is a
ValueError or FileNotFoundError that names the repo or folder and the file.

The returned network is in eval mode with ``requires_grad`` off. Call it under
``torch.inference_mode()`` (the samplers do) so no autograd state is kept and activations
are computed in place.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from .defaults import checkpoint_fallback_config
from .unet import UNet2DModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SCHEDULER_NAME = "scheduler_config.json"
MODEL_INDEX_NAME = "model_index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_JSON_BYTES = 1 << 20

# The pixel-space DDPM checkpoints the app offers; anything else needs an explicit opt-in.
ALLOWED_HUB_MODELS = (
    "google/ddpm-cifar10-32",
    "google/ddpm-celebahq-256",
    "google/ddpm-church-256",
    "google/ddpm-bedroom-256",
    "google/ddpm-cat-256",
)
DEFAULT_MAX_BYTES = 2 * 1024**3
MAX_REPO_ID_LENGTH = 96  # huggingface_hub's limit on a full repo id
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
REPO_ID_PATTERN = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_SUBFOLDER_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$")

# Used when a checkpoint ships no scheduler_config.json: the DDPM paper's schedule.
DEFAULT_SCHEDULER_CONFIG = checkpoint_fallback_config()

OLD_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _truthy(value) -> bool:
    return str(value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


# ---------------------------------------------------------------------------------------------
# saving

def save_pretrained(net: UNet2DModel, folder, scheduler_config: dict | None = None, dtype=None) -> Path:
    """Write ``config.json`` + ``diffusion_pytorch_model.safetensors`` (+ ``scheduler_config.json``).

    ``scheduler_config`` defaults to ``net.scheduler_config``; ``dtype`` (e.g. torch.float16)
    casts the floating-point weights on the way out. diffusers' UNet2DModel.from_pretrained
    reads the result.
    """
    if not isinstance(net, UNet2DModel):
        raise ValueError(f"net must be a models.UNet2DModel, got {type(net).__name__}")
    dtype = _parse_dtype(dtype) if dtype is not None else None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in net.config.items() if not k.startswith("_")}
    config = {"_class_name": "UNet2DModel", **config}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=False) + "\n")
    from safetensors.torch import save_file

    state = {}
    for key, tensor in net.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[key] = tensor.contiguous()
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    scheduler_config = scheduler_config if scheduler_config is not None else net.scheduler_config
    if scheduler_config is not None:
        (folder / SCHEDULER_NAME).write_text(json.dumps(scheduler_config, indent=2) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------
# argument checks

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}


def _parse_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float16, torch.bfloat16):
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ValueError(f"dtype={dtype!r} is not supported; allowed: float32, float16, bfloat16")


def _parse_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but no CUDA GPU is available")
    return device


def check_repo_id(repo_id: str) -> str:
    """Accept only ``org/name`` hub ids (no URLs, no ``..``, at most 96 characters)."""
    if not isinstance(repo_id, str):
        raise ValueError(f"repo id must be a string, got {type(repo_id).__name__}")
    if len(repo_id) > MAX_REPO_ID_LENGTH:
        raise ValueError(f"repo id {repo_id[:40]!r}... is {len(repo_id)} characters; the Hub allows at most "
                         f"{MAX_REPO_ID_LENGTH}")
    if ".." in repo_id or "--" in repo_id or not REPO_ID_PATTERN.match(repo_id) or repo_id.endswith(".git"):
        raise ValueError(f"repo id {repo_id!r} is not of the form 'org/name' (letters, digits, '-', '_', '.'; "
                         f"no URLs, no '..')")
    return repo_id


def _check_subfolder(subfolder):
    if subfolder is None or subfolder == "":
        return None
    if not isinstance(subfolder, str) or not _SUBFOLDER_PATTERN.match(subfolder) or any(
            part in (".", "..") for part in subfolder.split("/")):
        raise ValueError(f"subfolder={subfolder!r} must be a relative path like 'unet' (no '..', no leading '/')")
    return subfolder


def _check_revision(revision):
    if revision is None:
        return None
    if not isinstance(revision, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$", revision) \
            or ".." in revision:
        raise ValueError(f"revision={revision!r} must be a branch, tag or commit hash")
    return revision


def _max_bytes(max_bytes) -> int:
    if max_bytes is None:
        env = os.environ.get("MODEL_MAX_BYTES")
        if env is None:
            return DEFAULT_MAX_BYTES
        try:
            max_bytes = int(env)
        except ValueError:
            raise ValueError(f"environment MODEL_MAX_BYTES={env!r} must be an integer number of bytes") from None
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes!r} must be a positive integer")
    return max_bytes


# ---------------------------------------------------------------------------------------------
# layout: which files of a folder / repo make the model

@dataclass
class Plan:
    model_dir: str          # "" for the flat layout, else e.g. "unet"
    scheduler_file: str | None

    def file(self, name: str) -> str:
        return f"{self.model_dir}/{name}" if self.model_dir else name


def plan_layout(files, subfolder: str | None, where: str) -> Plan:
    """Pick the UNet's folder and scheduler file from a repo's file list (posix paths)."""
    files = set(files)
    if subfolder:
        model_dir = subfolder.strip("/")
        if f"{model_dir}/{CONFIG_NAME}" not in files:
            raise FileNotFoundError(f"{where}: no {model_dir}/{CONFIG_NAME} (subfolder={subfolder!r})")
    elif CONFIG_NAME in files:
        model_dir = ""
    elif f"unet/{CONFIG_NAME}" in files:
        model_dir = "unet"
    else:
        raise FileNotFoundError(f"{where}: no {CONFIG_NAME} in the root or in unet/ "
                                f"(expected a diffusers UNet2DModel, flat or pipeline layout)")
    plan = Plan(model_dir, None)
    parent = str(PurePosixPath(model_dir).parent) if model_dir else ""
    parent = "" if parent == "." else parent
    candidates = [plan.file(SCHEDULER_NAME), f"{parent}/scheduler/{SCHEDULER_NAME}" if parent else f"scheduler/{SCHEDULER_NAME}"]
    plan.scheduler_file = next((c for c in candidates if c in files), None)

    weights = plan.file(WEIGHTS_NAME)
    if weights not in files:
        prefix = f"{model_dir}/" if model_dir else ""
        pickles = sorted(f for f in files if f.startswith(prefix) and "/" not in f[len(prefix):]
                         and f.endswith(PICKLE_SUFFIXES))
        if pickles:
            raise ValueError(
                f"{where}: refusing {pickles[0]}: it is a pickle file, and loading a pickle can run arbitrary "
                f"code. Only {WEIGHTS_NAME} is loaded. Convert it once in a trusted environment, e.g. "
                f"diffusers.UNet2DModel.from_pretrained(...).save_pretrained(folder, safe_serialization=True), "
                f"or use the Hub's safetensors conversion (https://huggingface.co/spaces/safetensors/convert).")
        raise FileNotFoundError(f"{where}: no {weights}")
    return plan


def _list_folder(root: Path, subfolder: str | None = None) -> set[str]:
    """Files under ``root`` (posix, relative), only as deep as the layouts need."""
    max_depth = max(1, len(subfolder.split("/")) if subfolder else 1)
    files = set()
    for base, dirs, names in os.walk(root, followlinks=False):
        rel = Path(base).relative_to(root)
        if len(rel.parts) >= max_depth:
            dirs[:] = []  # do not descend into big unrelated trees
        for name in names:
            files.add((rel / name).as_posix() if rel.parts else name)
    return files


def _read_json(path: Path, where: str, name: str) -> dict:
    try:
        size = path.stat().st_size
    except OSError:
        raise FileNotFoundError(f"{where}: {name} is missing") from None
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{where}: {name} is {size} bytes; a config larger than {MAX_JSON_BYTES} bytes is refused")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: {name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: {name} must hold a JSON object")
    return data


def _convert_old_attention_names(state: dict) -> dict:
    """Old hub checkpoints name attention projections query/key/value/proj_attn."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) >= 2 and parts[-2] in OLD_ATTENTION_NAMES and parts[-1] in ("weight", "bias"):
            key = ".".join(parts[:-2] + [OLD_ATTENTION_NAMES[parts[-2]], parts[-1]])
        out[key] = value
    return out


def _read_weights(path: Path, where: str, name: str) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: {name} is missing") from None
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"{where}: {name} is not a valid safetensors file ({type(exc).__name__}: {exc})") from None


def build_from_files(config: dict, state: dict, where: str, weights_name: str) -> UNet2DModel:
    """Construct the network for ``config`` and load ``state`` into it, checking every key."""
    try:
        with torch.device("meta"):
            net = UNet2DModel(config)
    except ValueError as exc:
        raise ValueError(f"{where}: {CONFIG_NAME}: {exc}") from None
    state = _convert_old_attention_names(state)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise ValueError(f"{where}: {weights_name} lacks tensor {missing[0]!r} that {CONFIG_NAME} requires"
                         f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    if unexpected:
        raise ValueError(f"{where}: {weights_name} has tensor {unexpected[0]!r} that {CONFIG_NAME} does not define"
                         f"{f' (and {len(unexpected) - 1} more)' if len(unexpected) > 1 else ''}")
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ValueError(f"{where}: {weights_name}: tensor {key!r} has shape {list(state[key].shape)} but "
                             f"{CONFIG_NAME} implies {list(ref.shape)}")
        if not state[key].is_floating_point():
            raise ValueError(f"{where}: {weights_name}: tensor {key!r} has dtype {state[key].dtype}; expected floats")
    # The network was built on the meta device (no random init of 100M weights): take the tensors as they are.
    net.load_state_dict({k: state[k].float() for k in expected}, strict=True, assign=True)
    return net


def load_folder(root: Path, subfolder: str | None, where: str) -> UNet2DModel:
    """The one code path for every checkpoint folder: local, Hub snapshot or embedded."""
    plan = plan_layout(_list_folder(root, subfolder), subfolder, where)
    config_name = plan.file(CONFIG_NAME)
    config = _read_json(root / config_name, where, config_name)
    weights_name = plan.file(WEIGHTS_NAME)
    state = _read_weights(root / weights_name, where, weights_name)
    net = build_from_files(config, state, where, weights_name)
    if plan.scheduler_file is not None:
        net.scheduler_config = _read_json(root / plan.scheduler_file, where, plan.scheduler_file)
    else:
        net.scheduler_config = dict(DEFAULT_SCHEDULER_CONFIG)
    return net


# ---------------------------------------------------------------------------------------------
# the Hub

def hub_cache_dir() -> str:
    """The hub cache folder from the environment *now* (huggingface_hub reads it only at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def hub_offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def _hub_model_info(repo_id: str, revision: str | None):
    """(commit sha, {file: size}) of a hub repo; separated out so tests can stand in for the Hub."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=30)
    return info.sha, {s.rfilename: (s.size or 0) for s in (info.siblings or [])}


def _hub_download(repo_id: str, filename: str, revision: str | None, cache_dir: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir)


def _cached_snapshot(repo_id: str, revision: str | None, cache_dir: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))


def _describe(repo_id, revision):
    return f"hub repo {repo_id!r}" + (f" (revision {revision!r})" if revision else "")


def fetch_hub(repo_id: str, revision: str | None, subfolder: str | None, max_bytes: int) -> tuple[Path, str]:
    """Make sure the UNet's files of ``repo_id`` are in the local cache; return the snapshot folder."""
    from huggingface_hub import errors as hf_errors

    where = _describe(repo_id, revision)
    cache_dir = hub_cache_dir()

    def from_cache(reason: str) -> Path:
        try:
            return _cached_snapshot(repo_id, revision, cache_dir)
        except (hf_errors.LocalEntryNotFoundError, FileNotFoundError, hf_errors.EntryNotFoundError):
            raise FileNotFoundError(f"{where}: {reason}, and the repo is not in the local cache {cache_dir}") from None
        except Exception as exc:
            raise FileNotFoundError(f"{where}: {reason}; reading the local cache failed ({exc})") from None

    if hub_offline():
        return from_cache("HF_HUB_OFFLINE is set"), where + " [offline cache]"

    try:
        sha, sizes = _hub_model_info(repo_id, revision)
    except hf_errors.GatedRepoError:
        raise ValueError(f"{where}: the repo is gated; accept its terms on the Hub and log in first") from None
    except hf_errors.RepositoryNotFoundError:
        raise FileNotFoundError(f"{where}: repository not found on the Hub (or private)") from None
    except hf_errors.RevisionNotFoundError:
        raise FileNotFoundError(f"{where}: revision not found") from None
    except hf_errors.OfflineModeIsEnabled:
        return from_cache("huggingface_hub is in offline mode"), where + " [offline cache]"
    except hf_errors.HfHubHTTPError as exc:
        raise ValueError(f"{where}: the Hub answered with an error ({exc})") from None
    except Exception as exc:  # network down, DNS, timeout: fall back to the cache as the hub library does
        return from_cache(f"the Hub could not be reached ({type(exc).__name__})"), where + " [offline cache]"

    plan = plan_layout(sizes, subfolder, where)
    wanted = [plan.file(CONFIG_NAME), plan.file(WEIGHTS_NAME)]
    if plan.scheduler_file:
        wanted.append(plan.scheduler_file)
    total = sum(int(sizes.get(name) or 0) for name in wanted)
    if total > max_bytes:
        raise ValueError(f"{where}: the model files are {total / 1e6:.1f} MB, over the size cap of "
                         f"{max_bytes / 1e6:.1f} MB (raise max_bytes or MODEL_MAX_BYTES to allow it)")
    root = None
    for name in wanted:
        try:
            local = Path(_hub_download(repo_id, name, sha or revision, cache_dir))
        except (hf_errors.EntryNotFoundError, hf_errors.LocalEntryNotFoundError):
            raise FileNotFoundError(f"{where}: file {name} could not be downloaded or found in the cache") from None
        except hf_errors.HfHubHTTPError as exc:
            raise ValueError(f"{where}: downloading {name} failed ({exc})") from None
        except OSError as exc:
            raise FileNotFoundError(f"{where}: downloading {name} failed ({exc})") from None
        if root is None:
            root = local
            for _ in PurePosixPath(name).parts:
                root = root.parent
    return root, where


# ---------------------------------------------------------------------------------------------
# the public entry point

def _finish(net, device, dtype, channels_last):
    net = net.to(device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.eval()
    net.requires_grad_(False)
    return net
