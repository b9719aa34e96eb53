#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clones.h"
#include "ms_error.h"

#define PI 3.141592653589793

int optim_create(ms_optim **out, const ms_config *cfg, size_t n_params) {
  ms_optim_params p = {.kind = cfg->optim.name,
                       .lr = cfg->optim.lr,
                       .weight_decay = cfg->optim.weight_decay,
                       .momentum = cfg->optim.momentum,
                       .nesterov = cfg->optim.nesterov,
                       .beta1 = cfg->optim.beta1,
                       .beta2 = cfg->optim.beta2,
                       .eps = cfg->optim.eps};
  return optim_create_params(out, &p, n_params);
}

int optim_create_params(ms_optim **out, const ms_optim_params *p, size_t n_params) {
  *out = NULL;
  if (p->kind != MS_OPTIM_SGD && p->kind != MS_OPTIM_ADAM && p->kind != MS_OPTIM_ADAMW)
    return ms_error_set(MS_ECONFIG, "optimizer: unknown kind %d", (int)p->kind);
  ms_optim *o = calloc(1, sizeof *o);
  if (!o) return ms_error_set(MS_ENOMEM, "optimizer: out of memory");
  o->n = n_params;
  o->kind = p->kind;
  o->lr = p->lr;
  o->mu = p->momentum;
  o->weight_decay = p->weight_decay;
  o->nesterov = p->nesterov;
  o->beta1 = p->beta1;
  o->beta2 = p->beta2;
  o->eps = p->eps;
  size_t cells = n_params ? n_params : 1;
  int ok;
  if (p->kind == MS_OPTIM_SGD) {
    o->momentum = calloc(cells, sizeof(float));
    ok = o->momentum != NULL;
  } else {
    o->exp_avg = calloc(cells, sizeof(float));
    o->exp_avg_sq = calloc(cells, sizeof(float));
    ok = o->exp_avg && o->exp_avg_sq;
  }
  if (!ok) {
    optim_free(o);
    return ms_error_set(MS_ENOMEM, "optimizer: out of memory for %zu floats", n_params);
  }
  *out = o;
  return 0;
}

void optim_free(ms_optim *o) {
  if (!o) return;
  if (!o->state_borrowed) {
    free(o->momentum);
    free(o->exp_avg);
    free(o->exp_avg_sq);
  }
  free(o->decay_mask);
  free(o);
}

int optim_set_decay_mask(ms_optim *o, const uint8_t *mask) {
  free(o->decay_mask);
  o->decay_mask = NULL;
  if (!mask) return 0;
  o->decay_mask = malloc(o->n ? o->n : 1);
  if (!o->decay_mask)
    return ms_error_set(MS_ENOMEM, "optimizer: out of memory for a %zu-byte decay mask", o->n);
  memcpy(o->decay_mask, mask, o->n);
  return 0;
}

void optim_mask_range(uint8_t *mask, size_t off, size_t len, uint8_t value) {
  memset(mask + off, value, len);
}

int optim_state(const ms_optim *o, float **arenas, const char **names, int max) {
  float *a[2];
  const char *nm[2];
  int k = 0;
  if (o->kind == MS_OPTIM_SGD) {
    a[k] = o->momentum, nm[k++] = "momentum";
  } else {
    a[k] = o->exp_avg, nm[k++] = "exp_avg";
    a[k] = o->exp_avg_sq, nm[k++] = "exp_avg_sq";
  }
  for (int i = 0; i < k && i < max; i++) {
    if (arenas) arenas[i] = a[i];
    if (names) names[i] = nm[i];
  }
  return k;
}

void optim_use_state(ms_optim *o, float *const *arenas, int copy) {
  float **mine[2] = {NULL, NULL};
  if (o->kind == MS_OPTIM_SGD)
    mine[0] = &o->momentum;
  else
    mine[0] = &o->exp_avg, mine[1] = &o->exp_avg_sq;
  for (int a = 0; a < 2 && mine[a]; a++) {
    if (*mine[a] == arenas[a]) continue;
    if (copy) memcpy(arenas[a], *mine[a], sizeof(float) * o->n);
    if (!o->state_borrowed) free(*mine[a]);
    *mine[a] = arenas[a];
  }
  o->state_borrowed = 1;
}

/* The weight decay of element i: wd, or 0 where the mask excludes it. */
static inline float decay_of(const ms_optim *o, size_t i, float wd) {
  return (!o->decay_mask || o->decay_mask[i]) ? wd : 0.0f;
}

