"""Checkpoints: safetensors + config JSON round trip, packaged text-encoder exclusion, clear SSPErrors for
another config, corrupt / missing files and unknown config names."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
import torch

from ssp_edge.ssp.checkpoint import FORMAT, load_checkpoint, load_weights, read_checkpoint_info, save_checkpoint
from ssp_edge.ssp.config import SSPConfig, config_from_json, get_config
from ssp_edge.ssp.errors import SSPError
from ssp_edge.ssp.models.ssp import build_model
from ssp_edge.ssp.models.text import TEXT_PACKAGE

SMALL = dict(dim=32, heads=2, decoder_channels=(16, 8, 8, 4), prior_channels=4, input_size=128)


def _small_cfg(**kw) -> SSPConfig:
    return get_config("ssp_lite", **{"pretrained": False, **SMALL, **kw})


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Make every saved float tensor (BN statistics included) differ from a fresh init. Non-persistent
    buffers (the fixed position encodings) are recomputed at build time, so they are left alone."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand(t.shape, generator=gen) * 0.01)


def _inputs(cfg: SSPConfig, b: int = 2):
    gen = torch.Generator().manual_seed(123)
    image = torch.randn(b, 3, cfg.input_size, cfg.input_size, generator=gen)
    ids = torch.randint(1000, 5000, (b, cfg.max_tokens), generator=gen)
    am = torch.ones(b, cfg.max_tokens, dtype=torch.int64)
    am[0, 6:] = 0
    ids[0, 6:] = 0
    return image, ids, am


def _outputs(model, cfg):
    with torch.no_grad():
        out = model.eval()(*_inputs(cfg))
    return out.mask_logits, out.target_logit, out.coarse_logits, out.relevance_logits, out.q


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory):
    cfg = _small_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    _perturb(model, 1)
    model.eval()
    path = save_checkpoint(
        model, cfg, tmp_path_factory.mktemp("ckpt") / "small.safetensors", extra={"epoch": 3, "note": "unit test"}
    )
    return cfg, model, path


def test_small_config_passes_validation():
    cfg = _small_cfg()
    assert cfg.dim == 32 and cfg.decoder_channels == (16, 8, 8, 4)
    assert cfg.cell == 8 and cfg.grid == 4  # v2: 128 px -> a 32x32 stride-4 map in 8x8 cells


def test_round_trip_gives_identical_outputs(small_ckpt):
    cfg, model, path = small_ckpt
    assert path.is_file() and not path.with_suffix(".tmp").exists()
    torch.manual_seed(99)  # the loaded model starts from a different random init
    loaded, info = load_checkpoint(path)
    assert not loaded.training
    assert info.config == cfg and info.path == path
    assert info.metadata["format"] == FORMAT
    assert json.loads(info.metadata["epoch"]) == 3 and info.metadata["note"] == "unit test"
    assert "excluded_prefix" not in info.metadata  # random-init text encoder: nothing comes from a package
    own, new = model.state_dict(), loaded.state_dict()
    assert own.keys() == new.keys()
    for k in own:
        assert torch.equal(own[k], new[k]), k
    for a, b in zip(_outputs(model, cfg), _outputs(loaded, cfg)):
        assert torch.equal(a, b)


def test_read_checkpoint_info_reads_only_the_header(small_ckpt):
    cfg, _, path = small_ckpt
    info = read_checkpoint_info(str(path))
    assert info.config == cfg
    assert config_from_json(info.metadata["config"]) == cfg


def test_fp16_checkpoint_loads_close(small_ckpt, tmp_path):
    from safetensors import safe_open

    cfg, model, _ = small_ckpt
    path = save_checkpoint(model, cfg, tmp_path / "half.safetensors", dtype=torch.float16)
    with safe_open(str(path), framework="pt") as f:
        key = next(k for k in f.keys() if k.endswith("lat16.weight"))
        assert f.get_tensor(key).dtype == torch.float16
    loaded, _ = load_checkpoint(path)
    assert loaded.state_dict()[key].dtype == torch.float32
    m0, m1 = _outputs(model, cfg)[0], _outputs(loaded, cfg)[0]
    assert (m0 - m1).abs().max() < 0.05 * (m0.abs().max() + 1)


def test_expect_config_mismatch_raises(small_ckpt):
    _, _, path = small_ckpt
    with pytest.raises(SSPError, match="ssp_paper"):
        load_checkpoint(path, expect_config="ssp_paper")


def test_packaged_text_encoder_weights_are_excluded(tmp_path):
    cfg = get_config("ssp_lite", **SMALL)  # pretrained + frozen MiniLM from the pip package
    assert cfg.pretrained and cfg.freeze_text and cfg.text_encoder == "minilm_l6"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # trained parts differ from a fresh build; the packaged encoder does not
        for name, p in model.named_parameters():
            if not name.startswith("text.encoder."):
                p.add_(0.01)
    path = save_checkpoint(model, cfg, tmp_path / "lite.safetensors")

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    assert keys and not any(k.startswith("text.encoder.") for k in keys)
    assert "text.word_proj.0.weight" in keys and any(k.startswith("image.backbone.") for k in keys)
    assert keys == {k for k in model.state_dict() if not k.startswith("text.encoder.")}

    info = read_checkpoint_info(path)
    assert info.metadata["excluded_prefix"] == "text.encoder."
    assert json.loads(info.metadata["text_encoder_package"]) == {"name": TEXT_PACKAGE, "version": version(TEXT_PACKAGE)}

    loaded, _ = load_checkpoint(path)
    own, new = model.state_dict(), loaded.state_dict()
    for k in own:
        assert torch.equal(own[k], new[k]), k
    for a, b in zip(_outputs(model, cfg), _outputs(loaded, cfg)):
        assert torch.equal(a, b)


def test_loading_into_another_config_names_the_missing_and_unexpected_keys(small_ckpt):
    _, _, path = small_ckpt
    info = read_checkpoint_info(path)
    other = build_model(_small_cfg(decoder="bilinear"))
    with pytest.raises(SSPError) as e:
        load_weights(other, info)
    msg = str(e.value)
    assert "missing" in msg and "unexpected" in msg
    assert "decoder.decoder.blocks.0.proj" in msg  # only in the bilinear model
    assert "decoder.decoder.blocks.0.sr" in msg or "decoder.decoder.blocks.0.cr" in msg  # only in the file


def test_loading_into_another_width_names_the_shape(small_ckpt):
    _, _, path = small_ckpt
    info = read_checkpoint_info(path)
    other = build_model(_small_cfg(dim=64))
    with pytest.raises(SSPError) as e:
        load_weights(other, info)
    msg = str(e.value)
    assert "shape" in msg and "32" in msg and "64" in msg


@pytest.mark.parametrize("keep", [0.5, 0.999, 16, 4])
def test_truncated_file_raises(small_ckpt, tmp_path, keep):
    _, _, path = small_ckpt
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[:n])
    with pytest.raises(SSPError, match="truncated.safetensors"):
        load_checkpoint(bad)


def test_garbage_file_raises(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(SSPError):
        read_checkpoint_info(bad)
    with pytest.raises(SSPError):
        load_checkpoint(bad)


def test_safetensors_without_ssp_metadata_raises(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(SSPError, match="metadata"):
        load_checkpoint(p)


def test_newer_config_keys_raise(tmp_path):
    from safetensors.torch import save_file

    data = json.loads(_small_cfg().to_json())
    data["future_option"] = 1
    p = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"format": FORMAT, "config": json.dumps(data)})
    with pytest.raises(SSPError, match="future_option"):
        read_checkpoint_info(p)


def test_missing_file_raises(tmp_path):
    with pytest.raises(SSPError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(SSPError, match="not found"):
        read_checkpoint_info("no_such_named_checkpoint")


def test_unknown_config_name_and_bad_values_raise():
    with pytest.raises(SSPError, match="ssp_lite"):
        get_config("ssp_huge")
    with pytest.raises(SSPError, match="decoder"):
        get_config("ssp_lite", decoder="nearest")
    with pytest.raises(SSPError, match="input_size"):
        get_config("ssp_lite", input_size=300)
    with pytest.raises(SSPError):
        config_from_json("{not json")


def test_config_json_round_trip():
    for name in ("ssp_lite", "ssp_paper"):
        cfg = get_config(name)
        assert config_from_json(cfg.to_json()) == cfg
    cfg = get_config("ssp_lite", decoder="bilinear", extra={"a": [1, 2]})
    assert config_from_json(cfg.to_json()) == cfg
