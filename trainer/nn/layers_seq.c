#include "layers_seq.h"

#include <math.h>
#include <string.h>

#include "clones.h"
#include "kernels.h"

/* ---- embeddings --------------------------------------------------------------- */

int embedding_id(float x, int V) {
  if (!(x >= 0.0f)) return 0; /* also NaN */
  if (x >= (float)V) return V - 1;
  return (int)x;
}

void embedding_forward(float *out, const float *ids, const float *w, long N, int D, int V) {
  for (long r = 0; r < N; r++)
    memcpy(out + r * D, w + (long)embedding_id(ids[r], V) * D, sizeof(float) * (size_t)D);
}

void embedding_backward(float *dw, const float *dout, const float *ids, long N, int D, int V,
                        int accumulate) {
  if (!accumulate) memset(dw, 0, sizeof(float) * (size_t)V * (size_t)D);
  for (long r = 0; r < N; r++) {
    float *row = dw + (long)embedding_id(ids[r], V) * D;
    const float *d = dout + r * D;
    for (int j = 0; j < D; j++) row[j] += d[j];
  }
}

void posemb_forward(float *out, const float *inp, const float *p, int B, int T, int D) {
  long n = (long)T * D;
  for (int b = 0; b < B; b++) {
    float *o = out + b * n;
    const float *x = inp + b * n;
    for (long i = 0; i < n; i++) o[i] = x[i] + p[i];
  }
}

void posemb_backward(float *dp, const float *dout, int B, int T, int D) {
  long n = (long)T * D;
  memset(dp, 0, sizeof(float) * (size_t)n);
  for (int b = 0; b < B; b++) {
    const float *d = dout + b * n;
    for (long i = 0; i < n; i++) dp[i] += d[i];
  }
}

/* ---- instruction sets --------------------------------------------------------------- */

/* The attention and GELU kernels are written for GCC's vectoriser rather than with
 * intrinsics, and compiled once per instruction set with a run-time choice
 * (MS_CLONES, clones.h): the binary stays portable and uses AVX-512 where
 * it is there. Every clone does the same operations on every element in
 * the same order (ISO C mode: no contraction into FMA; the fused
 * multiply-adds are explicit, vfma below), so the results are the same
 * bits on every machine. The middle clone is x86-64-v3 (AVX2 with FMA,
 * chosen by CPU features, AMD's too): an AVX2 clone without FMA would call
 * libm's fmaf per lane. */
/* The helpers of a cloned kernel must be inlined into it to be compiled
 * for its instruction set. */
#if defined(__GNUC__)
#define SEQ_INLINE static inline __attribute__((always_inline))
#else
#define SEQ_INLINE static inline
#endif

/* Complete unrolling of the short loops over lanes and over a block's
 * rows, whose sums then stay in registers (without it GCC kept them in
 * memory: a load and a store around every FMA). */
#define UNROLL_(n) _Pragma(#n)
#define UNROLL(n) UNROLL_(GCC unroll n)

/* ---- an inline exp ---------------------------------------------------------------- */

/* e^x for x <= 0 (clamped at -87): x = k ln2 + r, |r| <= ln2 / 2, e^r by
 * its Taylor polynomial of degree 6 (relative error below 2e-7), 2^k
 * through the exponent bits. Branch-free, so loops over it vectorise (this
 * file is compiled with -fno-trapping-math, which lets GCC turn the clamp's
 * comparison into a select: CMakeLists.txt). */
SEQ_INLINE float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  int k = (int)(x * 1.44269504f - 0.5f); /* round to nearest: x <= 0 */
  float r = x - (float)k * 0.693145752f - (float)k * 1.42860677e-6f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                                 r / 720)))));
  union {
    uint32_t u;
    float f;
  } two_k = {.u = (uint32_t)(k + 127) << 23};
  return p * two_k.f;
}

/* tanh(u) = sign(u) (1 - e^{-2|u|}) / (1 + e^{-2|u|}) */
SEQ_INLINE float tanh_fast(float u) {
  float t = exp_nonpos(-2.0f * fabsf(u));
  return copysignf((1.0f - t) / (1.0f + t), u);
}

