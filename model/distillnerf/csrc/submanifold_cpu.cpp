// Submanifold 3x3x3 sparse convolution on the CPU, output-stationary: every output voxel gathers its (at most 27)
// neighbours through a neighbour table and accumulates neighbour x weight in place, so nothing of size
// [pairs, channels] is ever written (spconv's CPU path gathers, multiplies and scatters per kernel offset, which
// is memory-bound at the small channel counts of the `cpu` model). The backward passes are gathers too: the data
// gradient is the same convolution with the kernel mirrored and transposed, the weight gradient a reduction per
// kernel offset. Same results as spconv's SubMConv3d (test/test_model_submanifold.py).
//
// Layouts: features [V, C_in] and grad [V, C_out] row-major; weight [27, C_in, C_out] with kernel offset
// k = ((dx + 1) * 3 + (dy + 1)) * 3 + (dz + 1); neighbours [V, 27] int32, -1 where the neighbour is empty.
#include "kernels.h"


#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

namespace {

constexpr int kOffsets = 27;
constexpr int kLanes = 8;  // floats per vector: 256-bit (AVX2) where the CPU has it, two 128-bit halves otherwise
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(Vec));
  return v;
}
inline void store(float* p, Vec v) { std::memcpy(p, &v, sizeof(Vec)); }

inline float lane_sum(Vec v) {
  float sum = 0.0f;
  for (int j = 0; j < kLanes; ++j) sum += v[j];
  return sum;
}

// float32 rows [begin, end): out[o] = sum_k features[neighbours[o, k]] @ weight[k] (+ bias, then ReLU if `relu`),
// the first NV x 8 output columns from `weight` [27, C_in, NV x 8], and with TAIL (0 or 1) one more column from
// `tail_weight` [27, C_in] as a dot product over the input channels: the `cpu` model's 17 channels (16 + the
// density logit) padded to 24 would spend a third of the arithmetic on zeros. Rows of `out` are `out_stride`
// floats apart; `bias` (NV x 8 + TAIL floats, or null) and the ReLU are applied as the row is stored, saving two
// passes over [V, C_out] and their allocations.
// The accumulators are locals, so they stay in registers: accumulating in memory instead serialises every
// multiply-add on a store-to-load round trip (measured 4x slower). U sets of them take U input channels in turn:
// with one set, each multiply-add waits for the previous one on the same accumulator (4 cycles of latency, and
// the narrow layers here have only 2-4 accumulators), so the FMA units would idle most of the time.
template <int NV, int TAIL>
inline __attribute__((always_inline)) void conv_rows_f32(const float* __restrict__ features,
                                                         const float* __restrict__ weight,
                                                         const float* __restrict__ tail_weight,
                                                         const int32_t* __restrict__ neighbours,
                                                         const float* __restrict__ bias, bool relu,
                                                         float* __restrict__ out, int64_t begin, int64_t end,
                                                         int64_t c_in, int64_t out_stride) {
  constexpr int width = NV * kLanes;
  Vec bias_vectors[NV];
  for (int b = 0; b < NV; ++b) bias_vectors[b] = bias != nullptr ? load(bias + b * kLanes) : Vec{};
  const float tail_bias = TAIL && bias != nullptr ? bias[width] : 0.0f;
  constexpr int U = NV <= 2 ? 4 : NV <= 4 ? 3 : NV <= 6 ? 2 : 1;  // U x NV <= 12 of the 16 vector registers
  for (int64_t o = begin; o < end; ++o) {
    Vec acc[U][NV];
#pragma GCC unroll 16
    for (int u = 0; u < U; ++u)
#pragma GCC unroll 16
      for (int b = 0; b < NV; ++b) acc[u][b] = Vec{};
    Vec tail_acc = Vec{};
    float tail_sum = 0.0f;
    const int32_t* nb = neighbours + o * kOffsets;
    for (int k = 0; k < kOffsets; ++k) {
      const int32_t n = nb[k];
      if (n < 0) continue;
      const float* __restrict__ x = features + static_cast<int64_t>(n) * c_in;
      const float* __restrict__ w = weight + static_cast<int64_t>(k) * c_in * width;
      int64_t i = 0;
      for (; i + U <= c_in; i += U) {
#pragma GCC unroll 16
        for (int u = 0; u < U; ++u) {
          const Vec xi = Vec{} + x[i + u];
#pragma GCC unroll 16
          for (int b = 0; b < NV; ++b) acc[u][b] += xi * load(w + (i + u) * width + b * kLanes);
        }
      }
      for (; i < c_in; ++i) {
        const Vec xi = Vec{} + x[i];
#pragma GCC unroll 16
        for (int b = 0; b < NV; ++b) acc[0][b] += xi * load(w + i * width + b * kLanes);
      }
      if (TAIL) {
        const float* __restrict__ wt = tail_weight + static_cast<int64_t>(k) * c_in;
        int64_t j = 0;
        for (; j + kLanes <= c_in; j += kLanes) tail_acc += load(x + j) * load(wt + j);
        for (; j < c_in; ++j) tail_sum += x[j] * wt[j];
      }
    }
    float* row = out + o * out_stride;
#pragma GCC unroll 16
    for (int b = 0; b < NV; ++b) {
      Vec sum = acc[0][b] + bias_vectors[b];
#pragma GCC unroll 16
      for (int u = 1; u < U; ++u) sum += acc[u][b];
      if (relu) sum = sum > Vec{} ? sum : Vec{};
      store(row + b * kLanes, sum);
    }
    if (TAIL) {
      const float value = tail_sum + lane_sum(tail_acc) + tail_bias;
      row[width] = relu && value < 0.0f ? 0.0f : value;
    }
  }
}

