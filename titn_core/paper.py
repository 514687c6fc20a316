"""The numbers this book measures its results against, typed in once: the paper's claims and this project's own
targets, set before any run. Every other number the book shows is computed from results/ at build time, and
tests/test_book.py fails if a chapter or a book helper types in a result-like number that is not one of these.
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
# val top-1 thresholds for time to accuracy: set where every role of the cpu profile gets, so the table compares times
TIME_TO_ACCURACY = {"mnist": 98.0, "cifar10": 70.0, "cifar100": 50.0}


def claimed_numbers() -> set[float]:
    """Every number typed in here, rounded to 2 decimals: the only result-like numbers a chapter may type."""
    values = [v for d in PAPER.values() for v in d.values() if v is not None]
    values += [*CPU_TARGETS.values(), *CPU_MILESTONES.values(), CPU_HOURS_PER_RUN, *TIME_TO_ACCURACY.values()]
    values += [*TEACHER_TARGETS.values(), TEACHER_HOURS, AIRBENCH94_PFLOPS]
    return {round(float(v), 2) for v in values}