/* ---- the same on vectors ------------------------------------------------------- */

/* The width of the partial sums and of the column blocks: one AVX-512
 * register of floats. */
enum { LANES = 16 };

/* LANES floats as one value: GCC's vector extension, lowered to whatever
 * registers the clone has (loops over arrays of partial sums did not
 * vectorise). vfloat_u: the same at any float's alignment, for loads and
 * stores (vector types may alias their element type). */
typedef float vfloat __attribute__((vector_size(LANES * sizeof(float))));
typedef float vfloat_u __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));
#define vload(p) (*(const vfloat_u *)(p))
#define vstore(p, v) (*(vfloat_u *)(p) = (v))
typedef int32_t vint __attribute__((vector_size(LANES * sizeof(int32_t))));

/* exp_nonpos and tanh_fast on LANES floats: the same operations, so the
 * same values, written on vectors because GCC did not vectorise the scalar
 * loops in the AVX clones (it kept the clamp as a branch). The helpers
 * that take vectors are always inlined, so the ABI of 64-byte vector
 * arguments, which the clones do not share, never matters (CMakeLists.txt
 * turns GCC's notes on it off for this file). */
SEQ_INLINE vfloat vselect(vint mask, vfloat a, vfloat b) {
  return (vfloat)(((vint)a & mask) | ((vint)b & ~mask));
}

SEQ_INLINE vfloat vexp_nonpos(vfloat x) {
  const vfloat floor87 = (vfloat){0} - 87.0f;
  x = vselect(x < floor87, floor87, x);
  vint k = __builtin_convertvector(x * 1.44269504f - 0.5f, vint);
  vfloat kf = __builtin_convertvector(k, vfloat);
  vfloat r = x - kf * 0.693145752f - kf * 1.42860677e-6f;
  vfloat p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                                 r / 720)))));
  return p * (vfloat)((k + 127) << 23);
}

SEQ_INLINE vfloat vtanh_fast(vfloat u) {
  const vint sign = (vint){0} + (int32_t)0x80000000u;
  vfloat t = vexp_nonpos(-2.0f * (vfloat)((vint)u & ~sign));
  return (vfloat)((vint)((1.0f - t) / (1.0f + t)) | ((vint)u & sign));
}

/* ---- attention ------------------------------------------------------------------ */


long attention_scratch(int T, int D, int H) {
  return 3L * T * (D / H) + 4L * T; /* 4: BROWS */
}

/* dst (hd, T) = src (T, hd) transposed; src's rows are ld apart. */
SEQ_INLINE void transpose(float *restrict dst, const float *restrict src, int T, int hd,
                             int ld) {
  for (int j = 0; j < T; j++)
    for (int d = 0; d < hd; d++) dst[(long)d * T + j] = src[(long)j * ld + d];
}


/* c + s * b on every lane, rounded once (a fused multiply-add). Written as
 * a loop of fmaf, which GCC turns into one vector FMA in the AVX-512 and
 * Haswell clones and into calls of libm's (exact) fmaf in the baseline
 * one: the same bits in every clone. Without the fusion a multiply and an
 * add each took a slot of the two vector ports and the add's latency bound
 * the sums (scripts/bench/results/seq.md). */
SEQ_INLINE vfloat vfma(float s, vfloat b, vfloat c) {
  vfloat r;
  UNROLL(16) for (int l = 0; l < LANES; l++) r[l] = __builtin_fmaf(s, b[l], c[l]);
  return r;
}

/* Rows of dense products, BROWS at a time (callers pass rows == BROWS as
 * a constant where they can, so that the sums stay in registers). */
#define BROWS 4

/* s[i, j] = x[i] . col j of xt (hd, T), each a sum over d in order, for
 * j < n and i < rows; s's rows lds apart, x's ldx. The rows share each
 * load of xt; the columns go 4 x LANES at a time, which may write s up to
 * min(T, n rounded up to LANES). */
