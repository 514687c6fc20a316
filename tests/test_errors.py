"""Bad input gets one clear line naming the fix, and nothing already written is lost."""

import subprocess
import sys

import numpy as np
import pytest

from titn_core.data import load_arrays
from titn_core.errors import TITNError
from titn_core.profiles import build_config
from titn_core.storage import load_checkpoint
from titn_core.trainer import pick_device, train


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dataset="imagenet"), "unknown dataset"),
        (dict(model="titn-huge"), "unknown model"),
        (dict(teacher="vgg"), "unknown teacher"),
        (dict(overrides={"model.patch_size": 5}), "does not divide the 28px"),
        (dict(overrides={"model.word_size": 3}), "word size 3 does not divide patch size"),
        (dict(overrides={"train.epochs": 0}), "epochs must be a positive"),
        (dict(overrides={"train.epochs": "ten"}), "train.epochs must be int"),
        (dict(overrides={"train.lr": "fast"}), "train.lr must be float"),
        (dict(overrides={"model.inner": "maybe"}), "model.inner must be bool"),
        (dict(overrides={"model.colour": 1}), "unknown config field"),
        (dict(profile="gpu"), "unknown profile"),
        (dict(overrides={"data.val_size": 0}), "val_size must be at least 1"),
        (dict(overrides={"data.rotate_degrees": -5}), "rotate_degrees must be in \\[0, 180\\]"),
        (dict(overrides={"train.eval_batch_size": 0}), "eval_batch_size and train.lr must be positive"),
        (dict(teacher="resnet-small", overrides={"distill.alpha": 1.5}), "alpha in \\[0, 1\\]"),
        (dict(teacher="resnet-small", overrides={"distill.student_layer": 9}), "student_layer 9 is not a block"),
        (dict(overrides={"distill.feature_loss": "l1"}), "feature_loss must be one of mse, cosine"),
        (dict(overrides={"train.select": "best"}), "train.select must be one of val, last"),
        (dict(teacher="resnet-small", kd="feature", overrides={"model.distill_token": True}), "train its head"),
        (dict(overrides={"distill.teacher_checkpoint": "t.pt"}), "--teacher-checkpoint needs --teacher"),
        (dict(overrides={"distill.teacher_epochs": 24}), "teacher_epochs=24 picks how long"),
        (dict(kd="paper", overrides={"distill.teacher_epochs": 0}), "give a positive number"),
        (dict(kd="paper", overrides={"distill.teacher_epochs": 4}), "profile's own teacher schedule: leave it unset"),
        (
            dict(kd="paper", overrides={"distill.teacher_epochs": 24, "distill.teacher_checkpoint": "t.pt"}),
            "no --teacher-checkpoint",
        ),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(TITNError, match=message):
        build_config(**kwargs)


def test_missing_data_dir(tmp_path):
    with pytest.raises(TITNError, match="does not exist"):
        load_arrays("mnist", str(tmp_path / "nowhere"), download=False)


def test_dataset_absent_names_where_it_looked(tmp_path):
    with pytest.raises(TITNError, match=f"looked for cifar100.npz.*{tmp_path.name}"):
        load_arrays("cifar100", str(tmp_path), download=False)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x_train=np.zeros((4, 28, 28), np.float32)), "expected uint8"),
        (dict(x_train=np.zeros((4, 32, 32), np.uint8)), "expected uint8"),
        (dict(y_train=np.array([0, 1, 2, 10], np.uint8)), "labels outside 0..9"),
        (dict(y_train=np.array([0, 1], np.uint8)), "2 labels for 4 images"),
    ],
)
def test_bad_npz_contents(tmp_path, arrays, message):
    good = dict(
        x_train=np.zeros((4, 28, 28), np.uint8),
        y_train=np.array([0, 1, 2, 3], np.uint8),
        x_test=np.zeros((2, 28, 28), np.uint8),
        y_test=np.array([0, 1], np.uint8),
    )
    np.savez(tmp_path / "mnist.npz", **{**good, **arrays})
    with pytest.raises(TITNError, match=message):
        load_arrays("mnist", str(tmp_path), download=False)


def test_corrupt_checkpoint_is_reported_not_loaded(tmp_path, smoke_config):
    cfg = smoke_config(overrides={"train.epochs": 2, "data.train_subset": 256})
    run = train(cfg, stop_after=1)
    last = run.checkpoint_dir / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(TITNError, match="corrupt or truncated"):
        train(cfg, resume=True)
    with pytest.raises(TITNError, match="not a TITN checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"")
        import torch

        torch.save({"weights": 1}, tmp_path / "junk.pt")
        load_checkpoint(tmp_path / "junk.pt")


def test_existing_checkpoint_is_never_silently_restarted(smoke_config):
    cfg = smoke_config(overrides={"train.epochs": 2, "data.train_subset": 256})
    run = train(cfg, stop_after=1)
    before = (run.checkpoint_dir / "last.pt").read_bytes()
    with pytest.raises(TITNError, match="pass --resume"):
        train(cfg)
    assert (run.checkpoint_dir / "last.pt").read_bytes() == before


def test_teacher_of_the_wrong_dataset_is_refused(smoke_config):
    teacher = train(smoke_config(kind="teacher", teacher="resnet-small", overrides={"train.epochs": 1}))
    cfg = smoke_config(dataset="cifar10", teacher="resnet-small", kd="soft")
    cfg.distill.teacher_checkpoint = str(teacher.checkpoint_dir / "best.pt")
    with pytest.raises(TITNError, match="trained on mnist"):
        train(cfg)


def test_device_selection():
    import torch

    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(TITNError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(TITNError, match="CUDA is not available"):
            pick_device("cuda")


def test_cli_prints_one_line_and_exit_code_2(tmp_path):
    cmd = [sys.executable, "-m", "titn_core", "train", "--dataset", "mnist", "--set", "model.patch_size=5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: patch size 5")


def test_cli_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "titn_core", "train", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--dataset", "--profile", "--teacher", "--kd", "--resume", "--data-dir", "--set", "--device"):
        assert option in proc.stdout


def test_students_of_two_teacher_checkpoints_get_their_own_runs(tmp_path):
    from titn_core.cli import _config_from_args, build_parser

    ids = []
    for weights in (b"teacher one", b"teacher two"):
        (tmp_path / "best.pt").write_bytes(weights)
        args = build_parser().parse_args(["train", "--teacher", "resnet-small", "--teacher-checkpoint",
                                          str(tmp_path / "best.pt")])  # fmt: skip
        ids.append(_config_from_args(args).run_id)
    assert ids[0] != ids[1] and all(i.startswith("student-mnist-") for i in ids)
    missing = build_parser().parse_args(["train", "--teacher", "resnet-small", "--teacher-checkpoint", "nope.pt"])
    with pytest.raises(TITNError, match="nope.pt does not exist"):
        _config_from_args(missing)
