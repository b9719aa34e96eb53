/* Optimizers and schedules (trainer/nn/optim.h) against values derived by hand
 * from PyTorch's documented update rules (torch.optim.Adam, AdamW, SGD and
 * the lr_scheduler classes), evaluated in double. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "ms_error.h"
#include "optim.h"
#include "testutil.h"

/* Two parameters p0 = (1, -0.5), three steps with gradients
 * (0.5, 0.2), (-0.3, 0.1), (0.2, -0.4); lr 0.1, betas (0.9, 0.999),
 * eps 1e-8, weight decay 0.1. */
static const float G[3][2] = {{0.5f, 0.2f}, {-0.3f, 0.1f}, {0.2f, -0.4f}};

static void run_adam(ms_optim_kind kind, const double want[3][2]) {
  ms_optim_params p = {
      .kind = kind, .lr = 0.1, .weight_decay = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  ms_optim *o = NULL;
  assert_int_equal(optim_create_params(&o, &p, 2), 0);
  assert_null(o->momentum);
  float x[2] = {1.0f, -0.5f};
  for (int t = 0; t < 3; t++) {
    optim_step(o, x, G[t], 0.1);
    assert_int_equal(o->t, t + 1);
    tu_assert_close(x[0], want[t][0], 5e-6, 0); /* float32 arithmetic */
    tu_assert_close(x[1], want[t][1], 5e-6, 0);
  }
  optim_free(o);
}

/* Step 1 by hand: g = 0.5 + 0.1 * 1 = 0.6; m = 0.06, v = 3.6e-4;
 * m_hat = 0.6, sqrt(v_hat) = 0.6; p = 1 - 0.1 * 0.6 / (0.6 + 1e-8) = 0.9.
 * Steps 2 and 3 by the same rule. */
static void test_optim_adam_three_steps(void **state) {
  (void)state;
  static const double want[3][2] = {
      {0.900000002, -0.599999993}, {0.861352997, -0.683923788}, {0.807874555, -0.643672116}};
  run_adam(MS_OPTIM_ADAM, want);
}

/* Step 1 by hand: p = 1 * (1 - 0.1 * 0.1) = 0.99, then g = 0.5 alone:
 * m_hat / sqrt(v_hat) = 1, p = 0.99 - 0.1 = 0.89. */
static void test_optim_adamw_three_steps(void **state) {
  (void)state;
  static const double want[3][2] = {
      {0.890000002, -0.594999995}, {0.861950199, -0.682267953}, {0.818587929, -0.654809572}};
  run_adam(MS_OPTIM_ADAMW, want);
}

/* Elements the mask excludes follow the optimizer without weight decay;
 * the others the one with it. */
static void check_mask(ms_optim_kind kind) {
  ms_optim_params p = {.kind = kind,
                       .lr = 0.1,
                       .weight_decay = 0.2,
                       .momentum = 0.9,
                       .beta1 = 0.9,
                       .beta2 = 0.999,
                       .eps = 1e-8};
  ms_optim_params p0 = p;
  p0.weight_decay = 0.0;
  ms_optim *masked = NULL, *with = NULL, *without = NULL;
  assert_int_equal(optim_create_params(&masked, &p, 4), 0);
  assert_int_equal(optim_create_params(&with, &p, 4), 0);
  assert_int_equal(optim_create_params(&without, &p0, 4), 0);
  uint8_t mask[4];
  optim_mask_range(mask, 0, 4, 1);
  optim_mask_range(mask, 1, 2, 0); /* elements 1 and 2 are "biases" */
  assert_int_equal(optim_set_decay_mask(masked, mask), 0);
  memset(mask, 7, sizeof mask); /* the optimizer kept its own copy */
  float a[4] = {1, 2, -1, 0.5f}, b[4], c[4];
  memcpy(b, a, sizeof a), memcpy(c, a, sizeof a);
  const float g[4] = {0.1f, -0.2f, 0.3f, 0.4f};
  for (int t = 0; t < 3; t++) {
    optim_step(masked, a, g, 0.1);
    optim_step(with, b, g, 0.1);
    optim_step(without, c, g, 0.1);
  }
  assert_true(a[0] == b[0] && a[3] == b[3]);
  assert_true(a[1] == c[1] && a[2] == c[2]);
  assert_true(b[1] != c[1]); /* the decay made a difference */
  optim_free(masked), optim_free(with), optim_free(without);
}

static void test_optim_decay_mask_sgd(void **state) {
  (void)state;
  check_mask(MS_OPTIM_SGD);
}

static void test_optim_decay_mask_adam(void **state) {
  (void)state;
  check_mask(MS_OPTIM_ADAM);
}

static void test_optim_decay_mask_adamw(void **state) {
  (void)state;
  check_mask(MS_OPTIM_ADAMW);
}

/* optim_create (the config path) makes the optimizer optim.name names,
 * with the config's keys; a kind out of range is a config error. */
static void test_optim_kind_and_keys_from_config(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.optim.name = MS_OPTIM_ADAMW;
  cfg.optim.lr = 0.01, cfg.optim.beta1 = 0.8, cfg.optim.beta2 = 0.99, cfg.optim.eps = 1e-6;
  cfg.optim.weight_decay = 0.05;
  ms_optim *o = NULL;
  assert_int_equal(optim_create(&o, &cfg, 3), 0);
  assert_int_equal(o->kind, MS_OPTIM_ADAMW);
  assert_true(o->beta1 == 0.8 && o->beta2 == 0.99 && o->eps == 1e-6 && o->weight_decay == 0.05);
  assert_non_null(o->exp_avg);
  assert_null(o->momentum);
  float *arenas[2];
  const char *names[2];
  assert_int_equal(optim_state(o, arenas, names, 2), 2);
  assert_string_equal(names[0], "exp_avg");
  optim_free(o);
  cfg.optim.name = (ms_optim_kind)9; /* no optimizer: the config module refuses it earlier */
  assert_int_equal(optim_create(&o, &cfg, 3), MS_ECONFIG);
  assert_null(o);
}

/* optim_create (the config path) still makes the SGD that train.c uses,
 * and optim_step on it is optim_sgd_step. */
static void test_optim_sgd_from_config_unchanged(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.optim.name = MS_OPTIM_SGD;
  cfg.optim.lr = 0.1, cfg.optim.momentum = 0.9, cfg.optim.weight_decay = 0.01;
  cfg.optim.nesterov = 1;
  ms_optim *o = NULL, *q = NULL;
  assert_int_equal(optim_create(&o, &cfg, 1), 0);
  assert_int_equal(optim_create(&q, &cfg, 1), 0);
  assert_int_equal(o->kind, MS_OPTIM_SGD);
  assert_non_null(o->momentum);
  float p = 1.0f, r = 1.0f, g = 0.5f;
  double v = 0, pd = 1.0;
  for (int t = 0; t < 3; t++) {
    optim_sgd_step(o, &p, &g, 0.1);
    optim_step(q, &r, &g, 0.1);
    double gd = 0.5 + 0.01 * pd;
    v = 0.9 * v + gd;
    pd -= 0.1 * (gd + 0.9 * v);
    tu_assert_close(p, pd, 1e-6, 0);
    assert_true(p == r);
  }
  optim_free(o), optim_free(q);
}

static void test_optim_state_arenas_named(void **state) {
  (void)state;
  ms_optim_params p = {.kind = MS_OPTIM_ADAMW, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  ms_optim *o = NULL;
  assert_int_equal(optim_create_params(&o, &p, 3), 0);
  float *arenas[2];
  const char *names[2];
  assert_int_equal(optim_state(o, arenas, names, 2), 2);
  assert_ptr_equal(arenas[0], o->exp_avg);
  assert_string_equal(names[1], "exp_avg_sq");
  optim_free(o);
  p.kind = MS_OPTIM_SGD;
  assert_int_equal(optim_create_params(&o, &p, 3), 0);
  assert_int_equal(optim_state(o, arenas, names, 2), 1);
  assert_string_equal(names[0], "momentum");
  optim_free(o);
}

/* ---- schedules --------------------------------------------------------------- */

static void test_optim_schedule_constant_with_warmup(void **state) {
  (void)state;
  ms_schedule_params p = {.kind = MS_SCHED_CONSTANT, .lr = 0.5, .warmup_steps = 4};
  tu_assert_close(schedule_lr_at(&p, 0, 100), 0.125, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 2, 100), 0.375, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 3, 100), 0.5, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 99, 100), 0.5, 1e-15, 0);
}

