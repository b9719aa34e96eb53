/* model_seq — the sequence layers of the model (model.h "Sequences"):
 * planning, buffers, initialisation, forward and backward of embeddings,
 * attention, transformer blocks, and dense and layer-norm layers applied
 * per position. The kernels are layers_seq.h, kernels.h and layers.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "kernels.h"
#include "layers.h"
#include "layers_seq.h"
#include "model_internal.h"
#include "ms_error.h"
#include "sampler.h"

/* The k-th own tensor of layer l in the parameter and gradient arenas. */
#define PW(k) (m->params + m->p[l->w + (k)].off)
#define GW(k) (m->grads + m->p[l->w + (k)].off)

/* Tensors of a transformer block, in arena order (the names PyTorch's
 * module tree gives them). */
enum { LN1_W, LN1_B, QKV_W, QKV_B, PROJ_W, PROJ_B, LN2_W, LN2_B, FC_W, FC_B, MLP_W, MLP_B };
static const char *const block_tensors[] = {
    "ln1.weight",      "ln1.bias",      "attn.qkv.weight", "attn.qkv.bias",
    "attn.proj.weight", "attn.proj.bias", "ln2.weight",      "ln2.bias",
    "mlp.fc.weight",   "mlp.fc.bias",   "mlp.proj.weight", "mlp.proj.bias"};

static const char *type_name(ms_layer_type t) {
  return config_enum_name("model.layers[i].type", (int)t);
}

int model_seq_layer(const ms_layer *l) {
  return l->type >= MS_LAYER_EMBEDDING ||
         (l->seq && (l->type == MS_LAYER_DENSE || l->type == MS_LAYER_LAYERNORM));
}

/* ---- planning -------------------------------------------------------------------- */

/* Adds "<prefix>.<what>"; decay for weights of two dimensions. */
static int add(ms_model *m, const char *prefix, const char *what, size_t *off, int64_t d0,
               int64_t d1) {
  char name[48];
  int64_t shape[2] = {d0, d1};
  snprintf(name, sizeof name, "%s%s%s", prefix, *what ? "." : "", what);
  return model_add_param(m, name, off, d1 > 0 ? 2 : 1, shape, d1 > 0);
}

static int plan_embedding(ms_model *m, int i, const ms_layer_cfg *lc, size_t *off) {
  ms_layer *l = &m->layers[i];
  if (i != 0 || l->in_h != 1 || l->in_w != 1)
    return ms_error_set(MS_ECONFIG,
                        "model.layers[%d] (embedding): must be the first layer, on inputs of T "
                        "token ids per sample (model.input [T], or (N, T) token data)",
                        i);
  l->w = l->b = add(m, "tok_emb", "weight", off, lc->vocab, lc->dim);
  l->out_c = 1, l->out_h = l->in_c, l->out_w = lc->dim;
  return 0;
}

static int plan_attention(ms_model *m, int i, const ms_layer_cfg *lc, size_t *off) {
  ms_layer *l = &m->layers[i];
  const int64_t D = l->in_w;
  l->heads = lc->heads;
  l->causal = lc->causal;
  if (lc->heads < 1 || D % lc->heads)
    return ms_error_set(MS_ECONFIG, "model.layers[%d] (%s): %d heads do not divide the width %lld",
                        i, type_name(l->type), lc->heads, (long long)D);
  char prefix[32];
  if (l->type == MS_LAYER_ATTENTION) {
    snprintf(prefix, sizeof prefix, "layers.%d", i);
    l->w = add(m, prefix, "qkv.weight", off, 3 * D, D);
    add(m, prefix, "qkv.bias", off, 3 * D, 0);
    add(m, prefix, "proj.weight", off, D, D);
    l->b = add(m, prefix, "proj.bias", off, D, 0);
    return 0;
  }
  int k = 0; /* blocks before this one */
  for (int j = 0; j < i; j++) k += m->layers[j].type == MS_LAYER_TRANSFORMER_BLOCK;
  snprintf(prefix, sizeof prefix, "blocks.%d", k);
  l->hidden = lc->hidden > 0 ? lc->hidden : (int)(4 * D);
  const int64_t H = l->hidden;
  const int64_t shapes[12][2] = {{D, 0},     {D, 0}, {3 * D, D}, {3 * D, 0}, {D, D}, {D, 0},
                                 {D, 0},     {D, 0}, {H, D},     {H, 0},     {D, H}, {D, 0}};
  for (int t = 0; t < 12; t++) {
    int p = add(m, prefix, block_tensors[t], off, shapes[t][0], shapes[t][1]);
    if (t == 0) l->w = p;
    l->b = p;
  }
  return 0;
}