SEQ_INLINE void rows_dots(float *restrict s, long lds, const float *restrict x, long ldx,
                          int rows, const float *restrict xt, int T, int n, int hd) {
  int j0 = 0;
  for (; j0 + 2 * LANES < n && j0 + 4 * LANES <= T; j0 += 4 * LANES) {
    vfloat a[BROWS][4] = {{{0}}};
    for (int d = 0; d < hd; d++) {
      const float *c = xt + (long)d * T + j0;
      const vfloat c0 = vload(c), c1 = vload(c + LANES);
      const vfloat c2 = vload(c + 2 * LANES), c3 = vload(c + 3 * LANES);
      UNROLL(BROWS) for (int i = 0; i < rows; i++) {
        const float xi = x[i * ldx + d];
        a[i][0] = vfma(xi, c0, a[i][0]), a[i][1] = vfma(xi, c1, a[i][1]);
        a[i][2] = vfma(xi, c2, a[i][2]), a[i][3] = vfma(xi, c3, a[i][3]);
      }
    }
    UNROLL(BROWS) for (int i = 0; i < rows; i++)
      for (int k = 0; k < 4; k++) vstore(s + i * lds + j0 + k * LANES, a[i][k]);
  }
  for (; j0 < n && j0 + LANES <= T; j0 += LANES) {
    vfloat a[BROWS] = {{0}};
    for (int d = 0; d < hd; d++) {
      const vfloat c = vload(xt + (long)d * T + j0);
      UNROLL(BROWS) for (int i = 0; i < rows; i++) a[i] = vfma(x[i * ldx + d], c, a[i]);
    }
    UNROLL(BROWS) for (int i = 0; i < rows; i++) vstore(s + i * lds + j0, a[i]);
  }
  UNROLL(BROWS) for (int i = 0; i < rows; i++)
    for (int j = j0; j < n; j++) {
      float acc = 0.0f;
      for (int d = 0; d < hd; d++) acc = __builtin_fmaf(x[i * ldx + d], xt[(long)d * T + j], acc);
      s[i * lds + j] = acc;
    }
}

/* out[i, d] = sum over j < n, in order, of a[i, j] v[j, d] for i < rows;
 * a's rows lda apart, out's ldo, v's ld. Entries of a past a row's own
 * length must be 0 (they add nothing); the rows share each load of v, and
 * two column blocks go together (eight independent sums). */
SEQ_INLINE void rows_mix(float *restrict out, long ldo, const float *restrict a, long lda,
                         int rows, const float *restrict v, long ld, int n, int hd) {
  int d0 = 0;
  for (; d0 + 2 * LANES <= hd; d0 += 2 * LANES) {
    vfloat acc[BROWS][2] = {{{0}}};
    for (int j = 0; j < n; j++) {
      const vfloat v0 = vload(v + j * ld + d0), v1 = vload(v + j * ld + d0 + LANES);
      UNROLL(BROWS) for (int i = 0; i < rows; i++) {
        const float aij = a[i * lda + j];
        acc[i][0] = vfma(aij, v0, acc[i][0]), acc[i][1] = vfma(aij, v1, acc[i][1]);
      }
    }
    UNROLL(BROWS) for (int i = 0; i < rows; i++)
      vstore(out + i * ldo + d0, acc[i][0]), vstore(out + i * ldo + d0 + LANES, acc[i][1]);
  }
  for (; d0 + LANES <= hd; d0 += LANES) {
    vfloat acc[BROWS] = {{0}};
    for (int j = 0; j < n; j++) {
      const vfloat vj = vload(v + j * ld + d0);
      UNROLL(BROWS) for (int i = 0; i < rows; i++) acc[i] = vfma(a[i * lda + j], vj, acc[i]);
    }
    UNROLL(BROWS) for (int i = 0; i < rows; i++) vstore(out + i * ldo + d0, acc[i]);
  }
  for (int d = d0; d < hd; d++)
    UNROLL(BROWS) for (int i = 0; i < rows; i++) {
      float acc = 0.0f;
      for (int j = 0; j < n; j++) acc = __builtin_fmaf(a[i * lda + j], v[j * ld + d], acc);
      out[i * ldo + d] = acc;
    }
}

/* acc[j, :] += a[i, j] x[i, :] for j < n, i = 0..rows-1 in order: the
 * rows' terms are added one by one as in a row-at-a-time loop, but acc's
 * row stays in a register across them, and the rows of x stay in
 * registers across j. acc (n, hd) dense; a's rows lda apart, x's ldx. */
