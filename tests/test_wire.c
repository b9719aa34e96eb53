/* wire: fp16/bf16 conversions against independent references, error
 * feedback, and the bucket plan. Serial: no MPI. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* A reproducible float of any class: random bits. */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t next_u32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

/* The reference fp16 rounding: the nearest of the two neighbouring halves
 * in exact (double) arithmetic, ties to the even one, beyond 65520 Inf. */
static uint16_t ref_f16(float f) {
  uint16_t sign = signbit(f) ? 0x8000 : 0;
  if (isnan(f)) return sign | 0x7e00; /* a quiet NaN of the same sign */
  double a = fabs((double)f);
  if (a >= 65520.0) return sign | 0x7c00;
  /* Halves of magnitude below a: binary search over the ordered codes. */
  uint16_t lo = 0, hi = 0x7bff;
  while (lo < hi) {
    uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
    if ((double)wire_f16_to_f32(mid) <= a)
      lo = mid;
    else
      hi = (uint16_t)(mid - 1);
  }
  double below = wire_f16_to_f32(lo);
  if (below == a) return sign | lo;
  double above = lo == 0x7bff ? 65536.0 : (double)wire_f16_to_f32((uint16_t)(lo + 1));
  uint16_t up = (uint16_t)(lo + 1); /* 0x7c00 (Inf) above the largest half */
  if (a - below < above - a) return sign | lo;
  if (a - below > above - a) return sign | up;
  return sign | ((lo & 1) ? up : lo);
}

static void test_wire_f16_decode_every_code(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = wire_f16_to_f32((uint16_t)h);
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double want = e == 0 ? ldexp((double)m, -24) : ldexp(1.0 + m / 1024.0, (int)e - 15);
    if (h & 0x8000) want = -want;
    if (e == 0x1f) {
      assert_true(m ? isnan(f) : isinf(f));
      continue;
    }
    assert_true((double)f == want);
    /* And back: every half is a fixed point of the round trip. */
    assert_int_equal(wire_f32_to_f16(f), h);
  }
}

static void test_wire_f16_encode_matches_reference(void **state) {
  (void)state;
  for (int i = 0; i < 200000; i++) {
    uint32_t u = next_u32();
    /* Half of the samples near fp16's range, where the cases are. */
    if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)(100 + next_u32() % 45) << 23);
    float f = from_bits(u);
    assert_int_equal(wire_f32_to_f16(f), ref_f16(f));
  }
  /* The edges by hand: largest half, the Inf threshold, subnormal ties. */
  assert_int_equal(wire_f32_to_f16(65504.0f), 0x7bff);
  assert_int_equal(wire_f32_to_f16(65519.99f), 0x7bff);
  assert_int_equal(wire_f32_to_f16(65520.0f), 0x7c00);
  assert_int_equal(wire_f32_to_f16(0x1p-24f), 0x0001);
  assert_int_equal(wire_f32_to_f16(0x1p-25f), 0x0000);      /* tie: to even zero */
  assert_int_equal(wire_f32_to_f16(0x1.8p-24f), 0x0002);    /* tie: to even 2 */
  assert_int_equal(wire_f32_to_f16(-0x1.ffcp-15f), 0x8400); /* rounds up to the smallest normal */
  assert_int_equal(wire_f32_to_f16(-0.0f), 0x8000);
  assert_int_equal(wire_f32_to_f16(INFINITY), 0x7c00);
  assert_true(isnan(wire_f16_to_f32(wire_f32_to_f16(NAN))));
#if defined(__FLT16_MAX__)
  /* The compiler's own conversion, where it has one. */
  __extension__ typedef _Float16 half;
  for (int i = 0; i < 100000; i++) {
    float f = from_bits(next_u32());
    if (isnan(f)) continue;
    half h = (half)f;
    uint16_t want;
    memcpy(&want, &h, sizeof want);
    assert_int_equal(wire_f32_to_f16(f), want);
  }
#endif
}

static void test_wire_bf16_matches_reference(void **state) {
  (void)state;
  for (int i = 0; i < 200000; i++) {
    float f = from_bits(next_u32());
    uint16_t got = wire_f32_to_bf16(f);
    if (isnan(f)) {
      assert_true(isnan(wire_bf16_to_f32(got)));
      continue;
    }
    uint32_t u = bits(f);
    uint16_t lo = (uint16_t)(u >> 16), up = (uint16_t)(lo + 1);
    double a = f, dlo = wire_bf16_to_f32(lo), dup = wire_bf16_to_f32(up);
    if (isinf(dup) || isnan(dup)) dup = copysign(ldexp(1.0, 128), a); /* rounding past the top */
    uint16_t want = fabs(a - dlo) < fabs(dup - a)   ? lo
                    : fabs(a - dlo) > fabs(dup - a) ? up
                    : (lo & 1)                      ? up
                                                    : lo;
    assert_int_equal(got, want);
  }
  assert_int_equal(wire_f32_to_bf16(1.0f), 0x3f80);
  assert_int_equal(wire_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80); /* tie to even */
  assert_int_equal(wire_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82); /* tie to even */
}

