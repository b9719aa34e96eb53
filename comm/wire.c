#include "wire.h"

#include <math.h>
#include <string.h>

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t wire_f32_to_f16(float f) {
  uint32_t x = bits_of(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return sign | 0x7e00u;  /* NaN: a quiet NaN */
  if (x >= 0x47800000u) return sign | 0x7c00u; /* >= 65536 and Inf */
  if (x >= 0x38800000u) {
    /* A normal half: rebias the exponent (127 - 15 = 112) and round the 13
     * dropped mantissa bits to nearest even; a carry runs into the exponent,
     * up to Inf for [65520, 65536). */
    uint32_t h = x - (112u << 23);
    h += 0x0fffu + ((h >> 13) & 1u);
    return sign | (uint16_t)(h >> 13);
  }
  if (x < 0x33000000u) return sign; /* below 2^-25: rounds to zero */
  /* A subnormal half, k * 2^-24: the float's significand m (24 bits with
   * the implicit one) times 2^(e - 150) gives k = m >> (126 - e). */
  uint32_t m = (x & 0x7fffffu) | 0x800000u;
  unsigned shift = 126u - (x >> 23);
  uint32_t k = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (k & 1u))) k++;
  return sign | (uint16_t)k;
}

float wire_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13));
  if (e) return float_of(sign | ((e + 112u) << 23) | (m << 13));
  float v = (float)m * 0x1p-24f; /* zero or subnormal: exact */
  return sign ? -v : v;
}

uint16_t wire_f32_to_bf16(float f) {
  uint32_t x = bits_of(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN */
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

float wire_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

/* The exponent stays within what keeps v * 2^e and its inverse normal for
 * any gradient worth sending. */
#define WIRE_MAX_EXP 100

int wire_scale_exponent(wire_format fmt, float maxabs) {
  if (fmt != WIRE_FP16 || !(maxabs > 0) || !isfinite(maxabs)) return 0;
  int ex;
  frexpf(maxabs, &ex); /* maxabs = f * 2^ex, f in [0.5, 1) */
  int e = 15 - ex;     /* maxabs * 2^e = f * 2^15, in [2^14, 2^15) */
  return e > WIRE_MAX_EXP ? WIRE_MAX_EXP : e < -WIRE_MAX_EXP ? -WIRE_MAX_EXP : e;
}

static void put_header(uint16_t *out, int e) {
  uint32_t u = (uint32_t)e;
  out[0] = (uint16_t)(u & 0xffffu);
  out[1] = (uint16_t)(u >> 16);
}

static int get_header(const uint16_t *in) {
  uint32_t u = (uint32_t)in[0] | (uint32_t)in[1] << 16;
  int32_t e;
  memcpy(&e, &u, sizeof e);
  return e;
}

/* ---- bf16 blocks: AVX-512 where the CPU has it, the scalar rule elsewhere ----
 * The wide kernels apply wire_f32_to_bf16's integer rule (add 0x7fff plus
 * the kept lowest bit, keep the top half; NaN made quiet) to 16 lanes, so
 * they give its bits for every input, subnormals included. AVX512-BF16's
 * vcvtneps2bf16 would not: it flushes subnormal inputs to zero. */

/* v = x + res (or x), its bf16 word, and what the word lost (0 where that
 * is not finite); the scalar rule, one element. */
static inline void bf16_encode_one(const float *x, float *res, size_t i, uint16_t *out) {
  float v = res ? x[i] + res[i] : x[i];
  out[i] = wire_f32_to_bf16(v);
  if (res) {
    float r = v - wire_bf16_to_f32(out[i]);
    res[i] = isfinite(r) ? r : 0.0f;
  }
}

static void bf16_encode_scalar(const float *x, float *res, size_t n, uint16_t *out) {
  for (size_t i = 0; i < n; i++) bf16_encode_one(x, res, i, out);
}

static void bf16_decode_scalar(const uint16_t *in, size_t n, float *y, int add) {
  if (add)
    for (size_t i = 0; i < n; i++) y[i] += wire_bf16_to_f32(in[i]);
  else
    for (size_t i = 0; i < n; i++) y[i] = wire_bf16_to_f32(in[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WIRE_AVX512 1

__attribute__((target("avx512f,avx512bw"))) static void bf16_encode_avx512(const float *x,
                                                                           float *res, size_t n,
                                                                           uint16_t *out) {
  const __m512i round = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x0040);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + i));
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i w = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(round, lsb)), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
    w = _mm512_mask_or_epi32(w, nan, _mm512_srli_epi32(u, 16), quiet);
    _mm256_storeu_si256((__m256i *)(out + i), _mm512_cvtepi32_epi16(w));
    if (res) {
      __m512 r = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
      __mmask16 bad = _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(r), inf),
                                              inf); /* Inf or NaN */
      _mm512_storeu_ps(res + i, _mm512_maskz_mov_ps((__mmask16)~bad, r));
    }
  }
  for (; i < n; i++) bf16_encode_one(x, res, i, out);
}

__attribute__((target("avx512f,avx512bw"))) static void bf16_decode_avx512(const uint16_t *in,
                                                                           size_t n, float *y,
                                                                           int add) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + i)));
    __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    if (add) v = _mm512_add_ps(_mm512_loadu_ps(y + i), v);
    _mm512_storeu_ps(y + i, v);
  }
  bf16_decode_scalar(in + i, n - i, y + i, add);
}

