/* test_model_seq — sequence models in the layer stack (trainer/nn/model_seq.c):
 * PyTorch-style tensor names and layouts, a finite-difference check of the
 * whole model's gradients through embeddings, two transformer blocks, the
 * final layer norm and the output head (own or tied), the gradient-ready
 * hook's ranges, initialisation, and the configuration errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers_seq.h"
#include "model.h"
#include "ms_error.h"
#include "testutil.h"

enum { T = 4, V = 7, D = 8, B = 2 };

static ms_layer_cfg L(ms_layer_type t) {
  return (ms_layer_cfg){.type = t, .alpha = 0.01, .eps = 1e-5, .causal = 1};
}

/* embedding -> pos_embedding -> 2 x transformer_block -> layernorm -> dense V */
static void tiny_lm(ms_config *cfg, int tie) {
  memset(cfg, 0, sizeof *cfg);
  ms_layer_cfg *l = cfg->model.layers;
  l[0] = L(MS_LAYER_EMBEDDING);
  l[0].vocab = V, l[0].dim = D;
  l[1] = L(MS_LAYER_POS_EMBEDDING);
  l[2] = L(MS_LAYER_TRANSFORMER_BLOCK);
  l[2].heads = 2, l[2].hidden = 12;
  l[3] = L(MS_LAYER_TRANSFORMER_BLOCK);
  l[3].heads = 4;
  l[4] = L(MS_LAYER_LAYERNORM);
  l[5] = L(MS_LAYER_DENSE);
  l[5].units = V;
  cfg->model.n_layers = 6;
  cfg->model.tie_embeddings = tie;
}

static const int64_t in_shape[1] = {T};

static void test_model_seq_names_and_shapes(void **state) {
  (void)state;
  ms_config cfg;
  tiny_lm(&cfg, 0);
  ms_model m;
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), 0);
  assert_int_equal(m.n_out, T * V);
  assert_int_equal(m.seq_T, T);
  assert_int_equal(m.vocab, V);
  assert_int_equal(m.n_p, 2 + 24 + 4);
  assert_string_equal(m.p[0].name, "tok_emb.weight");
  assert_int_equal(m.p[0].shape[0], V);
  assert_int_equal(m.p[0].shape[1], D);
  assert_string_equal(m.p[1].name, "pos_emb.weight");
  assert_int_equal(m.p[1].shape[0], T);
  assert_string_equal(m.p[2].name, "blocks.0.ln1.weight");
  assert_string_equal(m.p[4].name, "blocks.0.attn.qkv.weight");
  assert_int_equal(m.p[4].shape[0], 3 * D);
  assert_int_equal(m.p[4].shape[1], D);
  assert_string_equal(m.p[6].name, "blocks.0.attn.proj.weight");
  assert_string_equal(m.p[10].name, "blocks.0.mlp.fc.weight");
  assert_int_equal(m.p[10].shape[0], 12); /* hidden */
  assert_string_equal(m.p[12].name, "blocks.0.mlp.proj.weight");
  assert_int_equal(m.p[12].shape[1], 12);
  assert_string_equal(m.p[14].name, "blocks.1.ln1.weight");
  assert_int_equal(m.p[14 + 8].shape[0], 4 * D); /* hidden 0 = 4 * width */
  assert_string_equal(m.p[26].name, "ln_f.weight");
  assert_string_equal(m.p[28].name, "head.weight");
  assert_int_equal(m.p[28].shape[0], V);
  assert_string_equal(m.p[29].name, "head.bias");
  /* Weight decay: the 2-D tensors. */
  for (int i = 0; i < m.n_p; i++) assert_int_equal(m.p[i].decay, m.p[i].ndim == 2);
  /* Tied: the head has only its bias; the layout hash differs. */
  uint64_t h = model_layout_hash(&m);
  tiny_lm(&cfg, 1);
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), 0);
  assert_int_equal(m.n_p, 2 + 24 + 3);
  assert_string_equal(m.p[28].name, "head.bias");
  assert_true(model_layout_hash(&m) != h);
  /* The kernel line names them (its layer table once overran with them). */
  char desc[512];
  model_kernels_desc(&m, desc, sizeof desc);
  tu_assert_contains(desc, "sequence layers (attention, blocks, per-position dense): OpenBLAS");
  assert_null(strstr(desc, "; dense:"));
  /* Per-position products: the head's (D -> V) once per position. */
  double f = model_layer_flops(&m, 5);
  assert_true(f == 2.0 * T * D * V);
}

/* Random parameters (so that layer norms and biases are not at their
 * trivial init) and token ids; the loss is the sequence cross-entropy. */
static ms_model *gm;
static float gx[B * T], *gdl;
static int32_t gy[B * T];

static double model_loss(void) {
  const float *out = model_forward(gm, gx, B, NULL);
  return seq_xent(NULL, out, gy, B, T, V, 1.0f, NULL);
}