SEQ_INLINE void rows_add(float *restrict acc, const float *restrict a, long lda, int rows,
                         const float *restrict x, long ldx, int n, int hd) {
  const int hv = hd / LANES * LANES;
  for (int d0 = 0; d0 < hv; d0 += LANES) {
    vfloat xr[BROWS] = {{0}};
    UNROLL(BROWS) for (int i = 0; i < rows; i++) xr[i] = vload(x + i * ldx + d0);
    for (int j = 0; j < n; j++) {
      float *g = acc + (long)j * hd + d0;
      vfloat s = vload(g);
      UNROLL(BROWS) for (int i = 0; i < rows; i++) s = vfma(a[i * lda + j], xr[i], s);
      vstore(g, s);
    }
  }
  for (int j = 0; j < n; j++)
    for (int d = hv; d < hd; d++)
      UNROLL(BROWS) for (int i = 0; i < rows; i++)
        acc[(long)j * hd + d] =
            __builtin_fmaf(a[i * lda + j], x[i * ldx + d], acc[(long)j * hd + d]);
}

/* sum of a[j] b[j] (b NULL: of a[j]) over j < n in 2 x LANES partial sums
 * (vectors alternating between two, so that the adds of one need not wait
 * for the other's; the remainder's in the first), then the two added and
 * the lanes in order: an order fixed by n alone. */
SEQ_INLINE float lane_dot(const float *restrict a, const float *restrict b, int n) {
  vfloat acc = {0}, acc1 = {0};
  int j = 0;
  if (b) {
    for (; j + 2 * LANES <= n; j += 2 * LANES)
      acc += vload(a + j) * vload(b + j), acc1 += vload(a + j + LANES) * vload(b + j + LANES);
    if (j + LANES <= n) acc += vload(a + j) * vload(b + j), j += LANES;
  } else {
    for (; j + 2 * LANES <= n; j += 2 * LANES) acc += vload(a + j), acc1 += vload(a + j + LANES);
    if (j + LANES <= n) acc += vload(a + j), j += LANES;
  }
  for (int l = 0; j + l < n; l++) acc[l] += b ? a[j + l] * b[j + l] : a[j + l];
  acc += acc1;
  float s = 0.0f;
  for (int l = 0; l < LANES; l++) s += acc[l];
  return s;
}

/* In place over a row of scores whose first n are visible: P =
 * softmax(scale * s) over them, exactly 0 elsewhere. Scores n..m-1 are
 * computed but masked: m rounds n up to whole vectors (or T), so that the
 * loops have no scalar remainders. Probabilities below e^-30 of the row's
 * largest become 0: they are below float's resolution of the row sum, and
 * as denormals they slowed the products that used them
 * (scripts/bench/results/seq.md). */
SEQ_INLINE void row_softmax(float *restrict row, int n, int m, int T, float scale) {
  const int mv = m / LANES * LANES;
  /* The masked scores of the last vector become -inf in one vector store,
   * which the vector loads below can take from the store buffer (after
   * scalar stores they waited for the cache: a seventh of the forward). */
  if (n < m && m == mv) {
    _Static_assert(LANES == 16, "one index per lane");
    const vint lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const vfloat ninf = (vfloat){0} - INFINITY;
    vstore(row + m - LANES, vselect(lane < n - (m - LANES), vload(row + m - LANES), ninf));
  } else {
    for (int j = n; j < m; j++) row[j] = -INFINITY;
  }
  float mx = row[0];
  if (mv > 0) {
    vfloat vmx = vload(row);
    for (int j = LANES; j < mv; j += LANES) {
      vfloat x = vload(row + j);
      vmx = vselect(x > vmx, x, vmx);
    }
    for (int l = 0; l < LANES; l++) mx = vmx[l] > mx ? vmx[l] : mx;
  }
  for (int j = mv; j < m; j++) mx = row[j] > mx ? row[j] : mx;
  for (int j = 0; j < mv; j += LANES) {
    const vfloat d = (vload(row + j) - mx) * scale;
    const vfloat e = vexp_nonpos(d);
    vstore(row + j, (vfloat)((vint)e & ~(d < -30.0f)));
  }
  for (int j = mv; j < m; j++) {
    float d = (row[j] - mx) * scale;
    row[j] = d < -30.0f ? 0.0f : exp_nonpos(d);
  }
  const float inv = 1.0f / lane_dot(row, NULL, m);
  for (int j = 0; j < m; j++) row[j] *= inv;
  for (int j = m; j < T; j++) row[j] = 0.0f;
}

