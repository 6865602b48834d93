"""lwcl.config.values: the shipped configs pass the value checks."""

import glob
import os

from lwcl.config import files as config_files
from lwcl.config import values as config_values

from helpers import ROOT


def test_shipped_configs_pass_the_value_checks():
  for path in sorted(glob.glob(os.path.join(ROOT, "configs", "[!_]*.py"))):
    config_values.check_values(config_files.load_spec(path))
