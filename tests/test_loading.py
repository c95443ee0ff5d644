"""models.load: local folders in both layouts, the Hub through a hand-built offline cache, and
every refusal (pickle weights, bad repo ids, size cap, corrupt or mismatched files) as a clear
ValueError / FileNotFoundError naming the repo or folder and the file."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import models
from conftest import rel_diff
from models import cache, embedded, loading
from models.unet import UNet2DModel

diffusers = pytest.importorskip("diffusers")

TINY = {
    "_class_name": "UNet2DModel", "block_out_channels": [32, 64], "norm_num_groups": 8, "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1,
    "norm_eps": 1e-6, "sample_size": 16,
}
SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
             "beta_start": 0.0001, "beta_end": 0.02, "clip_sample": True, "variance_type": "fixed_large",
             "prediction_type": "epsilon"}
X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
T = torch.tensor([12.5, 640.0])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A diffusers UNet2DModel with random weights, saved flat with its scheduler config."""
    torch.manual_seed(0)
    ref = diffusers.UNet2DModel(**{k: v for k, v in TINY.items() if not k.startswith("_")}).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    folder = tmp_path_factory.mktemp("flat")
    ref.save_pretrained(folder)
    (folder / "scheduler_config.json").write_text(json.dumps(SCHEDULER))
    with torch.inference_mode():
        expected = ref(X, T).sample
    return folder, expected


def output(net):
    with torch.inference_mode():
        return net(X, T)


def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


def pipeline_layout(flat, dst):
    """unet/ and scheduler/ beside model_index.json, as diffusers pipelines save them."""
    (dst / "unet").mkdir(parents=True)
    (dst / "scheduler").mkdir()
    for name in ("config.json", "diffusion_pytorch_model.safetensors"):
        shutil.copy(flat / name, dst / "unet" / name)
    shutil.copy(flat / "scheduler_config.json", dst / "scheduler" / "scheduler_config.json")
    (dst / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline",
                                                      "unet": ["diffusers", "UNet2DModel"],
                                                      "scheduler": ["diffusers", "DDPMScheduler"]}))
    return dst


# ------------------------------------------------------------------------------------------------
# local folders

def test_flat_folder_loads_with_its_scheduler_config(reference):
    folder, expected = reference
    net = models.load(folder, device="cpu")
    assert rel_diff(output(net), expected) < 1e-4
    assert net.scheduler_config == SCHEDULER
    assert net.config["block_out_channels"] == [32, 64]
    assert net.source["kind"] == "folder"


def test_pipeline_layout_is_found_with_and_without_subfolder(reference, tmp_path):
    folder, expected = reference
    root = pipeline_layout(folder, tmp_path / "pipe")
    for kwargs in ({}, {"subfolder": "unet"}):
        net = models.load(str(root), **kwargs)
        assert rel_diff(output(net), expected) < 1e-4
        assert net.scheduler_config == SCHEDULER


def test_old_attention_names_load(reference, tmp_path):
    folder, expected = reference
    old = copy_folder(folder, tmp_path / "old")
    state = load_file(old / "diffusion_pytorch_model.safetensors")
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for key, value in state.items():
        for new, legacy in renames.items():
            key = key.replace(f".{new}.", f".{legacy}.")
        renamed[key] = value
    assert any(".proj_attn." in k for k in renamed) and not any(".to_q." in k for k in renamed)
    save_file(renamed, old / "diffusion_pytorch_model.safetensors")
    assert rel_diff(output(models.load(old)), expected) < 1e-4


def test_folder_without_scheduler_config_gets_ddpm_defaults(reference, tmp_path):
    folder, _ = reference
    bare = copy_folder(folder, tmp_path / "bare")
    (bare / "scheduler_config.json").unlink()
    config = models.load(bare).scheduler_config
    assert (config["beta_schedule"], config["prediction_type"], config["num_train_timesteps"]) == ("linear", "epsilon", 1000)
    assert "no scheduler_config.json" in config["_note"]


