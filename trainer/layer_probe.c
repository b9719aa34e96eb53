#include "layer_probe.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evaluate.h"
#include "ms_error.h"
#include "model.h"
#include "optim.h"

enum { WARMUP = 1, MIN_REPS = 3, MAX_REPS = 7 };
#define PROBE_BUDGET_S 0.25

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The gradient-ready hook: the time each layer with parameters is done
 * (called last layer first). */
typedef struct {
  double t[MS_MAX_LAYERS];
  int n;
} ready_log;

static void on_ready(void *ctx, size_t off, size_t len) {
  (void)off, (void)len;
  ready_log *r = ctx;
  if (r->n < MS_MAX_LAYERS) r->t[r->n++] = now();
}

typedef struct {
  ms_model *m;
  ms_optim *opt;
  loss_fn loss;
  float *x, *dout, *t;
  int32_t *y;
  uint64_t *rows;
  ms_pass pass;
  int B;
} probe;

/* One step of the copy: the parts' seconds into fwd, loss, bwd (per layer,
 * forward order) and opt. */
static void one_pass(probe *p, double *fwd, double *loss, double *bwd, double *opt) {
  ms_model *m = p->m;
  ready_log r = {.n = 0};
  long correct = 0;
  double t0 = now();
  const float *out = model_forward(m, p->x, p->B, &p->pass);
  double t1 = now();
  (void)loss_compute(&p->loss, p->dout, out, p->y, p->t, p->B, 1.0f / (float)p->B, &correct);
  double t2 = now();
  model_backward(m, p->dout, &p->pass, on_ready, &r);
  double t3 = now();
  optim_step(p->opt, m->params, m->grads, 1e-6);
  double t4 = now();
  *fwd = t1 - t0, *loss = t2 - t1, *opt = t4 - t3;
  /* A layer's backward ends at its hook; layers without parameters go with
   * the next one below that has some; what follows the last hook goes to
   * layer 0. */
  double prev = t2;
  int k = 0;
  for (int i = m->n_layers - 1; i >= 0; i--) {
    size_t off, len;
    bwd[i] = 0.0;
    if (k < r.n && model_layer_params(m, &m->layers[i], &off, &len)) {
      bwd[i] = r.t[k++] - prev;
      prev = r.t[k - 1];
    }
  }
  if (m->n_layers > 0) bwd[0] += t3 - prev;
}

/* Synthetic inputs: small values (token ids 0 for a sequence model), labels
 * spread over the classes, zero targets. */
static int probe_alloc(probe *p, const ms_config *cfg) {
  const ms_model *m = p->m;
  const size_t B = (size_t)p->B, in = (size_t)m->in_features, out = (size_t)m->n_out;
  const size_t labels = p->loss.positions > 0 ? (size_t)p->loss.positions : 1;
  p->x = calloc(B * in, sizeof *p->x);
  p->dout = calloc(B * out, sizeof *p->dout);
  p->t = calloc(B * out, sizeof *p->t);
  p->y = calloc(B * labels, sizeof *p->y);
  p->rows = calloc(B, sizeof *p->rows);
  if (!p->x || !p->dout || !p->t || !p->y || !p->rows) return MS_ENOMEM;
  int tokens = m->n_layers > 0 && m->layers[0].type == MS_LAYER_EMBEDDING;
  for (size_t i = 0; !tokens && i < B * in; i++) p->x[i] = (float)(i % 13) * 0.07f;
  long classes = model_classes(m) > 0 ? model_classes(m) : 1;
  for (size_t i = 0; i < B * labels; i++) p->y[i] = (int32_t)(i % (size_t)classes);
  for (size_t i = 0; i < B; i++) p->rows[i] = i;
  p->pass.seed = cfg->run.seed, p->pass.step = 0, p->pass.rows = p->rows;
  return 0;
}

int layer_probe_run(const ms_config *cfg, const int64_t *in, int ndim, int batch,
                    costmodel_layers *out) {
  memset(out, 0, sizeof *out);
  probe p;
  memset(&p, 0, sizeof p);
  p.B = batch > 0 ? batch : 1;
  /* The copy's parameters, gradients and optimizer state (Adam's two
   * moments at most): a large model is not copied, so that start-up needs
   * no more memory than the run; the prediction then falls back to the
   * FLOPs at the sgemm peak. */
  ms_model *plan = calloc(1, sizeof *plan);
  if (!plan) return ms_error_set(MS_ENOMEM, "out of memory for the layer probe");
  int rc = model_plan(plan, cfg, in, ndim);
  double bytes = (double)plan->n_params * sizeof(float) * 4.0;
  free(plan);
  if (rc) return rc;
  if (bytes > LAYER_PROBE_MAX_BYTES) return 0; /* out->valid 0: no table */
  rc = model_create(&p.m, cfg, in, ndim, p.B);
  if (rc == 0) rc = optim_create(&p.opt, cfg, p.m->n_params);
  if (rc == 0) {
    model_init(p.m, cfg->run.seed);
    loss_init_model(&p.loss, cfg, p.m);
    rc = probe_alloc(&p, cfg);
    if (rc) rc = ms_error_set(MS_ENOMEM, "out of memory for the layer probe");
  }
  if (rc == 0) {
    const int L = p.m->n_layers;
    double fwd[MAX_REPS], loss[MAX_REPS], opt[MAX_REPS], bwd[MAX_REPS][MS_MAX_LAYERS];
    double col[MAX_REPS], dummy[MS_MAX_LAYERS], f, l, o;
    for (int w = 0; w < WARMUP; w++) one_pass(&p, &f, &l, dummy, &o);
    int n = 0;
    double t0 = now();
    while (n < MAX_REPS && (n < MIN_REPS || now() - t0 < PROBE_BUDGET_S)) {
      one_pass(&p, &fwd[n], &loss[n], bwd[n], &opt[n]);
      n++;
    }
    out->forward_s = median(fwd, n);
    out->loss_s = median(loss, n);
    out->optim_s = median(opt, n);
    for (int i = 0; i < L; i++) {
      for (int k = 0; k < n; k++) col[k] = bwd[k][i];
      out->layer_backward_s[i] = median(col, n);
    }
    out->batch = p.B;
    out->valid = model_kernel_status(p.m) == 0;
  }
  free(p.x), free(p.dout), free(p.t), free(p.y), free(p.rows);
  optim_free(p.opt);
  model_free(p.m);
  return rc;
}

double layer_probe_memory_bandwidth(void) {
  enum { BYTES = 16 << 20 };
  char *a = malloc(2 * (size_t)BYTES);
  if (!a) return 0.0;
  memset(a, 1, 2 * (size_t)BYTES);
  double best = 0.0;
  volatile char sink = 0;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = now();
    memcpy(a + BYTES, a, BYTES);
    double s = now() - t0;
    sink += a[BYTES + rep]; /* the copy is used: the compiler keeps it */
    if (s > 0 && 2.0 * BYTES / s > best) best = 2.0 * BYTES / s;
  }
  free(a);
  return best;
}
