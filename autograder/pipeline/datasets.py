"""The datasets the thresholds read, checked before the first student (autograder/pipeline/grade.py: grade_folder).

A threshold whose test data cannot be read (an offline grader without DLCOURSE_DATA_MIRROR or a filled DLCOURSE_DATA,
a dataset moved) would end in an internal error for every row, the reference's included. Each threshold names what
its hidden test reads (`Threshold.data`: "name:split"); the batch grader reads them once before judging anyone and
stops with a grader-error that names the setting to fix.
"""
from __future__ import annotations

from collections.abc import Callable


def _image(name: str) -> Callable[[str], object]:
    def read(split: str):
        from dlcourse.data import load_image_split

        return load_image_split(name, train=split == "train")
    return read


def _imdb(split: str):
    from dlcourse.text_data import load_imdb

    return load_imdb(split)


def _multi30k(split: str):
    from dlcourse.text_data import load_multi30k

    return load_multi30k(split)


READERS: dict[str, Callable[[str], object]] = {"fashion_mnist": _image("fashion_mnist"), "cifar10": _image("cifar10"),
                                               "imdb": _imdb, "multi30k": _multi30k}


def unreadable_datasets(assignment) -> list[str]:
    """What of the datasets `assignment`'s thresholds name cannot be read, each with the error (empty: all fine)."""
    wanted = dict.fromkeys(entry for threshold in assignment.spec.thresholds.values() for entry in threshold.data)
    problems = []
    for entry in wanted:
        name, _, split = entry.partition(":")
        try:
            READERS[name](split or "test")
        except Exception as exc:  # noqa: BLE001  (a loader may fail in any way: download, file, format)
            problems.append(f"{entry}: {type(exc).__name__}: {str(exc)[:300]}")
    return problems
