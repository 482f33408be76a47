// The fused LSTM layer kernels (forward and backward) that l2l_core/fused.py compiles on first use.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

// One LSTM layer over N coordinates (columns). W is (4H, K1 = I+H+1): rows are the input, forget, output
// (sigmoid) and candidate (tanh) gates, columns the inputs [x; h_prev; 1] (the last one the bias).
// Coordinates are processed in blocks of NB = four SIMD vectors: a block's inputs are copied to a small
// local buffer, a hidden unit's four gates are accumulated in 16 vector registers and the cell follows at
// once, so the (4H, N) gate tensor is never written to memory (on the development machine, memory traffic
// and not arithmetic was the limit). Backward recomputes the gates the same way instead of saving them.
#if defined(__AVX512F__)
constexpr int64_t V = 16;
#elif defined(__AVX__)
constexpr int64_t V = 8;
#else
constexpr int64_t V = 4;
#endif
constexpr int64_t NB = 4 * V;
constexpr int64_t SB = 4;  // blocks per dW accumulation (backward)
typedef float vf __attribute__((vector_size(V * 4)));
// Rows are N floats apart, so a block touches 40-odd separate streams, more than the hardware prefetchers
// follow: each row's data for the block PREFETCH blocks ahead is requested explicitly.
constexpr int64_t PREFETCH = 2;
static inline void prefetch_row(const float* p, bool write) {
  for (int64_t line = 0; line < NB; line += 16) {
    if (write) __builtin_prefetch(p + PREFETCH * NB + line, 1, 3); else __builtin_prefetch(p + PREFETCH * NB + line, 0, 3);
  }
}
static inline vf vload(const float* p) { vf r; std::memcpy(&r, p, sizeof r); return r; }
static inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
static inline vf splat(float s) { return vf{} + s; }

// tanh: the odd 13/6 rational minimax approximation Eigen uses for float (a few ulp), clamped where tanh
// rounds to +-1; sigmoid(x) = (1 + tanh(x/2)) / 2. No exp, one (reciprocal-approximated) division.
static inline vf vtanh(vf x) {
  x = x < splat(-7.90531110763549805f) ? splat(-7.90531110763549805f) : x;
  x = x > splat(7.90531110763549805f) ? splat(7.90531110763549805f) : x;
  const vf z = x * x;
  vf p = splat(-2.76076847742355e-16f);
  p = p * z + 2.00018790482477e-13f; p = p * z - 8.60467152213735e-11f; p = p * z + 5.12229709037114e-08f;
  p = p * z + 1.48572235717979e-05f; p = p * z + 6.37261928875436e-04f; p = p * z + 4.89352455891786e-03f;
  vf q = splat(1.19825839466702e-06f);
  q = q * z + 1.18534705686654e-04f; q = q * z + 2.26843463243900e-03f; q = q * z + 4.89352518554385e-03f;
  return x * p / q;
}
static inline vf vsig(vf x) { return 0.5f + 0.5f * vtanh(0.5f * x); }

struct Rows {  // row r of a (rows, N) float tensor with unit column stride; empty tensors give nullptr
  float* p; int64_t ld;
  explicit Rows(const torch::Tensor& t) : p(t.numel() ? t.data_ptr<float>() : nullptr), ld(t.dim() == 2 ? t.stride(0) : 0) {}
  float* operator[](int64_t r) const { return p + r * ld; }
};

// A layer's weights regrouped so that a hidden unit's four gate weights for one input are adjacent:
// P[(r*K1 + k)*4 + q] = W[q*H + r, k].
static std::vector<float> by_unit(const torch::Tensor& W, int64_t H, int64_t K1) {
  std::vector<float> P(H * K1 * 4);
  const float* w = W.data_ptr<float>();
  for (int64_t q = 0; q < 4; ++q)
    for (int64_t r = 0; r < H; ++r)
      for (int64_t k = 0; k < K1; ++k) P[(r * K1 + k) * 4 + q] = w[(q * H + r) * K1 + k];
  return P;
}

// X (K4 x NB) <- columns j0..j0+nb of [x; h; 1; 0 ...], zero beyond nb; K4 = K1 rounded up to 4.
static void gather(const Rows& x, int64_t I, const Rows& h, int64_t H, int64_t K4, int64_t j0, int64_t nb, float* X) {
  for (int64_t k = 0; k < I + H; ++k) {
    float* dst = X + k * NB;
    const float* src = (k < I ? x[k] : h[k - I]) + j0;
    prefetch_row(src, false);
    std::memcpy(dst, src, nb * sizeof(float));
    std::fill(dst + nb, dst + NB, 0.f);
  }
  float* ones = X + (I + H) * NB;
  std::fill(ones, ones + nb, 1.f);
  std::fill(ones + nb, ones + NB, 0.f);
  std::fill(X + (I + H + 1) * NB, X + K4 * NB, 0.f);
}

