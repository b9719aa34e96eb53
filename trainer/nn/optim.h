/* optim — optimizers over whole arenas, and learning-rate schedules.
 *
 * Optimizer state lives in arenas of the parameter layout (DESIGN.md,
 * "Parameters"), so checkpoints and later sharding see flat arrays.
 * Kinds: SGD with momentum, Adam and AdamW. optim_create builds the one the
 * config names; optim_create_params builds any of them from plain values
 * (tests, benchmarks). Weight decay can be restricted to a per-element
 * mask. Schedules: constant, cosine, step, onecycle, each with an optional
 * linear warm-up in front.
 * Pure arithmetic: no MPI, no allocation beyond optim_create* and
 * optim_set_decay_mask. Not thread-safe.
 */
#ifndef MS_OPTIM_H
#define MS_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* ms_optim_kind and ms_schedule_kind are the values of the config keys
 * optim.name and schedule.name (config.h). */

/* Everything an optimizer needs, as plain data (the config-free way to make
 * one; optim_create fills it from the config's optim section). */
typedef struct {
  ms_optim_kind kind;
  double lr;           /* nominal; each step takes its lr from the schedule */
  double weight_decay; /* SGD, Adam: L2 added to the gradient; AdamW: decoupled */
  double momentum;     /* SGD */
  int nesterov;        /* SGD, bool */
  double beta1, beta2; /* Adam, AdamW (PyTorch defaults 0.9, 0.999) */
  double eps;          /* Adam, AdamW: added outside the sqrt (default 1e-8) */
} ms_optim_params;

typedef struct {
  size_t n;
  float *momentum; /* (n), the velocity buffer of SGD with momentum; NULL for Adam */
  double lr, mu, weight_decay;
  int nesterov;
  ms_optim_kind kind; /* which update optim_step applies */
  float *exp_avg;    /* (n), Adam's first moment m; NULL for SGD */
  float *exp_avg_sq; /* (n), Adam's second moment v; NULL for SGD */
  double beta1, beta2, eps;
  double bc1, bc2;     /* Adam's bias corrections 1 - beta^t of step t (set as each step begins) */
  int64_t t;           /* steps taken (Adam's bias correction uses it); not in
                        * checkpoints: one optimizer step is taken per training
                        * step, so a resumed run sets it to the cursor's step */
  uint8_t *decay_mask; /* (n) owned copy, or NULL = decay every element */
  int state_borrowed;  /* 1: the state arenas are the caller's (optim_use_state) */
} ms_optim;

/* The optimizer of cfg->optim (its kind optim.name, with its keys).
 * @return 0, MS_ECONFIG (a kind out of range) or MS_ENOMEM. State arenas start at
 * zero, t at 0. */
int optim_create(ms_optim **out, const ms_config *cfg, size_t n_params);

/* Any optimizer from plain parameters. State arenas start at zero, t at 0.
 * @return 0, MS_ECONFIG (unknown kind) or MS_ENOMEM. */
int optim_create_params(ms_optim **out, const ms_optim_params *p, size_t n_params);

/* Frees o and its arenas; accepts NULL. */
void optim_free(ms_optim *o);

/* Restricts weight decay to the elements i with mask[i] != 0 (e.g. weights
 * but not biases or norm gains), for every kind, optim_sgd_step included.
 * Copies the n bytes of mask; NULL removes a mask (decay everything).
 * @return 0 or MS_ENOMEM. */
int optim_set_decay_mask(ms_optim *o, const uint8_t *mask);

/* Sets mask[off, off + len) to value: a helper to build a mask from a
 * model's parameter offsets. mask: (n) */
void optim_mask_range(uint8_t *mask, size_t off, size_t len, uint8_t value);

/* The optimizer's state arenas (each (n) floats, the parameter layout) and
 * their names for a checkpoint ("momentum"; or "exp_avg", "exp_avg_sq").
 * Writes up to max entries. @return the number of arenas. */
int optim_state(const ms_optim *o, float **arenas, const char **names, int max);

/* From now on the state arenas are the caller's: arenas[i] (n floats each,
 * in optim_state's order, which must outlive o) replaces state arena i (a
 * node-shared copy, trainer/startup.c). copy: the current state is copied
 * in first; 0 leaves the caller's contents (e.g. zeros already there). */
void optim_use_state(ms_optim *o, float *const *arenas, int copy);

/* One SGD step with PyTorch's semantics:
 *   g += wd * p;  v = mu * v + g;  p -= lr * (nesterov ? g + mu * v : v)
 * (wd = 0 where the decay mask is 0). Requires kind == MS_OPTIM_SGD. */