/* n rounded up to whole vectors, at most T. */
static inline int round_lanes(int n, int T) {
  int m = (n + LANES - 1) / LANES * LANES;
  return m < T ? m : T;
}

/* Rows t0..t0+rows-1 of head_forward (rows <= BROWS). */
SEQ_INLINE void forward_rows(float *y, int ldy, float *p, const float *q, const float *v, int ld,
                             int T, int hd, float scale, int causal, const float *kt, int t0,
                             int rows) {
  /* The scores of the block's rows up to the last row's m (a row's own
   * m is never more; row_softmax zeroes a row's scores past its m). */
  const int n = causal ? t0 + rows : T, m = round_lanes(n, T);
  float *pb = p + (long)t0 * T;
  rows_dots(pb, T, q + (long)t0 * ld, ld, rows, kt, T, m, hd);
  for (int t = t0; t < t0 + rows; t++) {
    const int nt = causal ? t + 1 : T;
    row_softmax(p + (long)t * T, nt, round_lanes(nt, T), T, scale);
  }
  rows_mix(y + (long)t0 * ldy, ldy, pb, T, rows, v, ld, n, hd);
}

/* One (sample, head): P (T, T) and y (T, hd) with rows ldy apart from q, k,
 * v (T, hd) with rows ld apart. Causal rows compute their visible scores
 * only. kt: hd * T floats. */
MS_CLONES static void head_forward(float *y, int ldy, float *p, const float *q, const float *k,
                                    const float *v, int ld, int T, int hd, float scale, int causal,
                                    float *kt) {
  transpose(kt, k, T, hd, ld);
  int t0 = 0;
  for (; t0 + BROWS <= T; t0 += BROWS) /* constant rows: the sums stay in registers */
    forward_rows(y, ldy, p, q, v, ld, T, hd, scale, causal, kt, t0, BROWS);
  if (t0 < T) forward_rows(y, ldy, p, q, v, ld, T, hd, scale, causal, kt, t0, T - t0);
}

void attention_forward(float *y, float *att, const float *qkv, int B, int T, int D, int H,
                       int causal, float *scratch) {
  const int hd = D / H, ld = 3 * D;
  const float scale = 1.0f / sqrtf((float)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const float *q = qkv + (long)b * T * ld + (long)h * hd;
      head_forward(y + (long)b * T * D + (long)h * hd, D, att + ((long)b * H + h) * T * T, q,
                   q + D, q + 2 * D, ld, T, hd, scale, causal, scratch);
    }
}

/* The backward of head_forward, row by row over the visible part:
 *   dP[t] = dy[t] v^T   dS[t] = P[t] * (dP[t] - dP[t] . P[t]) * scale
 *   dq[t] = dS[t] k     dk += dS[t]^T q[t]   dv += P[t]^T dy[t]
 * dk and dv gather in dense (T, hd) sums (t ascending, BROWS rows of dS
 * and P per pass over them) before they are stored. scratch:
 * attention_scratch floats. */

