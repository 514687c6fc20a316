"""End-to-end training on real MNIST (smoke profile): learning, outputs, caching, resume, distillation."""

import json

import pandas as pd
import torch
import torch.nn.functional as F

from titn_core.config import build_config
from titn_core.data import load_arrays, normalize
from titn_core.trainer import build_model, evaluate_checkpoint, train


def test_overfits_a_64_image_batch(data_dir):
    arrays = load_arrays("mnist", data_dir)
    x, y = normalize(arrays.x_train[:64], "mnist"), arrays.y_train[:64]
    torch.manual_seed(0)
    model = build_model(build_config("mnist", "smoke"))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(300):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean().item() == 1.0


def test_smoke_run_learns_and_writes_complete_results(smoke_config):
    cfg = smoke_config()
    result = train(cfg)
    m = result.metrics
    assert m["test_top1"] > 50.0, "10% is chance; the smoke run should be far above it"
    assert m["data_variant"] == "MNIST (exact)"
    assert m["config_hash"] == cfg.hash()
    assert m["params"] > 0 and m["flops"] > 0 and m["train_images_per_s"] > 0
    assert m["environment"]["torch"] == torch.__version__
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["config_hash"] == cfg.hash()
    history = pd.read_csv(result.run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert {"test_top1", "test_top5", "val_top1", "train_loss", "lr"} <= set(history.columns)
    assert evaluate_checkpoint(result.checkpoint_dir / "best.pt", cfg.data.data_dir)["top1"] == m["best_test_top1"]


def test_second_call_is_a_cache_hit(smoke_config):
    cfg = smoke_config(overrides={"train.epochs": 1})
    first = train(cfg)
    stamp = (first.run_dir / "metrics.json").stat().st_mtime_ns
    second = train(cfg)
    assert (second.run_dir / "metrics.json").stat().st_mtime_ns == stamp
    assert second.metrics == first.metrics


def test_resume_after_interruption_matches_uninterrupted_run(smoke_config, tmp_path):
    over = {"train.epochs": 3, "data.train_subset": 1024}
    full = train(smoke_config(overrides=over))
    cfg = smoke_config(overrides=over)
    cfg.results_dir, cfg.checkpoint_dir = str(tmp_path / "r2"), str(tmp_path / "c2")
    partial = train(cfg, stop_after=1)
    assert not partial.complete and len(partial.history) == 1
    resumed = train(cfg, resume=True)
    cols = ["train_loss", "val_top1", "test_top1", "test_top5"]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols])
    assert resumed.metrics["test_top1"] == full.metrics["test_top1"]


def test_distilled_student_reuses_one_trained_teacher(smoke_config):
    cfg = smoke_config(teacher="resnet-small", kd="paper")
    assert cfg.model.distill_token and cfg.distill.feature_weight > 0
    result = train(cfg)
    m = result.metrics
    assert m["kd"] == "hard+feature" and m["teacher_test_top1"] > 80
    history = result.history
    assert (history["train_kd"] > 0).all() and (history["train_feature"] > 0).all()
    teacher_ckpt = m["teacher_checkpoint"]
    stamp = __import__("os").stat(teacher_ckpt).st_mtime_ns
    soft = train(smoke_config(teacher="resnet-small", kd="soft", overrides={"train.epochs": 1}))
    assert soft.metrics["teacher_checkpoint"] == teacher_ckpt
    assert __import__("os").stat(teacher_ckpt).st_mtime_ns == stamp, "the teacher must not be retrained"