/* The gradient of element lo + j from its sources: ga[j], or ga[j] + gb[j]
 * (the in-order sum of two; gb NULL: one source). */
#define GRAD_OF(ga, gb, j) ((gb) ? (ga)[j] + (gb)[j] : (ga)[j])

/* SGD on the elements [lo, lo + n) with gradients GRAD_OF(ga, gb, j).
 * Inlined into update_slice with gb NULL or not, so that each loop is
 * vectorised without a test per element. */
static inline __attribute__((always_inline)) void sgd_run(ms_optim *o, float *params,
                                                          const float *restrict ga,
                                                          const float *restrict gb, float gs,
                                                          double lr, size_t lo, size_t n) {
  const float mu = (float)o->mu, wd = (float)o->weight_decay, a = (float)lr;
  float *restrict v = o->momentum + lo, *restrict p = params + lo;
  for (size_t j = 0; j < n; j++) {
    float g = GRAD_OF(ga, gb, j) * gs + decay_of(o, lo + j, wd) * p[j];
    v[j] = mu * v[j] + g;
    p[j] -= a * (o->nesterov ? g + mu * v[j] : v[j]);
  }
}

/* Adam and AdamW on the elements [lo, lo + n) with gradients
 * GRAD_OF(ga, gb, j), as step t = o->t (its bias corrections, o->bc1 and
 * o->bc2, from begin_step): the per-element arithmetic in float like
 * torch's float32 tensors, the step scalars in double like torch's Python
 * floats. */
static inline __attribute__((always_inline)) void adam_run(ms_optim *o, float *params,
                                                           const float *restrict ga,
                                                           const float *restrict gb, float gs,
                                                           double lr, size_t lo, size_t n) {
  const float step_size = (float)(lr / o->bc1), bc2_sqrt = (float)sqrt(o->bc2);
  const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
  const float wd = (float)o->weight_decay;
  const int decoupled = o->kind == MS_OPTIM_ADAMW;
  float *restrict m = o->exp_avg + lo, *restrict v = o->exp_avg_sq + lo, *restrict pp = params + lo;
  for (size_t j = 0; j < n; j++) {
    float p = pp[j], g = GRAD_OF(ga, gb, j) * gs, wdi = decay_of(o, lo + j, wd);
    if (decoupled)
      p *= (float)(1.0 - lr * (double)wdi);
    else
      g += wdi * p;
    m[j] = b1 * m[j] + (1.0f - b1) * g;
    v[j] = b2 * v[j] + (1.0f - b2) * g * g;
    float denom = sqrtf(v[j]) / bc2_sqrt + eps;
    pp[j] = p - step_size * m[j] / denom;
  }
}

/* o's update on the elements [lo, lo + n) with gradients GRAD_OF(ga, gb,
 * j): each of the four loops inlined, once per instruction set. */
MS_CLONES static void update_slice(ms_optim *o, float *params, const float *ga, const float *gb,
                                   float gs, double lr, size_t lo, size_t n) {
  const int sgd = o->kind == MS_OPTIM_SGD;
  if (sgd && gb)
    sgd_run(o, params, ga, gb, gs, lr, lo, n);
  else if (sgd)
    sgd_run(o, params, ga, NULL, gs, lr, lo, n);
  else if (gb)
    adam_run(o, params, ga, gb, gs, lr, lo, n);
  else
    adam_run(o, params, ga, NULL, gs, lr, lo, n);
}

void optim_sgd_step(ms_optim *o, float *params, const float *grads, double lr) {
  update_slice(o, params, grads, NULL, 1.0f, lr, 0, o->n);
  o->t++;
}

void optim_step(ms_optim *o, float *params, const float *grads, double lr) {
  optim_step_range(o, params, grads, 1.0f, lr, 0, o->n);
}

/* Step t + 1 begins: t and Adam's bias corrections. */
static void begin_step(ms_optim *o) {
  o->t++;
  o->bc1 = 1.0 - pow(o->beta1, (double)o->t);
  o->bc2 = 1.0 - pow(o->beta2, (double)o->t);
}

void optim_step_range(ms_optim *o, float *params, const float *grads, float grad_scale, double lr,
                      size_t lo, size_t hi) {
  optim_step_range_sum(o, params, &grads, 1, grad_scale, lr, lo, hi);
}

/* More than two sources are summed SUM_SLICE elements at a time into a
 * buffer that stays in L1, then updated from it. */
enum { SUM_SLICE = 1024 };

