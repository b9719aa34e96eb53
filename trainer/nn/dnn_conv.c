#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnn.h"
#include "dnn_util.h"
#include "ms_error.h"

/* ---- a primitive over the caller's f32 arrays ----------------------------------- */

/* One argument of a convolution primitive. The primitive picks its layouts
 * (format any); an input is converted from the caller's NCHW / OIHW f32
 * array into them, an output is computed in them and reordered into the
 * caller's array, and an argument whose layout and type are the caller's
 * is used in place. */
typedef struct {
  int arg;     /* DNNL_ARG_... */
  int output;  /* written by the primitive */
  int direct;  /* the caller's array is the argument */
  dnn_prep in; /* input, not direct */
  dnn_op out;  /* output, not direct: the primitive's layout -> the caller's */
  void *buf;   /* output, not direct */
  dnnl_memory_desc_t md; /* the primitive's layout and type of the argument */
  void *last;  /* the argument as the last run passed it to the primitive */
} operand;

typedef struct {
  dnn_op prim;
  int n;
  operand o[DNN_MAX_ARGS];
} cprod;

static void cprod_free(cprod *c) {
  dnn_op_free(&c->prim);
  for (int i = 0; i < c->n; i++) {
    dnn_prep_free(&c->o[i].in);
    dnn_op_free(&c->o[i].out);
    free(c->o[i].buf);
  }
  memset(c, 0, sizeof *c);
}

/* The primitive of pd (destroyed) with n arguments arg[i], whose caller's
 * layouts are user[i] (f32) and whose primitive layouts are queried from pd
 * with (q[i], qi[i]). emulated: inputs but the bias go through bf16 and back
 * (dnn_util.h). */
static dnnl_status_t cprod_make(cprod *c, dnnl_primitive_desc_t pd, int n, const int *arg,
                                const int *output, const dnnl_query_t *q, const int *qi,
                                const dnnl_memory_desc_t *user, int emulated) {
  memset(c, 0, sizeof *c);
  dnnl_memory_desc_t md[DNN_MAX_ARGS];
  const dnnl_memory_desc_t *mds[DNN_MAX_ARGS];
  dnnl_status_t st = dnnl_success;
  c->n = n;
  for (int i = 0; i < n; i++) {
    operand *o = &c->o[i];
    md[i] = *dnnl_primitive_desc_query_md(pd, q[i], qi[i]);
    mds[i] = &md[i];
    o->arg = arg[i], o->output = output[i], o->md = md[i];
    int round = emulated && !output[i] && arg[i] != DNNL_ARG_BIAS;
    o->direct = dnnl_memory_desc_equal(&md[i], &user[i]) && !round;
    if (o->direct || st != dnnl_success) continue;
    if (round) {
      /* Emulated: the primitive's layout is the caller's; round through
       * the same layout in bf16. */
      dnnl_memory_desc_t b16 = md[i];
      b16.data_type = dnnl_bf16;
      st = dnn_prep_make(&o->in, &user[i], &b16, 1);
    } else if (!output[i]) {
      st = dnn_prep_make(&o->in, &user[i], &md[i], 0);
    } else {
      o->buf = malloc(dnnl_memory_desc_get_size(&md[i]));
      st = o->buf ? dnn_reorder_make(&o->out, &md[i], &user[i]) : dnnl_out_of_memory;
    }
  }
  if (st != dnnl_success) {
    dnnl_primitive_desc_destroy(pd);
    cprod_free(c);
    return st;
  }
  st = dnn_op_make(&c->prim, pd, n, arg, mds);
  if (st != dnnl_success) cprod_free(c);
  return st;
}

/* Runs c on the caller's arrays h (in argument order). ready: NULL, or per
 * argument an operand already in the primitive's layout and type (another
 * primitive's, from the same caller's array), used as it is; NULL entries
 * are converted from h. */
