"""The fast whitened convnet teacher and the parts of its recipe the trainer gained for it (Nesterov SGD with
decoupled decay, linear decay, lookahead, test-time augmentation)."""

from pathlib import Path

import pytest
import torch

from titn_core.data import load_arrays, normalize
from titn_core.lookahead import Lookahead
from titn_core.metrics import forward_tta
from titn_core.optim import lr_lambda, make_optimizer
from titn_core.profiles import build_config
from titn_core.teachers import build_teacher
from titn_core.trainer import train


def test_whitening_layer_decorrelates_the_training_patches(data_dir):
    images = normalize(load_arrays("cifar10", data_dir).x_train[:2000], "cifar10")
    net = build_teacher("fastcnn", 3, 10)
    net.init_from_data(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, net.whiten.weight[:12].contiguous())  # the positive half
    channels = out.transpose(0, 1).reshape(12, -1)
    cov = channels @ channels.T / channels.shape[1]
    off_diagonal = cov - torch.diag(cov.diag())
    assert off_diagonal.abs().max() < 0.01, "the whitened channels are uncorrelated"
    assert torch.allclose(cov.diag()[:6], torch.ones(6), atol=0.01), "and of unit variance where the data varies"
    assert (cov.diag() <= 1.0).all(), "the weakest directions are damped by eps, never amplified past 1"


@pytest.mark.parametrize("name, channels, size", [("fastcnn", 3, 32), ("fastcnn-wide", 3, 32), ("fastcnn", 1, 28)])
def test_fastcnn_exposes_stages_for_feature_distillation(name, channels, size):
    net = build_teacher(name, channels, 100)
    feats = net.forward_features(torch.randn(2, channels, size, size))
    assert list(feats) == net.stage_names == ["layer1", "layer2", "layer3"]
    assert [f.shape[1] for f in feats.values()] == list(net.stage_channels.values())
    assert net(torch.randn(2, channels, size, size)).shape == (2, 100)


def test_whitening_bias_learns_only_in_the_first_epochs():
    net = build_teacher("fastcnn", 3, 10)
    net.start_epoch(0)
    assert net.whiten.bias.requires_grad and not net.whiten.weight.requires_grad
    net.start_epoch(3)
    assert not net.whiten.bias.requires_grad


def test_sgd_decay_is_decoupled_from_each_groups_learning_rate():
    cfg = build_config("cifar10", "cpu", kind="teacher", teacher="fastcnn")
    net = build_teacher("fastcnn", 3, 10)
    groups = make_optimizer(list(net.named_parameters()), cfg).param_groups
    assert [g["lr"] for g in groups] == [1.5, 1.5 * 64]
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(0.002) for g in groups)
    assert all(g["nesterov"] and g["momentum"] == 0.85 for g in groups)
    norm_biases = {id(p) for n, p in net.named_parameters() if "norm" in n and n.endswith("bias")}
    assert {id(p) for p in groups[1]["params"]} == norm_biases


