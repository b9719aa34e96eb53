#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ms_error.h"

int optim_create(ms_optim **out, const ms_config *cfg, size_t n_params) {
  *out = NULL;
  ms_optim *o = calloc(1, sizeof *o);
  if (!o) return ms_error_set(MS_ENOMEM, "optimizer: out of memory");
  o->n = n_params;
  o->momentum = calloc(n_params ? n_params : 1, sizeof(float));
  if (!o->momentum) {
    free(o);
    return ms_error_set(MS_ENOMEM, "optimizer: out of memory for %zu floats", n_params);
  }
  o->lr = cfg->optim.lr;
  o->mu = cfg->optim.momentum;
  o->weight_decay = cfg->optim.weight_decay;
  o->nesterov = cfg->optim.nesterov;
  *out = o;
  return 0;
}

void optim_free(ms_optim *o) {
  if (!o) return;
  free(o->momentum);
  free(o);
}

void optim_sgd_step(ms_optim *o, float *params, const float *grads, double lr) {
  const float mu = (float)o->mu, wd = (float)o->weight_decay, a = (float)lr;
  float *v = o->momentum;
  for (size_t i = 0; i < o->n; i++) {
    float g = grads[i] + wd * params[i];
    v[i] = mu * v[i] + g;
    params[i] -= a * (o->nesterov ? g + mu * v[i] : v[i]);
  }
}

double schedule_lr(const ms_config *cfg, int64_t step, int64_t total_steps) {
  double lr = cfg->optim.lr;
  int64_t warm = cfg->schedule.warmup_steps;
  if (step < warm) return lr * (double)(step + 1) / (double)warm;
  if (strcmp(cfg->schedule.name, "cosine") == 0) {
    int64_t span = total_steps - warm;
    double t = span > 0 ? (double)(step - warm) / (double)span : 1.0;
    if (t > 1.0) t = 1.0;
    double floor = lr * cfg->schedule.min_lr_ratio;
    return floor + (lr - floor) * 0.5 * (1.0 + cos(3.141592653589793 * t));
  }
  return lr;
}