def test_pickle_only_checkpoint_is_refused_with_how_to_convert(reference, tmp_path):
    folder, _ = reference
    pickled = copy_folder(folder, tmp_path / "pickled")
    (pickled / "diffusion_pytorch_model.safetensors").unlink()
    (pickled / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(ValueError, match=r"refusing diffusion_pytorch_model\.bin.*pickle.*save_pretrained"):
        models.load(pickled)


def test_missing_weights_and_missing_config_name_the_file(reference, tmp_path):
    folder, _ = reference
    no_weights = copy_folder(folder, tmp_path / "no_weights")
    (no_weights / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no_weights.*diffusion_pytorch_model.safetensors"):
        models.load(no_weights)
    no_config = copy_folder(folder, tmp_path / "no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no_config.*config.json"):
        models.load(no_config)
    with pytest.raises(FileNotFoundError, match="subfolder='unet'"):
        models.load(folder, subfolder="unet")


def test_corrupt_safetensors_is_a_value_error_naming_the_file(reference, tmp_path):
    folder, _ = reference
    broken = copy_folder(folder, tmp_path / "broken")
    weights = broken / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="broken.*diffusion_pytorch_model.safetensors is not a valid safetensors"):
        models.load(broken)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        models.load(broken)


def test_tensor_shape_that_does_not_match_the_config_names_the_key(reference, tmp_path):
    folder, _ = reference
    wrong = copy_folder(folder, tmp_path / "wrong")
    config = json.loads((wrong / "config.json").read_text())
    config["block_out_channels"] = [32, 96]
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"tensor 'down_blocks\.1\.resnets\.0\.conv1\.weight' has shape \[64, 32, 3, 3\]"):
        models.load(wrong)


def test_missing_and_unexpected_tensors_are_named(reference, tmp_path):
    folder, _ = reference
    edited = copy_folder(folder, tmp_path / "edited")
    path = edited / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    state.pop("conv_out.bias")
    save_file(state, path)
    with pytest.raises(ValueError, match="lacks tensor 'conv_out.bias'"):
        models.load(edited)
    state["conv_out.bias"] = torch.zeros(3)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, path)
    with pytest.raises(ValueError, match="has tensor 'extra.weight' that config.json does not define"):
        models.load(edited)


def test_bad_config_json_is_refused(reference, tmp_path):
    folder, _ = reference
    bad = copy_folder(folder, tmp_path / "bad")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.*config.json is not valid JSON"):
        models.load(bad)
    (bad / "config.json").write_text(json.dumps({**TINY, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match="UNet2DConditionModel"):
        models.load(bad)
    (bad / "config.json").write_text(json.dumps({**TINY, "down_block_types": ["DownBlock2D", "KDownBlock2D"]}))
    with pytest.raises(ValueError, match=r"config.json.*down_block_types\[1\]='KDownBlock2D'"):
        models.load(bad)


@pytest.mark.parametrize("source, error, message", [
    ("/no/such/folder", FileNotFoundError, "no such local folder"),
    ("./relative/missing", FileNotFoundError, "no such local folder"),
    ("https://huggingface.co/google/ddpm-cifar10-32", ValueError, "URLs are not accepted"),
    ("google/../etc", ValueError, r"of the form 'org/name' \(no '\.\.'\)"),
    ("google/ddpm..x", ValueError, "not of the form"),
    ("a/b--c", ValueError, "not of the form"),
    ("-bad/name", ValueError, "not of the form"),
    ("org/" + "n" * 100, ValueError, "at most 96"),
    ("", ValueError, "must be a local folder, a hub repo id"),
    (42, ValueError, "must be a local folder"),
])
def test_bad_sources_are_refused(source, error, message):
    with pytest.raises(error, match=message):
        models.load(source, allow_any_hub_model=True)


def test_a_file_is_not_a_model_folder(reference):
    folder, _ = reference
    with pytest.raises(ValueError, match="is a file"):
        models.load(folder / "config.json")


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "float64"}, "dtype='float64'"),
    ({"dtype": torch.int8}, "dtype="),
    ({"device": "tpu:9"}, "device='tpu:9'"),
    ({"subfolder": "../unet"}, "subfolder='../unet'"),
    ({"subfolder": "/abs"}, "subfolder='/abs'"),
    ({"revision": "a..b"}, "revision='a..b'"),
])
def test_bad_arguments_are_refused(reference, kwargs, message):
    folder, _ = reference
    with pytest.raises(ValueError, match=message):
        models.load(folder, **kwargs)


def test_cuda_is_refused_clearly_without_a_gpu(reference):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        models.load(reference[0], device="cuda")


