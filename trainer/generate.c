#include "generate.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "check.h"
#include "ckpt.h"
#include "config.h"
#include "model.h"
#include "ms_error.h"
#include "sampler.h"
#include "tokenizer.h"

/* --top-k above any vocabulary a token set can hold (tokens.c: 2^24 ids). */
#define MAX_TOP_K (1 << 24)

typedef struct {
  const char *config, *ckpt, *prompt;
  long tokens;
  double temperature;
  long top_k;
  uint64_t seed;
} gen_opts;

double generate_uniform(uint64_t seed, uint64_t i) {
  uint64_t h = sampler_mix64(seed ^ sampler_mix64(0x67656eULL + i));
  return (double)(h >> 11) * 0x1.0p-53;
}

/* Sorts ids by logit, largest first, ties by lower id (insertion sort:
 * V is a vocabulary, and the order must not depend on qsort's choices). */
static void sort_desc(const float *z, int V, int *order) {
  for (int i = 0; i < V; i++) {
    int j = i;
    while (j > 0 && z[order[j - 1]] < z[i]) order[j] = order[j - 1], j--;
    order[j] = i;
  }
}

int generate_pick(const float *logits, int V, double temperature, int top_k, double draw,
                  int *order) {
  sort_desc(logits, V, order);
  if (!(temperature > 0)) return order[0];
  int k = top_k > 0 && top_k < V ? top_k : V;
  double zmax = logits[order[0]], sum = 0;
  for (int i = 0; i < k; i++) sum += exp((logits[order[i]] - zmax) / temperature);
  double u = draw * sum, cum = 0;
  for (int i = 0; i < k; i++) {
    cum += exp((logits[order[i]] - zmax) / temperature);
    if (u < cum) return order[i];
  }
  return order[k - 1]; /* draw * sum rounded up to the total */
}

/* ---- arguments ---------------------------------------------------------------------- */

/* The value of option opt: a number in [lo, hi], an integer when integer. */
static int num(const char *opt, const char *s, double lo, double hi, int integer, double *out) {
  char *end = NULL;
  errno = 0;
  double v = s ? strtod(s, &end) : 0;
  if (!s || !*s || *end || errno || !(v >= lo && v <= hi) || (integer && v != floor(v)))
    return ms_error_set(MS_EUSAGE, "generate: %s expects %s in [%g, %g], found '%s'", opt,
                        integer ? "an integer" : "a number", lo, hi, s ? s : "nothing");
  *out = v;
  return 0;
}

static int parse_args(int argc, char **argv, gen_opts *o) {
  *o = (gen_opts){.tokens = 200, .temperature = 1.0, .seed = 1};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double d = 0;
    int rc = 0;
    if (!strcmp(a, "--prompt")) {
      if (!v) return ms_error_set(MS_EUSAGE, "generate: --prompt expects a text");
      o->prompt = v;
    } else if (!strcmp(a, "--tokens")) {
      rc = num(a, v, 1, 1e6, 1, &d), o->tokens = (long)d;
    } else if (!strcmp(a, "--temperature")) {
      rc = num(a, v, 0, 100, 0, &o->temperature);
    } else if (!strcmp(a, "--top-k")) {
      rc = num(a, v, 0, MAX_TOP_K, 1, &d), o->top_k = (long)d;
    } else if (!strcmp(a, "--seed")) {
      rc = num(a, v, 0, 9007199254740992.0, 1, &d), o->seed = (uint64_t)d;
    } else if (a[0] != '-' && !o->config) {
      o->config = a;
      continue;
    } else if (a[0] != '-' && !o->ckpt) {
      o->ckpt = a;
      continue;
    } else {
      return ms_error_set(MS_EUSAGE, "generate: unexpected argument '%s'", a);
    }
    if (rc) return rc;
    i++; /* the option's value */
  }
  if (!o->config || !o->ckpt || !o->prompt)
    return ms_error_set(MS_EUSAGE, "usage: midscale generate CONFIG CHECKPOINT --prompt TEXT "
                                   "[--tokens N] [--temperature T] [--top-k K] [--seed S]");
  if (!*o->prompt) return ms_error_set(MS_EUSAGE, "generate: --prompt needs at least one byte");
  return 0;
}

