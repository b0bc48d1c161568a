"""Shared course code: what the assignment notebooks and the autograder both import.

Keep graded ideas out of here: students write those in the notebooks. This package holds the
plumbing around them (data, training loop, plots, seeding, public checks, saving weights).
"""
from dlcourse.checks import check_shape, fill_parameters_, rel_error, seeded_randn
from dlcourse.data import ImageSplit, load_image_split
from dlcourse.export import load_model_files, save_model
from dlcourse.plotting import plot_history
from dlcourse.training import ClassifierHistory, History, Recipe, TrainRecipe, evaluate_accuracy, train_classifier
from dlcourse.utils import get_device, seed_everything

__all__ = [
    "ClassifierHistory", "History", "ImageSplit", "Recipe", "TrainRecipe", "check_shape", "fill_parameters_", "seeded_randn", "evaluate_accuracy", "get_device",
    "load_image_split", "load_model_files", "plot_history", "rel_error", "save_model",
    "seed_everything", "train_classifier",
]
