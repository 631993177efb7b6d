"""Builds the CPU kernels (``distillnerf._cpu_kernels``: submanifold convolution, inference ray march) with the
package; everything else about the distribution is in pyproject.toml. Needs torch at build time: ``pip install
--no-build-isolation`` (``make setup`` does), so the kernels are compiled against the torch they will run with."""

from pathlib import Path

import torch
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

# The extension links libtorch; its run path finds it beside an installed package (site-packages/torch/lib) and in
# the torch it was built against (an editable install), so it loads even before torch is imported.
RUN_PATH = f"-Wl,-rpath,$ORIGIN/../torch/lib:{Path(torch.__file__).parent / 'lib'}"

setup(
    ext_modules=[CppExtension("distillnerf._cpu_kernels",
                              ["distillnerf/csrc/bindings.cpp", "distillnerf/csrc/submanifold_cpu.cpp",
                               "distillnerf/csrc/march_cpu.cpp"],
                              # -fopenmp: at::parallel_for is inline OpenMP where torch is built with it (else it
                              # runs serially); the libgomp.so.1 it needs resolves to the one torch has loaded
                              extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp", RUN_PATH])],
    cmdclass={"build_ext": BuildExtension},
)