/* A dense layer on a sequence: per position; the last layer is the
 * output head, tied to the embedding's table when model.tie_embeddings. */
static int plan_dense(ms_model *m, int i, const ms_layer_cfg *lc, const ms_config *cfg,
                      size_t *off) {
  ms_layer *l = &m->layers[i];
  const int last = i == cfg->model.n_layers - 1;
  char prefix[32];
  if (lc->units < 1) return ms_error_set(MS_ECONFIG, "model.layers[%d].units: expected >= 1", i);
  snprintf(prefix, sizeof prefix, last ? "head" : "layers.%d", i);
  l->out_w = lc->units;
  if (last && cfg->model.tie_embeddings) {
    const ms_param *e = &m->p[m->layers[0].w];
    if (e->shape[0] != lc->units || e->shape[1] != l->in_w)
      return ms_error_set(MS_ECONFIG,
                          "model.tie_embeddings: the output head (model.layers[%d]) maps %d "
                          "features to %d outputs, but the embedding's table is (%lld, %lld): "
                          "set units to the vocab and the width to its dim",
                          i, l->in_w, lc->units, (long long)e->shape[0], (long long)e->shape[1]);
    l->tie = m->layers[0].w;
    l->b = add(m, prefix, "bias", off, lc->units, 0);
    return 0;
  }
  l->w = add(m, prefix, "weight", off, lc->units, l->in_w);
  l->b = add(m, prefix, "bias", off, lc->units, 0);
  return 0;
}

int model_seq_plan(ms_model *m, int i, const ms_layer_cfg *lc, const ms_config *cfg, size_t *off) {
  ms_layer *l = &m->layers[i];
  l->tie = -1;
  if (l->type == MS_LAYER_EMBEDDING) return plan_embedding(m, i, lc, off);
  if (!l->seq)
    return ms_error_set(MS_ECONFIG,
                        "model.layers[%d] (%s): works on sequences; put an embedding layer first",
                        i, type_name(l->type));
  if (l->act == MS_ACT_SOFTMAX)
    return ms_error_set(MS_ECONFIG,
                        "model.layers[%d]: softmax on a sequence is not supported; a language "
                        "model's head outputs logits (the sequence loss applies the softmax)",
                        i);
  if (cfg->model.tie_embeddings && i == cfg->model.n_layers - 1 && l->type != MS_LAYER_DENSE)
    return ms_error_set(MS_ECONFIG,
                        "model.tie_embeddings: the last layer must be the dense output head");
  int next_dense = i + 1 < cfg->model.n_layers && cfg->model.layers[i + 1].type == MS_LAYER_DENSE;
  switch (l->type) {
    case MS_LAYER_POS_EMBEDDING:
      l->w = l->b = add(m, "pos_emb", "weight", off, l->in_h, l->in_w);
      return 0;
    case MS_LAYER_ATTENTION:
    case MS_LAYER_TRANSFORMER_BLOCK: return plan_attention(m, i, lc, off);
    case MS_LAYER_DENSE: return plan_dense(m, i, lc, cfg, off);
    case MS_LAYER_LAYERNORM: {
      char prefix[32];
      snprintf(prefix, sizeof prefix, i == cfg->model.n_layers - 2 && next_dense ? "ln_f"
                                                                                  : "layers.%d",
               i);
      l->w = add(m, prefix, "weight", off, l->in_w, 0);
      l->b = add(m, prefix, "bias", off, l->in_w, 0);
      return 0;
    }
    case MS_LAYER_DROPOUT:
    case MS_LAYER_ACTIVATION: return 0;
    case MS_LAYER_FLATTEN: l->out_c = (int)l->in_elems, l->out_h = l->out_w = 1; return 0;
    default:
      return ms_error_set(MS_ECONFIG,
                          "model.layers[%d] (%s): not on a sequence (a (T, D) input); flatten it "
                          "first",
                          i, type_name(l->type));
  }
}

/* ---- buffers ------------------------------------------------------------------------ */

