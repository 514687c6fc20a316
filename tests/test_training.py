"""End-to-end training on real MNIST (smoke profile): learning, outputs, caching, resume, distillation."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from titn_core import attention, storage, teacher_runs
from titn_core import trainer as trainer_module
from titn_core.attention import one_per_class
from titn_core.config import validate
from titn_core.data import load_arrays, make_splits, normalize
from titn_core.errors import TITNError
from titn_core.metrics import predict
from titn_core.notebook import attention_of, per_class_report, saved_test_predictions
from titn_core.profiles import build_config
from titn_core.teacher_runs import TEACHER_WEIGHTS, teacher_config
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


def test_select_last_keeps_the_final_epoch_for_students_whatever_validation_says(smoke_config):
    cfg = smoke_config(overrides={"train.epochs": 2, "train.select": "last", "data.val_size": 64})
    result = train(cfg)
    m, best = result.metrics, torch.load(result.checkpoint_dir / "best.pt", weights_only=False)
    assert best["epoch"] == m["best_epoch"] == 2, "the final epoch, not the best on validation"
    assert m["best_test_top1"] == m["test_top1"] == best["metrics"]["test_top1"]
    assert evaluate_checkpoint(result.checkpoint_dir / "best.pt", cfg.data.data_dir)["top1"] == m["test_top1"]


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
    # the saved predictions are those of the reported final model: their top-1 is the reported test top-1
    images, labels, top5 = saved_test_predictions(result)
    assert top5.shape == (m["test_images"], 5) and len(images) == len(labels) == m["test_images"]
    assert 100.0 * int((top5[:, 0] == labels).sum()) / len(labels) == m["test_top1"]
    cm, per_class = per_class_report(labels, top5[:, 0], "mnist")
    assert cm.to_numpy().sum() == m["test_images"] and per_class["images"].sum() == m["test_images"]


def test_missing_predictions_come_back_from_the_final_checkpoint_else_fail_naming_the_fix(smoke_config):
    result = train(smoke_config())
    _, _, top5 = saved_test_predictions(result)
    predictions = result.run_dir / "test_predictions.npz"
    predictions.unlink()  # a run that predates the file
    _, _, again = saved_test_predictions(result)
    assert predictions.exists() and torch.equal(again, top5)
    predictions.unlink()
    shutil.rmtree(result.checkpoint_dir)
    with pytest.raises(TITNError, match="train --force"):
        saved_test_predictions(result)


def test_attention_images_cycle_through_the_classes():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])  # sorted by class, like CIFAR-10's test split here
    assert one_per_class(labels, 5).tolist() == [0, 3, 5, 1, 4]
    assert one_per_class(labels, 99).tolist() == [0, 3, 5, 1, 4, 2]


def test_attention_maps_come_from_the_checkpoint_else_from_results(smoke_config):
    """The trainer saves a finished TITN's maps while its checkpoint is here (checkpoints stay on the machine that
    trained), the ones the notebook computes from the checkpoint; without the checkpoint the saved ones are shown."""
    result = train(smoke_config())
    saved_images, saved = attention.load(result.run_dir / attention.FILE)
    images, maps = attention_of(result, n_images=attention.DEFAULT_IMAGES)  # recomputed from the checkpoint
    assert torch.equal(saved_images, images) and torch.equal(saved.rollout, maps.rollout)
    assert torch.equal(saved.inner, maps.inner)
    images, maps = attention_of(result, n_images=3)
    assert images.dtype == torch.uint8 and maps.rollout.shape[0] == 3 and maps.inner is not None
    shutil.rmtree(result.checkpoint_dir)  # what a clean checkout has: results, no checkpoints
    images2, maps2 = attention_of(result, n_images=3)
    assert torch.equal(images, images2) and torch.equal(maps.rollout, maps2.rollout)
    assert torch.equal(maps.inner, maps2.inner)
    (result.run_dir / "attention.npz").unlink()
    with pytest.raises(TITNError, match="neither a checkpoint nor"):
        attention_of(result, n_images=3)


def test_a_vit_has_no_attention_maps_to_save(smoke_config):
    vit = train(smoke_config(model="vit-smoke", overrides={"train.epochs": 1}))
    assert (vit.run_dir / "metrics.json").exists() and not (vit.run_dir / attention.FILE).exists()


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


def test_cached_teacher_targets_replace_the_teachers_forward_per_step(smoke_config, monkeypatch):
    """teacher_targets=cached: the teacher's logits (mirror-averaged where training flips), computed once per training
    image, stand for every augmented view; no teacher forward runs during training, and the run has its own hash."""
    over = {"train.epochs": 1, "data.train_subset": 512, "distill.teacher_targets": "cached"}
    online = smoke_config(
        teacher="resnet-small", kd="hard", overrides={k: v for k, v in over.items() if "targets" not in k}
    )
    train(online)  # trains the teacher once, so the cached run below only distills
    seen = {}
    real_cache = trainer_module.cached_teacher_logits
    monkeypatch.setattr(trainer_module, "cached_teacher_logits", lambda *a: seen.setdefault("logits", real_cache(*a)))
    monkeypatch.setattr(trainer_module, "teacher_forward", lambda *a: pytest.fail("the teacher ran during training"))
    cfg = smoke_config(teacher="resnet-small", kd="hard", overrides=over)
    result = train(cfg)
    assert result.complete and cfg.hash() != online.hash()
    assert (result.history["train_kd"] > 0).all()
    logits = seen["logits"]
    assert logits.shape == (512, 10), "one row per training image"
    teacher, _ = teacher_runs.load_teacher(cfg, torch.device("cpu"))
    images = make_splits(load_arrays("mnist", cfg.data.data_dir), cfg.data).x_train[:8]
    views = [predict(teacher, v, "mnist", 8, "cpu") for v in (images, images.flip(-1))]
    assert torch.allclose(logits[:8], views[0], atol=1e-4), "MNIST trains without flips: no mirror in its targets"
    cfg.data.flip = True  # where training flips, the mirror is a view the student sees and is averaged in
    flipped = real_cache(teacher, images, cfg, "cpu", None)
    assert torch.allclose(flipped, (views[0] + views[1]) / 2, atol=1e-4)


def test_cached_teacher_targets_refuse_the_feature_term(smoke_config):
    with pytest.raises(TITNError, match="teacher_targets=online"):
        validate(smoke_config(teacher="resnet-small", kd="paper", overrides={"distill.teacher_targets": "cached"}))


def test_a_clean_checkout_distills_from_the_teachers_published_weights(smoke_config):
    """A clean checkout has the teacher's results/ (with its weights) but no checkpoints/: a distilled run must load
    those weights, the very teacher the results report, instead of retraining one that may differ."""
    first = train(smoke_config(teacher="resnet-small", kd="soft", overrides={"train.epochs": 1}))
    teacher_run = first.run_dir.parent / first.metrics["teacher_run_id"]
    published = teacher_run / TEACHER_WEIGHTS
    assert published.read_bytes() == Path(first.metrics["teacher_checkpoint"]).read_bytes(), "best.pt, as is"
    published.unlink()  # as for a teacher finished before weights were kept: its next (cached) call keeps them
    assert train(teacher_config(first.config)).complete and published.exists()
    shutil.rmtree(Path(first.metrics["teacher_checkpoint"]).parent)
    second = train(smoke_config(teacher="resnet-small", kd="soft", overrides={"train.epochs": 1, "train.seed": 1}))
    assert second.metrics["teacher_checkpoint"] == str(published)
    assert second.metrics["teacher_test_top1"] == first.metrics["teacher_test_top1"]
    assert not (teacher_run / "metrics.before-retraining.json").exists(), "nothing was retrained"


def test_a_teacher_with_results_but_no_weights_is_retrained_not_loaded(smoke_config):
    """Results with neither checkpoint nor published weights: distilling must retrain the teacher, and keep the old
    metrics beside the new ones instead of passing a half-retrained teacher off as complete."""
    first = train(smoke_config(teacher="resnet-small", kd="soft", overrides={"train.epochs": 1}))
    teacher_ckpt = Path(first.metrics["teacher_checkpoint"])
    teacher_run = first.run_dir.parent / first.metrics["teacher_run_id"]
    shutil.rmtree(teacher_ckpt.parent)
    (teacher_run / TEACHER_WEIGHTS).unlink()
    (teacher_run / "train_teacher.job.json").write_text('{"complete": true}')  # as a plan's notebook leaves it
    second = train(smoke_config(teacher="resnet-small", kd="soft", overrides={"train.epochs": 1, "train.seed": 1}))
    assert teacher_ckpt.exists() and second.metrics["teacher_checkpoint"] == str(teacher_ckpt)
    assert (teacher_run / "metrics.before-retraining.json").exists() and (teacher_run / "metrics.json").exists()
    assert (teacher_run / TEACHER_WEIGHTS).read_bytes() == teacher_ckpt.read_bytes(), "the new weights are published"
    assert not (teacher_run / "train_teacher.job.json").exists(), "a plan reruns the notebook for the new teacher"
    old = json.loads((teacher_run / "metrics.before-retraining.json").read_text())
    new = json.loads((teacher_run / "metrics.json").read_text())
    assert old["test_top1"] == new["test_top1"], "same seed, same machine: the retrained teacher is the same"


def test_compiled_training_runs_and_learns_like_eager(smoke_config):
    """The --compile path (torch.compile in place) on CPU: same checkpoint format, results close to eager."""
    over = {"train.epochs": 1, "data.train_subset": 1024}
    eager = train(smoke_config(overrides=over))
    cfg = smoke_config(overrides=over)
    cfg.compile, cfg.run_id = True, "compiled"
    compiled = train(cfg)
    assert compiled.metrics["config_hash"] == eager.metrics["config_hash"], "compiling is not a setting of the run"
    assert abs(compiled.metrics["test_top1"] - eager.metrics["test_top1"]) < 3.0
    state = storage.load_checkpoint(compiled.checkpoint_dir / "last.pt")
    assert not any(k.startswith("_orig_mod") for k in state["model"]), "checkpoints load into an eager model"
    rescored = evaluate_checkpoint(compiled.checkpoint_dir / "last.pt", cfg.data.data_dir)["top1"]
    assert abs(rescored - compiled.metrics["test_top1"]) <= 0.5, "the eager model scores as the compiled one did"


def test_a_checkpoint_is_scored_in_its_runs_precision(smoke_config):
    run = train(smoke_config(overrides={"train.epochs": 1, "train.amp": "bf16"}))
    assert (
        evaluate_checkpoint(run.checkpoint_dir / "best.pt", run.config.data.data_dir)["top1"]
        == (run.metrics["best_test_top1"])
    ), "bf16-trained and scored: fp32 scoring would move the number from metrics.json"


def test_starting_a_finished_run_over_sets_its_result_aside_so_an_interrupted_rerun_never_passes_for_complete(
    smoke_config,
):
    cfg = smoke_config()
    first = train(cfg)
    again = train(cfg, force=True, stop_after=1)  # killed after one epoch of the new run
    assert not again.metrics["complete"] and not (again.run_dir / "metrics.json").exists()
    kept = json.loads((again.run_dir / "metrics.superseded.json").read_text())
    assert kept["test_top1"] == first.metrics["test_top1"], "the old result is kept for the record"
    resumed = train(cfg, resume=True)  # neither cached nor started over: it continues the new run
    assert resumed.metrics["complete"] and list(resumed.history["epoch"]) == [1, 2, 3]