// float32 weight gradient of kernel offsets [begin, end): grad_weight[k] = sum over the pairs (o, n =
// neighbours[o, k]) of features[n]^T grad[o], with C_out padded to NV vectors. The offset's pairs are listed once;
// then IB input channels at a time are accumulated over all of them in IB x NV registers (accumulating in memory
// would store once per multiply-add).
template <int NV, int IB>
inline __attribute__((always_inline)) void weight_grad_block(const float* __restrict__ features,
                                                             const float* __restrict__ grad,
                                                             const int32_t* __restrict__ pairs, int64_t count,
                                                             float* __restrict__ acc_out, int64_t c_in, int64_t i0) {
  constexpr int c_out = NV * kLanes;
  Vec acc[IB][NV];
#pragma GCC unroll 16
  for (int a = 0; a < IB; ++a)
#pragma GCC unroll 16
    for (int b = 0; b < NV; ++b) acc[a][b] = load(acc_out + (i0 + a) * c_out + b * kLanes);
  for (int64_t p = 0; p < count; ++p) {
    const float* __restrict__ g = grad + static_cast<int64_t>(pairs[2 * p]) * c_out;
    const float* __restrict__ x = features + static_cast<int64_t>(pairs[2 * p + 1]) * c_in + i0;
    Vec xa[IB];
#pragma GCC unroll 16
    for (int a = 0; a < IB; ++a) xa[a] = Vec{} + x[a];
#pragma GCC unroll 16
    for (int b = 0; b < NV; ++b) {
      const Vec gb = load(g + b * kLanes);
#pragma GCC unroll 16
      for (int a = 0; a < IB; ++a) acc[a][b] += xa[a] * gb;
    }
  }
#pragma GCC unroll 16
  for (int a = 0; a < IB; ++a)
#pragma GCC unroll 16
    for (int b = 0; b < NV; ++b) store(acc_out + (i0 + a) * c_out + b * kLanes, acc[a][b]);
}

