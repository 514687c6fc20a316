"""TITN Book: a Transformer-in-Transformer student with knowledge distillation, reproduced on CPU and GPU."""

from .config import RunConfig
from .errors import TITNError
from .profiles import build_config

__all__ = ["RunConfig", "TITNError", "build_config", "train", "RunResult"]


def __getattr__(name):
    # the trainer pulls in torch; keep `import titn_core` cheap for the CLI's --help and config work
    if name in ("train", "RunResult"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