void optim_sgd_step(ms_optim *o, float *params, const float *grads, double lr);

/* One step of o's kind with learning rate lr, PyTorch's semantics exactly
 * (torch.optim.SGD / Adam / AdamW, dampening 0, amsgrad off):
 *   Adam:  g += wd * p
 *   AdamW: p -= lr * wd * p                       (decoupled, before the update)
 *   both:  t += 1;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *          p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * params, grads: (n) */
void optim_step(ms_optim *o, float *params, const float *grads, double lr);

/* optim_step on the elements [lo, hi) only (the other elements of params
 * and of the state are neither read nor written), as one step: t advances
 * by one whatever the range, so every rank of a sharded update, each with
 * its own range, counts the same steps. Each gradient is read as
 * grads[i] * grad_scale (rounded to float: the bits of scaling grads in
 * place first, as clipping does, without writing grads, which other ranks
 * may still read; 1 = as they are). Each element's arithmetic is
 * optim_step's: the ranges of one step together give its exact bits. */
void optim_step_range(ms_optim *o, float *params, const float *grads, float grad_scale, double lr,
                      size_t lo, size_t hi);

/* optim_step_range with each gradient summed from nsrc >= 1 arrays, for
 * the sharded update (trainer/train.c: the node's segments, so that the sum
 * is never written): the gradient of element i is
 * ((src[0][i] + src[1][i]) + src[2][i]) + ... in float, in that order
 * (reducer_finish's bits), read as that sum * grad_scale. src[k]: arrays
 * of the arena's layout, only read. The bits are optim_step_range's on the
 * summed gradients. */
void optim_step_range_sum(ms_optim *o, float *params, const float *const *src, int nsrc,
                          float grad_scale, double lr, size_t lo, size_t hi);

/* ss plus the squares of the n gradients, accumulated in double in index
 * order: over consecutive ranges in order it is the sum over all of them,
 * bit for bit (optim_clip_grad_norm's sum). */
double optim_sum_squares(const float *grads, size_t n, double ss);

/* The factor clipping multiplies every gradient by, for the sum of squares
 * ss of all of them: max_norm / (norm + 1e-6) when norm = sqrt(ss) exceeds
 * max_norm > 0, else 1. *norm gets the norm. */
float optim_clip_factor(double ss, double max_norm, double *norm);

/* Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the L2
 * norm of all n gradients (accumulated in double); when it exceeds
 * max_norm > 0, every gradient is multiplied by max_norm / (norm + 1e-6).
 * @return the norm before clipping. */
double optim_clip_grad_norm(float *grads, size_t n, double max_norm);

/* ---- learning-rate schedules ---------------------------------------------- */

/* A schedule as plain data (no config). */
typedef struct {
  ms_schedule_kind kind;
  double lr;            /* base lr; the peak (max_lr) for onecycle */
  int64_t warmup_steps; /* 0 = none */
  double min_lr_ratio;  /* cosine: floor as a fraction of lr */
  int64_t step_size;    /* step: multiply by gamma every step_size steps */
  double gamma;
  double div_factor;       /* onecycle: start at lr / div_factor (PyTorch 25) */
  double final_div_factor; /* onecycle: end at start / final_div_factor (1e4) */
  double pct_start;        /* onecycle: fraction of the steps rising (0.3) */
} ms_schedule_params;

/* Learning rate at step (0-based) of total_steps. The first warmup_steps
 * steps rise linearly, target * (step + 1) / warmup_steps, to the value
 * the schedule starts at (lr; lr / div_factor for onecycle); then, with
 * s = step - warmup_steps and T = total_steps - warmup_steps:
 *   constant  lr
 *   cosine    floor + (lr - floor) (1 + cos(pi min(s/T, 1))) / 2,
 *             floor = lr * min_lr_ratio (PyTorch CosineAnnealingLR)
 *   step      lr * gamma^floor(s / step_size) (PyTorch StepLR)
 *   onecycle  PyTorch OneCycleLR(max_lr = lr, total_steps = T,
 *             anneal_strategy = 'cos', three_phase = False): cosine from
 *             lr/div_factor up to lr until s = pct_start*T - 1, then cosine
 *             down to lr/div_factor/final_div_factor at s = T - 1 (held
 *             there after). */
double schedule_lr_at(const ms_schedule_params *s, int64_t step, int64_t total_steps);

/* schedule_lr_at for cfg->optim.lr and the keys of cfg->schedule. */
double schedule_lr(const ms_config *cfg, int64_t step, int64_t total_steps);

#endif