// neighbours_by_offset: the neighbour table transposed, [27, V], so that one offset's column is contiguous. Its
// valid pairs are listed first without a branch (a data-dependent branch per voxel and pass mispredicts often
// enough to cost more than the arithmetic). Then, one cache-sized chunk of pairs at a time, IB input channels at a
// time are accumulated over the chunk in IB x NV registers (accumulating in memory would store once per
// multiply-add; a pass over all pairs per channel block would stream the features and gradients from memory
// C_in / IB times).
template <int NV>
inline __attribute__((always_inline)) void weight_grad_f32(const float* __restrict__ features,
                                                           const float* __restrict__ grad,
                                                           const int32_t* __restrict__ neighbours_by_offset,
                                                           float* __restrict__ grad_weight, int64_t begin,
                                                           int64_t end, int64_t num_voxels, int64_t c_in,
                                                           bool swapped) {
  constexpr int c_out = NV * kLanes;
  constexpr int IB = NV == 1 ? 8 : NV == 2 ? 5 : NV == 3 ? 3 : NV <= 5 ? 2 : 1;  // IB x NV <= 12 registers
  // swapped: `features` are indexed by the output voxel and `grad` by its neighbour (the transposed product)
  const int first = swapped ? 1 : 0;
  std::vector<int32_t> pairs(2 * num_voxels + 2);
  for (int64_t k = begin; k < end; ++k) {
    const int32_t* column = neighbours_by_offset + k * num_voxels;
    int64_t count = 0;
    for (int64_t o = 0; o < num_voxels; ++o) {
      const int32_t n = column[o];
      pairs[2 * count + first] = static_cast<int32_t>(o);
      pairs[2 * count + 1 - first] = n;
      count += n >= 0;
    }
    float* acc = grad_weight + k * c_in * c_out;  // zeroed by the caller
    constexpr int64_t kChunk = 512;
    for (int64_t start = 0; start < count; start += kChunk) {
      const int32_t* chunk = pairs.data() + 2 * start;
      const int64_t size = std::min(kChunk, count - start);
      int64_t i0 = 0;
      for (; i0 + IB <= c_in; i0 += IB) weight_grad_block<NV, IB>(features, grad, chunk, size, acc, c_in, i0);
      for (; i0 < c_in; ++i0) weight_grad_block<NV, 1>(features, grad, chunk, size, acc, c_in, i0);
    }
  }
}

// One body, compiled twice: for AVX2 + FMA (chosen at run time where the CPU has them) and for the baseline ISA.
#if defined(__x86_64__) && defined(__GNUC__)
#define DISTILLNERF_AVX2 __attribute__((target("avx2,fma")))
#define DISTILLNERF_HAS_AVX2 1
#else
#define DISTILLNERF_HAS_AVX2 0
#endif

template <int NV, int TAIL>
void conv_f32_generic(const float* f, const float* w, const float* wt, const int32_t* nb, const float* bias,
                      bool relu, float* out, int64_t b, int64_t e, int64_t c_in, int64_t stride) {
  conv_rows_f32<NV, TAIL>(f, w, wt, nb, bias, relu, out, b, e, c_in, stride);
}
template <int NV>
void grad_f32_generic(const float* f, const float* g, const int32_t* nb, float* gw, int64_t b, int64_t e,
                      int64_t v, int64_t c_in, bool swapped) {
  weight_grad_f32<NV>(f, g, nb, gw, b, e, v, c_in, swapped);
}
#if DISTILLNERF_HAS_AVX2
template <int NV, int TAIL>
DISTILLNERF_AVX2 void conv_f32_avx2(const float* f, const float* w, const float* wt, const int32_t* nb,
                                    const float* bias, bool relu, float* out, int64_t b, int64_t e, int64_t c_in,
                                    int64_t stride) {
  conv_rows_f32<NV, TAIL>(f, w, wt, nb, bias, relu, out, b, e, c_in, stride);
}
template <int NV>
DISTILLNERF_AVX2 void grad_f32_avx2(const float* f, const float* g, const int32_t* nb, float* gw, int64_t b,
                                    int64_t e, int64_t v, int64_t c_in, bool swapped) {
  weight_grad_f32<NV>(f, g, nb, gw, b, e, v, c_in, swapped);
}
#endif