int model_seq_alloc(ms_layer *l, size_t B, long *scratch) {
  if (l->type != MS_LAYER_ATTENTION && l->type != MS_LAYER_TRANSFORMER_BLOCK) return 0;
  const long T = l->in_h, D = l->in_w, BT = (long)B * T;
  const long att = (long)B * l->heads * T * T;
  const int block = l->type == MS_LAYER_TRANSFORMER_BLOCK;
  const long Hd = block ? l->hidden : 0;
  /* attention: qkv, att, atty; a block adds h1, x2, h2, f, g and the
   * statistics of its two layer norms. */
  long n = BT * 3 * D + att + BT * D + (block ? 3 * BT * D + 2 * BT * Hd + 4 * BT : 0);
  l->sv = malloc(sizeof(float) * (size_t)n);
  if (!l->sv) return -1;
  float *p = l->sv;
  l->qkv = p, p += BT * 3 * D;
  l->att = p, p += att;
  l->atty = p, p += BT * D;
  if (block) {
    l->h1 = p, p += BT * D;
    l->x2 = p, p += BT * D;
    l->h2 = p, p += BT * D;
    l->fc = p, p += BT * Hd;
    l->ge = p, p += BT * Hd;
    l->m1 = p, p += BT;
    l->r1 = p, p += BT;
    l->m2 = p, p += BT;
    l->r2 = p;
  }
  /* attention's backward: dqkv, datty and the kernels' own; a block's also
   * dx2 and a (T, D) gradient, and the MLP's (T, hidden) before them. The
   * forward uses the start of the same memory. */
  long need = BT * 4 * D + attention_scratch((int)T, (int)D, l->heads);
  if (block) need = 2 * BT * D + (BT * Hd > need ? BT * Hd : need);
  if (need > *scratch) *scratch = need;
  return 0;
}

/* ---- initialisation ----------------------------------------------------------------- */

/* GPT-2's: normal with std 0.02. */
#define EMB_STD 0.02

static void fill_normal(float *p, size_t n, double std, uint64_t key) {
  for (size_t i = 0; i < n; i++) p[i] = (float)(std * model_normal_at(key, i));
}

static void fill(float *p, size_t n, float v) {
  for (size_t i = 0; i < n; i++) p[i] = v;
}

int model_seq_init(ms_model *m, int li, uint64_t seed) {
  ms_layer *l = &m->layers[li];
  if (l->type < MS_LAYER_EMBEDDING && l->tie < 0) return 0;
  if (l->type == MS_LAYER_DENSE) { /* the tied head: only its bias is its own */
    fill(m->params + m->p[l->b].off, m->p[l->b].len, 0.0f);
    return 1;
  }
  const uint64_t key = sampler_mix64(seed ^ sampler_mix64(0x7365710000ULL + (uint64_t)li));
  int blocks = 0;
  for (int i = 0; i < m->n_layers; i++) blocks += m->layers[i].type == MS_LAYER_TRANSFORMER_BLOCK;
  /* Projections into the residual stream start smaller, so that the sum
   * over blocks keeps its scale (GPT-2). */
  const double resid = EMB_STD / sqrt(2.0 * (blocks > 0 ? blocks : 1));
  for (int k = l->w; k <= l->b; k++) {
    const ms_param *p = &m->p[k];
    float *v = m->params + p->off;
    const int t = k - l->w, block = l->type == MS_LAYER_TRANSFORMER_BLOCK;
    uint64_t tkey = sampler_mix64(key ^ (uint64_t)t);
    if (block && (t == LN1_W || t == LN2_W))
      fill(v, p->len, 1.0f);
    else if (p->ndim == 1)
      fill(v, p->len, 0.0f);
    else if (block && (t == PROJ_W || t == MLP_W))
      fill_normal(v, p->len, resid, tkey);
    else
      fill_normal(v, p->len, EMB_STD, tkey);
  }
  return 1;
}

/* ---- forward and backward ------------------------------------------------------------ */

/* qkv projection, attention, output projection; w: the four tensors
 * qkv.weight, qkv.bias, proj.weight, proj.bias. scratch: attention_scratch. */
static void attn_forward(const ms_layer *l, float *out, const float *x, float *const w[4], int B,
                         float *scratch) {
  const int T = l->in_h, D = l->in_w, BT = B * T;
  dense_forward(l->qkv, x, w[0], w[1], BT, D, 3 * D);
  attention_forward(l->atty, l->att, l->qkv, B, T, D, l->heads, l->causal, scratch);
  dense_forward(out, l->atty, w[2], w[3], BT, D, D);
}

