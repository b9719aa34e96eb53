/* optim — optimizers over whole arenas, and learning-rate schedules.
 *
 * Optimizer state lives in arenas of the parameter layout (DESIGN.md,
 * "Parameters"), so checkpoints and later sharding see flat arrays.
 * Pure arithmetic: no MPI, no allocation beyond optim_create.
 */
#ifndef MS_OPTIM_H
#define MS_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct {
  size_t n;
  float *momentum;   /* (n), the velocity buffer of SGD with momentum */
  double lr, mu, weight_decay;
  int nesterov;
} ms_optim;

/* @return 0 or MS_ENOMEM. The momentum arena starts at zero. */
int optim_create(ms_optim **out, const ms_config *cfg, size_t n_params);
void optim_free(ms_optim *o);

/* One SGD step with PyTorch's semantics:
 *   g += wd * p;  v = mu * v + g;  p -= lr * (nesterov ? g + mu * v : v) */
void optim_sgd_step(ms_optim *o, float *params, const float *grads, double lr);

/* Learning rate at step (0-based) of total_steps: linear warmup from
 * lr/warmup to lr over warmup steps, then constant or cosine decay to
 * lr * min_lr_ratio at total_steps. */
double schedule_lr(const ms_config *cfg, int64_t step, int64_t total_steps);

#endif
