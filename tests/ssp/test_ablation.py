"""The decoder ablation (``python -m ssp_edge.ssp.ablation decoders``) on a tiny recipe: both arms start the
decoder phases from the same grounding weights, arms trained in separate calls merge into one table, and a call
with other phases does not mix its arm with older ones."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ssp_edge.ssp import ablation
from ssp_edge.ssp.ablation import Phase
from ssp_edge.ssp.errors import SSPError

TINY = {
    "pretrained": "false",
    "dim": 32,
    "heads": 2,
    "decoder_channels": "[16,8,8,4]",
    "prior_channels": 4,
    "input_size": 64,
}
_OPTS = {"images_per_batch": 2, "data": "refshapes2:train", "val": "refshapes2:val", "val_every": 100}
RECIPE = [
    Phase("ground", TINY, {**_OPTS, "ground_only": True, "steps": 2, "exprs_per_image": 2, "spixel_steps": 1}, False),
    Phase("early", TINY, {**_OPTS, "steps": 2, "exprs_per_image": 2, "val_samples": 4, "seed": 1}),
    Phase("late", TINY, {**_OPTS, "steps": 1, "exprs_per_image": 2, "val_samples": 4, "seed": 2}),
]


@pytest.fixture()
def tiny_recipe(monkeypatch):
    monkeypatch.setitem(ablation.RECIPES, "tiny", RECIPE)
    return "tiny"


def _run(out, recipe, **kw):
    return ablation.run_decoder_ablation(
        out, recipe, tests=["refshapes2:test"], val="refshapes2:val", limit=3, val_limit=3, **kw
    )


def _non_decoder(path):
    return {k: v for k, v in load_file(str(path)).items() if not k.startswith("decoder.decoder.")}


@pytest.mark.slow
def test_arms_share_the_grounding_weights_and_merge_across_calls(tmp_path, tiny_recipe):
    out = tmp_path / "abl"
    first = _run(out, tiny_recipe, phases=["early"], arms=["rus"])
    assert set(first["arms"]) == {"rus"}
    assert first["arms"]["rus"]["steps_done"] == {"early": 2}
    assert [p["name"] for p in first["phases"]] == ["ground", "early"]
    assert not (out / "rus" / "late").exists()  # the phase that was not chosen did not run

    second = _run(out, tiny_recipe, phases=["early"], arms=["bilinear"], ground=first["ground"])
    assert set(second["arms"]) == {"rus", "bilinear"}
    assert second["arms"]["rus"] == first["arms"]["rus"]
    # both arms start from the grounding weights: everything but the upsampling decoder is the same tensors
    ground = _non_decoder(first["ground"])
    for arm in ("rus", "bilinear"):
        start = _non_decoder(out / arm / "init.safetensors")
        assert start.keys() == ground.keys()
        assert all(torch.equal(start[k], ground[k]) for k in ground)
    table = (out / "ablation.md").read_text()
    assert "| rus | `refshapes2:test` |" in table and "| bilinear | `refshapes2:test` |" in table
    assert json.loads((out / "ablation.json").read_text())["arms"].keys() == {"rus", "bilinear"}

    # other phases: a different experiment, so the old arms are not carried into its table
    third = _run(out, tiny_recipe, phases=["early", "late"], arms=["bilinear"], ground=first["ground"])
    assert set(third["arms"]) == {"bilinear"}
    assert third["arms"]["bilinear"]["steps_done"] == {"early": 2, "late": 1}


def test_bad_phase_arm_or_grounding_checkpoint_is_a_clear_error(tmp_path, tiny_recipe):
    with pytest.raises(SSPError, match="no decoder phase 'ground'.*early, late"):
        _run(tmp_path, tiny_recipe, phases=["ground"])
    with pytest.raises(SSPError, match="arms must be some of rus, bilinear"):
        _run(tmp_path, tiny_recipe, arms=["nearest"])
    with pytest.raises(SSPError, match="no such checkpoint"):
        _run(tmp_path, tiny_recipe, ground=str(tmp_path / "missing.safetensors"))
    assert not (tmp_path / "rus").exists()


def test_recipe_commands_parse_back_with_ssp_train_options(monkeypatch):
    """Every recipe command is valid ``ssp train`` input, dict options as JSON objects (not Python reprs)."""
    import argparse

    from ssp_edge.ssp.cli import add_train_args
    from ssp_edge.ssp.options import options_from_args

    mix = {"ordinal": 0.5, "relation": 0.5, "no_target": 0.3}
    phase = Phase("only", {"input_size": 64}, {"steps": 3, "type_weights": mix})
    monkeypatch.setitem(ablation.RECIPES, "mixed", [phase])
    for name in ("v2", "mixed"):
        for argv in ablation.recipe_commands(name, out="runs/x"):
            p = argparse.ArgumentParser()
            add_train_args(p)
            opt = options_from_args(p.parse_args(argv))
            assert opt.out.startswith("runs/x/")
    (argv,) = ablation.recipe_commands("mixed")
    assert options_from_args(p.parse_args(argv)).type_weights == mix
