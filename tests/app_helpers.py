"""Shared by the app tests: small in-process models and an in-process launch of the app."""
from __future__ import annotations

import io
import socket
import time

import numpy as np
import torch
from PIL import Image

import models
import lab

# A tiny class-conditional v-prediction network (random weights): fast, and exercises the real
# UNet code path with classifier-free guidance. Label 3 is the null label.
TINY_CONFIG = {"sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": [8, 16],
               "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
               "layers_per_block": 1, "norm_num_groups": 4, "num_class_embeds": 4}
TINY_SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
                  "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "v_prediction",
                  "timestep_spacing": "trailing", "clip_sample": True}


def tiny_unet():
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    net = models.UNet2DModel(TINY_CONFIG).eval().requires_grad_(False)
    torch.random.set_rng_state(gen_state)
    net.scheduler_config = dict(TINY_SCHEDULER)
    return net


class Slowed:
    """A model that takes at least ``seconds`` per call, so a run lasts long enough to watch or stop."""

    def __init__(self, net, seconds: float):
        self.net, self.seconds = net, seconds
        self.config, self.scheduler_config = net.config, net.scheduler_config

    def __call__(self, x, t, class_labels=None):
        time.sleep(self.seconds)
        return self.net(x, t, class_labels=class_labels)

    def parameters(self):
        return self.net.parameters()


def register_test_models():
    lab.register_model("tiny-unet", tiny_unet, "tiny random class-conditional UNet (tests)")
    lab.register_model("tiny-slow", lambda: Slowed(tiny_unet(), 0.03), "tiny UNet, 30 ms per call (tests)")
    # cancellation tests: a run long enough (6 s) that a server stalled for a moment still takes the
    # cancel mid-run; what they measure is how far the run goes after the server took it
    lab.register_model("tiny-slower", lambda: Slowed(tiny_unet(), 0.1), "tiny UNet, 100 ms per call (tests)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(demo):
    import app

    port = free_port()
    app.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
               show_error=False)
    return f"http://127.0.0.1:{port}/"


def serve(limits):
    """A gradio_client Client on a freshly launched in-process app; closes the app afterwards."""
    from gradio_client import Client

    import app

    demo = app.build_app(limits)
    url = launch(demo)
    yield Client(url, verbose=False)
    demo.close()


def read_png(path) -> np.ndarray:
    with open(path, "rb") as f:
        return np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))
