/* startup — everything a training run holds from start to end, made
 * before the first step and released after the last: the config, the
 * datasets and their checks, the model and optimizer, the gradient
 * reducer, the training loader and rank 0's metrics sink.
 *
 * Ownership: startup_open fills a train_setup the caller provides;
 * startup_close releases what it holds (also after a failed open). Its
 * fields are read by the rest of the run; only startup.c changes them
 * (the model's and optimizer's arenas excepted: training changes those).
 *
 * Collectives: startup_open is collective over rk->w and agrees before
 * every branch (ranks.h); startup_close is rank-local.
 *
 * Errors: 0 or a negative MS_E* code, the same on every rank: MS_EUSAGE
 * (config file), MS_ECONFIG, MS_EDATA, MS_EIO (run directory), MS_ENOMEM,
 * MS_ECOMM.
 */
#ifndef MS_STARTUP_H
#define MS_STARTUP_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "config.h"
#include "dataset.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "ranks.h"
#include "reducer.h"
#include "train.h"

typedef struct {
  ms_config cfg;
  char *cfg_text;               /* the config file's bytes */
  size_t cfg_len;
  char ckpt_dir[MS_PATH_MAX + 32];
  data_set *train, *test;       /* test: NULL without data.test_x */
  comm_node_mem *shared_cache;  /* the training set's chunk cache in node memory, or NULL */
  data_norm norm;               /* data.scale/mean/std, views into cfg */
  ms_model *model;
  ms_optim *opt;
  reducer *red;                 /* the gradient sync; NULL with comm.sync false */
  comm_node_mem *shared_params; /* comm.shared_params: the parameters and the optimizer
                                 * state, once per node (model->params and opt's state
                                 * arenas point into it), or NULL: each rank's own */
  char params_desc[256];        /* the banner's: shared, or off and why */
  comm_link_probe link;         /* the inter-node link measured at start-up (nodes 1:
                                 * one node, or no sync: not probed) */
  data_loader *loader;          /* this rank's training batches; only it reads train */
  ms_metrics *metrics;          /* rank 0 only */
  int64_t global_batch, local_batch, micro_batch, eval_chunk;
  int accumulate;               /* train.accumulate, at least 1 */
  int blas_threads;             /* per rank */
  int cpus_per_rank;            /* CPUs this rank may use (comm_cpus_per_rank) */
  check_length len;             /* the run's length (check_run_length) */
  char loader_desc[512];        /* the banner's loader line(s) */
} train_setup;

/* Loads the config (rank 0 reads the file, every rank applies the
 * overrides), creates the run directory (config.resolved.yaml,
 * metrics.jsonl), opens and checks the data, builds the model and the
 * optimizer, checks that every rank runs the same program, config and
 * layout, creates the reducer and the loader (which stops at --stop-at).
 * Collective. */
int startup_open(train_setup *s, const ranks *rk, const train_args *a);

/* Releases everything startup_open made; s may be partly filled. */
void startup_close(train_setup *s);

#endif