bool cpu_has_avx2() {
#if DISTILLNERF_HAS_AVX2
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

using ConvRows = void (*)(const float*, const float*, const float*, const int32_t*, const float*, bool, float*,
                          int64_t, int64_t, int64_t, int64_t);
using GradRows = void (*)(const float*, const float*, const int32_t*, float*, int64_t, int64_t, int64_t, int64_t,
                          bool);

struct F32Kernels {
  ConvRows conv = nullptr;       // C_out = NV x 8
  ConvRows conv_tail = nullptr;  // C_out = NV x 8 + 1
  GradRows grad = nullptr;
};

template <int NV>
F32Kernels kernels_for() {
#if DISTILLNERF_HAS_AVX2
  if (cpu_has_avx2()) return {&conv_f32_avx2<NV, 0>, &conv_f32_avx2<NV, 1>, &grad_f32_avx2<NV>};
#endif
  return {&conv_f32_generic<NV, 0>, &conv_f32_generic<NV, 1>, &grad_f32_generic<NV>};
}

// Kernels for `vectors` x 8 channels (up to 128, the `paper` model's widest).
F32Kernels f32_kernels(int64_t vectors) {
  switch (vectors) {
    case 1: return kernels_for<1>();
    case 2: return kernels_for<2>();
    case 3: return kernels_for<3>();
    case 4: return kernels_for<4>();
    case 5: return kernels_for<5>();
    case 6: return kernels_for<6>();
    case 8: return kernels_for<8>();
    case 16: return kernels_for<16>();
    default: return {};
  }
}

int64_t padded_vectors(int64_t c_out) {
  const int64_t v = (c_out + kLanes - 1) / kLanes;
  return v == 7 ? 8 : (v > 8 && v <= 16 ? 16 : v);
}

// Any dtype, any width: the reference-speed path (float64 for gradient checks, widths the table above lacks).
template <typename scalar_t>
void conv_rows_any(const scalar_t* features, const scalar_t* weight, const int32_t* neighbours,
                   const scalar_t* bias, bool relu, scalar_t* out, int64_t begin, int64_t end, int64_t c_in,
                   int64_t c_out) {
  for (int64_t o = begin; o < end; ++o) {
    scalar_t* row = out + o * c_out;
    for (int64_t j = 0; j < c_out; ++j) row[j] = bias != nullptr ? bias[j] : scalar_t(0);
    for (int k = 0; k < kOffsets; ++k) {
      const int32_t n = neighbours[o * kOffsets + k];
      if (n < 0) continue;
      const scalar_t* x = features + static_cast<int64_t>(n) * c_in;
      const scalar_t* w = weight + static_cast<int64_t>(k) * c_in * c_out;
      for (int64_t i = 0; i < c_in; ++i)
        for (int64_t j = 0; j < c_out; ++j) row[j] += x[i] * w[i * c_out + j];
    }
    if (relu)
      for (int64_t j = 0; j < c_out; ++j) row[j] = row[j] < scalar_t(0) ? scalar_t(0) : row[j];
  }
}

template <typename scalar_t>
void weight_grad_any(const scalar_t* features, const scalar_t* grad, const int32_t* neighbours,
                     scalar_t* grad_weight, int64_t begin, int64_t end, int64_t num_voxels, int64_t c_in,
                     int64_t c_out) {
  for (int64_t k = begin; k < end; ++k) {
    scalar_t* acc = grad_weight + k * c_in * c_out;
    for (int64_t o = 0; o < num_voxels; ++o) {
      const int32_t n = neighbours[k * num_voxels + o];
      if (n < 0) continue;
      for (int64_t i = 0; i < c_in; ++i)
        for (int64_t j = 0; j < c_out; ++j) acc[i * c_out + j] += features[n * c_in + i] * grad[o * c_out + j];
    }
  }
}

at::Tensor pad_columns(const at::Tensor& t, int64_t width) {
  if (t.size(-1) == width) return t.contiguous();
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  shape.back() = width;
  auto padded = at::zeros(shape, t.options());
  padded.narrow(-1, 0, t.size(-1)).copy_(t);
  return padded;
}

void check_inputs(const at::Tensor& features, const at::Tensor& neighbours) {
  TORCH_CHECK(features.device().is_cpu() && neighbours.device().is_cpu(), "submanifold_cpu: CPU tensors only");
  TORCH_CHECK(features.dim() == 2, "submanifold_cpu: features must be [V, C], got ", features.sizes());
  TORCH_CHECK(neighbours.scalar_type() == at::kInt && neighbours.dim() == 2 && neighbours.size(1) == kOffsets &&
                  neighbours.size(0) == features.size(0),
              "submanifold_cpu: neighbours must be int32 [V, 27] with V = ", features.size(0), ", got ",
              neighbours.sizes());
}

}  // namespace

