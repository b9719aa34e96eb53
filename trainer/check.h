/* check — `midscale check`: validates a config without training, and the
 * cross-field checks that need the dataset or the file system, which
 * `midscale train` makes too. The rules both commands must apply alike
 * live here once: the config load pipeline (check_load_config), the run's
 * length (check_run_length) and the checkpoint directory
 * (check_ckpt_dir_of).
 *
 * Serial: no MPI anywhere in this module (check_main runs without mpirun and
 * never initialises MPI; startup.c calls the cross-checks on the ranks that
 * need them and makes the ranks agree).
 *
 * Errors: functions return 0 or a negative MS_E* code with a message through
 * ms_error_set(): MS_EUSAGE (bad arguments, unreadable config file),
 * MS_ECONFIG (a config error, including the cross-field ones), MS_EDATA
 * (the dataset exists but cannot be used), MS_ECKPT, MS_ENOMEM. They never
 * print on their own: check_main and check_reference write their report to
 * the FILE* they are given, and trainer/main.c prints the error.
 */
#ifndef MS_CHECK_H
#define MS_CHECK_H

#include <stdint.h>
#include <stdio.h>

#include "ckpt.h"
#include "config.h"
#include "dataset.h"
#include "model.h"

/* `midscale check CONFIG [--set KEY=VALUE]... [--world N]` (argv without
 * the command name): parse, overrides, validate for N ranks (default 1);
 * then, if data.path exists, open the dataset and run the cross-checks
 * (model input, labels vs output units, schedule vs total steps); check that
 * the checkpoint directory can be written. On success writes to out the
 * resolved config and a model summary (per layer: name, type, output shape,
 * parameters; totals: parameters, forward FLOPs per sample, memory per rank).
 * A missing data file is not an error here: the report says the dataset
 * checks were skipped. `--help` writes `usage` to out. */
int check_main(int argc, char **argv, const char *usage, FILE *out);

/* `midscale config-reference`: writes the Markdown reference of every
 * config key (configs/REFERENCE.md) to out. */
int check_reference(FILE *out);

/* The memory line of the banner and of `midscale check`: bytes per rank
 * (proportional set size: a node-shared page counts 1/L in each of the L
 * ranks that map it) and per node of L = world / nodes ranks, with and
 * without comm.shared_params (the parameters and optimizer state once per
 * node; on several nodes, each node's copy: also the total over nodes).
 * shared: whether this run shares them (said first). m: a planned
 * or built model; the activations are those of a micro-batch. */
void check_memory_desc(const ms_config *cfg, const ms_model *m, int world, int nodes, int shared,
                       char *buf, size_t n);

/* Cross-check (a): model.input, when given, against the per-sample shape of
 * the training inputs (flattened sizes must agree). MS_ECONFIG names both
 * shapes. */
int check_model_input(const ms_config *cfg, const data_set *train);

/* Opens the training set of cfg (test 0) or its test set (test 1): a token
 * set (data_open_tokens, data.seq_len and data.stride) when data.tokens is
 * true, else the pair of inputs and labels (data_open_cached), within
 * `budget` bytes (0: the labels only) -- a token set within data.memory_mb
 * whatever `budget` says, since all its ids are its labels.
 * MS_EDATA with data/'s message. */
int check_open_data(const ms_config *cfg, int test, size_t budget, data_cache cache,
                    data_set **out);

/* The data_norm cfg asks for: data.scale, data.mean and data.std (views
 * into cfg, which must outlive the result) and data.check_finite. */
data_norm check_data_norm(const ms_config *cfg);

/* The dataset checks that need no model, shared by `midscale check` and
 * train: the test set has the training set's per-sample size, norm fits
 * the inputs (data_norm_check), and the training set holds at least one
 * global batch (train.batch_size). test may be NULL. MS_EDATA names the
 * file and the dataset. */
int check_data_sets(const ms_config *cfg, const data_set *train, const data_set *test,
                    const data_norm *norm);

/* The per-sample input shape the model sees: model.input when given, else
 * the training inputs' per-sample dims, where anything other than 2 (H, W)
 * or 3 (C, H, W) dims becomes a vector of all the features. Fills in
 * (MS_MAX_DIMS entries). @return the number of dims (1 to MS_MAX_DIMS). */
int check_input_shape(const ms_config *cfg, const data_set *train, int64_t *in);