void optim_step_range_sum(ms_optim *o, float *params, const float *const *src, int nsrc,
                          float grad_scale, double lr, size_t lo, size_t hi) {
  begin_step(o);
  if (hi > o->n) hi = o->n;
  if (lo >= hi) return;
  if (nsrc <= 2) {
    update_slice(o, params, src[0] + lo, nsrc == 2 ? src[1] + lo : NULL, grad_scale, lr, lo,
                 hi - lo);
    return;
  }
  float acc[SUM_SLICE];
  for (size_t i = lo; i < hi; i += SUM_SLICE) {
    size_t n = hi - i < SUM_SLICE ? hi - i : SUM_SLICE;
    const float *restrict a = src[0] + i, *restrict b = src[1] + i;
    for (size_t j = 0; j < n; j++) acc[j] = a[j] + b[j];
    for (int k = 2; k < nsrc; k++) {
      const float *restrict c = src[k] + i;
      for (size_t j = 0; j < n; j++) acc[j] += c[j];
    }
    update_slice(o, params, acc, NULL, grad_scale, lr, i, n);
  }
}

/* ---- schedules --------------------------------------------------------------- */

/* PyTorch's _annealing_cos: from start at pct = 0 to end at pct = 1. */
static double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (cos(PI * pct) + 1.0);
}

/* OneCycleLR.get_lr (two phases) at step s of T, pct clamped to [0, 1] so
 * that steps past the end hold the final value instead of raising. */
static double onecycle_lr(const ms_schedule_params *p, int64_t s, int64_t T) {
  const double initial = p->lr / p->div_factor, final = initial / p->final_div_factor;
  const double end1 = p->pct_start * (double)T - 1.0, end2 = (double)T - 1.0;
  double pct;
  if ((double)s <= end1) {
    pct = end1 > 0.0 ? (double)s / end1 : 1.0;
    return anneal_cos(initial, p->lr, pct);
  }
  pct = end2 > end1 ? ((double)s - end1) / (end2 - end1) : 1.0;
  if (pct > 1.0) pct = 1.0;
  return anneal_cos(p->lr, final, pct);
}

/* The schedule after warm-up, at s = step - warmup of T = total - warmup. */
static double main_lr(const ms_schedule_params *p, int64_t s, int64_t T) {
  switch (p->kind) {
    case MS_SCHED_COSINE: {
      double t = T > 0 ? (double)s / (double)T : 1.0;
      if (t > 1.0) t = 1.0;
      double floor = p->lr * p->min_lr_ratio;
      return floor + (p->lr - floor) * 0.5 * (1.0 + cos(PI * t));
    }
    case MS_SCHED_STEP:
      if (p->step_size < 1) return p->lr;
      return p->lr * pow(p->gamma, (double)(s / p->step_size));
    case MS_SCHED_ONECYCLE: return onecycle_lr(p, s, T);
    case MS_SCHED_CONSTANT:
    default: return p->lr;
  }
}

double schedule_lr_at(const ms_schedule_params *p, int64_t step, int64_t total_steps) {
  int64_t warm = p->warmup_steps > 0 ? p->warmup_steps : 0;
  if (step < warm) return main_lr(p, 0, total_steps - warm) * (double)(step + 1) / (double)warm;
  return main_lr(p, step - warm, total_steps - warm);
}

double schedule_lr(const ms_config *cfg, int64_t step, int64_t total_steps) {
  ms_schedule_params p = {.kind = cfg->schedule.name,
                          .lr = cfg->optim.lr,
                          .warmup_steps = cfg->schedule.warmup_steps,
                          .min_lr_ratio = cfg->schedule.min_lr_ratio,
                          .step_size = cfg->schedule.step_size,
                          .gamma = cfg->schedule.gamma,
                          .div_factor = cfg->schedule.div_factor,
                          .final_div_factor = cfg->schedule.final_div_factor,
                          .pct_start = cfg->schedule.pct_start};
  return schedule_lr_at(&p, step, total_steps);
}

double optim_sum_squares(const float *grads, size_t n, double ss) {
  for (size_t i = 0; i < n; i++) ss += (double)grads[i] * (double)grads[i];
  return ss;
}

float optim_clip_factor(double ss, double max_norm, double *norm) {
  *norm = sqrt(ss);
  return max_norm > 0 && *norm > max_norm ? (float)(max_norm / (*norm + 1e-6)) : 1.0f;
}

double optim_clip_grad_norm(float *grads, size_t n, double max_norm) {
  double norm;
  float f = optim_clip_factor(optim_sum_squares(grads, n, 0.0), max_norm, &norm);
  if (f != 1.0f)
    for (size_t i = 0; i < n; i++) grads[i] *= f;
  return norm;
}