/* The block kernels (AVX-512 where the CPU has it) give wire_f32_to_bf16's
 * bits and its residual, element by element: every top half of a float
 * (sign, exponent, 7 mantissa bits: subnormals, Inf, NaN, the largest
 * finite) with low halves around the tie, plus random floats and
 * residuals; lengths that leave a scalar tail. */
static void test_wire_bf16_blocks_match_scalar_rule(void **state) {
  (void)state;
  static const uint32_t lows[] = {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu};
  enum { NL = sizeof lows / sizeof lows[0], N = 65536 * NL + 1003 };
  float *x = malloc(sizeof(float) * N), *res = malloc(sizeof(float) * N);
  float *want_res = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
  uint16_t *w = malloc(sizeof(uint16_t) * (N + WIRE_HEADER));
  assert_non_null(x && res && want_res && y && w);
  for (uint32_t hi = 0; hi < 65536; hi++)
    for (int l = 0; l < NL; l++) x[hi * NL + (uint32_t)l] = from_bits(hi << 16 | lows[l]);
  for (size_t i = 65536 * NL; i < N; i++) x[i] = from_bits(next_u32());
  for (int pass = 0; pass < 2; pass++) { /* without, then with residuals */
    for (size_t i = 0; i < N; i++) {
      res[i] = pass ? from_bits(next_u32()) * 0x1p-40f : 0.0f;
      if (!isfinite(res[i])) res[i] = 0.0f;
    }
    for (size_t n = N - 7; n <= N; n += 7) { /* two lengths, two scalar tails */
      memcpy(want_res, res, sizeof(float) * n);
      wire_encode(WIRE_BF16, x, pass ? want_res : NULL, n, w);
      for (size_t i = 0; i < n; i++) {
        float v = pass ? x[i] + res[i] : x[i];
        uint16_t want = wire_f32_to_bf16(v);
        if (w[WIRE_HEADER + i] != want)
          fail_msg("x %08x: %04x, want %04x", bits(x[i]), w[WIRE_HEADER + i], want);
        if (pass) {
          float r = v - wire_bf16_to_f32(want);
          if (!isfinite(r)) r = 0.0f;
          assert_int_equal(bits(want_res[i]), bits(r));
        }
      }
      wire_decode(WIRE_BF16, w, n, y);
      for (size_t i = 0; i < n; i++)
        assert_int_equal(bits(y[i]), bits(wire_bf16_to_f32(w[WIRE_HEADER + i])));
      for (size_t i = 0; i < n; i++) y[i] = 1.0f;
      wire_decode_add(WIRE_BF16, w, n, y);
      for (size_t i = 0; i < n; i++)
        if (!isnan(y[i]))
          assert_int_equal(bits(y[i]), bits(1.0f + wire_bf16_to_f32(w[WIRE_HEADER + i])));
    }
  }
  print_message("bf16 kernels: %s\n", wire_kernels());
  free(x), free(res), free(want_res), free(y), free(w);
}

/* A block encoded in parts with one exponent (as the reducer pipelines a
 * chunk) gives wire_encode's words and residuals, and decodes in parts to
 * wire_decode's values. */
static void test_wire_parts_match_whole_block(void **state) {
  (void)state;
  enum { N = 1000 };
  for (int f = 0; f < 2; f++) {
    wire_format fmt = f ? WIRE_BF16 : WIRE_FP16;
    float x[N], r1[N], r2[N], y1[N], y2[N];
    uint16_t w1[N + WIRE_HEADER], w2[N + WIRE_HEADER];
    for (int i = 0; i < N; i++) {
      x[i] = (float)(sin(0.1 * i) * 3e-4);
      r1[i] = r2[i] = (float)(cos(0.3 * i) * 1e-7);
    }
    wire_encode(fmt, x, r1, N, w1);
    int e = wire_block_exponent(fmt, x, r2, N);
    wire_put_exponent(w2, e);
    static const size_t cut[] = {0, 1, 17, 500, 999, N};
    for (int p = 0; p < 5; p++)
      wire_encode_words(fmt, e, x + cut[p], r2 + cut[p], cut[p + 1] - cut[p],
                        w2 + WIRE_HEADER + cut[p]);
    assert_memory_equal(w1, w2, sizeof w1);
    assert_memory_equal(r1, r2, sizeof r1);
    wire_decode(fmt, w1, N, y1);
    for (int p = 0; p < 5; p++)
      wire_decode_words(fmt, wire_get_exponent(w2), w2 + WIRE_HEADER + cut[p], cut[p + 1] - cut[p],
                        y2 + cut[p], 0);
    assert_memory_equal(y1, y2, sizeof y1);
  }
}

