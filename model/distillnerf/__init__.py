"""DistillNeRF model library.

Six surround images of one instant -> a sparse hierarchical voxel neural field -> rendered depth, RGB and
foundation-model features, plus occupancy and open-vocabulary queries. This package imports nothing from ROS or
from the training package (``test/test_import_boundaries.py`` enforces it).
"""

import os

__version__ = "0.1.0"

# Large CPU tensors on transparent huge pages: fresh allocations otherwise pay a page fault per 4 KiB, which on the
# machines measured costs several times the arithmetic (a training step is ~10 % faster). Read by torch once, at
# its first allocation, so it takes effect when this package is imported before torch (the CLI, the node);
# set THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