/* dx (may be NULL) from d, the gradient of attn_forward's output; g: the
 * four gradients. scratch: BT*4D + attention_scratch floats. */
static void attn_backward(const ms_layer *l, float *dx, const float *d, const float *x,
                          float *const w[4], float *const g[4], int B, float *scratch) {
  const int T = l->in_h, D = l->in_w, BT = B * T;
  float *dqkv = scratch, *datty = dqkv + (long)BT * 3 * D, *tt = datty + (long)BT * D;
  dense_backward(datty, g[2], g[3], d, l->atty, w[2], BT, D, D);
  attention_backward(dqkv, datty, l->qkv, l->att, B, T, D, l->heads, l->causal, tt);
  dense_backward(dx, g[0], g[1], dqkv, x, w[0], BT, D, 3 * D);
}

static void add_to(float *y, const float *x, long n) {
  for (long i = 0; i < n; i++) y[i] += x[i];
}

static void block_forward(ms_model *m, ms_layer *l, const float *x, int B) {
  const int T = l->in_h, D = l->in_w, Hd = l->hidden, BT = B * T;
  float *aw[4] = {PW(QKV_W), PW(QKV_B), PW(PROJ_W), PW(PROJ_B)};
  layernorm_seq_forward(l->h1, l->m1, l->r1, x, PW(LN1_W), PW(LN1_B), BT, D, l->eps);
  attn_forward(l, l->x2, l->h1, aw, B, m->seq_scratch);
  add_to(l->x2, x, (long)BT * D);
  layernorm_seq_forward(l->h2, l->m2, l->r2, l->x2, PW(LN2_W), PW(LN2_B), BT, D, l->eps);
  dense_forward(l->fc, l->h2, PW(FC_W), PW(FC_B), BT, D, Hd);
  /* fc is needed by the backward only, as the GELU's slope */
  gelu_fast_forward_grad(l->ge, l->fc, l->fc, (long)BT * Hd);
  dense_forward(l->z, l->ge, PW(MLP_W), PW(MLP_B), BT, Hd, D);
  add_to(l->z, l->x2, (long)BT * D);
}

static void block_backward(ms_model *m, ms_layer *l, float *dx, const float *d, int B) {
  const int T = l->in_h, D = l->in_w, Hd = l->hidden, BT = B * T;
  const long n = (long)BT * D;
  float *dx2 = m->seq_scratch, *dh = dx2 + n, *s1 = dh + n;
  float *aw[4] = {PW(QKV_W), PW(QKV_B), PW(PROJ_W), PW(PROJ_B)};
  float *ag[4] = {GW(QKV_W), GW(QKV_B), GW(PROJ_W), GW(PROJ_B)};
  /* MLP: out = x2 + proj(gelu(fc(ln2(x2)))) */
  dense_backward(s1, GW(MLP_W), GW(MLP_B), d, l->ge, PW(MLP_W), BT, Hd, D);
  gelu_fast_backward_grad(s1, s1, l->fc, (long)BT * Hd);
  dense_backward(dh, GW(FC_W), GW(FC_B), s1, l->h2, PW(FC_W), BT, D, Hd);
  layernorm_seq_backward(dx2, GW(LN2_W), GW(LN2_B), dh, l->x2, l->m2, l->r2, PW(LN2_W), BT, D);
  add_to(dx2, d, n);
  /* attention: x2 = x + attn(ln1(x)) */
  attn_backward(l, dh, dx2, l->h1, aw, ag, B, s1);
  layernorm_seq_backward(dx, GW(LN1_W), GW(LN1_B), dh, l->in, l->m1, l->r1, PW(LN1_W), BT, D);
  if (dx) add_to(dx, dx2, n);
}

/* The table a dense layer multiplies by: its own, or the tied embedding's. */
static const float *dense_weight(const ms_model *m, const ms_layer *l, int grads) {
  const float *arena = grads ? m->grads : m->params;
  return arena + m->p[l->tie >= 0 ? l->tie : l->w].off;
}