/* Cross-check (b): the labels of ds fit a model with n_out outputs: class
 * indices in [0, n_out) for softmax_cross_entropy, else float targets (or
 * class indices used as targets), n_out per sample. MS_EDATA names the
 * dataset, the sample and the model's outputs. */
int check_labels(const ms_config *cfg, long n_out, data_set *ds);

/* check_labels for model m: a classifier's classes (model_classes: a
 * sequence model's vocabulary), else n_out targets; and for a sequence
 * model with softmax_cross_entropy one label per position (data_label_elems
 * == seq_T). MS_EDATA otherwise. */
int check_model_labels(const ms_config *cfg, const ms_model *m, data_set *ds);

/* train.accumulate K runs each rank's batch_size / world samples as K
 * micro-batches, so batch_size must divide by world * K.
 * @return 0 or MS_ECONFIG naming the three numbers. */
int check_accumulate(const ms_config *cfg, int world);

/* 1 when model.loss takes class labels (softmax_cross_entropy). */
int check_is_classifier(const ms_config *cfg);

/* Cross-check (d): the checkpoint directory `dir` exists and is a writable
 * directory, or its nearest existing ancestor is one (so that it can be
 * created). Creates nothing. MS_ECONFIG names the directory. */
int check_ckpt_dir(const char *dir);

/* The checkpoint directory of cfg: checkpoint.dir, or <run.dir>/checkpoints.
 * The one rule: `midscale check` and the run both use it. */
void check_ckpt_dir_of(const ms_config *cfg, char *out, size_t n);

/* The config load pipeline, shared by `midscale check` and the run: fills
 * cfg with defaults, parses text (len bytes; path names it in messages),
 * applies the n `section.key=value` overrides in order, validates for
 * `world` ranks (config_validate) and checks train.accumulate against them
 * (check_accumulate). @return 0 or MS_ECONFIG. */
int check_load_config(ms_config *cfg, const char *text, size_t len, const char *path,
                      const char *const *overrides, int n_overrides, int world);

/* The length of a run, the one rule for `midscale check` and the run. */
typedef struct {
  int64_t steps_per_epoch; /* floor(training samples / train.batch_size) */
  int64_t total_steps;     /* the steps the run trains */
  int64_t epochs;          /* the epochs those steps touch (the last may be partial) */
} check_length;

/* The length of a run over n_samples training samples (at least one global
 * batch: check_data_sets): train.max_steps when it is set (> 0), whatever
 * train.epochs says (training goes on into further epochs), else
 * train.epochs x steps_per_epoch; checked against the schedule
 * (config_check_steps). @return 0 or MS_ECONFIG. */
int check_run_length(const ms_config *cfg, uint64_t n_samples, check_length *len);

/* "40 steps (train.max_steps, overrides train.epochs 2): 3 epochs of 15
 * steps, the last partial" or "30 steps (train.epochs): 2 epochs of 15
 * steps": the banner's and `midscale check`'s words for len. */
void check_length_desc(const ms_config *cfg, const check_length *len, char *out, size_t n);

/* Resume provenance: reads the config saved in the checkpoint `path`
 * (ckpt_read_meta) and compares it with `now` (config_diff of the pinned keys).
 * @return 0, or MS_ECKPT with "<path>: this checkpoint was made with a
 * different config: key old → new; ..." (or the read error). */
int check_resume_config(const char *path, const ms_config *now);

/* Whether a verified checkpoint's cursor can be this run's: world_size
 * divides train.batch_size (as the saving run's did), step_in_epoch <
 * steps_per_epoch and step == epoch * steps_per_epoch + step_in_epoch
 * (batch size and data are pinned, so steps per epoch cannot have changed);
 * steps_per_epoch 0 skips the last two.
 * @return 0, or CKPT_DAMAGED (ckpt.h) with a message naming path and the
 * values. */
int check_resume_cursor(const char *path, const ckpt_meta *meta, const ms_config *cfg,
                        int64_t steps_per_epoch);

/* check_resume_config on metadata already read (and verified) from the
 * checkpoint `path` (named in messages): `--resume` reads the file once.
 * A saved config that does not parse (CONFIG_MAX_BYTES and
 * CONFIG_MAX_DEPTH hold for it too) gives CKPT_DAMAGED (ckpt.h), a
 * different one MS_ECKPT. */
int check_resume_meta(const char *path, const ckpt_meta *meta, const ms_config *now);

#endif
