"""The shipped shapes model: accuracy on unseen scenes, recorded seeds, folding, training entry."""

import json

import torch

import clrp_widgets as cw
from clrp_widgets.models import train_shapes
from clrp_widgets.models.loaders import SHAPES_WEIGHTS
from clrp_widgets.models.shapes_net import ShapesNet, fold_batch_norm

UNSEEN_SEED = 31_337  # below train_shapes.TRAIN_SEED0, so never used in training


def test_exact_match_on_unseen_scenes():
    bundle = cw.load_model("shapes")
    data = cw.scenes(400, seed=UNSEEN_SEED)
    acc = train_shapes.exact_match(bundle.model, data.tensor(), data.label_tensor())
    assert acc >= 0.95, f"exact-match {acc:.3f} on 400 unseen scenes"


def test_training_seeds_are_recorded_and_disjoint_from_evaluation():
    meta = torch.load(SHAPES_WEIGHTS, weights_only=True)["meta"]
    summary = json.loads(SHAPES_WEIGHTS.with_suffix(".json").read_text())
    assert summary == meta
    first, last = meta["train_seed_first"], meta["train_seed_last"]
    assert first == train_shapes.TRAIN_SEED0 and last >= first
    for seed in (meta["eval_seed"], UNSEEN_SEED, train_shapes.VAL_SEED):
        assert not first <= seed <= last
    assert meta["eval_exact_match"] >= 0.97 and meta["eval_n"] == 2000
    assert meta["class_names"] == list(cw.scenes(1).class_names)


def test_fold_batch_norm_keeps_the_function():
    torch.manual_seed(0)
    trained = ShapesNet(batch_norm=True)
    for m in trained.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    trained.eval()
    plain = fold_batch_norm(trained)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(trained(x), plain(x), atol=1e-5)


def test_training_entry_point_writes_loadable_weights(tmp_path):
    out = tmp_path / "shapes.pt"
    train_shapes.main(["--steps", "2", "--batch", "8", "--eval-n", "20", "--out", str(out)])
    bundle = cw.load_model("shapes", weights_path=out)
    assert bundle.model(torch.rand(1, 3, 64, 64)).shape == (1, 8)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps"] == 2 and meta["train_seed_last"] == train_shapes.TRAIN_SEED0
