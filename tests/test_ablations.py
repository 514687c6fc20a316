"""Every ablation family must build a valid run on every dataset, so a plan never fails hours in on a bad variant."""

import pytest

from titn_core.ablations import FAMILIES, PATCH_WORD_SIZES, family_configs, patch_variants
from titn_core.config import DATASETS
from titn_core.errors import TITNError
from titn_core.profiles import build_config


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_builds_valid_configs_on_every_dataset(family, dataset):
    runs = family_configs(family, dataset, "cpu", seed=3, epochs=2)
    labels = [label for label, _ in runs]
    assert len(runs) >= 2 and len(set(labels)) == len(labels), "a family compares at least two distinct variants"
    assert {cfg.train.seed for _, cfg in runs} == {3} and {cfg.train.epochs for _, cfg in runs} == {2}
    assert len({cfg.hash() for _, cfg in runs}) == len(runs), "two variants with one config would share a cached run"


def test_patch_family_follows_the_image_size():
    mnist = family_configs("patch", "mnist", "cpu")
    assert [(c.model.patch_size, c.model.word_size) for _, c in mnist] == PATCH_WORD_SIZES[28]
    cifar = [label for label, _ in family_configs("patch", "cifar10", "cpu")]
    assert cifar == ["patch 4, word 1", "patch 4, word 2", "patch 8, word 2", "patch 8, word 4"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: family_configs("dropout", "mnist", "cpu"), "unknown ablation family 'dropout'"),
        (lambda: family_configs("patch", "imagenet", "cpu"), "unknown dataset 'imagenet'"),
        (lambda: patch_variants(64), "no patch family for 64px images"),
    ],
)
def test_bad_family_input_names_the_fix(call, message):
    with pytest.raises(TITNError, match=message):
        call()


def test_cpu_profile_reads_fastcnn_features_from_the_stage_the_recipe_family_chose_and_keeps_variant_hashes():
    assert build_config("cifar10", "cpu", kd="paper").distill.teacher_layer == "layer2"
    assert build_config("cifar10", "cpu", kd="hard").distill.teacher_layer == "layer3", "no feature term: unchanged"
    assert build_config("mnist", "cpu", kd="paper").distill.teacher_layer == "layer3", "resnet-small's runs unchanged"
    paper, layer2 = (cfg for label, cfg in family_configs("recipe", "cifar10", "cpu") if "feature" in label)
    assert (paper.distill.teacher_layer, layer2.distill.teacher_layer) == ("layer3", "layer2")


def test_the_main_distilled_run_is_the_regularization_variant_with_the_regularisers_the_profile_adopted():
    from titn_core.profiles import CPU_CIFAR_REGULARISERS

    runs = family_configs("regularization", "cifar10", "cpu")
    main = build_config("cifar10", "cpu", kd="paper")
    same = [cfg for _, cfg in runs if cfg.hash() == main.hash()]
    assert len(same) == 1, "same schedule and scoring: the main run is not trained twice"
    assert {key: getattr(same[0].data, key) for key in CPU_CIFAR_REGULARISERS} == CPU_CIFAR_REGULARISERS
    assert {cfg.train.epochs for _, cfg in runs} == {main.train.epochs}
    assert {cfg.train.tta for _, cfg in runs} == {"flip"}, "scored like the main runs"
    mixed = dict(runs)["+ MixUp 0.8 / CutMix 1.0"]
    assert (mixed.data.mixup_alpha, mixed.data.cutmix_alpha, mixed.distill.teacher_targets) == (0.8, 1.0, "online")


def test_teacher_epochs_family_reuses_the_main_run_and_trains_a_longer_teacher_of_its_own():
    from titn_core.ablations import TEACHER_EPOCHS_LONGER
    from titn_core.experiments import teacher_run_config
    from titn_core.profiles import FASTCNN_WARMUP_SHARE
    from titn_core.teacher_runs import teacher_config

    (_, profiles), (_, longer) = family_configs("teacher-epochs", "cifar100", "cpu")
    assert profiles.hash() == build_config("cifar100", "cpu", kd="paper").hash(), "the main distilled run, reused"
    assert teacher_config(profiles).hash() == teacher_run_config(dataset="cifar100", profile="cpu").hash()
    teacher = teacher_config(longer)
    assert (teacher.train.epochs, teacher.train.warmup_epochs) == (
        TEACHER_EPOCHS_LONGER, FASTCNN_WARMUP_SHARE * TEACHER_EPOCHS_LONGER,
    ), "the teacher's recipe, only longer: its warm-up follows the epochs"  # fmt: skip
    assert teacher.hash() != teacher_config(profiles).hash(), "a teacher run of its own, never the profile's"
    assert longer.train.epochs == profiles.train.epochs, "the student's schedule is the main runs'"


