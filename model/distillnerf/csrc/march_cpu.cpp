// Inference ray march of the sparse field on the CPU, one pass per ray: each sample is placed, contracted, looked
// up in the two-level index (coarse row volume, then the coarse voxel's block of child rows), composited and
// dropped once the ray's transmittance is below the threshold, with no [samples] tensor in between. It reproduces
// distillnerf.renderer.render_rays step for step (the same float operations in the same order: ray point, the
// contraction's factor, quantisation, chunked optical-depth sums accumulated in double as torch's CPU cumsum
// does), so the two agree to float rounding (test/test_model_fast_field.py). No autograd: training marches with
// the torch path.
// fp-contract off: products and sums rounded one by one, as torch's separate tensor operations round them
#pragma GCC optimize("fp-contract=off")
#include "kernels.h"


#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kMaxChunk = 256;  // samples looked up at a time (torch marches march_chunk at a time)

inline float contract_factor(float magnitude, float radius, float inside, float outer) {
  // geometry._contract_factor: where(m < r, alpha / r, (1 - (1 - alpha) r / max(m, r)) / max(m, r)), with
  // outer = (1 - alpha) r. torch evaluates `python_float / tensor` as reciprocal(tensor) * python_float.
  if (magnitude < radius) return inside;
  return (1.0f - (1.0f / magnitude) * outer) / magnitude;
}

// hypot as glibc's hypotf computes it for finite inputs (in double, rounded once): the same float as torch.hypot
// gives, without the library call's overflow handling (ego coordinates are far from float's range).
inline float hypot_f(float x, float y) {
  const double xd = x, yd = y;
  return static_cast<float>(std::sqrt(xd * xd + yd * yd));
}

inline int32_t quantise(float c, float half, float top) {
  float v = c * half + half;
  v = v < 0.0f ? 0.0f : (v > top ? top : v);
  return static_cast<int32_t>(v);
}

}  // namespace

