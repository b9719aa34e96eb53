/* sweep — a hyper-parameter sweep described by SWEEP.yaml (README,
 * "Sweeps"): a base config, fixed `--set` overrides, a grid and/or random
 * draws over config keys, and how each trial runs (ranks, Slurm settings,
 * the local launcher). This module parses the file and turns it into
 * trials; cmd_sweep.c writes and runs them.
 *
 * Trials: every point of the grid (the product of its lists, the last key
 * varying fastest; one point when there is no grid) times random.trials
 * random draws (one when there is no random block), grid-major. Trial i's
 * draws come from a generator seeded by (random.seed, i) alone, so a
 * trial's values do not depend on how many trials there are. A drawn real
 * is rounded to 6 significant digits before it is applied, so the value
 * the trial ran with is the one its config and trials.tsv show.
 *
 * Budgets (hostile input): the file is read with config_read_file (a
 * regular file, CONFIG_MAX_BYTES), nesting deeper than SWEEP_MAX_DEPTH is
 * refused before the document is loaded, and the counts of keys, values
 * and trials are capped by the SWEEP_MAX_* below.
 *
 * Pure logic: no MPI, no files written. Errors: 0 or MS_ECONFIG (MS_EUSAGE
 * for a file that cannot be read, MS_ENOMEM) with one message naming
 * file:line:col.
 */
#ifndef MS_SWEEP_H
#define MS_SWEEP_H

#include <stdint.h>

#include "config.h"

#define SWEEP_MAX_KEYS 32    /* swept keys, and fixed `set` keys, each */
#define SWEEP_MAX_VALUES 64  /* values of one grid key or choice */
#define SWEEP_MAX_TRIALS 1000 /* Slurm's default MaxArraySize is 1001 */
#define SWEEP_MAX_DEPTH 8
#define SWEEP_VALUE_MAX 128  /* bytes of one value as text */
#define SWEEP_KEY_MAX 128

typedef enum {
  SWEEP_GRID = 0,    /* values: the listed ones */
  SWEEP_CHOICE,      /* random: one of the listed values */
  SWEEP_UNIFORM,     /* random: a real in [lo, hi) */
  SWEEP_LOG_UNIFORM, /* random: exp of a uniform in [log lo, log hi), 0 < lo */
  SWEEP_INT_UNIFORM  /* random: an integer in [lo, hi] */
} sweep_kind;

typedef struct {
  char key[SWEEP_KEY_MAX]; /* a config key as --set takes it */
  sweep_kind kind;
  int n_values;
  char values[SWEEP_MAX_VALUES][SWEEP_VALUE_MAX]; /* as --set takes them */
  double lo, hi;
  int line; /* of the key in the sweep file, for messages */
} sweep_param;

typedef struct {
  char path[MS_PATH_MAX];      /* the sweep file */
  char base[MS_PATH_MAX];      /* the base config, relative to the sweep file's folder */
  char name[MS_NAME_MAX];      /* default: the sweep file's name without .yaml */
  char out[MS_PATH_MAX];       /* default: sweeps/<name> */
  int n_set;
  char set[SWEEP_MAX_KEYS][SWEEP_KEY_MAX + SWEEP_VALUE_MAX + 2]; /* "key=value" */
  int n_params;                /* grid keys first, then random keys */
  int n_grid;
  sweep_param params[SWEEP_MAX_KEYS];
  int random_trials;           /* 0: no random block */
  uint64_t seed;               /* random.seed (default 1) */
  int ranks;                   /* MPI ranks per trial (default 2) */
  int max_parallel;            /* slurm.max_parallel: the array's %N (default 4) */
  int cpus_per_task;           /* slurm.cpus_per_task (default 1) */
  int signal_s;                /* slurm.signal_seconds: USR1 this long before the limit (120) */
  char time[32];               /* slurm.time (default 01:00:00) */
  char partition[64];          /* slurm.partition ("" = the cluster's default) */
  char mpirun[256];            /* local.mpirun: the launcher of --local (default mpirun) */
} sweep_spec;

/* Reads and parses the sweep file at path into *spec (allocated; free()
 * it). @return 0 or an MS_E* code with one message. */
int sweep_parse_file(const char *path, sweep_spec **spec);

/* @return the number of trials (>= 1, at most SWEEP_MAX_TRIALS: checked
 * by sweep_parse_file). */
int sweep_n_trials(const sweep_spec *spec);

/* Trial i's value of every swept key, in the order of spec->params: fills
 * values[k] (SWEEP_VALUE_MAX bytes each) for k < spec->n_params. */
void sweep_trial_values(const sweep_spec *spec, int i, char values[][SWEEP_VALUE_MAX]);

#endif