static dnnl_status_t cprod_run(cprod *c, void *const *h, void *const *ready) {
  void *args[DNN_MAX_ARGS];
  for (int i = 0; i < c->n; i++) {
    operand *o = &c->o[i];
    args[i] = ready && ready[i]   ? ready[i]
              : o->direct         ? h[i]
              : o->output         ? o->buf
                                  : dnn_prep_run(&o->in, h[i]);
    if (!args[i]) return dnnl_runtime_error;
    o->last = args[i];
  }
  dnnl_status_t st = dnn_op_run(&c->prim, args);
  for (int i = 0; i < c->n && st == dnnl_success; i++) {
    operand *o = &c->o[i];
    if (o->output && !o->direct) {
      void *r[] = {o->buf, h[i]};
      st = dnn_op_run(&o->out, r);
    }
  }
  return st;
}

/* ---- conv2d -------------------------------------------------------------------- */

typedef struct {
  int B; /* 0 = empty slot */
  unsigned long used;
  cprod fwd, bwd_data, bwd_w;
  int share_dy; /* bwd_data takes dout in bwd_w's layout: convert it once */
} conv_ops;

struct dnn_conv {
  ms_conv2d g;
  int max_batch;
  dnn_precision prec;
  int emulated, native;
  unsigned long clock;
  conv_ops cache[DNN_CACHE];
  char impl[64];
};

static void conv_ops_free(conv_ops *s) {
  cprod_free(&s->fwd), cprod_free(&s->bwd_data), cprod_free(&s->bwd_w);
  memset(s, 0, sizeof *s);
}

void dnn_conv_free(dnn_conv *c) {
  if (!c) return;
  for (int i = 0; i < DNN_CACHE; i++) conv_ops_free(&c->cache[i]);
  free(c);
}

static void md4(dnnl_memory_desc_t *md, dnnl_dim_t a, dnnl_dim_t b, dnnl_dim_t h, dnnl_dim_t w,
                dnnl_data_type_t dt, dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {a, b, h, w};
  dnnl_memory_desc_init_by_tag(md, 4, dims, dt, tag);
}

/* The three primitives of batch size B. mode 0: f32; 1: bf16; 2: bf16
 * emulated (f32 primitives in the caller's layouts over rounded inputs). */
