"""Class names: CIFAR-100's fine labels in the dataset's own order, and label ids read back as names."""

import pandas as pd

from titn_core.classes import CIFAR100_FINE, CLASS_NAMES, named

# CIFAR-100's coarse classes and the fine label ids in each (from the dataset's coarse/fine label pairs): an
# independent check that every name sits at its label id, not only that the list is sorted
SUPERCLASS_MEMBERS = {
    "people": ([2, 11, 35, 46, 98], ["baby", "boy", "girl", "man", "woman"]),
    "trees": ([47, 52, 56, 59, 96], ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"]),
    "vehicles 2": ([41, 69, 81, 85, 89], ["lawn_mower", "rocket", "streetcar", "tank", "tractor"]),
    "reptiles": ([27, 29, 44, 78, 93], ["crocodile", "dinosaur", "lizard", "snake", "turtle"]),
}


def test_cifar100_has_its_hundred_fine_labels_in_alphabetical_order_as_its_meta_file_lists_them():
    assert len(set(CIFAR100_FINE)) == 100 and sorted(CIFAR100_FINE) == CIFAR100_FINE
    for ids, names in SUPERCLASS_MEMBERS.values():
        assert [CIFAR100_FINE[i] for i in ids] == names
    assert {dataset: len(names) for dataset, names in CLASS_NAMES.items()} == {
        "mnist": 10,
        "cifar10": 10,
        "cifar100": 100,
    }


def test_named_turns_label_ids_into_names_and_keeps_names():
    assert named(pd.Index([0, 99], name="class"), "cifar100").tolist() == ["apple", "worm"]
    assert named(pd.Index(["3", "cat"]), "cifar10").tolist() == ["cat", "cat"]
    assert named(pd.Index([7]), "mnist").tolist() == ["7"]
