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
  if (x > 0x7f800000u) return sign | 0x7e00u; /* NaN: a quiet NaN */
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

void wire_encode(wire_format fmt, const float *x, float *residual, size_t n, uint16_t *out) {
  float maxabs = 0.0f;
  for (size_t i = 0; i < n; i++) {
    float v = residual ? x[i] + residual[i] : x[i];
    float a = fabsf(v);
    if (a > maxabs && isfinite(a)) maxabs = a;
  }
  int e = wire_scale_exponent(fmt, maxabs);
  put_header(out, e);
  out += WIRE_HEADER;
  float up = ldexpf(1.0f, e), down = ldexpf(1.0f, -e);
  if (fmt == WIRE_FP16) {
    for (size_t i = 0; i < n; i++) {
      float v = residual ? x[i] + residual[i] : x[i];
      out[i] = wire_f32_to_f16(v * up);
      if (residual) residual[i] = v - wire_f16_to_f32(out[i]) * down;
    }
  } else {
    for (size_t i = 0; i < n; i++) {
      float v = residual ? x[i] + residual[i] : x[i];
      out[i] = wire_f32_to_bf16(v);
      if (residual) residual[i] = v - wire_bf16_to_f32(out[i]);
    }
  }
  /* A residual of Inf - Inf would poison every later step: an element that
   * is not finite is sent as it is and forgotten. */
  for (size_t i = 0; residual && i < n; i++)
    if (!isfinite(residual[i])) residual[i] = 0.0f;
}

void wire_decode(wire_format fmt, const uint16_t *in, size_t n, float *y) {
  float down = ldexpf(1.0f, -get_header(in));
  in += WIRE_HEADER;
  if (fmt == WIRE_FP16)
    for (size_t i = 0; i < n; i++) y[i] = wire_f16_to_f32(in[i]) * down;
  else
    for (size_t i = 0; i < n; i++) y[i] = wire_bf16_to_f32(in[i]);
}

void wire_decode_add(wire_format fmt, const uint16_t *in, size_t n, float *y) {
  float down = ldexpf(1.0f, -get_header(in));
  in += WIRE_HEADER;
  if (fmt == WIRE_FP16)
    for (size_t i = 0; i < n; i++) y[i] += wire_f16_to_f32(in[i]) * down;
  else
    for (size_t i = 0; i < n; i++) y[i] += wire_bf16_to_f32(in[i]);
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