static int have_avx512(void) {
  static int known = -1; /* a benign race: every thread computes the same */
  if (known < 0) known = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return known;
}
#else
static int have_avx512(void) { return 0; }
#endif

const char *wire_kernels(void) { return have_avx512() ? "avx512" : "scalar"; }

static void bf16_encode(const float *x, float *res, size_t n, uint16_t *out) {
#ifdef WIRE_AVX512
  if (have_avx512()) {
    bf16_encode_avx512(x, res, n, out);
    return;
  }
#endif
  bf16_encode_scalar(x, res, n, out);
}

static void bf16_decode(const uint16_t *in, size_t n, float *y, int add) {
#ifdef WIRE_AVX512
  if (have_avx512()) {
    bf16_decode_avx512(in, n, y, add);
    return;
  }
#endif
  bf16_decode_scalar(in, n, y, add);
}

int wire_block_exponent(wire_format fmt, const float *x, const float *residual, size_t n) {
  if (fmt != WIRE_FP16) return 0; /* bf16 has fp32's range: no pass needed */
  float maxabs = 0.0f;
  for (size_t i = 0; i < n; i++) {
    float v = residual ? x[i] + residual[i] : x[i];
    float a = fabsf(v);
    if (a > maxabs && isfinite(a)) maxabs = a;
  }
  return wire_scale_exponent(fmt, maxabs);
}

void wire_put_exponent(uint16_t *out, int e) { put_header(out, e); }

int wire_get_exponent(const uint16_t *in) { return get_header(in); }

void wire_encode_words(wire_format fmt, int e, const float *x, float *residual, size_t n,
                       uint16_t *out) {
  if (fmt == WIRE_BF16) {
    bf16_encode(x, residual, n, out);
    return;
  }
  float up = ldexpf(1.0f, e), down = ldexpf(1.0f, -e);
  for (size_t i = 0; i < n; i++) {
    float v = residual ? x[i] + residual[i] : x[i];
    out[i] = wire_f32_to_f16(v * up);
    if (residual) residual[i] = v - wire_f16_to_f32(out[i]) * down;
  }
  /* A residual of Inf - Inf would poison every later step: an element that
   * is not finite is sent as it is and forgotten. */
  for (size_t i = 0; residual && i < n; i++)
    if (!isfinite(residual[i])) residual[i] = 0.0f;
}

void wire_decode_words(wire_format fmt, int e, const uint16_t *in, size_t n, float *y, int add) {
  if (fmt == WIRE_BF16) {
    bf16_decode(in, n, y, add);
    return;
  }
  float down = ldexpf(1.0f, -e);
  if (add)
    for (size_t i = 0; i < n; i++) y[i] += wire_f16_to_f32(in[i]) * down;
  else
    for (size_t i = 0; i < n; i++) y[i] = wire_f16_to_f32(in[i]) * down;
}

void wire_encode(wire_format fmt, const float *x, float *residual, size_t n, uint16_t *out) {
  int e = wire_block_exponent(fmt, x, residual, n);
  put_header(out, e);
  wire_encode_words(fmt, e, x, residual, n, out + WIRE_HEADER);
}

void wire_decode(wire_format fmt, const uint16_t *in, size_t n, float *y) {
  wire_decode_words(fmt, get_header(in), in + WIRE_HEADER, n, y, 0);
}

void wire_decode_add(wire_format fmt, const uint16_t *in, size_t n, float *y) {
  wire_decode_words(fmt, get_header(in), in + WIRE_HEADER, n, y, 1);
}

#define WIRE_MAX_BUCKET ((size_t)1 << 30)

int wire_plan_buckets(size_t n, const size_t *starts, int n_starts, size_t first_cap, size_t cap,
                      size_t *bounds, int max) {
  int nb = 0;
  size_t hi = n;
  if (first_cap < 1) first_cap = 1;
  if (cap < 1) cap = 1;
  if (first_cap > WIRE_MAX_BUCKET) first_cap = WIRE_MAX_BUCKET;
  if (cap > WIRE_MAX_BUCKET) cap = WIRE_MAX_BUCKET;
  bounds[0] = n;
  int k = n_starts - 1; /* the next unit start below hi */
  while (hi > 0) {
    size_t limit = nb == 0 ? first_cap : cap, lo;
    if (!starts) {
      lo = hi > limit ? hi - limit : 0;
    } else {
      /* Take whole units until the bucket reaches the limit (PyTorch DDP's
       * rule), keeping it within 2^30 floats. */
      while (k >= 0 && starts[k] >= hi) k--;
      lo = k >= 0 ? starts[k] : 0;
      int j = k - 1;
      while (lo > 0 && hi - lo < limit) {
        size_t next = j >= 0 ? starts[j] : 0;
        if (hi - next > WIRE_MAX_BUCKET) break;
        lo = next;
        j--;
      }
      if (hi - lo > WIRE_MAX_BUCKET) lo = hi - WIRE_MAX_BUCKET;
    }
    if (nb == max) return -1;
    bounds[++nb] = lo;
    hi = lo;
  }
  return nb;
}