void model_seq_forward(ms_model *m, ms_layer *l, const float *in, int B) {
  const int T = l->in_h, D = l->in_w, BT = B * T;
  switch (l->type) {
    case MS_LAYER_EMBEDDING:
      embedding_forward(l->z, in, PW(0), (long)B * l->out_h, l->out_w, (int)m->p[l->w].shape[0]);
      break;
    case MS_LAYER_POS_EMBEDDING: posemb_forward(l->z, in, PW(0), B, T, D); break;
    case MS_LAYER_ATTENTION: {
      float *w[4] = {PW(0), PW(1), PW(2), PW(3)};
      attn_forward(l, l->z, in, w, B, m->seq_scratch);
      break;
    }
    case MS_LAYER_TRANSFORMER_BLOCK: block_forward(m, l, in, B); break;
    case MS_LAYER_DENSE:
      dense_forward(l->z, in, dense_weight(m, l, 0), m->params + m->p[l->b].off, BT, D, l->out_w);
      break;
    case MS_LAYER_LAYERNORM:
      layernorm_seq_forward(l->z, l->mean, l->rstd, in, PW(0), PW(1), BT, D, l->eps);
      break;
    default: break;
  }
}

void model_seq_backward(ms_model *m, ms_layer *l, float *dinp, const float *d, int B) {
  const int T = l->in_h, D = l->in_w, BT = B * T;
  switch (l->type) {
    case MS_LAYER_EMBEDDING: {
      /* A tied head has already written its share of this gradient. */
      int tied = m->layers[m->n_layers - 1].tie >= 0;
      embedding_backward(GW(0), d, l->in, (long)B * l->out_h, l->out_w, (int)m->p[l->w].shape[0],
                         tied);
      break;
    }
    case MS_LAYER_POS_EMBEDDING:
      posemb_backward(GW(0), d, B, T, D);
      if (dinp) memcpy(dinp, d, sizeof(float) * (size_t)BT * (size_t)D);
      break;
    case MS_LAYER_ATTENTION: {
      float *w[4] = {PW(0), PW(1), PW(2), PW(3)}, *g[4] = {GW(0), GW(1), GW(2), GW(3)};
      attn_backward(l, dinp, d, l->in, w, g, B, m->seq_scratch);
      break;
    }
    case MS_LAYER_TRANSFORMER_BLOCK: block_backward(m, l, dinp, d, B); break;
    case MS_LAYER_DENSE:
      dense_backward(dinp, (float *)dense_weight(m, l, 1), m->grads + m->p[l->b].off, d, l->in,
                     dense_weight(m, l, 0), BT, D, l->out_w);
      break;
    case MS_LAYER_LAYERNORM:
      layernorm_seq_backward(dinp, GW(0), GW(1), d, l->in, l->mean, l->rstd, PW(0), BT, D);
      break;
    default: break;
  }
}

/* ---- summaries ------------------------------------------------------------------------ */

uint64_t model_seq_hash(const ms_model *m, const ms_layer *l, uint64_t h) {
  int64_t dims[12] = {2000 + l->type, l->act,   l->in_c,   l->in_h,    l->in_w,      l->out_c,
                      l->out_h,       l->out_w, l->heads, l->causal, l->hidden, l->tie >= 0};
  h = hash_fnv1a(h, dims, sizeof dims);
  for (int k = l->w >= 0 ? l->w : l->b; k >= 0 && k <= l->b; k++)
    h = hash_fnv1a(h, m->p[k].name, strlen(m->p[k].name));
  return h;
}

double model_seq_flops(const ms_layer *l) {
  const double T = l->in_h, D = l->in_w;
  double attn = 2.0 * T * D * 4.0 * D + 4.0 * T * T * D;
  switch (l->type) {
    case MS_LAYER_DENSE: return 2.0 * T * D * l->out_w;
    case MS_LAYER_ATTENTION: return attn;
    case MS_LAYER_TRANSFORMER_BLOCK: return attn + 4.0 * T * D * l->hidden;
    default: return 0.0;
  }
}

double model_seq_row_floats(const ms_layer *l) {
  const double T = l->in_h, D = l->in_w, att = T * 4.0 * D + l->heads * T * T;
  switch (l->type) {
    case MS_LAYER_LAYERNORM: return 2.0 * T;
    case MS_LAYER_ATTENTION: return att;
    case MS_LAYER_TRANSFORMER_BLOCK: return att + 3.0 * T * D + 2.0 * T * l->hidden + 4.0 * T;
    default: return 0.0;
  }
}