def test_linear_schedule_peaks_after_warm_up_and_ends_at_the_floor():
    cfg = build_config("cifar10", "cpu", kind="teacher", teacher="fastcnn")
    factor, steps = lr_lambda(cfg, 10), cfg.train.epochs * 10
    peak = round(cfg.train.warmup_epochs * 10)
    assert factor(peak) == pytest.approx(1.0) and factor(steps) == pytest.approx(0.07)
    assert factor(peak + (steps - peak) // 2) == pytest.approx(0.07 + 0.93 * 0.5, abs=0.01)


def test_lookahead_pulls_harder_late_and_ends_on_the_slow_copy():
    net = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ahead = Lookahead(net, every=5, total_steps=100)
    assert ahead.decay(0) == 0 and ahead.decay(50) < ahead.decay(100) == pytest.approx(0.95**5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ahead.update(net, 0.75)
    assert torch.allclose(net.weight, torch.full((1, 2), 0.25)), "slow copy moved a quarter of the way, net reset"
    with torch.no_grad():
        net.weight.fill_(9.0)
    ahead.finish(net)
    assert torch.allclose(net.weight, torch.full((1, 2), 0.25))


def test_tta_views_are_averaged_and_a_mirror_symmetric_model_is_unchanged_by_flip():
    class RowSum(torch.nn.Module):  # ignores left-right order, so mirroring cannot change it
        def forward(self, x):
            return x.sum(dim=(1, 3))

    x = torch.randn(3, 1, 4, 4)
    assert torch.allclose(forward_tta(RowSum(), x, "flip"), RowSum()(x))
    assert forward_tta(RowSum(), x, "flip+shift").shape == (3, 4)


def test_shift_tta_averages_the_image_and_two_shifts_and_never_the_mirror():
    class Recorder(torch.nn.Module):  # remembers every view it is shown
        def __init__(self):
            super().__init__()
            self.views = []

        def forward(self, x):
            self.views.append(x)
            return x.sum(dim=(1, 2, 3)).unsqueeze(1)

    x, model = torch.randn(2, 1, 5, 5), Recorder()
    forward_tta(model, x, "shift")
    assert len(model.views) == 3 and any(torch.equal(view, x) for view in model.views)
    assert not any(torch.equal(view, x.flip(-1)) for view in model.views), "no mirrored view"
    assert len(forward_tta(Recorder(), x, "flip+shift").shape) == 2
    flat = torch.ones(2, 1, 5, 5)
    assert torch.allclose(forward_tta(Recorder(), flat, "shift"), Recorder()(flat)), "the weights sum to one"


def test_fastcnn_on_digits_trains_and_scores_without_the_mirror():
    mnist = build_config("mnist", "cpu", kind="teacher", teacher="fastcnn")
    cifar = build_config("cifar10", "cpu", kind="teacher", teacher="fastcnn")
    assert (mnist.data.flip, mnist.train.tta) == (False, "shift"), "a mirrored digit can be another class"
    assert (cifar.data.flip, cifar.train.tta) == (True, "flip+shift")
    assert (mnist.train.select, cifar.train.select) == ("last", "val"), "CIFAR's committed teachers keep their ids"
    assert mnist.train.optimizer == cifar.train.optimizer == "sgd", "otherwise airbench's recipe"


def test_fastcnn_recipe_resumes_to_identical_metrics_and_reports_tta(smoke_config):
    over = {"train.epochs": 2, "data.train_subset": 1024, "data.val_size": 256, "data.test_subset": 256}
    whole = train(smoke_config("cifar10", kind="teacher", teacher="fastcnn", overrides=over))
    cfg = smoke_config("cifar10", kind="teacher", teacher="fastcnn", overrides=over)
    cfg.results_dir, cfg.checkpoint_dir = cfg.results_dir + "-2", cfg.checkpoint_dir + "-2"
    assert not train(cfg, stop_after=1).complete
    resumed = train(cfg, resume=True)
    for key in ("test_top1", "test_top5", "val_top1", "test_top1_tta"):
        assert resumed.metrics[key] == whole.metrics[key], key
    assert whole.metrics["tta"] == "flip+shift" and 0 <= whole.metrics["test_top1_tta"] <= 100


def test_fastcnn_warm_up_is_a_share_of_the_epochs_actually_trained():
    recipe = build_config("cifar10", "cpu", kind="teacher", overrides={"train.amp": "bf16"})  # as committed
    shorter = build_config("cifar10", "cpu", kind="teacher", overrides={"train.epochs": 8})
    assert shorter.train.warmup_epochs / 8 == recipe.train.warmup_epochs / recipe.train.epochs == 0.23
    fixed = build_config("cifar10", "cpu", kind="teacher", overrides={"train.epochs": 8, "train.warmup_epochs": 1})
    assert fixed.train.warmup_epochs == 1, "an explicit warm-up wins"
    (committed,) = Path("results").glob("teacher-cifar10-fastcnn-cpu-s0-*")
    assert committed.name.endswith(recipe.hash()[:8]), "the recipe's committed run keeps its hash"
