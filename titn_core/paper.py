"""The numbers this book measures its results against, typed in once: the paper's claims, this project's own
targets, set before any run, and published results cited for scale. Every other number the book shows is computed
from results/ at build time, and tests/test_book.py fails if a chapter or a book helper types in a result-like
number that is not one of these.
"""

PAPER_SOURCE = "Rahman et al. 2025, arXiv 2502.16762, abstract"
PAPER = {  # top-1 / top-5 (%) as the paper reports them; MNIST top-5 is not given
    "mnist": {"top1": 99.56, "top5": None},
    "cifar10": {"top1": 92.03, "top5": 99.80},
    "cifar100": {"top1": 74.71, "top5": 92.28},
}
# what this project set out to reach on its 2-core CPU (cpu profile, distilled TITN, at most 3 hours per run at the
# speed of the machine behind the committed runs): the paper's numbers, past them on MNIST (issue 20, set before its
# runs, after the first targets of 99.3 / 85 / 55 were met or nearly met on the earlier recipe); milestones on the way
CPU_TARGETS = {"mnist": 99.6, "cifar10": 92.0, "cifar100": 74.7}
CPU_MILESTONES = {"cifar10": 88.0, "cifar100": 65.0}
CPU_HOURS_PER_RUN = 3.0
# the fast CIFAR-10 teacher's goal (issue 20): airbench94's accuracy (Jordan 2024, arXiv 2404.00498: 94.01% mean,
# scored with test-time mirror + translate, in 0.36 PFLOPs of training) within an hour of the reference machine
TEACHER_TARGETS = {"cifar10": 94.0}
TEACHER_HOURS = 1.0
AIRBENCH94_PFLOPS = 0.36
# For scale, not as targets: what published small transformers reach on CIFAR trained from scratch for 200 epochs of
# the 50,000 training images. Top-1 %, parameters (millions) and forward multiply-accumulates per 32x32 image
# (billions) as the SHI-Labs/Compact-Transformers README gives them; the training set-up (no distillation,
# AutoAugment, Mixup/CutMix) as their paper describes it (Hassani et al. 2021, "Escaping the Big Data Paradigm with
# Compact Transformers", arXiv 2104.05704).
PUBLISHED_SOURCE = "SHI-Labs/Compact-Transformers README (Hassani et al. 2021, arXiv 2104.05704)"
PUBLISHED_SHORT = "Hassani et al. 2021"
PUBLISHED_SMALL_TRANSFORMERS = [
    {"model": "ViT-Lite-7/4", "params_m": 3.717, "gmacs": 0.239, "epochs": 200, "cifar10": 91.38, "cifar100": 69.75},
    {"model": "CCT-2/3x2", "params_m": 0.284, "gmacs": 0.033, "epochs": 200, "cifar10": 89.17, "cifar100": 66.90},
    {"model": "CCT-7/3x1", "params_m": 3.760, "gmacs": 0.947, "epochs": 200, "cifar10": 94.78, "cifar100": 77.05},
]
PUBLISHED_TRAIN_IMAGES = 50_000
# val top-1 thresholds for time to accuracy: set where every role of the cpu profile gets, so the table compares times
TIME_TO_ACCURACY = {"mnist": 98.0, "cifar10": 70.0, "cifar100": 50.0}


def claimed_numbers() -> set[float]:
    """Every number typed in here, rounded to 2 decimals: the only result-like numbers a chapter may type."""
    values = [v for d in PAPER.values() for v in d.values() if v is not None]
    values += [*CPU_TARGETS.values(), *CPU_MILESTONES.values(), CPU_HOURS_PER_RUN, *TIME_TO_ACCURACY.values()]
    values += [*TEACHER_TARGETS.values(), TEACHER_HOURS, AIRBENCH94_PFLOPS]
    values += [row[d] for row in PUBLISHED_SMALL_TRANSFORMERS for d in ("cifar10", "cifar100")]
    return {round(float(v), 2) for v in values}