static void whole_model_gradcheck(int tie) {
  ms_config cfg;
  tiny_lm(&cfg, tie);
  assert_int_equal(model_create(&gm, &cfg, in_shape, 1, B), 0);
  tu_fill(gm->params, (long)gm->n_params, 5);
  for (size_t i = 0; i < gm->n_params; i++) gm->params[i] *= 0.5f;
  for (int i = 0; i < B * T; i++) gx[i] = (float)((i * 3 + 1) % V), gy[i] = (i * 5 + 2) % V;
  gdl = malloc(sizeof(float) * B * T * V);
  const float *out = model_forward(gm, gx, B, NULL);
  seq_xent(gdl, out, gy, B, T, V, 1.0f, NULL);
  model_backward(gm, gdl, NULL, NULL, NULL);
  float *g = malloc(sizeof(float) * gm->n_params);
  memcpy(g, gm->grads, sizeof(float) * gm->n_params);
  for (size_t i = 0; i < gm->n_params; i++) {
    float keep = gm->params[i];
    gm->params[i] = keep + 1e-2f;
    double lp = model_loss();
    gm->params[i] = keep - 1e-2f;
    double lm = model_loss();
    gm->params[i] = keep;
    tu_assert_close(g[i], (lp - lm) / 2e-2, 3e-2, 5e-4);
  }
  free(g);
  free(gdl);
  model_free(gm);
}

static void test_model_seq_gradcheck(void **state) {
  (void)state;
  whole_model_gradcheck(0);
}

static void test_model_seq_gradcheck_tied(void **state) {
  (void)state;
  whole_model_gradcheck(1);
}

typedef struct {
  size_t next_end;
  int calls;
} ready_log;

static void on_ready(void *ctx, size_t off, size_t len) {
  ready_log *r = ctx;
  assert_int_equal(off + len, r->next_end);
  r->next_end = off;
  r->calls++;
}

static void test_model_seq_ready_ranges_tile_the_arena(void **state) {
  (void)state;
  for (int tie = 0; tie < 2; tie++) {
    ms_config cfg;
    tiny_lm(&cfg, tie);
    ms_model *m = NULL;
    assert_int_equal(model_create(&m, &cfg, in_shape, 1, B), 0);
    model_init(m, 3);
    float x[B * T] = {1, 2, 3, 4, 5, 6, 0, 1}, dl[B * T * V];
    model_forward(m, x, B, NULL);
    tu_fill(dl, B * T * V, 4);
    ready_log log = {.next_end = m->n_params};
    model_backward(m, dl, NULL, on_ready, &log);
    assert_int_equal(log.next_end, 0);
    assert_int_equal(log.calls, 6);
    model_free(m);
  }
}

static void test_model_seq_init(void **state) {
  (void)state;
  ms_config cfg;
  tiny_lm(&cfg, 0);
  ms_model *m = NULL;
  assert_int_equal(model_create(&m, &cfg, in_shape, 1, 1), 0);
  model_init(m, 9);
  for (int i = 0; i < m->n_p; i++) {
    const ms_param *p = &m->p[i];
    const float *v = m->params + p->off;
    double ss = 0;
    for (size_t k = 0; k < p->len; k++) ss += (double)v[k] * v[k];
    int ln_gain = p->ndim == 1 && strstr(p->name, "ln") && strstr(p->name, "weight");
    if (ln_gain)
      assert_true(ss == (double)p->len);
    else if (p->ndim == 1)
      assert_true(ss == 0.0);
    else if (strncmp(p->name, "head", 4))
      assert_true(sqrt(ss / (double)p->len) < 0.03 && ss > 0); /* std 0.02 or less */
  }
  /* Same seed, same parameters. */
  ms_model *m2 = NULL;
  assert_int_equal(model_create(&m2, &cfg, in_shape, 1, 1), 0);
  model_init(m2, 9);
  assert_memory_equal(m->params, m2->params, sizeof(float) * m->n_params);
  model_free(m);
  model_free(m2);
}

static void test_model_seq_config_errors(void **state) {
  (void)state;
  ms_config cfg;
  ms_model m;
  tiny_lm(&cfg, 0);
  cfg.model.layers[2].heads = 3;
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "3 heads do not divide the width 8");
  tiny_lm(&cfg, 0);
  cfg.model.layers[0] = L(MS_LAYER_ATTENTION);
  cfg.model.layers[0].heads = 1;
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "put an embedding layer first");
  tiny_lm(&cfg, 1);
  cfg.model.layers[5].units = V + 1;
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.tie_embeddings");
  tiny_lm(&cfg, 0);
  cfg.model.layers[4] = L(MS_LAYER_MAXPOOL2D);
  cfg.model.layers[4].kernel = 2;
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "not on a sequence");
  tiny_lm(&cfg, 1);
  cfg.model.layers[0] = L(MS_LAYER_DENSE); /* no embedding to tie to */
  cfg.model.layers[0].units = 8;
  cfg.model.n_layers = 1;
  assert_int_equal(model_plan(&m, &cfg, in_shape, 1), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "model.tie_embeddings: needs an embedding");
  int64_t img[3] = {1, 4, 4};
  tiny_lm(&cfg, 0);
  assert_int_equal(model_plan(&m, &cfg, img, 3), MS_ECONFIG);
  tu_assert_contains(ms_error_msg(), "must be the first layer");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_model_seq_names_and_shapes),
      cmocka_unit_test(test_model_seq_gradcheck),
      cmocka_unit_test(test_model_seq_gradcheck_tied),
      cmocka_unit_test(test_model_seq_ready_ranges_tile_the_arena),
      cmocka_unit_test(test_model_seq_init),
      cmocka_unit_test(test_model_seq_config_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
