"""Leak checks for RefShapes v2 (issue 19, Build 3): the text alone must not tell whether an expression names
something in the image.

* A text-only baseline (bag of words and word pairs + logistic regression, no image) trained on the v2 train
  expressions (as training draws them: several per scene) predicts "target present" on a balanced v2 test
  sample at <= 0.60 accuracy, overall and per type. A positive control plants one leaking word and checks
  that the same baseline finds it (so the bound is not met by a baseline that cannot learn).
* Per type, the phrasing carries no label. The *skeleton* of an expression masks each run of colour / size /
  shape words as one "_"; its *template* also masks direction words (left, topmost, ...) and spells ordinals
  one way ("2nd" -> "second"). P(target | template) lies within the band ``max(0.12, 3.5 * sd)`` around the
  base rate for the majority template and every other template with >= 60 samples (sd: the binomial
  standard deviation at that count), and a chi-square test of independence of the finer skeleton and the
  label (skeletons with < 10 samples pooled) does not reject at p = 0.001.

Only the texts are generated (no rendering), so thousands of expressions take seconds.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from ssp_edge.ssp.data.refshapes import COLOURS, SHAPES
from ssp_edge.ssp.data.refshapes2 import TYPES, RefShapes2

MAX_TEXT_ONLY_ACC = 0.60
RATE = 0.5  # the balanced test sample

_CONTENT = (
    set(COLOURS)
    | {"small", "little", "tiny", "big", "large"}
    | set(SHAPES)
    | {s + "s" for s in SHAPES}
    | {"box", "boxes", "disc", "discs", "round", "shape", "shapes", "object", "objects", "one", "ones"}
)


def skeleton(text: str) -> str:
    """The phrasing of an expression with each run of colour / size / shape words masked as one "_"."""
    words = ["_" if w in _CONTENT else w for w in re.findall(r"[a-z0-9]+", text.lower())]
    return " ".join(w for i, w in enumerate(words) if not (w == "_" and i and words[i - 1] == "_"))


_DIRECTION_WORDS = {
    "left",
    "right",
    "top",
    "bottom",
    "leftmost",
    "rightmost",
    "topmost",
    "bottommost",
    "highest",
    "lowest",
}
_ORDINAL_SPELLING = {"1st": "first", "2nd": "second", "3rd": "third"}


def template(text: str) -> str:
    """The skeleton with direction words masked as "D" and ordinals spelled one way."""
    return " ".join("D" if w in _DIRECTION_WORDS else _ORDINAL_SPELLING.get(w, w) for w in skeleton(text).split())


@pytest.fixture(scope="module")
def train_texts() -> list[tuple[str, str, bool]]:
    ds = RefShapes2("train")  # the training distribution (default no-target rate), 8 expressions per scene
    return [(e.text, e.type, bool(e.targets)) for i in range(500) for e in ds.scene_expressions(i, 8)]


@pytest.fixture(scope="module")
def test_texts() -> list[tuple[str, str, bool]]:
    ds = RefShapes2("test", no_target_rate=RATE)
    out = [(e.text, e.type, bool(e.targets)) for e in (ds.text_sample(i) for i in range(4000))]
    pos, neg = [x for x in out if x[2]], [x for x in out if not x[2]]
    n = min(len(pos), len(neg))
    return pos[:n] + neg[:n]  # exactly balanced


def _baseline(train: list[tuple[str, str, bool]]):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = CountVectorizer(ngram_range=(1, 2), token_pattern=r"[a-z0-9]+")
    x = vec.fit_transform([t for t, _, _ in train])
    # class_weight: the training distribution has fewer no-target expressions; a baseline that only learns the
    # majority class would pass the bound vacuously
    clf = LogisticRegression(max_iter=3000, class_weight="balanced").fit(x, [y for _, _, y in train])
    return lambda texts: clf.predict(vec.transform(texts))


def test_text_only_baseline_cannot_tell_whether_a_target_exists(train_texts, test_texts):
    predict = _baseline(train_texts)
    pred = predict([t for t, _, _ in test_texts])
    y = np.array([y for _, _, y in test_texts])
    acc = float((pred == y).mean())
    assert len(test_texts) >= 3600 and abs(y.mean() - 0.5) < 1e-9
    assert acc <= MAX_TEXT_ONLY_ACC, acc
    by_type = {
        t: float((pred[m] == y[m]).mean())
        for t in TYPES
        if (m := np.array([typ == t for _, typ, _ in test_texts])).sum() >= 250
    }
    assert set(by_type) == set(TYPES), by_type
    assert max(by_type.values()) <= MAX_TEXT_ONLY_ACC + 0.02, by_type


def test_the_baseline_finds_a_planted_leak(train_texts, test_texts):
    """Positive control: 'please' added to half the no-target expressions is enough for the same baseline to
    exceed the bound clearly (a perfect reader of the planted word reaches 0.75)."""
    rng = np.random.default_rng(0)

    def plant(xs):
        return [(("please " + t) if (not y and rng.random() < 0.5) else t, typ, y) for t, typ, y in xs]

    leaky_train, leaky_test = plant(train_texts), plant(test_texts)
    pred = _baseline(leaky_train)([t for t, _, _ in leaky_test])
    acc = float((pred == np.array([y for _, _, y in leaky_test])).mean())
    assert acc >= 0.7, acc


@pytest.mark.parametrize("which", ["test", "train"])
def test_no_phrasing_skeleton_carries_the_label(which, train_texts, test_texts):
    from scipy.stats import chi2

    texts = test_texts if which == "test" else train_texts
    base = float(np.mean([y for _, _, y in texts]))
    for typ in TYPES:
        # the majority template and every frequent one: P(target | template) near the base rate
        tmpl = Counter((template(t), y) for t, ty, y in texts if ty == typ)
        n_t = Counter()
        for (tp, _), n in tmpl.items():
            n_t[tp] += n
        majority, n_major = n_t.most_common(1)[0]
        assert n_major >= 30, (typ, n_t.most_common(3))
        for tp, n in n_t.items():
            if tp == majority or n >= 60:
                p = tmpl[(tp, True)] / n
                band = max(0.12, 3.5 * math.sqrt(base * (1 - base) / n))
                assert abs(p - base) <= band, (which, typ, tp, n, p, base)
        # chi-square independence of the finer skeleton and the label (rare skeletons pooled)
        counts = Counter((skeleton(t), y) for t, ty, y in texts if ty == typ)
        n_by = Counter()
        for (sk, _), n in counts.items():
            n_by[sk] += n
        rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for (sk, y), n in counts.items():
            rows[sk if n_by[sk] >= 10 else "(rare)"][int(y)] += n
        table = np.array(list(rows.values()), np.float64)
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        stat = float(((table - expected) ** 2 / expected).sum())
        df = (len(table) - 1) * (table.shape[1] - 1)
        assert df >= 3 and stat <= chi2.ppf(0.999, df), (which, typ, stat, df, chi2.ppf(0.999, df))