def test_rotation_family_reuses_the_main_mnist_runs_of_both_seeds_and_rotates_only_its_variant():
    for seed in (0, 1):
        (_, crop), (_, rotated) = family_configs("rotation", "mnist", "cpu", seed=seed)
        main = build_config("mnist", "cpu", kd="paper", overrides={"train.seed": seed})
        assert crop.hash() == main.hash(), "the main distilled run (rotate_degrees unset keeps committed ids)"
        assert (crop.data.rotate_degrees, rotated.data.rotate_degrees) == (0.0, 15.0)
        assert rotated.train.epochs == main.train.epochs


def test_fast_teacher_family_reuses_the_main_mnist_runs_and_changes_only_the_teacher():
    from titn_core.teacher_runs import teacher_config

    for seed in (0, 1):
        (_, profiles), (_, fast) = family_configs("fast-teacher", "mnist", "cpu", seed=seed)  # resnet-small first
        main = build_config("mnist", "cpu", kd="paper", overrides={"train.seed": seed})
        assert profiles.hash() == main.hash(), "the main distilled run, reused"
        assert (profiles.distill.teacher, fast.distill.teacher) == ("resnet-small", "fastcnn")
        assert fast.train.epochs == main.train.epochs and fast.data == main.data, "only the teacher changes"
        assert teacher_config(fast).train.tta == "shift", "the fastcnn teacher is scored without the mirror"


def test_only_cifar_students_take_the_adopted_regularisers():
    teacher = build_config("cifar10", "cpu", kind="teacher")
    mnist = build_config("mnist", "cpu", kd="paper")
    assert (teacher.data.mixup_alpha, mnist.data.mixup_alpha, mnist.data.cutmix_alpha) == (0.0, 0.0, 0.0)
    assert build_config("cifar100", "cpu", kd="none").data.cutmix_alpha > 0, "CIFAR-100 inherits CIFAR-10's verdict"


def test_regularization_family_is_cumulative_and_pinned_against_a_change_of_the_profile(monkeypatch):
    """Each variant adds one regulariser to the one before; all pin every regulariser, so adopting one into the
    profile changes no variant's config (their finished runs stay theirs)."""
    from titn_core import profiles

    def regularisers(cfg):
        return cfg.data.mixup_alpha, cfg.data.cutmix_alpha, cfg.data.randaugment, cfg.model.drop_path

    before = family_configs("regularization", "cifar10", "cpu")
    assert [regularisers(cfg) for _, cfg in before] == [
        (0.0, 0.0, False, 0.0), (0.8, 1.0, False, 0.0), (0.8, 1.0, True, 0.0), (0.8, 1.0, True, 0.1)
    ]  # fmt: skip
    adopt = profiles.build_config

    def with_mixing(*args, overrides=None, **kwargs):  # a profile that adopted MixUp/CutMix
        mixing = {"data.mixup_alpha": 0.8, "data.cutmix_alpha": 1.0}
        return adopt(*args, overrides={**mixing, **(overrides or {})}, **kwargs)

    monkeypatch.setattr("titn_core.ablations.build_config", with_mixing)
    after = family_configs("regularization", "cifar10", "cpu")
    assert [cfg.hash() for _, cfg in after] == [cfg.hash() for _, cfg in before]


