"""The model wrapper: turns a network's raw output into predictions of x0 and eps.

Kept apart from the solvers (as in DPM-Solver's reference code) so every prediction type,
clipping rule and guidance formula is written exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass
class Prediction:
    x0: torch.Tensor                 # predicted clean sample (clipped / thresholded where the sampler says)
    eps: torch.Tensor                # predicted noise, consistent with x0: x = alpha x0 + sigma eps
    variance: torch.Tensor | None = None  # extra output channels of learned-variance models
    output: torch.Tensor | None = None    # the model's own output (its prediction type)
    model_x0: torch.Tensor | None = None  # x0 and eps as the model gave them, before any clipping
    model_eps: torch.Tensor | None = None
    # the unconditional branch's x0 / eps where the Eval asked (CFG++); a prediction without guidance is
    # its own unconditional one
    uncond_x0: torch.Tensor | None = None
    uncond_eps: torch.Tensor | None = None

    def __post_init__(self):
        if self.model_x0 is None:
            self.model_x0 = self.x0
        if self.model_eps is None:
            self.model_eps = self.eps
        if self.uncond_x0 is None:
            self.uncond_x0, self.uncond_eps = self.x0, self.eps


def predict(output: torch.Tensor, x: torch.Tensor, alpha: float, sigma: float,
            prediction_type: str) -> Prediction:
    """x0 and eps from a model output at VP coefficients (alpha, sigma) of the sample x."""
    variance = None
    if output.shape[1] == 2 * x.shape[1]:  # learned variance: the second half is the variance
        output, variance = output.split(x.shape[1], dim=1)
    if prediction_type == "epsilon":
        eps = output
        x0 = (x - sigma * eps) / alpha
    elif prediction_type == "v_prediction":   # v = alpha eps - sigma x0
        x0 = alpha * x - sigma * output
        eps = sigma * x + alpha * output
    elif prediction_type == "sample":
        x0 = output
        eps = (x - alpha * x0) / sigma
    else:
        raise ValueError(f"prediction_type={prediction_type!r}; allowed: {', '.join(PREDICTION_TYPES)}")
    return Prediction(x0=x0, eps=eps, variance=variance, output=output)


def processed(pred: Prediction, x: torch.Tensor, alpha: float, sigma: float, options: dict) -> Prediction:
    """The prediction with x0 clipped / thresholded (``process_x0``) and eps recomputed from that x0,
    so every solver integrates one consistent pair; the model's own values stay in model_x0 / model_eps."""
    x0 = process_x0(pred.x0, options)
    if x0 is pred.x0 or sigma == 0:
        return pred
    return Prediction(x0=x0, eps=(x - alpha * x0) / sigma, variance=pred.variance, output=pred.output,
                      model_x0=pred.model_x0, model_eps=pred.model_eps)


def cfg_pp_start(x: torch.Tensor, pred: Prediction, on: bool, scale: float = 1.0) -> torch.Tensor:
    """CFG++ for any step written in k form (x = x0 + k eps): start the step from
    x + (x0_guided - x0_uncond), whose noise under the guided x0 is the unconditional eps, so a
    first-order step lands on x0_guided + k_next eps_uncond (Chung et al. 2024, eq. 10 in k form).
    The programs keep the unconditional values in their history.  ``scale``: alpha for a VP-scaled x.
    Off: x itself."""
    return x.add(pred.x0 - pred.uncond_x0, alpha=scale) if on else x


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """Imagen's dynamic thresholding: per sample, s = quantile(|x0|, ratio) clamped to [1, max]."""
    dtype = x0.dtype
    flat = x0.reshape(x0.shape[0], -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (torch.clamp(flat, -s, s) / s).reshape(x0.shape).to(dtype)


def process_x0(x0: torch.Tensor, options: dict) -> torch.Tensor:
    """Apply the sampler's x0 post-processing: dynamic thresholding, else clipping, else none."""
    if options.get("thresholding"):
        return dynamic_threshold(x0, options.get("dynamic_thresholding_ratio", 0.995),
                                 options.get("sample_max_value", 1.0))
    if options.get("clip_sample"):
        r = options.get("clip_sample_range", 1.0)
        return x0.clamp(-r, r)
    return x0


def guided(net, class_labels: torch.Tensor, guidance_scale: float = 1.0, guidance_rescale: float = 0.0,
           null_label: int | None = None):
    """A model(x, t) that applies classifier-free guidance to a class-conditional network.

    Conditional and unconditional rows go through the network as one batch.  Guidance rescale
    (Lin et al. §3.4) pulls the guided output's std back towards the conditional one's.
    ``model.with_uncond(x, t)`` returns (guided, unconditional) outputs from one batch, also at
    guidance 1: the CFG++ samplers need both.  CFG++ (Chung et al. 2024) takes its guidance
    lambda as this ``guidance_scale`` unchanged, as ComfyUI passes its cfg value: the paper's
    lambda in [0, 1] (0 = unconditional, 1 = conditional x0 with the unconditional noise
    direction; values above 1 extrapolate as CFG does).
    """
    if null_label is None:
        null_label = int(net.config["num_class_embeds"]) - 1

    def labels_for(x):
        return class_labels.to(x.device).expand(x.shape[0]) if class_labels.ndim == 0 else class_labels.to(x.device)

    def both(x, t):
        labels = labels_for(x)
        null = torch.full_like(labels, null_label)
        out = net(torch.cat([x, x]), torch.cat([t, t]), class_labels=torch.cat([labels, null]))
        cond, uncond = out.chunk(2)
        return mix(cond, uncond, x), uncond

    def model(x, t):
        if guidance_scale == 1.0:
            return net(x, t, class_labels=labels_for(x))
        return both(x, t)[0]

    def mix(cond, uncond, x):
        if guidance_scale == 1.0:
            return cond
        mixed = uncond + guidance_scale * (cond - uncond)
        if guidance_rescale > 0:
            dims = list(range(1, x.ndim))
            rescaled = mixed * (cond.std(dim=dims, keepdim=True) / mixed.std(dim=dims, keepdim=True))
            mixed = guidance_rescale * rescaled + (1 - guidance_rescale) * mixed
        return mixed

    model.with_uncond = both
    model.config = getattr(net, "config", None)
    model.scheduler_config = getattr(net, "scheduler_config", None)
    return model