// empty_row: the stacked row of empty space. t, deltas [R, S] float; origins, directions [R, 3]; batch [R] int64 (empty: all entry 0); coarse_rows: dense
// row volume of the coarse level (int32, batch-major); blocks: stacked-row blocks of the two-level index (int32);
// density [rows] float; channels [rows, C] float (C may be 0).
// -> (weights [R, S], rows [R, S] int32 (-1 = not composited), opacity [R], weighted distance sum [R],
//     channel sums [R, C])
std::vector<at::Tensor> march(const at::Tensor& t_in, const at::Tensor& deltas_in, const at::Tensor& origins_in,
                              const at::Tensor& directions_in, const at::Tensor& batch_in,
                              const at::Tensor& coarse_rows_in, const at::Tensor& blocks_in,
                              const at::Tensor& density_in, const at::Tensor& channels_in, int64_t fine_resolution,
                              int64_t ratio, int64_t coarse_count, int64_t empty_row, double radius_xy,
                              double radius_z, double alpha, double early_stop, int64_t chunk) {
  TORCH_CHECK(t_in.scalar_type() == at::kFloat && t_in.dim() == 2, "march_cpu: t must be float [R, S]");
  TORCH_CHECK(deltas_in.sizes() == t_in.sizes(), "march_cpu: deltas must match t");
  TORCH_CHECK(coarse_rows_in.scalar_type() == at::kInt && blocks_in.scalar_type() == at::kInt,
              "march_cpu: index tables must be int32");
  TORCH_CHECK(density_in.scalar_type() == at::kFloat && channels_in.scalar_type() == at::kFloat,
              "march_cpu: density and channels must be float");
  const auto t = t_in.contiguous(), deltas = deltas_in.contiguous();
  const auto origins = origins_in.to(at::kFloat).contiguous(), directions = directions_in.to(at::kFloat).contiguous();
  const auto batch = batch_in.to(at::kLong).contiguous();
  const auto coarse_rows = coarse_rows_in.contiguous(), blocks = blocks_in.contiguous();
  const auto density = density_in.contiguous(), channels = channels_in.contiguous();
  const int64_t r = t.size(0), s = t.size(1), c = channels.dim() == 2 ? channels.size(1) : 0;
  const int64_t step = std::min<int64_t>(chunk > 0 ? chunk : s, kMaxChunk);
  auto weights = at::zeros({r, s}, t.options());
  auto rows = at::full({r, s}, -1, t.options().dtype(at::kInt));
  auto opacity = at::zeros({r}, t.options());
  auto distance = at::zeros({r}, t.options());
  auto sums = at::zeros({r, c}, t.options());

  // the constants as torch forms them: Python scalars rounded to float32 where they meet a float tensor
  const float rxy = static_cast<float>(radius_xy), rz = static_cast<float>(radius_z);
  const float inside_xy = static_cast<float>(alpha / radius_xy), inside_z = static_cast<float>(alpha / radius_z);
  const float outer_xy = static_cast<float>((1.0 - alpha) * radius_xy);
  const float outer_z = static_cast<float>((1.0 - alpha) * radius_z);
  const float half = static_cast<float>(0.5 * fine_resolution);
  const float top = static_cast<float>(fine_resolution - 1);
  const int fine_bits = 63 - __builtin_clzll(static_cast<uint64_t>(fine_resolution));
  const int ratio_bits = 63 - __builtin_clzll(static_cast<uint64_t>(ratio));
  const int coarse_bits = fine_bits - ratio_bits;
  const int32_t mask = static_cast<int32_t>(ratio - 1);
  const bool stopping = early_stop > 0.0;
  const float stop_t = static_cast<float>(early_stop);
  // torch compares the float carry with the Python float, rounded to float32
  const float stop_optical = stopping ? static_cast<float>(-std::log(early_stop)) : INFINITY;
  const bool batched = batch.numel() == r;

  const float* tp = t.data_ptr<float>();
  const float* dp = deltas.data_ptr<float>();
  const float* op = origins.data_ptr<float>();
  const float* dirp = directions.data_ptr<float>();
  const int64_t* bp = batched ? batch.data_ptr<int64_t>() : nullptr;
  const int32_t* crow = coarse_rows.data_ptr<int32_t>();
  const int32_t* blk = blocks.data_ptr<int32_t>();
  const float* dens = density.data_ptr<float>();
  const float* chan = c > 0 ? channels.data_ptr<float>() : nullptr;
  float* wp = weights.data_ptr<float>();
  int32_t* rp = rows.data_ptr<int32_t>();
  float* opp = opacity.data_ptr<float>();
  float* disp = distance.data_ptr<float>();
  float* sp = sums.data_ptr<float>();

  at::parallel_for(0, r, 64, [&](int64_t begin, int64_t end) {
    for (int64_t ray = begin; ray < end; ++ray) {
      const float ox = op[3 * ray], oy = op[3 * ray + 1], oz = op[3 * ray + 2];
      const float dx = dirp[3 * ray], dy = dirp[3 * ray + 1], dz = dirp[3 * ray + 2];
      const int32_t batch_key = bp ? static_cast<int32_t>(bp[ray]) << (3 * coarse_bits) : 0;
      float carry = 0.0f;  // optical depth of the chunks marched so far
      float acc_opacity = 0.0f, acc_distance = 0.0f;
      float* out_sums = sp + ray * c;
      for (int64_t start = 0; start < s; start += step) {
        const int64_t stop = start + step < s ? start + step : s;
        // the chunk's lookups first, free of branches, so that their memory accesses overlap
        int32_t chunk_rows[kMaxChunk];
        for (int64_t i = start; i < stop; ++i) {
          const float ti = tp[ray * s + i];
          const float x = ox + dx * ti, y = oy + dy * ti, z = oz + dz * ti;
          const float fxy = contract_factor(hypot_f(x, y), rxy, inside_xy, outer_xy);
          const float fz = contract_factor(std::fabs(z), rz, inside_z, outer_z);
          const int32_t qx = quantise(x * fxy, half, top), qy = quantise(y * fxy, half, top);
          const int32_t qz = quantise(z * fz, half, top);
          const int32_t key = ((((qx >> ratio_bits) << coarse_bits) | (qy >> ratio_bits)) << coarse_bits |
                               (qz >> ratio_bits)) + batch_key;
          const int32_t coarse = crow[key];
          const int32_t block = coarse >= 0 ? coarse : static_cast<int32_t>(coarse_count);
          const int32_t local = (((qx & mask) << ratio_bits | (qy & mask)) << ratio_bits) | (qz & mask);
          chunk_rows[i - start] = blk[(static_cast<int64_t>(block) << (3 * ratio_bits)) | local];
        }
        double running = 0.0;  // the chunk's inclusive optical depth, accumulated as torch's cumsum does
        for (int64_t i = start; i < stop; ++i) {
          const int32_t row = chunk_rows[i - start];
          if (row == empty_row) continue;  // empty space: no hit, adds nothing
          const float ti = tp[ray * s + i];
          const float optical = dens[row] * dp[ray * s + i];
          running += static_cast<double>(optical);
          const float inclusive = static_cast<float>(running);
          const float exclusive = (inclusive - optical) + carry;
          const float transmittance = std::exp(-exclusive);
          const float weight = transmittance * (1.0f - std::exp(-optical));
          if (stopping && transmittance < stop_t) continue;
          wp[ray * s + i] = weight;
          rp[ray * s + i] = row;
          acc_opacity += weight;
          acc_distance += weight * ti;
          if (chan) {
            const float* cr = chan + static_cast<int64_t>(row) * c;
            for (int64_t j = 0; j < c; ++j) out_sums[j] += weight * cr[j];
          }
        }
        carry = carry + static_cast<float>(running);
        if (stop < s && !(carry < stop_optical)) break;
      }
      opp[ray] = acc_opacity;
      disp[ray] = acc_distance;
    }
  });
  return {weights, rows, opacity, distance, sums};
}
