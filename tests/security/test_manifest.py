"""Malformed and hostile manifests: every one is a BundleError naming the field (never AttributeError,
TypeError, MemoryError or a NaN that silently breaks scores), and property-based fuzzing of the same."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sec_helpers import make_bundle, read_manifest, write_manifest

from ssp_edge.sdk.bundle import MANIFEST, Bundle
from ssp_edge.sdk.errors import BundleError

DELETE = object()


def _mutate(data: dict, path: tuple, value: object) -> dict:
    d = copy.deepcopy(data)
    node = d
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


@pytest.mark.parametrize(
    "doc, match",
    [
        ("[]", "must be a JSON object"),
        ("null", "must be a JSON object"),
        ('"a string"', "must be a JSON object"),
        ("42", "must be a JSON object"),
        ("{", "not valid JSON"),
        ("\xff\xfe", "not valid JSON"),
        ('{"input_size": ' + "9" * 5000 + "}", "not valid JSON"),  # beyond int digit limits
        ("[" * 100000 + "]" * 100000, "not valid JSON"),  # nesting that would overflow the parser's recursion
    ],
)
def test_not_a_manifest_document(mini, doc, match):
    (mini / MANIFEST).write_bytes(doc.encode("latin-1"))
    with pytest.raises(BundleError, match=match):
        Bundle.open(mini)


CASES = [
    (("files",), ["tokenizer.json"], r"'files' must be a JSON object, got list"),
    (("input_size",), "abc", r"'input_size' must be an integer"),
    (("input_size",), 10**12, r"'input_size' must be an integer in \[16, 8192\]"),
    (("input_size",), True, r"'input_size' must be an integer"),
    (("input_size",), 320.0, r"'input_size' must be an integer"),
    (("max_tokens",), 10**12, r"'max_tokens' must be an integer in \[2, 4096\]"),
    (("max_tokens",), 1, r"'max_tokens' must be an integer in"),
    (("max_tokens",), None, r"'max_tokens' must be an integer"),
    (("std",), [0, 0, 0], r"'std\[0\]' must be in"),
    (("std", 1), -0.5, r"'std\[1\]' must be in"),
    (("std",), [0.5, 0.5], r"'std' must list 3 numbers"),
    (("mean",), "0.5", r"'mean' must be a JSON list"),
    (("mean", 2), "x", r"'mean\[2\]' must be a number"),
    (("thresholds", "mask"), 1.5, r"'thresholds.mask' must be in \[0.0, 1.0\]"),
    (("thresholds",), [0.5], r"'thresholds' must be a JSON object"),
    (("dynamic_axes", "expressions"), [1, 4], r"'dynamic_axes.expressions' must be \[min, opt, max\]"),
    (("dynamic_axes", "expressions"), [4, 1, 16], r"min <= opt <= max"),
    (("dynamic_axes", "expressions"), [1, 4, 10**9], r"'dynamic_axes.expressions\[2\]' must be an integer"),
    (("dynamic_axes",), None, r"'dynamic_axes' must be a JSON object"),
    (("graphs",), {"a": 1}, r"'graphs' must be a JSON list"),
    (("graphs", 0), "g.onnx", r"'graphs\[0\]' must be a JSON object"),
    (("graphs", 0, "inputs", 0, "shape"), "abc", r"'graphs\[0\].inputs\[0\].shape' must be a JSON list"),
    (("graphs", 0, "inputs", 0, "shape", 0), -1, r"'graphs\[0\].inputs\[0\].shape\[0\]' must be an integer"),
    (("graphs", 0, "inputs", 0, "shape"), [1] * 9, r"more than the 8 allowed"),
    (("graphs", 0, "inputs", 0, "dtype"), "object", r"'graphs\[0\].inputs\[0\].dtype' must be one of"),
    (("graphs", 0, "inputs"), [1], r"'graphs\[0\].inputs\[0\]' must be a JSON object"),
    (("graphs", 0, "flavour"), "evil", r"'graphs\[0\].flavour' must be one of portable, plugin"),
    (("graphs", 0, "precision"), 3, r"'graphs\[0\].precision' must be one of"),
    (("graphs", 0, "file"), DELETE, r"'graphs\[0\]' lacks file"),
    (("graphs", 0, "weights"), "x", r"'graphs\[0\]' has unknown field\(s\) 'weights'"),
    (("graphs", 0, "custom_ops"), {"ssp::X": "many"}, r"'graphs\[0\].custom_ops.ssp::X' must be an integer"),
    (("engines", 0, "compute_capability"), 8.7, r"'engines\[0\].compute_capability' must be a compute capability"),
    (("engines", 0, "version_compatible"), "yes", r"'engines\[0\].version_compatible' must be true or false"),
    (("engines", 0, "profiles"), {"frames": [1, 2]}, r"'engines\[0\].profiles.frames' must be \[min, opt, max\]"),
    (("vocab_size",), -1, r"'vocab_size' must be an integer"),
    (("vocab_size",), "30522", r"'vocab_size' must be an integer"),
    (("created_by",), {"x": 1}, r"'created_by' must be a string"),
    (("config",), [], r"'config' must be a JSON object"),
    (("source",), "x", r"'source' must be a JSON object"),
    (("input_size",), DELETE, r"lacks the field\(s\) input_size"),
    (("extra_field",), 1, r"unknown field\(s\) 'extra_field'"),
    (("format",), "other/9", r"format 'other/9' is not 'ssp-edge-bundle/1'"),
]


@pytest.mark.parametrize("path, value, match", CASES, ids=[".".join(map(str, c[0])) + f"={c[1]!r}"[:30] for c in CASES])
def test_bad_field_names_the_field(mini, path, value, match):
    write_manifest(mini, _mutate(read_manifest(mini), path, value))
    with pytest.raises(BundleError, match=match):
        Bundle.open(mini)


@pytest.mark.parametrize("literal, field", [("NaN", "mean"), ("Infinity", "std"), ("-Infinity", "thresholds")])
def test_nan_and_infinity_are_refused(mini, literal, field):
    text = (mini / MANIFEST).read_text()
    data = read_manifest(mini)
    if field == "thresholds":
        data["thresholds"]["mask"] = "@@"
    else:
        data[field][0] = "@@"
    text = json.dumps(data).replace('"@@"', literal)
    (mini / MANIFEST).write_text(text)
    with pytest.raises(BundleError, match=f"'{field}[^']*' must be a finite number"):
        Bundle.open(mini)


def test_deeply_nested_config_is_refused(mini):
    deep: object = 1
    for _ in range(60):
        deep = {"a": deep}
    write_manifest(mini, {**read_manifest(mini), "config": deep})
    with pytest.raises(BundleError, match="nested more than 32 levels"):
        Bundle.open(mini)


def test_huge_manifest_is_refused_without_parsing(mini):
    (mini / MANIFEST).write_bytes(b" " * (17 << 20))
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        Bundle.open(mini)


def test_save_refuses_to_write_a_manifest_that_would_not_open(mini):
    b = Bundle.open(mini)
    b.manifest.input_size = 10**12
    with pytest.raises(BundleError, match="input_size"):
        b.save()
    assert Bundle.open(mini).manifest.input_size == 320  # the file on disk is unchanged


# ------------------------------------------------------------------------------------------- fuzzing
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["../x", "/etc/passwd", "g.onnx", "sub/t.onnx", "a/../b", "C:/x"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


def _paths(d: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, prefix + (i,))
    return out


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    root = make_bundle(tmp_path_factory.mktemp("fuzz") / "bundle")
    return root, read_manifest(root)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_manifests_open_or_raise_bundle_error(fuzz_root, data):
    root, good = fuzz_root
    doc = copy.deepcopy(good)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = _paths(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        value = data.draw(_json | st.just(DELETE), label="value")
        doc = _mutate(doc, path, value)
    (root / MANIFEST).write_text(json.dumps(doc, allow_nan=True))
    try:
        b = Bundle.open(root)
    except BundleError as e:
        assert str(e) and "\n" not in str(e)
        return
    m = b.manifest  # opened: then it is a well-typed manifest
    assert isinstance(m.input_size, int) and 16 <= m.input_size <= 8192
    assert all(isinstance(x, float) and x > 0 for x in m.std)
    assert isinstance(m.files, dict) and all(not k.startswith("/") and ".." not in k.split("/") for k in m.files)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_fuzzed_manifest_bytes_raise_bundle_error(fuzz_root, blob):
    root, _ = fuzz_root
    (root / MANIFEST).write_bytes(blob)
    with pytest.raises(BundleError):
        Bundle.open(root)