/* ---- the model ------------------------------------------------------------------------- */

static const ckpt_tensor *find(const ckpt_contents *c, const char *name) {
  for (int i = 0; i < c->n_tensors; i++)
    if (!strcmp(c->tensors[i].name, name)) return &c->tensors[i];
  return NULL;
}

/* The tokenizer of the model's training data: data.train_x's (the
 * attribute and vocabulary `prepare text` wrote) when data.tokens, else
 * bytes. */
static int load_tokenizer(data_tokenizer **out, const ms_config *cfg, const char *path) {
  char err[512];
  if (!cfg->data.tokens)
    return data_tokenizer_bytes(out, err, sizeof err) < 0 ? ms_error_set(MS_ENOMEM, "%s", err) : 0;
  if (data_tokenizer_load(out, cfg->data.path, cfg->data.train_x, err, sizeof err) < 0)
    return ms_error_set(MS_EDATA, "%s: the vocabulary of data.train_x: %s", path, err);
  return 0;
}

/* A causal language model over tok: an embedding of its ids first, a
 * sequence of as many logits out, causal attention everywhere. */
static int check_lm(const ms_model *m, const data_tokenizer *tok, const char *path) {
  if (m->layers[0].type != MS_LAYER_EMBEDDING || m->seq_T == 0)
    return ms_error_set(MS_ECONFIG, "%s: not a language model (an embedding layer first, a "
                                    "sequence of logits out)", path);
  int32_t V = data_tokenizer_size(tok);
  if (m->p[m->layers[0].w].shape[0] != V || m->vocab != V)
    return ms_error_set(MS_ECONFIG,
                        "%s: the model does not fit its tokenizer (%s, %d ids): found vocab "
                        "%lld and %d outputs per position",
                        path,
                        data_tokenizer_is_bytes(tok) ? "byte-level"
                                                     : "the characters of data.train_x",
                        (int)V, (long long)m->p[m->layers[0].w].shape[0], m->vocab);
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    if ((l->type == MS_LAYER_ATTENTION || l->type == MS_LAYER_TRANSFORMER_BLOCK) && !l->causal)
      return ms_error_set(MS_ECONFIG,
                          "%s: model.layers[%d] attends to later positions (causal: false); "
                          "generating needs causal attention",
                          path, i);
  }
  return 0;
}