static void test_optim_schedule_cosine(void **state) {
  (void)state;
  ms_schedule_params p = {
      .kind = MS_SCHED_COSINE, .lr = 1.0, .warmup_steps = 10, .min_lr_ratio = 0.1};
  tu_assert_close(schedule_lr_at(&p, 0, 110), 0.1, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 10, 110), 1.0, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 35, 110), 0.1 + 0.9 * 0.5 * (1 + cos(3.141592653589793 / 4)),
               1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 60, 110), 0.55, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 110, 110), 0.1, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 500, 110), 0.1, 1e-12, 0);
}

/* StepLR(step_size=10, gamma=0.5): halves at steps 10, 20, ... after the
 * warm-up. */
static void test_optim_schedule_step(void **state) {
  (void)state;
  ms_schedule_params p = {.kind = MS_SCHED_STEP, .lr = 1.0, .step_size = 10, .gamma = 0.5};
  tu_assert_close(schedule_lr_at(&p, 0, 100), 1.0, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 9, 100), 1.0, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 10, 100), 0.5, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 25, 100), 0.25, 1e-15, 0);
  p.warmup_steps = 5;
  tu_assert_close(schedule_lr_at(&p, 0, 100), 0.2, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 4, 100), 1.0, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 14, 100), 1.0, 1e-15, 0);
  tu_assert_close(schedule_lr_at(&p, 15, 100), 0.5, 1e-15, 0);
}

