"""Data: sources (local IDX files, tensorflow-datasets), continual scenarios, and the input pipeline."""

from lwcl.data.examples import Examples
from lwcl.data.scenarios import Scenario, Task, build_scenario
from lwcl.data.sources import ImageDataset, load_dataset

__all__ = ["Examples", "ImageDataset", "load_dataset", "Scenario", "Task", "build_scenario"]
