/* infer — what `midscale eval` and `midscale predict` share: the model a
 * config describes, filled with a checkpoint's parameters, on every rank,
 * ready to run forward passes over an input set.
 *
 * The model's input shape is the one training gave it: model.input when
 * the config sets it, else the per-sample shape of the training inputs
 * (data.path, data.train_x; opened for that shape only, without labels),
 * else, when that file cannot be opened here, the input set's. The
 * checkpoint must hold this model's parameters (its layout hash and every
 * tensor's name and shape); other tensors (optimizer state) are ignored.
 *
 * Ownership: infer_config and infer_load fill an infer_model the caller
 * provides, which owns the model until infer_close (which accepts a
 * partly filled one). The input set stays the caller's.
 *
 * Collectives: infer_config and infer_load are collective over rk->w
 * (rank 0 reads the config and the checkpoint and broadcasts them; the
 * ranks agree before every branch); infer_close is rank-local.
 *
 * Errors: 0 or a negative MS_E* code, the same on every rank: MS_EUSAGE
 * (the config file cannot be read), MS_ECONFIG (infer_config), MS_EDATA
 * (the input set does not fit the model: its features per sample, the
 * normalisation), MS_ECKPT (a damaged checkpoint, or one of another
 * model), MS_ENOMEM, MS_ECOMM.
 */
#ifndef MS_INFER_H
#define MS_INFER_H

#include <stdint.h>

#include "ckpt.h"
#include "config.h"
#include "dataset.h"
#include "model.h"
#include "ranks.h"

typedef struct {
  ms_config cfg;
  data_norm norm;  /* data.scale/mean/std, views into cfg */
  ms_model *model; /* parameters from the checkpoint */
  int64_t chunk;   /* rows per forward pass on each rank (train.eval_batch_size / world) */
  int64_t step;    /* the checkpoint's training step */
} infer_model;

/* Loads config_path with the n `section.key=value` overrides (validated as
 * for one rank: any world evaluates) into im->cfg and sets
 * data.allow_links from it, before the caller opens its input set.
 * Collective. */
int infer_config(infer_model *im, const ranks *rk, const char *config_path,
                 const char *const *overrides, int n_overrides);

/* After infer_config: opens the set an eval or predict reads, (x_name,
 * y_name) of path (y_name NULL: the inputs alone), with the config's
 * data.cache and data.memory_mb as training opens its sets. Rank-local:
 * the caller agrees. MS_EDATA. */
int infer_open_set(const infer_model *im, const char *path, const char *x_name, const char *y_name,
                   data_set **out);

/* After infer_config: builds the config's model for input, fills it from
 * the checkpoint ckpt_path, then checks input against the model (features
 * per sample, normalisation). Collective. */
int infer_load(infer_model *im, const ranks *rk, const char *ckpt_path, const data_set *input);

/* Releases what infer_load made. */
void infer_close(infer_model *im);

#endif
