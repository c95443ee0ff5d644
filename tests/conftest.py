import atexit
import os
import shutil
import sys
import tempfile

import pytest
import torch

# Gradio's file cache is /tmp/gradio, shared by every process, and named by content: a server in another
# test run that closes deletes a file this run's client is about to fetch (seen as a 403). One per run.
if "GRADIO_TEMP_DIR" not in os.environ:
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="sampler-lab-gradio-")
    atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], True)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def toy_model(channels_out_factor: int = 1):
    """A smooth, t-dependent stand-in for a network (same function for us and for diffusers)."""
    def model(x, t):
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1)
        if t.numel() == 1:
            t = t.expand(x.shape[0])
        c = torch.cos(t / 1000 * 1.3).view(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        out = 0.6 * c * x + 0.2 * torch.sin(2 * x) + 0.05 * (1 - c)
        if channels_out_factor == 2:  # learned variance channels: positive (a variance) and inside [-1, 1] (a learned_range fraction)
            out = torch.cat([out, 0.3 * torch.tanh(x) + 0.5], dim=1)
        return out
    return model


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny test networks: a second intra-op thread only adds synchronisation, which on a shared
    2-core machine costs far more than it saves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def model():
    return toy_model()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-12))
