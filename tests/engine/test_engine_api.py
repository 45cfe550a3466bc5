"""RelevanceEngine's internal API: shapes, kinds, capture, caching, neurons, conditional maps."""

from __future__ import annotations

import pytest
import torch
import torchvision
from engine_nets import make_cnn, make_input

import clrp_widgets as cw
from clrp_widgets.engine import EngineOutput, LayerCapture, RelevanceEngine
from clrp_widgets.engine.rules import LinearRule, ZPlus

B = (0.0, 1.0)


class CountingModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = make_cnn()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def test_output_fields_and_kind_order(cnn, x):
    engine = RelevanceEngine(cnn, input_bounds=B)
    out = engine.run(x, [1, 2], "clrp1", kinds=("contrast", "target"), capture=["8", "0"])
    assert isinstance(out, EngineOutput)
    assert out.kinds == ("contrast", "target")
    assert out.input.shape == (2, 2, 3, 16, 16)
    assert out.logits.shape == (2, 6) and not out.logits.requires_grad
    assert out.targets.tolist() == [1, 2] and out.targets.dtype == torch.long
    assert list(out.layers) == ["8", "0"]
    assert isinstance(out.layers["0"], LayerCapture)
    assert out.layers["0"].relevance.shape == (2, 2, 8, 16, 16)
    assert out.layers["0"].activation.shape == (2, 8, 16, 16)
    assert out.seed_sums.shape == (2, 2)
    assert not out.input.requires_grad
    torch.testing.assert_close(out.seed_sums[1], out.logits[[0, 1], [1, 2]])
    target = engine.run(x, [1, 2], "lrp").input[0]
    torch.testing.assert_close(out.input[1], target)


def test_layer_names_forward_order_and_capture_all(cnn, x):
    engine = RelevanceEngine(cnn, input_bounds=B)
    assert engine.layer_names() == ["0", "2", "3", "5", "6", "8", "11"]
    out = engine.run(x, 0, capture="all")
    assert list(out.layers) == engine.layer_names()


def test_forward_pass_is_cached_per_input_content():
    model = CountingModel().eval()
    engine = RelevanceEngine(model, input_bounds=B)
    x = make_input(1)
    first = engine.run(x, 0, "clrp1")
    engine.run(x, 3, "clrp2", kinds=("target", "dual"))
    engine.neuron(x, "body.3", 1)
    engine.conditional(x, 0, "body.3", [0])
    assert model.calls == 1
    same = engine.run(x.clone(), 0, "clrp1")
    assert model.calls == 1
    torch.testing.assert_close(same.input, first.input)
    x[0, 0, 0, 0] = 0.5  # in-place change of the content
    engine.run(x, 0)
    assert model.calls == 2
    engine.clear_cache()
    engine.run(x, 0)
    assert model.calls == 3


def test_weight_change_invalidates_caches():
    model = make_cnn(bias=True)
    engine = RelevanceEngine(model, input_bounds=B)
    x = make_input(1)
    engine.run(x, 0)
    with torch.no_grad():
        model[0].weight.mul_(-1.0)
        model[8].bias.add_(0.3)
    fresh = RelevanceEngine(model, input_bounds=B).run(x, 0, capture="all")
    again = engine.run(x, 0, capture="all")
    torch.testing.assert_close(again.input, fresh.input)
    torch.testing.assert_close(again.logits, fresh.logits)


def test_neuron_seeds_and_conservation():
    model = make_cnn(bias=False, seed=5)
    x = make_input(2, seed=6)
    engine = RelevanceEngine(model, input_bounds=B)
    out = engine.neuron(x, "3", 4, capture="all")
    assert out.kinds == ("target", "dual", "contrast")
    assert list(out.layers) == ["0", "2", "3"]
    act = out.layers["3"].activation
    total = act[:, 4].sum((1, 2))
    torch.testing.assert_close(out.seed_sums[0], total)
    torch.testing.assert_close(out.seed_sums[1], total)
    rel = out.layers["3"].relevance
    torch.testing.assert_close(rel[0][:, 4], act[:, 4])
    assert bool((rel[0][:, :4] == 0).all()) and bool((rel[1][:, 4] == 0).all())
    dual_per_channel = rel[1].sum((2, 3))
    others = torch.cat([dual_per_channel[:, :4], dual_per_channel[:, 5:]], 1)
    torch.testing.assert_close(others, (total / 11)[:, None].expand_as(others))
    for maps in (out.input, out.layers["0"].relevance):
        torch.testing.assert_close(maps.flatten(2).sum(2), out.seed_sums, rtol=1e-4, atol=1e-6)
    assert out.targets.tolist() == [4, 4]


