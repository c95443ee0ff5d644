"""Models shipped with the project, loaded by name through ``models.load(name)``."""
from __future__ import annotations

from pathlib import Path

from . import loading

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL_DIR = ASSETS / "emoji-unet"
EMOJI_IMAGES = ASSETS / "emoji32.npz"

EMBEDDED = {
    "default": "UNet2DModel trained on the emoji set (assets/emoji-unet/)",
    "ideal-emoji": "exact posterior mean over the emoji images (assets/emoji32.npz)",
    "gaussian": "2-D Gaussian data: exact predictions and flow map",
    "mixture-2d": "2-D Gaussian mixture with five well-separated modes",
}


def gaussian_2d(prediction_type: str = "epsilon"):
    from .analytic import GaussianData

    # Correlated and anisotropic, so trajectories curve visibly in the teaching view.
    return GaussianData([0.3, -0.2], [[0.20, 0.12], [0.12, 0.10]], prediction_type=prediction_type)


def twin_scheduler_config() -> dict | None:
    """The default network's scheduler_config.json (None while the network is missing)."""
    import json

    try:
        return json.loads((DEFAULT_MODEL_DIR / loading.SCHEDULER_NAME).read_text())
    except (OSError, ValueError):
        return None


def load_embedded(name: str, device=None, dtype=None, channels_last: bool = False):
    from . import analytic   # (torch-heavy: only when an analytic model is asked for)

    if name == "default":
        if not DEFAULT_MODEL_DIR.is_dir():
            raise FileNotFoundError(f"the default model folder {str(DEFAULT_MODEL_DIR)!r} does not exist yet "
                                    f"(it is written by the training script)")
        net = loading.load_folder(DEFAULT_MODEL_DIR, None, f"embedded model 'default' ({DEFAULT_MODEL_DIR})")
        net.source = {"kind": "embedded", "name": name, "path": str(DEFAULT_MODEL_DIR)}
        return loading._finish(net, device, dtype, channels_last)
    if name == "ideal-emoji":
        # the twin of the default network: the same noise schedule and grid (trailing), so the two
        # sample the same way from the same noise
        config = twin_scheduler_config()
        return analytic.IdealDenoiser.from_npz(EMOJI_IMAGES, scheduler_config=config,
                                               prediction_type=(config or {}).get("prediction_type", "epsilon"))
    if name == "gaussian":
        return gaussian_2d()
    if name == "mixture-2d":
        return analytic.GaussianMixture.two_d()
    raise ValueError(f"unknown embedded model {name!r}; allowed: {sorted(EMBEDDED)}")
