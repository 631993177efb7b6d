// The CPU kernels of distillnerf (one extension module, distillnerf._cpu_kernels).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

// submanifold_cpu.cpp: submanifold 3x3x3 sparse convolution
at::Tensor conv_forward(const at::Tensor& features, const at::Tensor& weight, const at::Tensor& neighbours,
                        const c10::optional<at::Tensor>& bias, bool relu);
at::Tensor conv_backward_weight(const at::Tensor& features, const at::Tensor& grad,
                                const at::Tensor& neighbours_by_offset);
at::Tensor neighbour_table(const at::Tensor& keys, const at::Tensor& indices, int64_t resolution);

// march_cpu.cpp: inference ray march of the two-level sparse field
std::vector<at::Tensor> march(const at::Tensor& t, const at::Tensor& deltas, const at::Tensor& origins,
                              const at::Tensor& directions, const at::Tensor& batch, const at::Tensor& coarse_rows,
                              const at::Tensor& blocks, const at::Tensor& density, const at::Tensor& channels,
                              int64_t fine_resolution, int64_t ratio, int64_t coarse_count, int64_t empty_row,
                              double radius_xy, double radius_z, double alpha, double early_stop, int64_t chunk);