def test_neuron_pairwise_and_plain():
    model = make_cnn(bias=False, seed=5)
    x = make_input(1, seed=6)
    engine = RelevanceEngine(model, input_bounds=B)
    pair = engine.neuron(x, "3", 4, contrast=7)
    act = engine.neuron(x, "3", 4, contrast=None, capture=["3"]).layers["3"].activation
    torch.testing.assert_close(pair.seed_sums[1], act[:, 4].sum((1, 2)))
    plain = engine.neuron(x, "3", 4, contrast=None)
    assert plain.kinds == ("target",)
    torch.testing.assert_close(plain.input[0], pair.input[0])


def test_conditional_maps_sum_to_the_decision_map():
    model = make_cnn(bias=False, seed=8)
    x = make_input(2, seed=9)
    engine = RelevanceEngine(model, input_bounds=B)
    maps = engine.conditional(x, [1, 3], "3", list(range(12)), contrast="clrp1")
    assert maps.shape == (12, 2, 3, 16, 16)
    decision = engine.run(x, [1, 3], "clrp1").input[0]
    torch.testing.assert_close(maps.sum(0), decision, rtol=1e-4, atol=1e-6 * decision.abs().max())
    two = engine.conditional(x, [1, 3], "3", [5, 2])
    torch.testing.assert_close(two, maps[[5, 2]])
    at_layer = engine.run(x, [1, 3], "clrp1", capture=["3"]).layers["3"].relevance[0]
    torch.testing.assert_close(
        maps[2].flatten(1).sum(1), at_layer[:, 2].flatten(1).sum(1), rtol=1e-4, atol=1e-6
    )


def test_functional_api_matches_engine(cnn, x):
    engine = RelevanceEngine(cnn, input_bounds=B)
    lrp = cw.lrp(cnn, x, [0, 1], input_bounds=B)
    assert lrp.shape == x.shape
    torch.testing.assert_close(lrp, engine.run(x, [0, 1], "lrp").input[0])
    for variant in ("clrp1", "clrp2", "sglrp", 5):
        got = cw.clrp(cnn, x, [0, 1], variant=variant, input_bounds=B)
        want = engine.run(x, [0, 1], variant).input[0].clamp(min=0)
        assert got.shape == x.shape and bool((got >= 0).all())
        torch.testing.assert_close(got, want)


def test_float64_model_and_input():
    model = make_cnn().double()
    x = make_input(1).double()
    out = cw.clrp(model, x, 0, input_bounds=B)
    assert out.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = make_cnn(bias=True)
    x = make_input(2)
    engine = RelevanceEngine(model, input_bounds=B)
    cpu = engine.run(x, 1, "clrp2", kinds=("target", "dual", "contrast"), capture="all")
    gpu_engine = RelevanceEngine(make_cnn(bias=True).cuda(), input_bounds=B)
    gpu = gpu_engine.run(x.cuda(), 1, "clrp2", kinds=("target", "dual", "contrast"), capture="all")
    assert gpu.input.is_cuda
    torch.testing.assert_close(gpu.input.cpu(), cpu.input, rtol=1e-4, atol=1e-5)
    maps = gpu_engine.conditional(x.cuda(), 1, "3", [0, 1])
    assert maps.is_cuda


def test_conditional_batched_passes_equal_one_pass_per_channel():
    torch.manual_seed(12)
    model = torchvision.models.resnet18(num_classes=5).eval()
    x = torch.rand(2, 3, 32, 32)
    engine = RelevanceEngine(model, input_bounds=B)
    chans = [0, 3, 7, 9, 2]
    batched = engine.conditional(x, [1, 2], "layer3.1.conv2", chans, contrast="clrp2", chunk=3)
    single = torch.cat(
        [engine.conditional(x, [1, 2], "layer3.1.conv2", [c], "clrp2", chunk=1) for c in chans]
    )
    assert batched.shape == (5, 2, 3, 32, 32)
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-7)


