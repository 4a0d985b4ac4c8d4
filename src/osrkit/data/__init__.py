"""Data sets, published class splits, open-set tasks, batched transforms and outlier sets."""

from osrkit.data.datasets import DATASETS, ImageSet, MissingDataError, default_data_root, load_dataset
from osrkit.data.splits import duplicated_splits, get_split, num_splits, split_families, split_tasks
from osrkit.data.tasks import OpenSetTask, make_task

__all__ = ["DATASETS", "ImageSet", "MissingDataError", "default_data_root", "load_dataset", "duplicated_splits",
           "get_split", "num_splits", "split_families", "split_tasks", "OpenSetTask", "make_task"]