/* Rows t0..t0+rows-1 of head_backward (rows <= BROWS). */
SEQ_INLINE void backward_rows(float *dq, float *gk, float *gv, float *ds, const float *dy, int ldy,
                              const float *p, const float *q, const float *k, int ld, int T,
                              int hd, float scale, int causal, const float *vt, int t0, int rows) {
  const int n = causal ? t0 + rows : T, mb = round_lanes(n, T);
  rows_dots(ds, T, dy + (long)t0 * ldy, ldy, rows, vt, T, mb, hd);
  for (int i = 0; i < rows; i++) {
    const int t = t0 + i;
    const float *pr = p + (long)t * T;
    float *dr = ds + (long)i * T;
    /* Past n, P is 0: so are the dS up to mb, where the loops stop. */
    const int m = round_lanes(causal ? t + 1 : T, T);
    const float dot = lane_dot(dr, pr, m);
    for (int j = 0; j < mb; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
  }
  rows_mix(dq + (long)t0 * ld, ld, ds, T, rows, k, ld, n, hd);
  rows_add(gk, ds, T, rows, q + (long)t0 * ld, ld, n, hd);
  rows_add(gv, p + (long)t0 * T, T, rows, dy + (long)t0 * ldy, ldy, n, hd);
}

MS_CLONES static void head_backward(float *dq, float *dk, float *dv, const float *dy, int ldy,
                                     const float *p, const float *q, const float *k,
                                     const float *v, int ld, int T, int hd, float scale,
                                     int causal, float *scratch) {
  float *vt = scratch, *gk = vt + (long)hd * T, *gv = gk + (long)T * hd, *ds = gv + (long)T * hd;
  transpose(vt, v, T, hd, ld);
  /* The dS rows are written up to m, which grows with t: past it they keep
   * these zeros, so a pass over BROWS rows may read them up to the last
   * row's n. */
  memset(gk, 0, sizeof(float) * (2 * (size_t)T * (size_t)hd + BROWS * (size_t)T));
  int t0 = 0;
  for (; t0 + BROWS <= T; t0 += BROWS) /* constant rows: the sums stay in registers */
    backward_rows(dq, gk, gv, ds, dy, ldy, p, q, k, ld, T, hd, scale, causal, vt, t0, BROWS);
  if (t0 < T)
    backward_rows(dq, gk, gv, ds, dy, ldy, p, q, k, ld, T, hd, scale, causal, vt, t0, T - t0);
  for (int j = 0; j < T; j++)
    for (int d = 0; d < hd; d++) {
      dk[(long)j * ld + d] = gk[(long)j * hd + d];
      dv[(long)j * ld + d] = gv[(long)j * hd + d];
    }
}

void attention_backward(float *dqkv, const float *dy, const float *qkv, const float *att, int B,
                        int T, int D, int H, int causal, float *scratch) {
  const int hd = D / H, ld = 3 * D;
  const float scale = 1.0f / sqrtf((float)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const long o = (long)b * T * ld + (long)h * hd;
      const float *q = qkv + o;
      float *dq = dqkv + o;
      head_backward(dq, dq + D, dq + 2 * D, dy + (long)b * T * D + (long)h * hd, D,
                    att + ((long)b * H + h) * T * T, q, q + D, q + 2 * D, ld, T, hd, scale, causal,
                    scratch);
    }
}

/* ---- GELU of the transformer blocks --------------------------------------------- */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

/* The approximation's tanh at x, its value from that tanh, and its slope
 * d gelu / dx: one expression each, for the vectors (vfloat, with
 * vtanh_fast) and the remainders (float, with tanh_fast), so that the
 * functions below compute the same bits from the same x. */
#define GELU_TANH(tanh_, x) tanh_(GELU_K * ((x) + GELU_C * (x) * (x) * (x)))
#define GELU_OUT(x, t) (0.5f * (x) * (1.0f + (t)))
#define GELU_SLOPE(x, t)                              \
  (0.5f * (1.0f + (t)) + 0.5f * (x) * (1.0f - (t) * (t)) * \
                             (GELU_K * (1.0f + 3.0f * GELU_C * (x) * (x))))

MS_CLONES void gelu_fast_forward(float *out, const float *inp, long n) {
  long i = 0;
  for (; i + LANES <= n; i += LANES) {
    const vfloat x = vload(inp + i);
    vstore(out + i, GELU_OUT(x, GELU_TANH(vtanh_fast, x)));
  }
  for (; i < n; i++) out[i] = GELU_OUT(inp[i], GELU_TANH(tanh_fast, inp[i]));
}

MS_CLONES void gelu_fast_backward(float *dinp, const float *dout, const float *inp, long n) {
  long i = 0;
  for (; i + LANES <= n; i += LANES) {
    const vfloat x = vload(inp + i), t = GELU_TANH(vtanh_fast, x);
    vstore(dinp + i, vload(dout + i) * GELU_SLOPE(x, t));
  }
  for (; i < n; i++) {
    const float x = inp[i], t = GELU_TANH(tanh_fast, x);
    dinp[i] = dout[i] * GELU_SLOPE(x, t);
  }
}

/* gelu_fast_forward that also writes, per element, the factor
 * gelu_fast_backward multiplies dout by (the same expression on the same
 * tanh): the backward is then one product, with no exp. */
MS_CLONES void gelu_fast_forward_grad(float *out, float *grad, const float *inp, long n) {
  long i = 0;
  for (; i + LANES <= n; i += LANES) {
    const vfloat x = vload(inp + i), t = GELU_TANH(vtanh_fast, x);
    vstore(out + i, GELU_OUT(x, t));
    vstore(grad + i, GELU_SLOPE(x, t));
  }
  for (; i < n; i++) {
    const float x = inp[i], t = GELU_TANH(tanh_fast, x);
    out[i] = GELU_OUT(x, t);
    grad[i] = GELU_SLOPE(x, t);
  }
}

MS_CLONES void gelu_fast_backward_grad(float *dinp, const float *dout, const float *grad,
                                        long n) {
  long i = 0;
  for (; i + LANES <= n; i += LANES) vstore(dinp + i, vload(dout + i) * vload(grad + i));
  for (; i < n; i++) dinp[i] = dout[i] * grad[i];
}

/* ---- layer norm of the sequence layers ----------------------------------------- */

/* The sums in double as layers.h's, in LANES partial sums. */
typedef double vdouble __attribute__((vector_size(LANES * sizeof(double))));

MS_CLONES void layernorm_seq_forward(float *out, float *mean, float *rstd, const float *inp,
                                      const float *gamma, const float *beta, int B, int D,
                                      float eps) {
  const int dv = D / LANES * LANES;
  for (int i = 0; i < B; i++) {
    const float *x = inp + (long)i * D;
    float *y = out + (long)i * D;
    vdouble acc = {0};
    for (int j = 0; j < dv; j += LANES) acc += __builtin_convertvector(vload(x + j), vdouble);
    for (int j = dv; j < D; j++) acc[j - dv] += x[j];
    double m = 0.0, v = 0.0;
    for (int l = 0; l < LANES; l++) m += acc[l];
    m /= D;
    acc = (vdouble){0};
    for (int j = 0; j < dv; j += LANES) {
      const vdouble c = __builtin_convertvector(vload(x + j), vdouble) - m;
      acc += c * c;
    }
    for (int j = dv; j < D; j++) acc[j - dv] += ((double)x[j] - m) * ((double)x[j] - m);
    for (int l = 0; l < LANES; l++) v += acc[l];
    v /= D;
    const float mf = (float)m, rs = (float)(1.0 / sqrt(v + (double)eps));
    for (int j = 0; j < dv; j += LANES)
      vstore(y + j, (vload(x + j) - mf) * rs * vload(gamma + j) + vload(beta + j));
    for (int j = dv; j < D; j++) y[j] = (x[j] - mf) * rs * gamma[j] + beta[j];
    mean[i] = mf;
    rstd[i] = rs;
  }
}

MS_CLONES void layernorm_seq_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                       const float *inp, const float *mean, const float *rstd,
                                       const float *gamma, int B, int D) {
  const int dv = D / LANES * LANES;
  memset(dgamma, 0, sizeof(float) * (size_t)D);
  memset(dbeta, 0, sizeof(float) * (size_t)D);
  for (int i = 0; i < B; i++) {
    const float *x = inp + (long)i * D, *dy = dout + (long)i * D;
    const float m = mean[i], rs = rstd[i];
    vdouble gm = {0}, gx = {0};
    for (int j = 0; j < dv; j += LANES) {
      const vfloat xh = (vload(x + j) - m) * rs, d = vload(dy + j), g = d * vload(gamma + j);
      vstore(dbeta + j, vload(dbeta + j) + d);
      vstore(dgamma + j, vload(dgamma + j) + d * xh);
      const vdouble gd = __builtin_convertvector(g, vdouble);
      gm += gd, gx += gd * __builtin_convertvector(xh, vdouble);
    }
    for (int j = dv; j < D; j++) {
      const float xh = (x[j] - m) * rs, g = dy[j] * gamma[j];
      dbeta[j] += dy[j], dgamma[j] += dy[j] * xh;
      gm[j - dv] += g, gx[j - dv] += (double)g * xh;
    }
    if (!dinp) continue;
    double gmean = 0.0, gxmean = 0.0;
    for (int l = 0; l < LANES; l++) gmean += gm[l], gxmean += gx[l];
    const float gmf = (float)(gmean / D), gxf = (float)(gxmean / D);
    float *dx = dinp + (long)i * D;
    for (int j = 0; j < dv; j += LANES) {
      const vfloat xh = (vload(x + j) - m) * rs, g = vload(dy + j) * vload(gamma + j);
      vstore(dx + j, rs * (g - gmf - xh * gxf));
    }
    for (int j = dv; j < D; j++) {
      const float xh = (x[j] - m) * rs, g = dy[j] * gamma[j];
      dx[j] = rs * (g - gmf - xh * gxf);
    }
  }
}

