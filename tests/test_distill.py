import math

import pytest
import torch
import torch.nn.functional as F

from titn_core.config import DistillConfig
from titn_core.distill import (
    DistillationLoss,
    StudentOutput,
    TeacherOutput,
    feature_kd_loss,
    hard_kd_loss,
    pool_to_tokens,
    soft_kd_loss,
)


def test_soft_kd_matches_hand_computation():
    s = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    T = 2.0
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    pt = [ps[1], ps[0]]
    kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
    assert soft_kd_loss(s, t, T).item() == pytest.approx(kl * T**2, rel=1e-6)
    assert soft_kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-7)


def test_hard_kd_is_cross_entropy_to_teacher_argmax():
    s = torch.tensor([[2.0, 0.0, 0.0]])
    t = torch.tensor([[0.1, 0.2, 5.0]])
    expected = -math.log(math.exp(0.0) / (math.exp(2.0) + 2))
    assert hard_kd_loss(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_feature_terms_and_pooling():
    fmap = torch.arange(16.0).reshape(1, 1, 4, 4)
    tokens = pool_to_tokens(fmap, 2)
    assert tokens.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    t = torch.tensor([[[1.0, 3.0]]])  # layer-normed -> [-1, 1]
    s = torch.tensor([[[0.0, 0.0]]])
    assert feature_kd_loss(s, t, "mse").item() == pytest.approx(1.0, rel=1e-4)
    assert feature_kd_loss(torch.tensor([[[-2.0, 2.0]]]), t, "cosine").item() == pytest.approx(0.0, abs=1e-6)


def _inputs():
    torch.manual_seed(0)
    cls, dist = torch.randn(4, 5), torch.randn(4, 5)
    tokens = torch.randn(4, 9, 6)
    y = torch.tensor([0, 1, 2, 3])
    teacher = TeacherOutput(torch.randn(4, 5), torch.randn(4, 8, 6, 6))
    return cls, dist, tokens, y, teacher


def test_total_loss_combines_the_weighted_terms():
    cls, dist, tokens, y, teacher = _inputs()
    cfg = DistillConfig(teacher="resnet-small", logit="hard", alpha=0.3, feature_weight=2.0)
    crit = DistillationLoss(cfg, student_dim=6, teacher_dim=8, grid=3)
    total, terms = crit(StudentOutput(cls, dist, tokens), y, teacher)
    ce = F.cross_entropy(cls, y)
    kd = F.cross_entropy(dist, teacher.logits.argmax(1))
    feat = feature_kd_loss(crit.projector(tokens), pool_to_tokens(teacher.feature_map, 3), "mse")
    assert total.item() == pytest.approx((0.7 * ce + 0.3 * kd + 2.0 * feat).item(), rel=1e-6)
    assert set(terms) == {"ce", "kd", "feature"}


@pytest.mark.parametrize("cfg", [DistillConfig(), DistillConfig(teacher="resnet18", logit="none", feature_weight=0.0)])
def test_switched_off_distillation_is_plain_cross_entropy(cfg):
    cls, _, tokens, y, teacher = _inputs()
    crit = DistillationLoss(cfg, 6, 8, 3)
    total, terms = crit(StudentOutput(cls, None, tokens), y, teacher)
    assert crit.projector is None
    assert total.item() == pytest.approx(F.cross_entropy(cls, y).item(), rel=1e-7)
    assert set(terms) == {"ce"}


def test_soft_targets_from_mixup_enter_the_loss_as_smoothed_probabilities():
    cls, _, _, _, teacher = _inputs()
    probs = torch.softmax(torch.randn(4, 5), dim=1)  # MixUp/CutMix targets: a distribution per image, not a class
    crit = DistillationLoss(DistillConfig(teacher="resnet18", logit="soft"), 6, None, 3, label_smoothing=0.1)
    total, _ = crit(StudentOutput(cls, None, None), probs, teacher)
    smoothed = 0.9 * probs + 0.1 / probs.shape[1]
    ce = -(smoothed * F.log_softmax(cls, dim=1)).sum(1).mean()
    expected = 0.5 * ce + 0.5 * soft_kd_loss(cls, teacher.logits, 4.0)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