// features [V, C_in], weight [27, C_in, C_out], neighbours [V, 27] int32, optional bias [C_out], relu ->
// [V, C_out] (relu(conv + bias) when relu is set)
at::Tensor conv_forward(const at::Tensor& features_in, const at::Tensor& weight_in, const at::Tensor& neighbours_in,
                        const c10::optional<at::Tensor>& bias_in, bool relu) {
  check_inputs(features_in, neighbours_in);
  TORCH_CHECK(weight_in.dim() == 3 && weight_in.size(0) == kOffsets && weight_in.size(1) == features_in.size(1),
              "submanifold_cpu: weight must be [27, C_in, C_out] with C_in = ", features_in.size(1), ", got ",
              weight_in.sizes());
  TORCH_CHECK(weight_in.scalar_type() == features_in.scalar_type(), "submanifold_cpu: dtype mismatch");
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  TORCH_CHECK(!has_bias || (bias_in->dim() == 1 && bias_in->size(0) == weight_in.size(2) &&
                            bias_in->scalar_type() == features_in.scalar_type()),
              "submanifold_cpu: bias must be [C_out] of the features' dtype");
  const auto features = features_in.contiguous();
  const auto weight = weight_in.contiguous();
  const auto neighbours = neighbours_in.contiguous();
  const auto bias = has_bias ? bias_in->contiguous() : at::Tensor();
  const int64_t v = features.size(0), c_in = features.size(1), c_out = weight.size(2);
  // C_out = 8 x NV + 1 (17, 33, ...): NV vectors and one dot-product column; otherwise padded to whole vectors
  const bool tail = c_out > kLanes && c_out % kLanes == 1;
  const int64_t vectors = tail ? c_out / kLanes : padded_vectors(c_out);
  const auto kernels = f32_kernels(vectors);
  const ConvRows conv = tail ? kernels.conv_tail : kernels.conv;
  if (features.scalar_type() == at::kFloat && conv != nullptr) {
    const int64_t width = vectors * kLanes;
    const auto w = tail ? weight.narrow(2, 0, width).contiguous() : pad_columns(weight, width);
    const auto wt = tail ? weight.select(2, width).contiguous() : w;
    const auto b = has_bias && !tail ? pad_columns(bias, width) : bias;  // the tail's bias follows its vectors'
    const int64_t stride = tail ? c_out : width;
    auto out = at::empty({v, stride}, features.options());
    const float* fp = features.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    const float* wtp = wt.data_ptr<float>();
    const float* bp = has_bias ? b.data_ptr<float>() : nullptr;
    const int32_t* np = neighbours.data_ptr<int32_t>();
    float* op = out.data_ptr<float>();
    at::parallel_for(0, v, 256, [&](int64_t begin, int64_t end) {
      conv(fp, wp, wtp, np, bp, relu, op, begin, end, c_in, stride);
    });
    return stride == c_out ? out : out.narrow(1, 0, c_out).contiguous();
  }
  auto out = at::empty({v, c_out}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "submanifold_conv_forward", [&] {
    const scalar_t* fp = features.data_ptr<scalar_t>();
    const scalar_t* wp = weight.data_ptr<scalar_t>();
    const scalar_t* bp = has_bias ? bias.data_ptr<scalar_t>() : nullptr;
    const int32_t* np = neighbours.data_ptr<int32_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, v, 256, [&](int64_t begin, int64_t end) {
      conv_rows_any<scalar_t>(fp, wp, np, bp, relu, op, begin, end, c_in, c_out);
    });
  });
  return out;
}

