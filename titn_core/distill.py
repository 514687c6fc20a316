"""Distillation losses: soft (Hinton et al. 2015), hard with a distillation token (DeiT, Touvron et al. 2021) and a
feature term "within the feature extraction layer".

The paper gives no formula for its feature term. Our reading, closest to its words: the student's patch tokens
after a chosen outer block are linearly projected to the teacher's channel width and matched to the teacher's
stage feature map average-pooled to the student's patch grid (FitNets-style, Romero et al. 2015). The teacher map
is standardised per position (layer norm without weights) so one weight works across teachers.

    total = ce_weight * CE(y, cls) + alpha * logit_term(dist or cls, teacher) + feature_weight * feature_term
    ce_weight = 1 - alpha when a logit term is on, else 1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DistillConfig


def soft_kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch; T^2 keeps gradients comparable to CE."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def hard_kd_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Cross-entropy against the teacher's argmax label (DeiT hard distillation)."""
    return F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1))


def pool_to_tokens(feature_map: Tensor, grid: int) -> Tensor:
    """(B, C, H, W) -> (B, grid*grid, C), in the student's row-major patch order."""
    return F.adaptive_avg_pool2d(feature_map, grid).flatten(2).transpose(1, 2)


def feature_kd_loss(student_tokens: Tensor, teacher_tokens: Tensor, kind: str) -> Tensor:
    """Compare projected student tokens with (standardised) teacher tokens, both (B, N, C)."""
    teacher_tokens = F.layer_norm(teacher_tokens, teacher_tokens.shape[-1:])
    if kind == "mse":
        return F.mse_loss(student_tokens, teacher_tokens)
    return (1 - F.cosine_similarity(student_tokens, teacher_tokens, dim=-1)).mean()


@dataclass
class StudentOutput:
    cls_logits: Tensor
    dist_logits: Tensor | None
    patch_tokens: Tensor | None  # (B, N, d) at the distillation block, when a feature term is on


@dataclass
class TeacherOutput:
    logits: Tensor
    feature_map: Tensor | None


class DistillationLoss(nn.Module):
    """The full training objective. Holds the feature projector, which is trained together with the student."""

    def __init__(self, cfg: DistillConfig, student_dim: int, teacher_dim: int | None, grid: int, label_smoothing=0.0):
        super().__init__()
        self.cfg = cfg
        self.grid = grid
        self.label_smoothing = label_smoothing
        self.uses_teacher = cfg.teacher is not None and (cfg.logit != "none" or cfg.feature_weight > 0)
        self.projector = None
        if cfg.feature_weight > 0 and teacher_dim is not None:
            self.projector = nn.Linear(student_dim, teacher_dim)

    def forward(self, student: StudentOutput, targets: Tensor, teacher: TeacherOutput | None = None):
        """Returns (total loss, dict of the detached terms for logging). `targets` are class ids or probabilities."""
        cfg = self.cfg
        ce = F.cross_entropy(student.cls_logits, targets, label_smoothing=self.label_smoothing)
        terms = {"ce": ce}
        total = ce
        if self.uses_teacher and teacher is not None:
            if cfg.logit != "none":
                logits = student.dist_logits if student.dist_logits is not None else student.cls_logits
                if cfg.logit == "soft":
                    kd = soft_kd_loss(logits, teacher.logits, cfg.temperature)
                else:
                    kd = hard_kd_loss(logits, teacher.logits)
                terms["kd"] = kd
                total = (1 - cfg.alpha) * ce + cfg.alpha * kd
            if self.projector is not None:
                target_tokens = pool_to_tokens(teacher.feature_map, self.grid)
                feat = feature_kd_loss(self.projector(student.patch_tokens), target_tokens, cfg.feature_loss)
                terms["feature"] = feat
                total = total + cfg.feature_weight * feat
        elif student.dist_logits is not None:
            # a distillation token without a teacher learns the labels too, so the averaged head stays sensible
            total = (ce + F.cross_entropy(student.dist_logits, targets, label_smoothing=self.label_smoothing)) / 2
        terms = {k: v.detach() for k, v in terms.items()}
        return total, terms


@torch.no_grad()
def teacher_forward(teacher: nn.Module, images: Tensor, feature_layer: str | None) -> TeacherOutput:
    """Frozen teacher pass: no autograd graph (no_grad, not inference_mode, because the outputs feed the student's
    loss, which autograd must be able to save)."""
    feats = teacher.forward_features(images)
    logits = teacher.forward_head(feats[teacher.stage_names[-1]])
    return TeacherOutput(logits, feats[feature_layer] if feature_layer else None)
