/* cmd_sweep — the sweep commands of the CLI (README, "Sweeps"):
 *
 *   midscale sweep SWEEP.yaml [--local] [--out DIR]
 *   midscale sweep-report DIR [--metric NAME] [--mode min|max]
 *
 * `sweep` validates every trial through the normal config pipeline
 * (check_load_config, for the sweep's ranks) before it writes anything,
 * then writes DIR/trial-NNN/config.yaml (the resolved config of each
 * trial), DIR/trials.tsv (each trial's swept values), DIR/sweep.yaml (a
 * copy of the sweep file) and DIR/sweep.sbatch (a Slurm job array, one
 * task per trial, each task preemptible and resumable as
 * scripts/slurm/preemptible.sbatch is). With --local it then runs the
 * trials one after another under local.mpirun, skipping those already
 * done. Each run records its exit status in DIR/trial-NNN/exit_status.
 *
 * `sweep-report` reads every trial's metrics.jsonl (runlog.h) and writes
 * one table, sorted by the metric, to out and to DIR/report.md and
 * DIR/report.csv.
 *
 * Both run in one process without MPI (--local starts mpirun as a child).
 * Errors: 0, or an MS_E* code with one message for main.c to print:
 * MS_EUSAGE / MS_ECONFIG (exit 2) for bad arguments or a bad sweep file,
 * MS_EIO when a file cannot be written or a local trial failed, MS_ESTOP
 * when a local trial was stopped by a signal (run the command again to
 * continue). `usage` is written to out for --help.
 */
#ifndef MS_CMD_SWEEP_H
#define MS_CMD_SWEEP_H

#include <stdio.h>

int sweep_main(int argc, char **argv, const char *usage, FILE *out);

int sweep_report_main(int argc, char **argv, const char *usage, FILE *out);

#endif