/* OneCycleLR(max_lr=1, total_steps=100), PyTorch defaults: starts at 1/25,
 * peaks at step pct_start*100 - 1 = 29, ends at 1/25/1e4 at step 99.
 * Step 10: anneal_cos(0.04, 1, 10/29); step 64: half-way down. */
static void test_optim_schedule_onecycle(void **state) {
  (void)state;
  ms_schedule_params p = {.kind = MS_SCHED_ONECYCLE,
                          .lr = 1.0,
                          .div_factor = 25,
                          .final_div_factor = 1e4,
                          .pct_start = 0.3};
  tu_assert_close(schedule_lr_at(&p, 0, 100), 0.04, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 10, 100), 0.29516394846410077, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 29, 100), 1.0, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 64, 100), 0.500002, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 99, 100), 4e-6, 1e-9, 0);
  tu_assert_close(schedule_lr_at(&p, 150, 100), 4e-6, 1e-9, 0); /* held at the end */
  /* With a warm-up of 10 in front: a ramp to 0.04, then the same cycle
   * over the remaining 100 steps. */
  p.warmup_steps = 10;
  tu_assert_close(schedule_lr_at(&p, 4, 110), 0.02, 1e-12, 0);
  tu_assert_close(schedule_lr_at(&p, 20, 110), 0.29516394846410077, 1e-12, 0);
}

