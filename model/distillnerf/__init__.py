"""DistillNeRF model library.

Six surround images of one instant -> a sparse hierarchical voxel neural field -> rendered depth, RGB and
foundation-model features, plus occupancy and open-vocabulary queries. This package imports nothing from ROS or
from the training package (``test/test_import_boundaries.py`` enforces it).
"""

__version__ = "0.1.0"
