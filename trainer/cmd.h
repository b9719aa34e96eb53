/* cmd — the subcommands that score and apply a trained model:
 * `midscale eval` (cmd_eval.c) and `midscale predict` (cmd_predict.c),
 * and the argument helpers they share (cmd.c).
 *
 * Each runs under mpirun or alone (one rank) on a world main.c made,
 * parses its own arguments (argv without the command name) and writes its
 * report to out on rank 0 (other ranks write nothing).
 *
 * Collectives: both are collective over w; the ranks agree before every
 * branch, so a failure ends every rank with the same code.
 *
 * Errors: 0, or a negative MS_E* code with its message (ms_error_msg) on
 * every rank, for main.c to print once from rank 0 and map to the exit
 * status: MS_EUSAGE (bad arguments; predict: OUT exists without
 * --force), MS_ECONFIG, MS_EDATA (the input or label set), MS_ECKPT (a
 * damaged checkpoint or one of another model), MS_EIO (predict's output
 * file), MS_ENOMEM, MS_ECOMM.
 */
#ifndef MS_CMD_H
#define MS_CMD_H

#include <stdio.h>

#include "comm.h"

/* `midscale help eval` and `midscale help predict`. */
extern const char cmd_eval_usage[];
extern const char cmd_predict_usage[];

/* 1 when argv holds --help or -h (the command then prints its usage and
 * needs no MPI). */
int cmd_wants_help(int argc, char **argv);

/* "FILE.h5:DATASET" (split at the last colon) into path and name.
 * @return 0 or MS_EUSAGE. Rank-local. */
int cmd_split_target(const char *arg, char *path, size_t path_cap, char *name, size_t name_cap);

/* Options both commands take: --set KEY=VALUE (repeatable), as train's. */
#define CMD_MAX_OVERRIDES 256

/* If argv[*i] is --set (or --set=KEY=VALUE), records its value in
 * overrides (*n of them so far) and steps *i past it: 1; else 0; or
 * MS_EUSAGE (no value, too many). Rank-local. */
int cmd_take_set(int argc, char **argv, int *i, const char **overrides, int *n);

/* `midscale eval CONFIG CHECKPOINT [--split test|train|PATH:DATASET]
 * [--labels DATASET] [--json] [--set KEY=VALUE]...`. Collective. */
int cmd_eval(comm_world *w, int argc, char **argv, FILE *out);

/* `midscale predict CONFIG CHECKPOINT INPUT.h5:DATASET OUT.h5 [--force]
 * [--probs] [--set KEY=VALUE]...`. Collective. */
int cmd_predict(comm_world *w, int argc, char **argv, FILE *out);

#endif
