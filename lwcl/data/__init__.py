"""Data: sources (local IDX files, tensorflow-datasets), continual scenarios, and the input pipeline."""

from lwcl.data.sources import ImageDataset, load_dataset
from lwcl.data.scenarios import Scenario, Split, Task, build_scenario

__all__ = ["ImageDataset", "load_dataset", "Scenario", "Split", "Task", "build_scenario"]