/* ---- loss ------------------------------------------------------------------------ */

/* seq_xent's rows: the row's exponentials once, from the inline exp, kept
 * in dl for the gradient (libm's double exp, twice per logit, was 4% of a
 * step in softmax_xent). The sum of a row's exponentials goes in LANES
 * double partial sums (an order fixed by V), as does the loss over rows
 * (in row order). g: the gradient's factor. */
MS_CLONES static double xent_rows(float *dl, const float *logits, const int32_t *labels, long rows,
                                   int V, float g, long *hits) {
  const int vv = V / LANES * LANES;
  double loss = 0.0;
  for (long r = 0; r < rows; r++) {
    const float *z = logits + r * V;
    float *d = dl ? dl + r * V : NULL;
    float mx = z[0];
    if (vv > 0) {
      vfloat vmx = vload(z);
      for (int k = LANES; k < vv; k += LANES) {
        const vfloat x = vload(z + k);
        vmx = vselect(x > vmx, x, vmx);
      }
      for (int l = 0; l < LANES; l++) mx = vmx[l] > mx ? vmx[l] : mx;
    }
    for (int k = vv; k < V; k++) mx = z[k] > mx ? z[k] : mx;
    /* NaN logits (or an infinite one) make z - mx NaN somewhere: the loss
     * is then NaN, as softmax_xent's, so that the run stops. */
    vint bad = {0};
    vdouble acc = {0};
    for (int k = 0; k < vv; k += LANES) {
      const vfloat x = vload(z + k) - mx, e = vexp_nonpos(x);
      bad |= x != x;
      acc += __builtin_convertvector(e, vdouble);
      if (d) vstore(d + k, e);
    }
    int nan = 0;
    for (int k = vv; k < V; k++) {
      const float x = z[k] - mx, e = exp_nonpos(x);
      nan |= x != x;
      acc[k - vv] += e;
      if (d) d[k] = e;
    }
    for (int l = 0; l < LANES; l++) nan |= bad[l] != 0;
    double sum = 0.0;
    for (int l = 0; l < LANES; l++) sum += acc[l];
    const int y = labels[r];
    int argmax = 0;
    while (argmax < V - 1 && !(z[argmax] == mx)) argmax++;
    *hits += argmax == y;
    loss += nan ? (double)NAN : log(sum) - (double)(z[y] - mx);
    if (!d) continue;
    const float inv = nan ? NAN : (float)(1.0 / sum), py = d[y] * inv;
    for (int k = 0; k < vv; k += LANES) vstore(d + k, g * (vload(d + k) * inv));
    for (int k = vv; k < V; k++) d[k] = g * (d[k] * inv);
    d[y] = g * (py - 1.0f);
  }
  return loss;
}

double seq_xent(float *dlogits, const float *logits, const int32_t *labels, int B, int T, int V,
                float scale, long *correct) {
  /* The 1 / T makes a sample's loss the mean over its positions. */
  long hits = 0;
  double sum = xent_rows(dlogits, logits, labels, (long)B * T, V, scale / (float)T, &hits);
  if (correct) *correct += hits;
  return sum / T;
}
