"""Lookahead weight averaging as airbench trains with it (Jordan 2024, arXiv 2404.00498).

Every `every` optimiser steps a slow copy of the weights (and batch-norm statistics) moves towards the fast ones and
the fast ones are reset to it. The pull starts at zero and grows with the cube of progress, so early training is
untouched and the last epochs are averaged: the end of a short schedule is less noisy. Training ends on the slow copy.
"""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    def __init__(self, model: nn.Module, every: int, total_steps: int):
        self.every, self.total_steps = every, max(1, total_steps)
        self.slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def decay(self, step: int) -> float:
        """How much of the slow copy survives an update: 0.95 per step, scaled by progress cubed."""
        return 0.95**self.every * min(step / self.total_steps, 1.0) ** 3

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for name, slow in self.slow.items():
            slow.lerp_(state[name], 1 - decay)
            state[name].copy_(slow)

    def after_step(self, model: nn.Module, step: int) -> None:
        if step % self.every == 0:
            self.update(model, self.decay(step))

    def finish(self, model: nn.Module) -> None:
        """Leave the model on the slow copy (the steps since its last update are dropped, as in airbench)."""
        self.update(model, 1.0)

    def state_dict(self) -> dict:
        return dict(self.slow)

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            self.slow[name].copy_(value)