/* The model of cfg with the checkpoint's parameters. */
static int load_model(ms_model **out, const ms_config *cfg, const gen_opts *o,
                      const ckpt_contents *c, const data_tokenizer *tok) {
  int64_t T = cfg->model.input.ndim == 1 ? cfg->model.input.dims[0] : 0;
  const ckpt_tensor *pos = find(c, "pos_emb.weight");
  if (!T && pos) T = pos->shape[0];
  if (!T)
    return ms_error_set(MS_ECONFIG, "%s: set model.input to [T], the context length (the "
                                    "model has no pos_emb.weight to take it from)", o->config);
  ms_model *m = NULL;
  int rc = model_create(&m, cfg, &T, 1, 1);
  if (!rc) rc = check_lm(m, tok, o->config);
  if (!rc && c->meta.layout_hash != model_layout_hash(m))
    rc = ms_error_set(MS_ECKPT, "%s: written by another model than %s's (layout hash differs)",
                      o->ckpt, o->config);
  for (int i = 0; !rc && i < m->n_p; i++) {
    const ms_param *p = &m->p[i];
    const ckpt_tensor *t = find(c, p->name);
    int same = t && t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same)
      rc = ms_error_set(MS_ECKPT, "%s: no tensor %s of the model's shape", o->ckpt, p->name);
    else
      memcpy(m->params + p->off, t->data, sizeof(float) * p->len);
  }
  if (rc) {
    model_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

/* The ids of the prompt's characters into ids; *np their count. */
static int encode_prompt(const data_tokenizer *tok, const char *prompt, int *ids, size_t *np) {
  size_t len = strlen(prompt);
  *np = 0;
  for (size_t at = 0; at < len;) {
    int32_t id;
    uint32_t cp;
    size_t k = data_tokenizer_next(tok, prompt + at, len - at, &id, &cp);
    if (k == 0)
      return ms_error_set(MS_EUSAGE,
                          "generate: the prompt is not UTF-8 text (byte 0x%02X at offset %zu)",
                          (unsigned char)prompt[at], at);
    if (id < 0)
      return ms_error_set(MS_EUSAGE,
                          "generate: the prompt's character U+%04X ('%.*s') is not in the "
                          "model's vocabulary (%d characters, no <unk>)",
                          (unsigned)cp, (int)k, prompt + at, (int)data_tokenizer_size(tok));
    ids[(*np)++] = id;
    at += k;
  }
  return 0;
}

/* Writes the prompt, then o->tokens sampled tokens as text (<unk> as
 * U+FFFD, the replacement character). */
static int run(ms_model *m, const data_tokenizer *tok, const gen_opts *o, FILE *out) {
  const int T = m->seq_T, V = m->vocab;
  size_t np = 0, n = strlen(o->prompt) + (size_t)o->tokens; /* characters <= bytes */
  int *ids = malloc(sizeof(int) * n), *order = malloc(sizeof(int) * (size_t)V);
  float *x = calloc((size_t)T, sizeof(float));
  int rc = ids && order && x ? 0 : ms_error_set(MS_ENOMEM, "generate: out of memory");
  if (!rc) rc = encode_prompt(tok, o->prompt, ids, &np);
  if (!rc) {
    n = np + (size_t)o->tokens;
    fputs(o->prompt, out);
  }
  for (size_t len = np; !rc && len < n; len++) {
    size_t first = len > (size_t)T ? len - (size_t)T : 0, w = len - first;
    for (size_t t = 0; t < (size_t)T; t++) x[t] = t < w ? (float)ids[first + t] : 0.0f;
    const float *logits = model_forward(m, x, 1, NULL) + (w - 1) * (size_t)V;
    ids[len] = generate_pick(logits, V, o->temperature, (int)o->top_k,
                             generate_uniform(o->seed, len - np), order);
    char c[4];
    size_t k = data_tokenizer_decode(tok, ids[len], c);
    if (k)
      fwrite(c, 1, k, out);
    else
      fputs("\xEF\xBF\xBD", out);
  }
  free(ids), free(order), free(x);
  if (rc) return rc;
  fputc('\n', out);
  return fflush(out) ? ms_error_set(MS_EIO, "generate: cannot write the output") : 0;
}

int generate_main(int argc, char **argv, FILE *out) {
  gen_opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc;
  ms_config *cfg = malloc(sizeof *cfg);
  char *text = NULL;
  size_t len = 0;
  ckpt_contents c;
  memset(&c, 0, sizeof c);
  ms_model *m = NULL;
  data_tokenizer *tok = NULL;
  if (!cfg) return ms_error_set(MS_ENOMEM, "generate: out of memory");
  if ((rc = config_read_file(o.config, &text, &len))) goto out;
  if ((rc = check_load_config(cfg, text, len, o.config, NULL, 0, 1))) goto out;
  if ((rc = load_tokenizer(&tok, cfg, o.config))) goto out;
  if ((rc = ckpt_load(o.ckpt, &c))) goto out;
  if ((rc = load_model(&m, cfg, &o, &c, tok))) goto out;
  blas_set_threads(1);
  rc = run(m, tok, &o, out);
out:
  data_tokenizer_free(tok);
  model_free(m);
  ckpt_contents_free(&c);
  free(text);
  free(cfg);
  return rc;
}