def test_seed_gaps_pair_runs_that_differ_only_in_their_seed(tmp_path):
    """Two seeds of one config on the same data are paired and their gap measured; a run with any other setting
    changed, on other data, or whose config is gone is not."""
    import json

    import pandas as pd

    from titn_core.book_ablations import seed_gaps

    rows = []
    runs = [("a", 0, 2e-3, "CIFAR-10", 80.0), ("b", 1, 2e-3, "CIFAR-10", 81.5), ("c", 1, 1e-3, "CIFAR-10", 70.0),
            ("d", 1, 2e-3, "CIFAR-10 (JPEG-q75)", 60.0), ("e", 1, 2e-3, "CIFAR-10", 50.0)]  # fmt: skip
    for name, seed, lr, variant, top1 in runs:
        cfg = build_config("cifar10", "cpu", kd="paper", overrides={"train.seed": seed, "train.lr": lr})
        (tmp_path / name).mkdir()
        if name != "e":  # e's config.json is gone
            (tmp_path / name / "config.json").write_text(json.dumps({"config_hash": cfg.hash(), **cfg.to_dict()}))
        rows.append({"path": str(tmp_path / name), "run_id": cfg.default_run_id(), "dataset": "cifar10",
                     "data_variant": variant, "epochs": cfg.train.epochs, "seed": seed, "test_top1": top1})  # fmt: skip
    gaps = seed_gaps(pd.DataFrame(rows))
    assert len(gaps) == 1 and gaps["seeds"].iloc[0] == "0, 1" and gaps["gap"].iloc[0] == 1.5
    assert gaps["run"].iloc[0].startswith("student-cifar10-titn-tiny-kd_hard+feature-cpu (")
    assert seed_gaps(pd.DataFrame(rows).iloc[:0]).empty


def test_regulariser_adoption_applies_the_rule_and_reads_the_profile(monkeypatch):
    """A margin above the seed gap says adopt, one below keeps the recipe before, a variant not yet run says nothing;
    the profile column reads the distilled config, so adopting MixUp/CutMix there flips it."""
    import pandas as pd

    from titn_core import book_ablations, profiles

    labels = [label for label, _, _ in FAMILIES["regularization"]]
    table = pd.DataFrame({"family": "regularization", "dataset": "cifar10", "profile": "cpu", "seed": 0,
                          "variant": labels[:3], "test_top1": [87.0, 89.0, 89.5]})  # fmt: skip

    def profile_with(mixup_alpha, cutmix_alpha):  # the cpu profile with MixUp/CutMix set as given
        mixing = {"data.mixup_alpha": mixup_alpha, "data.cutmix_alpha": cutmix_alpha}
        return lambda *args, overrides=None, **kwargs: profiles.build_config(
            *args, overrides={**mixing, **(overrides or {})}, **kwargs
        )

    monkeypatch.setattr(book_ablations, "build_config", profile_with(0.0, 0.0))
    verdicts = book_ablations.regulariser_adoption(table, gap=1.0)
    assert list(verdicts["regulariser"]) == labels[1:]
    assert list(verdicts["margin"].iloc[:2]) == [2.0, 0.5] and pd.isna(verdicts["margin"].iloc[2])
    assert list(verdicts["rule says"]) == ["adopt", "keep the recipe before", "-"]
    assert set(verdicts["in the cpu profile"]) == {"no"} and book_ablations.adopted_regularisers(table) == []
    monkeypatch.setattr(book_ablations, "build_config", profile_with(0.8, 1.0))
    assert list(book_ablations.regulariser_adoption(table, gap=1.0)["in the cpu profile"]) == ["yes", "no", "no"]
    assert book_ablations.adopted_regularisers(table) == ["MixUp 0.8 / CutMix 1.0"]


def test_unregularised_fit_reads_the_last_epoch_of_the_family_reference(tmp_path, monkeypatch):
    import pandas as pd

    from titn_core import book_ablations

    labels = [label for label, _, _ in FAMILIES["regularization"]]
    table = pd.DataFrame({"family": "regularization", "dataset": "cifar10", "profile": "cpu", "seed": 0,
                          "variant": labels[:2], "run_id": ["plain", "mixed"], "test_top1": [87.0, 89.0]})  # fmt: skip
    monkeypatch.setattr(book_ablations, "results_dir", lambda: tmp_path)
    assert book_ablations.unregularised_fit(table) is None, "its run is not in results/"
    (tmp_path / "plain").mkdir()
    pd.DataFrame({"epoch": [1, 2], "train_top1": [50.0, 99.5], "test_top1": [48.0, 87.0]}).to_csv(
        tmp_path / "plain" / "history.csv", index=False
    )
    last = book_ablations.unregularised_fit(table)
    assert (last["train_top1"], last["test_top1"]) == (99.5, 87.0)
    assert book_ablations.unregularised_fit(table.iloc[1:]) is None, "no reference variant"
