"""Shared state (issue 10): one lock per model, results that never alias the cache, weight edits
through ``.data``, one-logit models, and the functional API's per-model engine memo."""

from __future__ import annotations

import gc
import threading
import warnings
import weakref

import pytest
import torch
from engine_nets import make_cnn, make_input, snapshot

import clrp_widgets as cw
from clrp_widgets.engine import RelevanceEngine
from clrp_widgets.engine.baselines import baseline
from clrp_widgets.engine.errors import ConfigError
from clrp_widgets.explainer import Explainer

BOUNDS = (0.0, 1.0)


def _run_threads(jobs: list, n_threads: int = 4) -> list:
    """Run the callables ``jobs`` from ``n_threads`` threads at once; results in order."""
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(offset: int) -> None:
        start.wait()
        for i in range(offset, len(jobs), n_threads):
            try:
                results[i] = jobs[i]()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("train", [False, True])
def test_threads_share_one_model(train: bool) -> None:
    model = make_cnn()
    model.train(train)
    flags = [m.training for m in model.modules()]
    before = snapshot(model)
    x = make_input()
    explainer = Explainer(model, input_bounds=BOUNDS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_clrp = {t: cw.clrp(model, x, t, input_bounds=BOUNDS) for t in range(3)}
        ref_tree = explainer.explain(x, 1)["input"].heatmap.values.copy()
        ref_grad = baseline(model, x, 2, "gradient")
        ref_probs = explainer.predict(x).values.copy()

    jobs = []
    for i in range(24):  # 4 threads x 6 calls of each kind
        t = i % 3
        jobs.append(("clrp", t, lambda t=t: cw.clrp(model, x, t, input_bounds=BOUNDS)))
        jobs.append(("explain", 1, lambda: explainer.explain(x, 1)["input"].heatmap.values))
        jobs.append(("baseline", 2, lambda: baseline(model, x, 2, "gradient")))
        jobs.append(("predict", 0, lambda: explainer.predict(x).values))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = _run_threads([job[2] for job in jobs])
    for (kind, t, _), got in zip(jobs, results, strict=True):
        if kind == "clrp":
            torch.testing.assert_close(got, ref_clrp[t], rtol=0, atol=0)
        elif kind == "explain":
            assert (got == ref_tree).all()
        elif kind == "baseline":
            torch.testing.assert_close(got, ref_grad, rtol=0, atol=0)
        else:
            assert (got == ref_probs).all()
    assert [m.training for m in model.modules()] == flags
    assert snapshot(model)["state"].keys() == before["state"].keys()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_one_lock_per_model_and_no_leak() -> None:
    from clrp_widgets.engine.locking import model_lock

    model = make_cnn()
    engine = RelevanceEngine(model, input_bounds=BOUNDS)
    other = RelevanceEngine(model, rules="epsilon", input_bounds=BOUNDS)
    assert engine._lock is other._lock is model_lock(model)
    assert model_lock(make_cnn()) is not model_lock(model)
    cw.clrp(model, make_input(), 1, input_bounds=BOUNDS)
    cw.lrp(model, make_input(), 1, input_bounds=BOUNDS)
    ref = weakref.ref(model)
    del model, engine, other
    gc.collect()
    assert ref() is None


def test_returned_tree_does_not_alias_the_cache() -> None:
    model, x = make_cnn(), make_input()
    explainer = Explainer(model, input_bounds=BOUNDS)
    first = explainer.explain(x, 1)
    logits = first["logits"].values.copy()
    heat = first["input"].heatmap.values.copy()
    first["logits"].values[...] = 0
    act = first["layers/3"].activation.values
    act /= act.max()
    act[...] = -1
    second = explainer.explain(x, 1)
    assert (second["logits"].values == logits).all()
    assert (second["input"].heatmap.values == heat).all()
    assert (second["layers/3"].activation.values != -1).any()


def test_engine_output_does_not_alias_the_cache() -> None:
    model, x = make_cnn(), make_input()
    engine = RelevanceEngine(model, input_bounds=BOUNDS)
    out = engine.run(x, 1, capture="all")
    ref = engine.run(x, 1, capture="all")
    out.logits.zero_()
    for capture in out.layers.values():
        capture.activation.fill_(7.0)
    again = engine.run(x, 1, capture="all")
    torch.testing.assert_close(again.logits, ref.logits, rtol=0, atol=0)
    torch.testing.assert_close(again.input, ref.input, rtol=0, atol=0)
    for name, capture in again.layers.items():
        torch.testing.assert_close(capture.activation, ref.layers[name].activation)


@pytest.mark.parametrize("kept", [True, False])
def test_weight_edit_through_data_is_seen(kept: bool) -> None:
    model, x = make_cnn(), make_input()
    engine = RelevanceEngine(model, input_bounds=BOUNDS)
    explain = (
        (lambda: engine.run(x, 1).input[0])
        if kept
        else (lambda: cw.clrp(model, x, 1, input_bounds=BOUNDS))
    )
    explain()
    model[3].weight.data.mul_(-0.5)  # no version-counter bump, same storage
    fresh = RelevanceEngine(make_cnn(), input_bounds=BOUNDS)
    fresh.model.load_state_dict(model.state_dict())
    torch.testing.assert_close(explain().clamp(min=0), fresh.run(x, 1).input[0].clamp(min=0))


def _one_logit() -> torch.nn.Module:
    return make_cnn(classes=1)


@pytest.mark.parametrize("variant", ["clrp1", "sglrp"])
def test_one_logit_contrasts_that_need_other_classes_refuse(variant: str) -> None:
    with pytest.raises(ConfigError, match=r"one logit.*clrp2"):
        cw.clrp(_one_logit(), make_input(), 0, variant=variant, input_bounds=BOUNDS)
    with pytest.raises(ConfigError, match="one logit"):
        Explainer(_one_logit(), input_bounds=BOUNDS).explain(make_input(), 0, variant)


def test_one_logit_lrp_and_clrp2_are_defined() -> None:
    model, x = _one_logit(), make_input()
    engine = RelevanceEngine(model, input_bounds=BOUNDS)
    out = engine.run(x, 0, "clrp2", kinds=("target", "dual", "contrast"))
    assert torch.isfinite(out.input).all()
    assert out.input[2].abs().sum() > 0
    assert torch.isfinite(cw.lrp(model, x, 0, input_bounds=BOUNDS)).all()


def test_functional_memo_reuses_one_engine_and_keeps_no_forward_pass() -> None:
    from clrp_widgets.engine.memo import memo_engine

    model, x = make_cnn(), make_input()
    a = memo_engine(model, "paper", BOUNDS, "auto")
    assert memo_engine(model, "paper", (0, 1), "auto") is a
    assert memo_engine(model, "epsilon", BOUNDS, "auto") is not a
    assert memo_engine(model, "paper", (0.0, 2.0), "auto") is not a
    assert memo_engine(model, "paper", BOUNDS, None) is not a
    cw.clrp(model, x, 1, input_bounds=BOUNDS)
    assert a._cache is None and not a.keep_denominators
    assert a._prepared  # the modified weights are what is kept
    with torch.no_grad():
        model[0].weight.mul_(-1)
    other = make_cnn()
    other.load_state_dict(model.state_dict())
    want = RelevanceEngine(other, input_bounds=BOUNDS).run(x, 1).input[0].clamp(min=0)
    torch.testing.assert_close(cw.clrp(model, x, 1, input_bounds=BOUNDS), want)
    ref = weakref.ref(model)
    del model, a
    gc.collect()
    assert ref() is None
