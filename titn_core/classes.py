"""Each dataset's class names in label order, so tables and figures say "maple_tree", not "47".

CIFAR-100's fine labels are numbered in the alphabetical order of their names (the dataset's `meta` file lists
them so; torchvision's `CIFAR100(...).classes` reads them from there). Runs before CIFAR-100 had names here wrote
label ids into their per-class tables; `named` reads either.
"""

from __future__ import annotations

import pandas as pd

CIFAR100_FINE = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee",
    "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant",
    "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower",
    "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate",
    "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark",
    "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
    "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "cifar100": CIFAR100_FINE,
}


def named(labels: pd.Index, dataset: str) -> pd.Index:
    """Class labels as names: a label id (an int, or digits read back from a CSV) becomes the dataset's name for it,
    a name stays as it is."""
    names = CLASS_NAMES[dataset]
    return pd.Index([names[int(c)] if str(c).isdigit() else c for c in labels], name=labels.name)