// grad_weight[k] = sum_o features[neighbours[o, k]]^T grad[o] -> [27, C_in, C_out]; one kernel offset per task.
// Takes the neighbour table transposed, [27, V] (one offset's column contiguous).
at::Tensor conv_backward_weight(const at::Tensor& features_in, const at::Tensor& grad_in,
                                const at::Tensor& neighbours_by_offset) {
  check_inputs(features_in, neighbours_by_offset.t());
  TORCH_CHECK(grad_in.dim() == 2 && grad_in.size(0) == features_in.size(0), "submanifold_cpu: grad must be [V, C]");
  const auto features = features_in.contiguous();
  const auto grad = grad_in.contiguous().to(features.scalar_type());
  const auto neighbours = neighbours_by_offset.contiguous();
  const int64_t v = features.size(0), c_in = features.size(1), c_out = grad.size(1);
  // The vector side is padded to whole vectors: put the wider-after-padding side there only when it pads less
  // (C_in 32, C_out 17: 32 x 3 vectors of work transposed against 17 x 4 as is).
  const bool swapped = c_in * padded_vectors(c_out) > c_out * padded_vectors(c_in);
  const int64_t vectors = padded_vectors(swapped ? c_in : c_out);
  const GradRows grad_rows = f32_kernels(vectors).grad;
  if (features.scalar_type() == at::kFloat && grad_rows != nullptr) {
    const int64_t width = vectors * kLanes;
    const auto vector_side = pad_columns(swapped ? features : grad, width);
    const auto& scalar_side = swapped ? grad : features;
    const int64_t scalars = swapped ? c_out : c_in;
    auto result = at::zeros({kOffsets, scalars, width}, features.options());
    const float* sp = scalar_side.data_ptr<float>();
    const float* vp = vector_side.data_ptr<float>();
    const int32_t* np = neighbours.data_ptr<int32_t>();
    float* rp = result.data_ptr<float>();
    at::parallel_for(0, kOffsets, 1, [&](int64_t begin, int64_t end) {
      grad_rows(sp, vp, np, rp, begin, end, v, scalars, swapped);
    });
    const int64_t narrow = swapped ? c_in : c_out;
    auto grad_weight = width == narrow ? result : result.narrow(2, 0, narrow);
    return (swapped ? grad_weight.transpose(1, 2) : grad_weight).contiguous();
  }
  auto grad_weight = at::zeros({kOffsets, c_in, c_out}, features.options());
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "submanifold_conv_backward_weight", [&] {
    const scalar_t* fp = features.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const int32_t* np = neighbours.data_ptr<int32_t>();
    scalar_t* gwp = grad_weight.data_ptr<scalar_t>();
    at::parallel_for(0, kOffsets, 1, [&](int64_t begin, int64_t end) {
      weight_grad_any<scalar_t>(fp, gp, np, gwp, begin, end, v, c_in, c_out);
    });
  });
  return grad_weight;
}

// The neighbour table of one sparse level. keys [V] int64 sorted ascending and unique (batch-major linear keys,
// ((b * R + x) * R + y) * R + z), indices [V, 4] int32 (b, x, y, z) of the same rows -> [V, 27] int32.
// For each kernel offset the neighbours' keys are the sorted keys shifted by a constant, so one merge-like sweep
// finds them all; offsets are split over threads (each writes its own column and its mirror's).
at::Tensor neighbour_table(const at::Tensor& keys_in, const at::Tensor& indices_in, int64_t resolution) {
  TORCH_CHECK(keys_in.device().is_cpu() && keys_in.scalar_type() == at::kLong && keys_in.dim() == 1,
              "submanifold_cpu: keys must be a CPU int64 vector");
  TORCH_CHECK(indices_in.scalar_type() == at::kInt && indices_in.dim() == 2 && indices_in.size(1) == 4 &&
                  indices_in.size(0) == keys_in.size(0),
              "submanifold_cpu: indices must be int32 [V, 4] matching keys");
  const auto keys = keys_in.contiguous();
  const auto indices = indices_in.contiguous();
  const int64_t v = keys.size(0);
  auto table = at::full({v, kOffsets}, -1, keys.options().dtype(at::kInt));
  const int64_t* key = keys.data_ptr<int64_t>();
  const int32_t* idx = indices.data_ptr<int32_t>();
  int32_t* nb = table.data_ptr<int32_t>();
  for (int64_t o = 0; o < v; ++o) nb[o * kOffsets + 13] = static_cast<int32_t>(o);  // the centre is itself
  // the 13 offsets after the centre in k order; each also fills its mirror 26 - k
  std::vector<int> half;
  for (int k = 14; k < kOffsets; ++k) half.push_back(k);
  const int64_t r = resolution;
  at::parallel_for(0, static_cast<int64_t>(half.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      const int k = half[h];
      const int dx = k / 9 - 1, dy = (k / 3) % 3 - 1, dz = k % 3 - 1;
      const int64_t delta = (static_cast<int64_t>(dx) * r + dy) * r + dz;
      int64_t j = 0;
      for (int64_t o = 0; o < v; ++o) {
        const int32_t* p = idx + o * 4;
        const int64_t x = p[1] + dx, y = p[2] + dy, z = p[3] + dz;
        if (x < 0 || x >= r || y < 0 || y >= r || z < 0 || z >= r) continue;
        const int64_t target = key[o] + delta;  // delta > 0 for these offsets: targets rise with o
        while (j < v && key[j] < target) ++j;
        if (j == v) break;
        if (key[j] == target) {
          nb[o * kOffsets + k] = static_cast<int32_t>(j);
          nb[j * kOffsets + (kOffsets - 1 - k)] = static_cast<int32_t>(o);
        }
      }
    }
  });
  return table;
}
