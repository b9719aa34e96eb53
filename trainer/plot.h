/* plot — `midscale plot RUN_DIR... -o curves.png|curves.svg`: the
 * training and evaluation loss, the accuracy and the learning rate of one
 * or more runs against the step, drawn with cairo (README, "Curves": why
 * cairo). Each RUN_DIR's metrics.jsonl is read with runlog.h; a sweep's
 * directory (one holding trials.tsv) stands for all its trials.
 *
 * Layout: a 2 x 2 grid of panels (loss, accuracy, learning rate, and the
 * legend); one colour per run, training records as solid lines, evaluation
 * records as dashed lines with a dot at each one. Axes span nice round
 * ticks around the data. For each panel a line on out gives the mapping
 * from data to the picture ("panel loss: steps [A, B] -> x [X0, X1];
 * values [C, D] -> y [Y0, Y1]"), in pixels of the PNG or points of the SVG,
 * so that a reader can check the picture against the log.
 *
 * One process, no MPI. Errors: 0, MS_EUSAGE (exit 2: arguments, a run
 * without metrics.jsonl or without training records), MS_EIO (the picture
 * cannot be written), MS_ENOMEM, each with one message for main.c.
 * `usage` is written to out for --help.
 */
#ifndef MS_PLOT_H
#define MS_PLOT_H

#include <stdio.h>

#define PLOT_MAX_RUNS 64

int plot_main(int argc, char **argv, const char *usage, FILE *out);

#endif
