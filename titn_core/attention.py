"""Attention maps of a trained TITN, as images the size of the input.

- outer: how much the class token attends to each patch, per block (mean over heads);
- rollout: outer attention propagated through all blocks (Abnar & Zuidema 2020: add the identity for the residual,
  renormalise, multiply layer by layer), the usual "where did the model look" map;
- inner: inside every patch, how much attention each word (pixel group) receives from the patch's other words,
  mean over heads and query words; tiled back into the image, this is the pixel-level view the paper argues for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import storage
from .data import normalize
from .model import TITN

FILE = "attention.npz"  # in the run's results folder
DEFAULT_IMAGES = 8  # how many test images the trainer saves maps of at the end of a run


@dataclass
class AttentionMaps:
    outer: Tensor  # (B, depth, grid, grid): class token -> patches
    rollout: Tensor  # (B, grid, grid)
    inner: Tensor | None  # (B, depth, grid*s, grid*s): attention received per word; None for a ViT


@torch.no_grad()
def attention_maps(model: TITN, images: Tensor) -> AttentionMaps:
    """images: normalised float (B, C, H, W)."""
    model.eval()
    feats = model.forward_features(images, keep_attention=True)
    B, g, s, p = images.shape[0], model.grid, model.words_per_side, model.num_prefix
    outer = torch.stack([a.mean(1) for a in feats.outer_attn], dim=1)  # (B, depth, T, T)
    cls_to_patches = outer[:, :, 0, p:].reshape(B, -1, g, g)
    inner = None
    if feats.inner_attn:
        received = torch.stack([a.mean(1).mean(1) for a in feats.inner_attn], dim=1)  # (B*N, depth, m)
        inner = received.reshape(B, g, g, -1, s, s).permute(0, 3, 1, 4, 2, 5).reshape(B, -1, g * s, g * s)
    return AttentionMaps(cls_to_patches, rollout(outer, p).reshape(B, g, g), inner)


def one_per_class(labels: Tensor, n: int) -> Tensor:
    """Indices of n test images that cycle through the classes (the first image of class 0, 1, ..., then the second
    of each): CIFAR-10's test split here is sorted by class, so its first n images would all be airplanes."""
    classes = labels.unique()
    per_class = [torch.nonzero(labels == c).flatten() for c in classes]
    order = [idx[k] for k in range(max(len(i) for i in per_class)) for idx in per_class if k < len(idx)]
    return torch.stack(order[:n])


def save_test_maps(model: TITN, x_test: Tensor, y_test: Tensor, dataset: str, path: str | Path, n: int) -> tuple:
    """Compute and save the maps of n test images, one per class in turn: (uint8 images, AttentionMaps)."""
    images = x_test[one_per_class(y_test, n)]
    maps = attention_maps(model, normalize(images, dataset))
    save(path, images, maps)
    return images, maps


def save(path: str | Path, images: Tensor, maps: AttentionMaps) -> None:
    """The maps with the uint8 images they belong to: what the book and a checkpoint-less notebook draw."""
    arrays = {"images": images.numpy(), "rollout": maps.rollout.numpy(), "outer": maps.outer.numpy()}
    if maps.inner is not None:
        arrays["inner"] = maps.inner.numpy()
    storage.atomic_write_npz(path, **arrays)


def load(path: str | Path) -> tuple[Tensor, AttentionMaps]:
    """(uint8 images, maps) written by `save`."""
    with np.load(path) as z:
        inner = torch.from_numpy(z["inner"]) if "inner" in z else None
        maps = AttentionMaps(torch.from_numpy(z["outer"]), torch.from_numpy(z["rollout"]), inner)
        return torch.from_numpy(z["images"]), maps


def rollout(outer: Tensor, num_prefix: int) -> Tensor:
    """outer: (B, depth, T, T) head-averaged attention -> (B, N) class-token relevance of each patch."""
    B, _, T, _ = outer.shape
    eye = torch.eye(T, device=outer.device).expand(B, T, T)
    joint = eye
    for layer in outer.unbind(dim=1):
        a = 0.5 * layer + 0.5 * eye
        joint = (a / a.sum(-1, keepdim=True)) @ joint
    return joint[:, 0, num_prefix:]


def upsample(maps: Tensor, size: int) -> Tensor:
    """(..., h, w) -> (..., size, size), nearest, so each patch/word stays a visible block."""
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]), size=(size, size), mode="nearest")
    return out.reshape(*lead, size, size)