// Row r's columns of the current block: straight into the tensor for a full block, else a zero-padded
// local copy (``slot`` picks one of the scratch rows).
static inline const float* block_in(const Rows& t, int64_t r, int64_t j0, int64_t nb, float* scratch, int slot) {
  prefetch_row(t[r] + j0, false);
  if (nb == NB) return t[r] + j0;
  float* dst = scratch + slot * NB;
  std::memcpy(dst, t[r] + j0, nb * sizeof(float));
  std::fill(dst + nb, dst + NB, 0.f);
  return dst;
}

// Unit r's gate pre-activations for the block in X: a[q][v] = vector v of gate q.
static inline void unit_gates(const float* P, const float* X, int64_t r, int64_t K1, vf a[4][4]) {
  vf a00 = {}, a01 = {}, a02 = {}, a03 = {}, a10 = {}, a11 = {}, a12 = {}, a13 = {};
  vf a20 = {}, a21 = {}, a22 = {}, a23 = {}, a30 = {}, a31 = {}, a32 = {}, a33 = {};
  const float* p = P + r * K1 * 4;
  for (int64_t k = 0; k < K1; ++k, p += 4) {
    const float* xr = X + k * NB;
    const vf x0 = vload(xr), x1 = vload(xr + V), x2 = vload(xr + 2 * V), x3 = vload(xr + 3 * V);
    const float w0 = p[0], w1 = p[1], w2 = p[2], w3 = p[3];
    a00 += w0 * x0; a01 += w0 * x1; a02 += w0 * x2; a03 += w0 * x3;
    a10 += w1 * x0; a11 += w1 * x1; a12 += w1 * x2; a13 += w1 * x3;
    a20 += w2 * x0; a21 += w2 * x1; a22 += w2 * x2; a23 += w2 * x3;
    a30 += w3 * x0; a31 += w3 * x1; a32 += w3 * x2; a33 += w3 * x3;
  }
  a[0][0] = a00; a[0][1] = a01; a[0][2] = a02; a[0][3] = a03;
  a[1][0] = a10; a[1][1] = a11; a[1][2] = a12; a[1][3] = a13;
  a[2][0] = a20; a[2][1] = a21; a[2][2] = a22; a[2][3] = a23;
  a[3][0] = a30; a[3][1] = a31; a[3][2] = a32; a[3][3] = a33;
}

// h_out, c_out from x (I, N), h_prev, c_prev (H, N). c_out may be c_prev and h_out may be h_prev (in
// place): a block's inputs are copied before the block is written.
void layer_forward(torch::Tensor W, torch::Tensor x, torch::Tensor h_prev, torch::Tensor c_prev,
                   torch::Tensor h_out, torch::Tensor c_out) {
  const int64_t H = c_prev.size(0), N = c_prev.size(1), I = x.size(0), K1 = I + H + 1, K4 = (K1 + 3) / 4 * 4;
  TORCH_CHECK(W.size(0) == 4 * H && W.size(1) == K1 && W.is_contiguous(), "layer_forward: weight shape");
  const std::vector<float> P = by_unit(W, H, K1);
  const Rows xs(x), hs(h_prev), cps(c_prev), ho(h_out), co(c_out);
  at::parallel_for(0, (N + NB - 1) / NB, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> Xbuf(K4 * NB), scratch(3 * NB);
    float* X = Xbuf.data(); float* S = scratch.data();
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * NB, nb = std::min(NB, N - j0);
      gather(xs, I, hs, H, K4, j0, nb, X);
      for (int64_t r = 0; r < H; ++r) {
        vf a[4][4];
        unit_gates(P.data(), X, r, K1, a);
        const float* cp = block_in(cps, r, j0, nb, S, 0);
        prefetch_row(co[r] + j0, true); prefetch_row(ho[r] + j0, true);
        float* cn = nb == NB ? co[r] + j0 : S + NB;
        float* hn = nb == NB ? ho[r] + j0 : S + 2 * NB;
        #pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const vf i = vsig(a[0][v]), f = vsig(a[1][v]), o = vsig(a[2][v]), g = vtanh(a[3][v]);
          const vf cv = f * vload(cp + v * V) + i * g;
          vstore(cn + v * V, cv);
          vstore(hn + v * V, o * vtanh(cv));
        }
        if (nb < NB) { std::memcpy(co[r] + j0, cn, nb * 4); std::memcpy(ho[r] + j0, hn, nb * 4); }
      }
    }
  });
}