# ------------------------------------------------------------------------------------------------
# the Hub through a hand-built cache, offline

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_hub_cache(cache_dir: Path, repo_id: str, files: dict, ref: str = "main", commit: str = COMMIT):
    """models--ORG--NAME/{refs/REF, blobs/SHA, snapshots/COMMIT/<file> -> ../../blobs/SHA}."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    (repo / "blobs").mkdir(exist_ok=True)
    for rel, source in files.items():
        data = Path(source).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return repo


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    hub = tmp_path / "hf_home" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.delenv("ALLOW_ANY_HUB_MODEL", raising=False)
    return hub


def flat_files(folder):
    return {name: folder / name for name in ("config.json", "diffusion_pytorch_model.safetensors",
                                             "scheduler_config.json")}


def test_hub_flat_repo_loads_from_the_offline_cache(reference, offline_cache):
    folder, expected = reference
    build_hub_cache(offline_cache, "google/ddpm-cifar10-32", flat_files(folder))
    net = models.load("google/ddpm-cifar10-32", device="cpu")
    assert rel_diff(output(net), expected) < 1e-4
    assert net.scheduler_config == SCHEDULER
    assert net.source == {"kind": "hub", "repo_id": "google/ddpm-cifar10-32", "revision": None, "subfolder": None}


def test_hub_cache_found_through_hf_home(reference, offline_cache, monkeypatch):
    folder, expected = reference
    build_hub_cache(offline_cache, "google/ddpm-cat-256", flat_files(folder))
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(offline_cache.parent))
    assert rel_diff(output(models.load("google/ddpm-cat-256")), expected) < 1e-4


def test_hub_pipeline_layout_and_revision(reference, offline_cache, tmp_path):
    folder, expected = reference
    pipe = pipeline_layout(folder, tmp_path / "pipe")
    files = {rel: pipe / rel for rel in ("model_index.json", "unet/config.json",
                                         "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json")}
    other = "f" * 40
    build_hub_cache(offline_cache, "someone/my-unet", files, ref="v1", commit=other)
    net = models.load("someone/my-unet", revision="v1", allow_any_hub_model=True)
    assert rel_diff(output(net), expected) < 1e-4
    assert net.scheduler_config == SCHEDULER
    net = models.load("someone/my-unet", revision="v1", subfolder="unet", allow_any_hub_model=True)
    assert rel_diff(output(net), expected) < 1e-4
    with pytest.raises(FileNotFoundError, match="someone/my-unet.*revision 'main'.*not in the local cache"):
        models.load("someone/my-unet", revision="main", allow_any_hub_model=True)


def test_hub_repo_outside_the_allow_list_needs_opt_in(reference, offline_cache, monkeypatch):
    folder, expected = reference
    build_hub_cache(offline_cache, "someone/unet", flat_files(folder))
    with pytest.raises(ValueError, match="'someone/unet' is not in the allow-list.*ALLOW_ANY_HUB_MODEL=1"):
        models.load("someone/unet")
    monkeypatch.setenv("ALLOW_ANY_HUB_MODEL", "1")
    assert rel_diff(output(models.load("someone/unet")), expected) < 1e-4
    with pytest.raises(ValueError, match="allow-list"):
        models.load("someone/unet", allow_any_hub_model=False)


def test_hub_offline_and_not_cached(offline_cache):
    with pytest.raises(FileNotFoundError, match="'google/ddpm-church-256'.*HF_HUB_OFFLINE.*not in the local cache"):
        models.load("google/ddpm-church-256")


def test_hub_cached_repo_with_only_pickle_weights_is_refused(reference, offline_cache, tmp_path):
    folder, _ = reference
    pickle = tmp_path / "diffusion_pytorch_model.bin"
    pickle.write_bytes(b"\x80\x04 never unpickled")
    build_hub_cache(offline_cache, "google/ddpm-bedroom-256",
                    {"config.json": folder / "config.json", "diffusion_pytorch_model.bin": pickle})
    with pytest.raises(ValueError, match="'google/ddpm-bedroom-256'.*refusing diffusion_pytorch_model.bin"):
        models.load("google/ddpm-bedroom-256")


def test_hub_cached_file_missing_is_named(reference, offline_cache):
    folder, _ = reference
    build_hub_cache(offline_cache, "google/ddpm-celebahq-256", {"config.json": folder / "config.json"})
    with pytest.raises(FileNotFoundError, match="'google/ddpm-celebahq-256'.*no diffusion_pytorch_model.safetensors"):
        models.load("google/ddpm-celebahq-256")


# The online path with the two Hub calls replaced (no network in tests).

@pytest.fixture
def fake_hub(reference, tmp_path, monkeypatch):
    folder, _ = reference
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    downloads = []
    listing = {name: (folder / name).stat().st_size for name in flat_files(folder)}
    listing["diffusion_pytorch_model.bin"] = 10**9  # present on the Hub, never fetched

    def model_info(repo_id, revision):
        return COMMIT, dict(listing)

    def download(repo_id, filename, revision, cache_dir):
        downloads.append(filename)
        target = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / filename, target)
        return str(target)

    monkeypatch.setattr(loading, "_hub_model_info", model_info)
    monkeypatch.setattr(loading, "_hub_download", download)
    return listing, downloads


def test_online_hub_fetches_only_the_config_weights_and_scheduler(reference, fake_hub):
    _, expected = reference
    listing, downloads = fake_hub
    net = models.load("google/ddpm-cifar10-32")
    assert sorted(downloads) == ["config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"]
    assert rel_diff(output(net), expected) < 1e-4


def test_online_hub_size_cap_stops_the_download(fake_hub, monkeypatch):
    listing, downloads = fake_hub
    weights = listing["diffusion_pytorch_model.safetensors"]
    with pytest.raises(ValueError, match="'google/ddpm-cifar10-32'.*over the size cap"):
        models.load("google/ddpm-cifar10-32", max_bytes=weights // 2)
    monkeypatch.setenv("MODEL_MAX_BYTES", str(weights // 2))
    with pytest.raises(ValueError, match="size cap"):
        models.load("google/ddpm-cifar10-32")
    assert downloads == []


def test_online_hub_repo_with_only_pickle_is_refused_before_downloading(fake_hub):
    listing, downloads = fake_hub
    del listing["diffusion_pytorch_model.safetensors"]
    with pytest.raises(ValueError, match="refusing diffusion_pytorch_model.bin.*pickle"):
        models.load("google/ddpm-cifar10-32")
    assert downloads == []


@pytest.mark.parametrize("error, expected, message", [
    ("RepositoryNotFoundError", FileNotFoundError, "repository not found"),
    ("RevisionNotFoundError", FileNotFoundError, "revision not found"),
    ("GatedRepoError", ValueError, "the repo is gated"),
    ("HfHubHTTPError", ValueError, "the Hub answered with an error"),
])
def test_hub_errors_become_clear_errors_naming_the_repo(fake_hub, monkeypatch, error, expected, message):
    from unittest.mock import MagicMock

    from huggingface_hub import errors

    def failing(repo_id, revision):
        raise getattr(errors, error)("404 Client Error", response=MagicMock())

    monkeypatch.setattr(loading, "_hub_model_info", failing)
    with pytest.raises(expected, match=f"'google/ddpm-cifar10-32' \\(revision 'v2'\\): {message}"):
        models.load("google/ddpm-cifar10-32", revision="v2")


def test_unreachable_hub_falls_back_to_the_cache_then_says_so(fake_hub, monkeypatch):
    def no_network(repo_id, revision):
        raise ConnectionError("name resolution failed")

    monkeypatch.setattr(loading, "_hub_model_info", no_network)
    with pytest.raises(FileNotFoundError, match="could not be reached.*not in the local cache"):
        models.load("google/ddpm-cifar10-32")


# ------------------------------------------------------------------------------------------------
# embedded models and the LRU cache

def test_default_model_goes_through_the_folder_path(reference, tmp_path, monkeypatch):
    folder, expected = reference
    monkeypatch.setattr(embedded, "DEFAULT_MODEL_DIR", tmp_path / "emoji-unet")
    with pytest.raises(FileNotFoundError, match="emoji-unet"):
        models.load("default")
    net = UNet2DModel(TINY)
    net.load_state_dict(load_file(folder / "diffusion_pytorch_model.safetensors"))
    models.save_pretrained(net, tmp_path / "emoji-unet", scheduler_config=SCHEDULER, dtype=torch.float16)
    loaded = models.load("default", device="cpu")
    assert loaded.dtype == torch.float32 and loaded.scheduler_config == SCHEDULER
    assert rel_diff(output(loaded), expected) < 1e-2  # weights stored in float16


def test_embedded_analytic_models_have_scheduler_configs(monkeypatch, tmp_path):
    assert set(models.EMBEDDED) >= {"default", "ideal-emoji", "gaussian", "mixture-2d"}
    for name in ("gaussian", "mixture-2d"):
        model = models.load(name)
        assert model.scheduler_config["prediction_type"] == "epsilon"
        assert model(torch.zeros(3, 2), 500.0).shape == (3, 2)
    monkeypatch.setattr(embedded, "EMOJI_IMAGES", tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        models.load("ideal-emoji")


def test_get_keeps_the_most_recent_models(reference, tmp_path, monkeypatch):
    folder, _ = reference
    other = copy_folder(folder, tmp_path / "other")
    cache.cache_clear()
    monkeypatch.setenv("MODEL_CACHE_SIZE", "1")
    first = models.get(folder)
    assert models.get(folder) is first
    models.get(other)
    assert models.cache_info() == [str(other)]
    assert models.get(folder) is not first  # evicted, loaded again
    monkeypatch.setenv("MODEL_CACHE_SIZE", "0")
    cache.cache_clear()
    models.get(folder)
    assert models.cache_info() == []
    monkeypatch.setenv("MODEL_CACHE_SIZE", "many")
    with pytest.raises(ValueError, match="MODEL_CACHE_SIZE='many'"):
        models.get(folder)
    cache.cache_clear()