static dnnl_status_t conv_ops_make(dnn_conv *c, conv_ops *s, int B) {
  const ms_conv2d *g = &c->g;
  int mode = c->prec == DNN_FP32 ? 0 : c->emulated ? 2 : 1;
  dnnl_data_type_t in = mode == 1 ? dnnl_bf16 : dnnl_f32;
  dnnl_format_tag_t any = mode == 2 ? dnnl_nchw : dnnl_format_tag_any;
  dnnl_format_tag_t wany = mode == 2 ? dnnl_oihw : dnnl_format_tag_any;
  dnnl_memory_desc_t x, w, b, y, dx, dw, dy, ux, uw, ub, uy;
  md4(&x, B, g->C, g->H, g->W, in, any), md4(&ux, B, g->C, g->H, g->W, dnnl_f32, dnnl_nchw);
  md4(&w, g->OC, g->C, g->KH, g->KW, in, wany);
  md4(&uw, g->OC, g->C, g->KH, g->KW, dnnl_f32, dnnl_oihw);
  md4(&y, B, g->OC, g->OH, g->OW, dnnl_f32, any);
  md4(&uy, B, g->OC, g->OH, g->OW, dnnl_f32, dnnl_nchw);
  md4(&dy, B, g->OC, g->OH, g->OW, in, any);
  md4(&dx, B, g->C, g->H, g->W, dnnl_f32, any);
  md4(&dw, g->OC, g->C, g->KH, g->KW, dnnl_f32, wany);
  dnnl_dims_t bd = {g->OC};
  dnnl_memory_desc_init_by_tag(&b, 1, bd, dnnl_f32, dnnl_a);
  ub = b;
  dnnl_dims_t strides = {g->SH, g->SW}, pad = {g->PH, g->PW};
  /* The bottom and right padding that makes the output OH x OW (PyTorch
   * drops the inputs that no window reaches). */
  dnnl_dims_t pad_r = {(g->OH - 1) * g->SH + g->KH - g->H - g->PH,
                       (g->OW - 1) * g->SW + g->KW - g->W - g->PW};
  dnnl_convolution_desc_t fd, bdd, bwd;
  dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
  dnnl_alg_kind_t alg = dnnl_convolution_direct;
  dnnl_status_t st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &x, &w, &b,
                                                        &y, strides, pad, pad_r);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&fpd, &fd, NULL, dnn_engine(), NULL);
  if (st == dnnl_success)
    st = dnnl_convolution_backward_data_desc_init(&bdd, alg, &dx, &w, &dy, strides, pad, pad_r);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&dpd, &bdd, NULL, dnn_engine(), fpd);
  if (st == dnnl_success)
    st = dnnl_convolution_backward_weights_desc_init(&bwd, alg, &x, &dw, mode == 0 ? &b : NULL,
                                                     &dy, strides, pad, pad_r);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&wpd, &bwd, NULL, dnn_engine(), fpd);
  if (st != dnnl_success) {
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    return st;
  }
  const char *name = NULL;
  if (dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name)
    snprintf(c->impl, sizeof c->impl, "%s", name);
  int emu = mode == 2;
  const int fa[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
  const int fo[] = {0, 0, 0, 1};
  const dnnl_query_t fq[] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md,
                             dnnl_query_dst_md};
  const int fqi[] = {0, 0, 1, 0}, q0[] = {0, 0, 0}; /* the bias: the second weights */
  const dnnl_memory_desc_t fu[] = {ux, uw, ub, uy};
  const int da[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
  const int dof[] = {0, 0, 1};
  const dnnl_query_t dq[] = {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md};
  const dnnl_memory_desc_t du[] = {uy, uw, ux};
  /* fp32: the bias gradient too (diff_weights 1), summed in the primitive;
   * bf16 sums the fp32 dout itself (dnn_conv_backward). */
  const int wa[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
  const int wo[] = {0, 0, 1, 1};
  const dnnl_query_t wq[] = {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md,
                             dnnl_query_diff_weights_md};
  const int wqi[] = {0, 0, 0, 1};
  const dnnl_memory_desc_t wu[] = {ux, uy, uw, ub};
  /* The backward primitives first: their descriptors hold on to the
   * forward's (the hint), destroyed last. */
  st = cprod_make(&s->bwd_data, dpd, 3, da, dof, dq, q0, du, emu);
  if (st == dnnl_success)
    st = cprod_make(&s->bwd_w, wpd, mode == 0 ? 4 : 3, wa, wo, wq, wqi, wu, emu);
  else
    dnnl_primitive_desc_destroy(wpd);
  if (st == dnnl_success)
    st = cprod_make(&s->fwd, fpd, 4, fa, fo, fq, fqi, fu, emu);
  else
    dnnl_primitive_desc_destroy(fpd);
  if (st == dnnl_success) {
    s->B = B;
    s->share_dy = dnnl_memory_desc_equal(&s->bwd_w.o[1].md, &s->bwd_data.o[0].md);
  } else {
    conv_ops_free(s);
  }
  return st;
}

/* *out = the primitives of batch size B (cached; made in the least recently
 * used slot on a miss). @return 0, MS_ENOMEM or MS_EINTERNAL. */
static int conv_get(dnn_conv *c, int B, conv_ops **out) {
  conv_ops *victim = &c->cache[0];
  for (int i = 0; i < DNN_CACHE; i++) {
    conv_ops *s = &c->cache[i];
    if (s->B == B) {
      s->used = ++c->clock;
      *out = s;
      return 0;
    }
    if (s->used < victim->used) victim = s;
  }
  conv_ops_free(victim);
  dnnl_status_t st = conv_ops_make(c, victim, B);
  if (st == dnnl_unimplemented && c->prec == DNN_BF16 && !c->emulated) {
    c->emulated = 1; /* no bf16 convolution for this ISA */
    st = conv_ops_make(c, victim, B);
  }
  if (st != dnnl_success)
    return ms_error_set(st == dnnl_out_of_memory ? MS_ENOMEM : MS_EINTERNAL,
                        "oneDNN: cannot create the convolutions of a %dx%d/%d conv2d of %d -> %d "
                        "channels for batch %d (status %d)",
                        c->g.KH, c->g.KW, c->g.SH, c->g.C, c->g.OC, B, st);
  victim->used = ++c->clock;
  *out = victim;
  return 0;
}

int dnn_conv_create(dnn_conv **out, const ms_conv2d *g, int max_batch, dnn_precision prec) {
  *out = NULL;
  int rc = dnn_start();
  if (rc) return rc;
  dnn_conv *c = calloc(1, sizeof *c);
  if (!c) return ms_error_set(MS_ENOMEM, "oneDNN: out of memory for a conv2d layer");
  c->g = *g, c->max_batch = max_batch < 1 ? 1 : max_batch, c->prec = prec;
  c->native = prec == DNN_BF16 && dnn_bf16_native();
  conv_ops *s = NULL;
  rc = conv_get(c, c->max_batch, &s);
  if (rc) {
    dnn_conv_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

static int conv_fail(dnnl_status_t st, const char *what) {
  return ms_error_set(MS_EINTERNAL, "oneDNN: %s failed (status %d)", what, st);
}

int dnn_conv_forward(dnn_conv *c, float *out, const float *inp, const float *w, const float *b,
                     int B) {
  conv_ops *s = NULL;
  int rc = conv_get(c, B, &s);
  if (rc) return rc;
  void *h[] = {(void *)inp, (void *)w, (void *)b, out};
  dnnl_status_t st = cprod_run(&s->fwd, h, NULL);
  return st == dnnl_success ? 0 : conv_fail(st, "conv2d forward");
}

int dnn_conv_backward(dnn_conv *c, float *dinp, float *dw, float *db, const float *dout,
                      const float *inp, const float *w, int B) {
  conv_ops *s = NULL;
  int rc = conv_get(c, B, &s);
  if (rc) return rc;
  /* bf16: the bias gradient is an fp32 sum of dout over (B, OH, OW), in
   * order (the primitive's would sum the rounded dout); fp32: the
   * backward-weights primitive's. */
  long plane = (long)c->g.OH * c->g.OW;
  for (int o = 0; o < c->g.OC && c->prec == DNN_BF16; o++) {
    float sum = 0.0f;
    for (int i = 0; i < B; i++) {
      const float *p = dout + ((long)i * c->g.OC + o) * plane;
      for (long k = 0; k < plane; k++) sum += p[k];
    }
    db[o] = sum;
  }
  void *hw[] = {(void *)inp, (void *)dout, dw, db};
  dnnl_status_t st = cprod_run(&s->bwd_w, hw, NULL);
  if (st == dnnl_success && dinp) {
    /* dout as bwd_w took it (converted, or rounded and widened): the
     * same bits a second conversion would make, at no cost. */
    void *hd[] = {(void *)dout, (void *)w, dinp};
    void *ready[] = {s->share_dy ? s->bwd_w.o[1].last : NULL, NULL, NULL};
    st = cprod_run(&s->bwd_data, hd, ready);
  }
  return st == dnnl_success ? 0 : conv_fail(st, "conv2d backward");
}

const char *dnn_conv_impl(const dnn_conv *c) { return c->impl; }

int dnn_conv_emulated(const dnn_conv *c) {
  return c->prec == DNN_BF16 && (c->emulated || !c->native);
}