// Backward of layer_forward given dL/dh, dL/dc: dx and dh_prev (each skipped when given empty), dc_prev,
// and dW (4H, K1) summed over coordinates in a fixed order (per-thread partial sums added in thread
// order, so the same thread count gives the same bits). The gates are recomputed from the inputs.
void layer_backward(torch::Tensor W, torch::Tensor x, torch::Tensor h_prev, torch::Tensor c_prev,
                    torch::Tensor dh, torch::Tensor dc, torch::Tensor dx, torch::Tensor dh_prev,
                    torch::Tensor dc_prev, torch::Tensor dW) {
  const int64_t H = c_prev.size(0), N = c_prev.size(1), I = x.size(0), K1 = I + H + 1, K4 = (K1 + 3) / 4 * 4, R = 4 * H;
  TORCH_CHECK(W.size(0) == R && W.size(1) == K1 && W.is_contiguous() && dW.is_contiguous(), "layer_backward: weight shape");
  const std::vector<float> P = by_unit(W, H, K1);
  std::vector<float> Wt(K4 * R, 0.f);  // Wt[k*R + rr] = W[rr, k]; rows beyond K1 stay zero
  const float* w = W.data_ptr<float>();
  for (int64_t rr = 0; rr < R; ++rr) for (int64_t k = 0; k < K1; ++k) Wt[k * R + rr] = w[rr * K1 + k];
  const Rows xs(x), hs(h_prev), cps(c_prev), dhs(dh), dcs(dc), dxs(dx), dhp(dh_prev), dcp(dc_prev);
  const int64_t slots = at::get_num_threads();
  const int64_t k_begin = dx.numel() ? 0 : I, k_end = dh_prev.numel() ? I + H : I;
  std::vector<float> partial(slots * R * K4, 0.f);
  at::parallel_for(0, (N + NB - 1) / NB, 1, [&](int64_t b0, int64_t b1) {
    // SB consecutive blocks keep their inputs X and gate gradients D, so that dW's accumulators in Acc
    // (V lanes per entry, too big for L1) are updated once per SB blocks
    std::vector<float> Xbuf(SB * K4 * NB), Dbuf(SB * R * NB), Acc(R * K4 * V, 0.f), scratch(4 * NB);
    float* S = scratch.data();
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * NB, nb = std::min(NB, N - j0), slot = (blk - b0) % SB;
      float* X = Xbuf.data() + slot * K4 * NB; float* D = Dbuf.data() + slot * R * NB;
      gather(xs, I, hs, H, K4, j0, nb, X);
      // D = dL/d(gate pre-activations) of the block; padded columns have zero inputs, so zero gradients
      for (int64_t r = 0; r < H; ++r) {
        vf a[4][4];
        unit_gates(P.data(), X, r, K1, a);
        const float *cpr = block_in(cps, r, j0, nb, S, 0), *dhr = block_in(dhs, r, j0, nb, S, 1);
        const float* dcr = block_in(dcs, r, j0, nb, S, 2);
        prefetch_row(dcp[r] + j0, true);
        float* dcpr = nb == NB ? dcp[r] + j0 : S + 3 * NB;
        float *di = D + r * NB, *df = D + (H + r) * NB, *dout = D + (2 * H + r) * NB, *dg = D + (3 * H + r) * NB;
        #pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const int64_t o_ = v * V;
          const vf i = vsig(a[0][v]), f = vsig(a[1][v]), o = vsig(a[2][v]), g = vtanh(a[3][v]);
          const vf cprev = vload(cpr + o_), t = vtanh(f * cprev + i * g), dhv = vload(dhr + o_);
          const vf dcv = vload(dcr + o_) + dhv * o * (1.0f - t * t);
          vstore(dout + o_, dhv * t * o * (1.0f - o));
          vstore(di + o_, dcv * g * i * (1.0f - i));
          vstore(df + o_, dcv * cprev * f * (1.0f - f));
          vstore(dg + o_, dcv * i * (1.0f - g * g));
          vstore(dcpr + o_, dcv * f);
        }
        if (nb < NB) {
          std::memcpy(dcp[r] + j0, dcpr, nb * 4);
          for (float* d : {di, df, dout, dg}) std::fill(d + nb, d + NB, 0.f);
        }
      }
      // d[x; h_prev] = W^T D, four input rows at a time
      for (int64_t k0 = k_begin; k0 < k_end; k0 += 4) {
        vf a00 = {}, a01 = {}, a02 = {}, a03 = {}, a10 = {}, a11 = {}, a12 = {}, a13 = {};
        vf a20 = {}, a21 = {}, a22 = {}, a23 = {}, a30 = {}, a31 = {}, a32 = {}, a33 = {};
        for (int64_t rr = 0; rr < R; ++rr) {
          const float* dr = D + rr * NB;
          const vf d0 = vload(dr), d1 = vload(dr + V), d2 = vload(dr + 2 * V), d3 = vload(dr + 3 * V);
          const float w0 = Wt[k0 * R + rr], w1 = Wt[(k0 + 1) * R + rr], w2 = Wt[(k0 + 2) * R + rr], w3 = Wt[(k0 + 3) * R + rr];
          a00 += w0 * d0; a01 += w0 * d1; a02 += w0 * d2; a03 += w0 * d3;
          a10 += w1 * d0; a11 += w1 * d1; a12 += w1 * d2; a13 += w1 * d3;
          a20 += w2 * d0; a21 += w2 * d1; a22 += w2 * d2; a23 += w2 * d3;
          a30 += w3 * d0; a31 += w3 * d1; a32 += w3 * d2; a33 += w3 * d3;
        }
        const vf a[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
        for (int64_t q = 0; q < 4 && k0 + q < k_end; ++q) {
          const int64_t k = k0 + q;
          float* dst = (k < I ? dxs[k] : dhp[k - I]) + j0;
          prefetch_row(dst, true);
          float* out = nb == NB ? dst : S;
          for (int v = 0; v < 4; ++v) vstore(out + v * V, a[q][v]);
          if (nb < NB) std::memcpy(dst, S, nb * 4);
        }
      }
      // dW += D X^T over the kept blocks, in 4 x 4 tiles
      if (slot == SB - 1 || blk == b1 - 1) {
        for (int64_t r0 = 0; r0 < R; r0 += 4) {
          for (int64_t k0 = 0; k0 < K4; k0 += 4) {
            vf s00 = {}, s01 = {}, s02 = {}, s03 = {}, s10 = {}, s11 = {}, s12 = {}, s13 = {};
            vf s20 = {}, s21 = {}, s22 = {}, s23 = {}, s30 = {}, s31 = {}, s32 = {}, s33 = {};
            for (int64_t kept = 0; kept <= slot; ++kept) {
              const float* Dk = Dbuf.data() + kept * R * NB + r0 * NB; const float* Xk = Xbuf.data() + kept * K4 * NB + k0 * NB;
              #pragma GCC unroll 1  // unrolled, -ffast-math re-associates the sums into trees that spill
              for (int64_t o_ = 0; o_ < NB; o_ += V) {
                const vf d0 = vload(Dk + o_), d1 = vload(Dk + NB + o_), d2 = vload(Dk + 2 * NB + o_), d3 = vload(Dk + 3 * NB + o_);
                const vf x0 = vload(Xk + o_), x1 = vload(Xk + NB + o_), x2 = vload(Xk + 2 * NB + o_), x3 = vload(Xk + 3 * NB + o_);
                s00 += d0 * x0; s01 += d0 * x1; s02 += d0 * x2; s03 += d0 * x3;
                s10 += d1 * x0; s11 += d1 * x1; s12 += d1 * x2; s13 += d1 * x3;
                s20 += d2 * x0; s21 += d2 * x1; s22 += d2 * x2; s23 += d2 * x3;
                s30 += d3 * x0; s31 += d3 * x1; s32 += d3 * x2; s33 += d3 * x3;
              }
            }
            const vf s[4][4] = {{s00, s01, s02, s03}, {s10, s11, s12, s13}, {s20, s21, s22, s23}, {s30, s31, s32, s33}};
            for (int q = 0; q < 4; ++q) for (int u = 0; u < 4; ++u) {
              float* acc = Acc.data() + ((r0 + q) * K4 + k0 + u) * V;
              vstore(acc, vload(acc) + s[q][u]);
            }
          }
        }
      }
    }
    float* mine = partial.data() + at::get_thread_num() * R * K4;
    for (int64_t e = 0; e < R * K4; ++e) {
      float s = 0.f;
      for (int64_t l = 0; l < V; ++l) s += Acc[e * V + l];
      mine[e] += s;
    }
  });
  float* out = dW.data_ptr<float>();
  for (int64_t rr = 0; rr < R; ++rr)
    for (int64_t k = 0; k < K1; ++k) {
      float s = 0.f;
      for (int64_t t = 0; t < slots; ++t) s += partial[(t * R + rr) * K4 + k];
      out[rr * K1 + k] = s;
    }
}