def test_concurrent_calls_from_threads_agree_with_serial_calls(cnn):
    from concurrent.futures import ThreadPoolExecutor

    engine = RelevanceEngine(cnn, input_bounds=B)
    inputs = [make_input(1, seed=s) for s in range(6)]
    serial = [RelevanceEngine(cnn, input_bounds=B).run(x, 2).input for x in inputs]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda x: engine.run(x, 2).input, inputs))
    for a, b in zip(serial, threaded, strict=True):
        torch.testing.assert_close(a, b)
    assert all(len(m._forward_hooks) == 0 for m in cnn.modules())


def test_modified_weights_are_computed_once_per_engine(cnn):
    engine = RelevanceEngine(cnn, input_bounds=B)
    engine.run(make_input(1, seed=1), 0)
    first = {k: v["wp"] for k, v in engine._prepared.items()}
    engine.run(make_input(2, seed=2), 3, "clrp2", kinds=("target", "dual"))
    engine.neuron(make_input(1, seed=3), "3", 0)
    assert {k: v["wp"] for k, v in engine._prepared.items()} == first  # the same tensors
    assert all(engine._prepared[k]["wp"] is w for k, w in first.items())


def test_custom_mapping_equal_to_paper_preset(cnn, x):
    from clrp_widgets.engine import Norm, ZBox, ZPlus

    rules = {
        "0": ZBox(0.0, 1.0, eps=1e-9),
        torch.nn.Conv2d: ZPlus(),
        torch.nn.Linear: ZPlus(),
        torch.nn.AdaptiveAvgPool2d: Norm(eps=1e-9, pass_identity=True),
    }
    custom = RelevanceEngine(cnn, rules=rules).run(x, [0, 4], "clrp1", capture="all")
    paper = RelevanceEngine(cnn, input_bounds=B).run(x, [0, 4], "clrp1", capture="all")
    torch.testing.assert_close(custom.input, paper.input, rtol=0, atol=0)


class CountingZPlus(ZPlus):
    """z+ that counts how often its per-input denominators are made."""

    made = 0

    def state(self, op, a, out, p):
        type(self).made += 1
        return super().state(op, a, out, p)


@pytest.mark.parametrize("keep", [True, False])
def test_denominators_kept_only_when_asked_and_maps_unchanged(cnn, x, keep):
    reference = RelevanceEngine(cnn, input_bounds=B)
    engine = RelevanceEngine(cnn, input_bounds=B, keep_denominators=keep)
    calls = [
        lambda e: e.run(x, 1, "clrp1", capture="all").input,
        lambda e: e.run(x, 1, "clrp2", kinds=("target", "dual", "contrast")).input,
        lambda e: e.neuron(x, "3", 2).input,
        lambda e: e.conditional(x, 1, "3", [0, 2, 4]),
    ]
    for call in calls:
        torch.testing.assert_close(call(engine), call(reference), rtol=0, atol=0)
        states = [n.state for n in engine._cache.nodes if isinstance(n.rule, LinearRule)]
        assert all(states) if keep else not any(states)


def test_one_pass_makes_denominators_once_per_pass_and_two_kinds_share_them(cnn, x):
    rules = {torch.nn.Conv2d: CountingZPlus(), torch.nn.Linear: CountingZPlus()}
    layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in cnn.modules())
    kept = RelevanceEngine(cnn, rules=rules, input_bounds=B)
    dropped = RelevanceEngine(cnn, rules=rules, input_bounds=B, keep_denominators=False)
    CountingZPlus.made = 0
    kept.run(x, 1, "clrp1")
    kept.run(x, 2, "clrp1")  # the same input: backward only, denominators reused
    assert CountingZPlus.made == layers
    CountingZPlus.made = 0
    dropped.run(x, 1, "clrp1", kinds=("target", "dual"))  # two passes share one set
    dropped.run(x, 2, "clrp1")  # dropped after the call: made again
    assert CountingZPlus.made == 2 * layers
