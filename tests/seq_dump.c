/* seq_dump — trains a 2-block transformer language model (model_seq.c) for
 * 20 AdamW steps on fixed token batches and writes what PyTorch needs to
 * redo it, for tests/tools/torch_seq_crosscheck.py:
 *
 *   DIR/init.safetensors   the initial parameters, exported the way
 *                          `midscale export` exports a checkpoint
 *                          (ckpt_write, then ckpt_export), under the
 *                          model's own (PyTorch) tensor names
 *   DIR/run.safetensors    x (20, B, T) token ids and y (20, B, T) next
 *                          tokens (floats holding integers); logits0
 *                          (B, T, V) of the first forward; loss (20) before
 *                          each step; grad0.<name> the first gradients;
 *                          final.<name> the parameters after 20 steps
 *
 * The model: embedding (V, D) -> pos_embedding -> 2 x transformer_block
 * (H heads, causal, MLP 4D) -> layernorm (ln_f) -> dense V (head, tied to
 * the embedding when the second argument is "tied"). The run's constants
 * are in run.safetensors too (shape.*), so the script hard-codes nothing.
 *
 * usage: seq_dump DIR [tied|untied]
 * Exit status 0, or 1 with a message on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "layers_seq.h"
#include "model.h"
#include "ms_error.h"
#include "optim.h"
#include "sampler.h"

enum { V = 13, D = 16, H = 4, T = 8, B = 4, STEPS = 20, MAXT = 2 * MS_MAX_PARAMS + 16 };

static void die(const char *msg) {
  fprintf(stderr, "seq_dump: %s%s%s\n", msg, *ms_error_msg() ? ": " : "", ms_error_msg());
  exit(1);
}

static ckpt_tensor tensors[MAXT];
static char names[MAXT][64];
static int n_tensors;

/* Keeps a pointer: data must stay alive until write_out. */
static void put(const char *prefix, const char *name, float *data, int ndim, const int64_t *shape) {
  if (n_tensors == MAXT) die("too many tensors");
  snprintf(names[n_tensors], sizeof names[0], "%s%s", prefix, name);
  ckpt_tensor *t = &tensors[n_tensors++];
  t->name = names[n_tensors - 1];
  t->data = data;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
}

static void put_params(const ms_model *m, const char *prefix, float *arena) {
  for (int i = 0; i < m->n_p; i++)
    put(prefix, m->p[i].name, arena + m->p[i].off, m->p[i].ndim, m->p[i].shape);
}

/* A checkpoint in DIR/tmp, exported to DIR/<name>.safetensors. */
static void write_out(const char *dir, const char *name, uint64_t layout) {
  char tmp[1024], out[1024];
  snprintf(tmp, sizeof tmp, "%s/tmp-%s", dir, name);
  snprintf(out, sizeof out, "%s/%s.safetensors", dir, name);
  ckpt_meta meta = {.world_size = 1, .layout_hash = layout, .config = (char *)""};
  char *path = NULL;
  if (ckpt_write(tmp, tensors, n_tensors, &meta, 1, &path)) die("cannot write a checkpoint");
  if (ckpt_export(path, out, NULL)) die("cannot export the checkpoint");
  free(path);
  n_tensors = 0;
}

static void build(ms_config *cfg, int tied) {
  memset(cfg, 0, sizeof *cfg);
  ms_layer_cfg *l = cfg->model.layers;
  for (int i = 0; i < 6; i++) l[i] = (ms_layer_cfg){.eps = 1e-5, .causal = 1};
  l[0].type = MS_LAYER_EMBEDDING, l[0].vocab = V, l[0].dim = D;
  l[1].type = MS_LAYER_POS_EMBEDDING;
  l[2].type = l[3].type = MS_LAYER_TRANSFORMER_BLOCK;
  l[2].heads = l[3].heads = H;
  l[4].type = MS_LAYER_LAYERNORM;
  l[5].type = MS_LAYER_DENSE, l[5].units = V;
  cfg->model.n_layers = 6;
  cfg->model.tie_embeddings = tied;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: seq_dump DIR [tied|untied]\n");
    return 1;
  }
  const char *dir = argv[1];
  int tied = argc < 3 || strcmp(argv[2], "untied") != 0;
  ms_config cfg;
  build(&cfg, tied);
  const int64_t in[1] = {T};
  ms_model *m = NULL;
  if (model_create(&m, &cfg, in, 1, B)) die("model_create");
  model_init(m, 7);
  put_params(m, "", m->params);
  write_out(dir, "init", model_layout_hash(m));

  /* Token batches: a repeating pattern with noise, so that the loss falls. */
  static float x[STEPS * B * T], y[STEPS * B * T], loss[STEPS], logits0[B * T * V];
  static int32_t yi[B * T];
  static float dl[B * T * V];
  for (int i = 0; i < STEPS * B * (T + 1); i++) {
    int s = i / (B * (T + 1)), r = i % (B * (T + 1));
    int b = r / (T + 1), t = r % (T + 1);
    (void)s;
    uint64_t h = sampler_mix64(0x5e9ULL + (uint64_t)i);
    int tok = (int)((b * 3 + t * 2 + (h % 4 == 0 ? (int)((h >> 8) % V) : 0)) % V);
    long base = ((long)s * B + b) * T;
    if (t < T) x[base + t] = (float)tok;
    if (t > 0) y[base + t - 1] = (float)tok;
  }
  ms_optim_params op = {.kind = MS_OPTIM_ADAMW,
                        .lr = 1e-2,
                        .weight_decay = 0.1,
                        .beta1 = 0.9,
                        .beta2 = 0.95,
                        .eps = 1e-8};
  ms_optim *opt = NULL;
  uint8_t *mask = malloc(m->n_params);
  float *grad0 = malloc(sizeof(float) * m->n_params);
  if (!mask || !grad0 || optim_create_params(&opt, &op, m->n_params)) die("out of memory");
  model_decay_mask(m, mask);
  if (optim_set_decay_mask(opt, mask)) die("out of memory");
  for (int s = 0; s < STEPS; s++) {
    for (int i = 0; i < B * T; i++) yi[i] = (int32_t)y[(long)s * B * T + i];
    const float *out = model_forward(m, x + (long)s * B * T, B, NULL);
    if (s == 0) memcpy(logits0, out, sizeof logits0);
    loss[s] = (float)(seq_xent(dl, out, yi, B, T, V, 1.0f / B, NULL) / B);
    model_backward(m, dl, NULL, NULL, NULL);
    if (s == 0) memcpy(grad0, m->grads, sizeof(float) * m->n_params);
    optim_step(opt, m->params, m->grads, op.lr);
  }
  static float shape[6] = {V, D, H, T, B, STEPS};
  int64_t sx[3] = {STEPS, B, T}, sl[3] = {B, T, V}, s1[1] = {STEPS}, s6[1] = {6};
  put("", "x", x, 3, sx);
  put("", "y", y, 3, sx);
  put("", "logits0", logits0, 3, sl);
  put("", "loss", loss, 1, s1);
  put("", "shape", shape, 1, s6);
  put_params(m, "grad0.", grad0);
  put_params(m, "final.", m->params);
  write_out(dir, "run", model_layout_hash(m));
  printf("seq_dump: %d tensors, %zu parameters, loss %.4f -> %.4f (%s)\n", m->n_p, m->n_params,
         (double)loss[0], (double)loss[STEPS - 1], tied ? "tied" : "untied");
  optim_free(opt);
  free(mask);
  free(grad0);
  model_free(m);
  return 0;
}