/* Gradients of 1e-7 would mostly underflow plain fp16; the block scale
 * keeps 11 significant bits. */
static void test_wire_fp16_scale_keeps_small_gradients(void **state) {
  (void)state;
  enum { N = 1000 };
  float x[N], y[N];
  uint16_t w[N + WIRE_HEADER];
  for (int i = 0; i < N; i++) x[i] = (float)((i % 2 ? 1 : -1) * (1e-7 + 1e-9 * i));
  wire_encode(WIRE_FP16, x, NULL, N, w);
  wire_decode(WIRE_FP16, w, N, y);
  for (int i = 0; i < N; i++) assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * 0x1p-11f);
  assert_int_equal(wire_scale_exponent(WIRE_BF16, 1e-7f), 0);
  assert_int_equal(wire_scale_exponent(WIRE_FP16, 0.0f), 0);
  assert_int_equal(wire_scale_exponent(WIRE_FP16, 1.0f), 14); /* 1 * 2^14 in [2^14, 2^15) */
}

/* Error feedback: what the wire has delivered over T rounds equals what
 * was offered minus the residual still held back, so nothing is lost. */
static void test_wire_error_feedback_loses_nothing(void **state) {
  (void)state;
  enum { N = 257, T = 50 };
  for (int f = 0; f < 2; f++) {
    wire_format fmt = f ? WIRE_BF16 : WIRE_FP16;
    float x[N], y[N], res[N] = {0};
    double offered[N] = {0}, delivered[N] = {0};
    uint16_t w[N + WIRE_HEADER];
    for (int t = 0; t < T; t++) {
      for (int i = 0; i < N; i++) {
        x[i] = (float)(sin(0.37 * i + 0.11 * t) * 1e-3 + 3e-6 * i);
        offered[i] += x[i];
      }
      wire_encode(fmt, x, res, N, w);
      wire_decode(fmt, w, N, y);
      for (int i = 0; i < N; i++) delivered[i] += y[i];
    }
    for (int i = 0; i < N; i++) {
      double lost = offered[i] - delivered[i] - res[i];
      assert_true(fabs(lost) <= 1e-9 * T);
      /* And the residual stays within one rounding of one round. */
      assert_true(fabs(res[i]) <= 2e-3 * (f ? 0x1p-8 : 0x1p-11));
    }
  }
}

static void test_wire_plan_buckets_on_layers(void **state) {
  (void)state;
  /* MLP 784-256-256-10: layer starts 0, 200960, 266752; n = 269322. */
  size_t starts[] = {200960, 266752}, b[17];
  size_t n = 269322;
  /* First bucket 1 MiB (262144 floats): the last two layers stay below it,
   * the first layer takes the bucket past it (DDP's rule): one bucket. */
  int nb = wire_plan_buckets(n, starts, 2, 262144, 25 * 262144, b, 16);
  assert_int_equal(nb, 1);
  assert_true(b[0] == n && b[1] == 0);
  /* A first bucket of 65536 floats: the last layer (2570) and the second
   * (65792) reach it; the first layer is the second bucket. */
  nb = wire_plan_buckets(n, starts, 2, 65536, 25 * 262144, b, 16);
  assert_int_equal(nb, 2);
  assert_true(b[1] == 200960 && b[2] == 0);
  /* Small caps: one bucket per layer, never a split layer. */
  nb = wire_plan_buckets(n, starts, 2, 1, 1, b, 16);
  assert_int_equal(nb, 3);
  assert_true(b[1] == 266752 && b[2] == 200960 && b[3] == 0);
  /* Without units: byte counts from the end. */
  nb = wire_plan_buckets(1000, NULL, 0, 100, 300, b, 16);
  assert_int_equal(nb, 4);
  assert_true(b[1] == 900 && b[2] == 600 && b[3] == 300 && b[4] == 0);
  assert_int_equal(wire_plan_buckets(1000, NULL, 0, 1, 1, b, 16), -1);
  assert_int_equal(wire_plan_buckets(0, NULL, 0, 1, 1, b, 16), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wire_f16_decode_every_code),
      cmocka_unit_test(test_wire_f16_encode_matches_reference),
      cmocka_unit_test(test_wire_bf16_matches_reference),
      cmocka_unit_test(test_wire_bf16_blocks_match_scalar_rule),
      cmocka_unit_test(test_wire_parts_match_whole_block),
      cmocka_unit_test(test_wire_fp16_scale_keeps_small_gradients),
      cmocka_unit_test(test_wire_error_feedback_loses_nothing),
      cmocka_unit_test(test_wire_plan_buckets_on_layers),
  };
  return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