/* schedule_lr (the config path) is schedule_lr_at on the config's values. */
static void test_optim_schedule_lr_delegates(void **state) {
  (void)state;
  ms_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.optim.lr = 0.3;
  cfg.schedule.name = MS_SCHED_COSINE;
  cfg.schedule.warmup_steps = 7;
  cfg.schedule.min_lr_ratio = 0.2;
  ms_schedule_params p = {
      .kind = MS_SCHED_COSINE, .lr = 0.3, .warmup_steps = 7, .min_lr_ratio = 0.2};
  for (int64_t s = 0; s < 60; s += 3)
    assert_true(schedule_lr(&cfg, s, 50) == schedule_lr_at(&p, s, 50));
  cfg.schedule.name = MS_SCHED_CONSTANT;
  tu_assert_close(schedule_lr(&cfg, 30, 50), 0.3, 1e-15, 0);
}

/* The bitwise tests' optimizers, kind 0-3: SGD, SGD with Nesterov, Adam,
 * AdamW, each with weight decay (and momentum for SGD). */
static ms_optim_params kind_params(int kind) {
  return (ms_optim_params){
      .kind = kind >= 2 ? (kind == 2 ? MS_OPTIM_ADAM : MS_OPTIM_ADAMW) : MS_OPTIM_SGD,
      .lr = 0.01, .weight_decay = 0.01, .momentum = 0.9, .nesterov = kind == 1,
      .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

/* The fused sharded update (optim_step_range_sum): gradients summed from
 * 1 to 5 sources (the node's segments; one, two, and the buffered path
 * from three on, with ranges longer than its 1024-element slices), read
 * scaled, over ranges of uneven sizes in any order, give the bits of
 * optim_step on the in-order float sum scaled in place, for every kind;
 * the sources are only read. */
static void test_optim_summed_sources_are_bitwise_the_whole_step(void **state) {
  (void)state;
  enum { n = 2500, S = 5 };
  static const size_t cut[] = {0, 1, 64, 1500, 2477, n};
  static float pa[n], pb[n], g[n], src[S][n], copy[S][n];
  const float *srcp[S];
  for (int k = 0; k < S; k++) srcp[k] = src[k];
  for (int nsrc = 1; nsrc <= S; nsrc++)
    for (int kind = 0; kind < 4; kind++) {
      const ms_optim_params p = kind_params(kind);
      ms_optim *a = NULL, *b = NULL;
      assert_int_equal(optim_create_params(&a, &p, n), 0);
      assert_int_equal(optim_create_params(&b, &p, n), 0);
      static uint8_t mask[n];
      for (int i = 0; i < n; i++) mask[i] = (uint8_t)(i % 3 != 0);
      assert_int_equal(optim_set_decay_mask(a, mask), 0);
      assert_int_equal(optim_set_decay_mask(b, mask), 0);
      for (int i = 0; i < n; i++) pa[i] = pb[i] = (float)sin(i * 0.37) * 0.5f;
      for (int t = 0; t < 3; t++) {
        const float scale = t == 1 ? 0.75f : 1.0f;
        for (int i = 0; i < n; i++) {
          for (int k = 0; k < nsrc; k++)
            src[k][i] = (float)cos(i * 1.3 + t + 0.7 * k) * (float)(t + 1 + k) * 0.3f;
          float sum = src[0][i];
          for (int k = 1; k < nsrc; k++) sum += src[k][i];
          g[i] = sum * scale;
        }
        memcpy(copy, src, sizeof copy);
        optim_step(a, pa, g, 0.01 * (t + 1));
        for (int k = 4; k >= 0; k--) { /* one range stands for a rank: t counts the step once */
          b->t = t;
          optim_step_range_sum(b, pb, srcp, nsrc, scale, 0.01 * (t + 1), cut[k], cut[k + 1]);
          assert_int_equal(b->t, t + 1);
        }
        assert_memory_equal(pa, pb, sizeof pa);
        assert_memory_equal(copy, src, sizeof copy);
      }
      float *state_a[2], *state_b[2];
      for (int s = 0, k = optim_state(a, state_a, NULL, 2); s < k; s++) {
        optim_state(b, state_b, NULL, 2);
        assert_memory_equal(state_a[s], state_b[s], sizeof(float) * n);
      }
      optim_free(a);
      optim_free(b);
    }
}

/* The sharded update's pieces (optim_step_range, optim_use_state, the
 * clipping factor): ranges that cover the arena, in any order, with the
 * gradients scaled as they are read, give optim_step's bits after in-place
 * clipping, for every kind; t counts steps, not ranges. */
static void test_optim_ranges_are_bitwise_the_whole_step(void **state) {
  (void)state;
  enum { n = 1003 };
  const size_t cut[] = {0, 336, 672, n}; /* three ranks' ranges */
  for (int kind = 0; kind < 4; kind++) {
    const ms_optim_params p = kind_params(kind);
    ms_optim *a = NULL, *b = NULL;
    assert_int_equal(optim_create_params(&a, &p, n), 0);
    assert_int_equal(optim_create_params(&b, &p, n), 0);
    float *state_b[2], *mine[2] = {calloc(n, sizeof(float)), calloc(n, sizeof(float))};
    optim_use_state(b, mine, 1); /* the caller's arenas, as a node-shared block */
    assert_int_equal(optim_state(b, state_b, NULL, 2), optim_state(a, NULL, NULL, 2));
    assert_ptr_equal(state_b[0], mine[0]);
    float pa[n], pb[n], g[n], gc[n];
    for (int i = 0; i < n; i++) pa[i] = pb[i] = (float)sin(i * 0.37) * 0.5f;
    for (int t = 0; t < 4; t++) {
      for (int i = 0; i < n; i++) g[i] = gc[i] = (float)cos(i * 1.3 + t) * (t + 1) * 0.3f;
      double norm_a, norm_b;
      norm_a = optim_clip_grad_norm(gc, n, 2.0);
      optim_step(a, pa, gc, 0.01);
      double ss = 0.0;
      for (int k = 0; k < 3; k++) ss = optim_sum_squares(g + cut[k], cut[k + 1] - cut[k], ss);
      float f = optim_clip_factor(ss, 2.0, &norm_b);
      assert_true(norm_a == norm_b && f < 1.0f); /* it clips */
      b->t = t; /* every rank counts the step once: one range here stands for a rank */
      for (int k = 2; k >= 0; k--) {
        int64_t t0 = b->t;
        optim_step_range(b, pb, g, f, 0.01, cut[k], cut[k + 1]);
        assert_int_equal(b->t, t0 + 1);
        b->t = t0;
      }
      b->t = t + 1;
      assert_memory_equal(pa, pb, sizeof pa);
    }
    float *state_a[2];
    for (int s = 0, k = optim_state(a, state_a, NULL, 2); s < k; s++)
      assert_memory_equal(state_a[s], state_b[s], sizeof(float) * n);
    optim_free(a);
    optim_free(b); /* does not free the caller's arenas */
    free(mine[0]);
    free(mine[1]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_optim_adam_three_steps),
      cmocka_unit_test(test_optim_adamw_three_steps),
      cmocka_unit_test(test_optim_decay_mask_sgd),
      cmocka_unit_test(test_optim_decay_mask_adam),
      cmocka_unit_test(test_optim_decay_mask_adamw),
      cmocka_unit_test(test_optim_sgd_from_config_unchanged),
      cmocka_unit_test(test_optim_kind_and_keys_from_config),
      cmocka_unit_test(test_optim_state_arenas_named),
      cmocka_unit_test(test_optim_ranges_are_bitwise_the_whole_step),
      cmocka_unit_test(test_optim_summed_sources_are_bitwise_the_whole_step),
      cmocka_unit_test(test_optim_schedule_constant_with_warmup),
      cmocka_unit_test(test_optim_schedule_cosine),
      cmocka_unit_test(test_optim_schedule_step),
      cmocka_unit_test(test_optim_schedule_onecycle),
      cmocka_unit_test(test_optim_schedule_lr_delegates),
  };
  return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
