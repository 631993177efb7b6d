"""Builds the CPU kernels (``distillnerf._cpu_kernels``: submanifold convolution, inference ray march) with the package; everything
else about the distribution is in pyproject.toml. Needs torch at build time: ``pip install --no-build-isolation``
(``make setup`` does), so the kernel is compiled against the torch it will run with."""

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

setup(
    ext_modules=[CppExtension("distillnerf._cpu_kernels",
                              ["distillnerf/csrc/bindings.cpp", "distillnerf/csrc/submanifold_cpu.cpp",
                               "distillnerf/csrc/march_cpu.cpp"],
                              # -fopenmp: at::parallel_for is inline OpenMP where torch is built with it (else it
                              # runs serially); the libgomp.so.1 it needs resolves to the one torch has loaded
                              extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp"])],
    cmdclass={"build_ext": BuildExtension},
)
