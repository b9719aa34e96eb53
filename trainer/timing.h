/* timing — where a run's wall time goes, and how fast the model computes.
 *
 * The trainer accumulates, per rank, seconds in five parts of the loop:
 * compute (forward, backward, optimizer, minus the reducer's calls inside
 * backward), exposed communication (the gradient sync that backward did
 * not hide, the step agreement, the reducer's calls from the backward
 * hook), data wait (reading the batch), checkpoint stall (what the step
 * loop waited for a checkpoint) and evaluation. timing_report turns an
 * interval's mean over ranks into fractions of its wall time ("other" is
 * the rest: logging, the loop, imbalance not spent in a collective) and
 * into throughput: samples/s, model FLOP/s per rank (training counts as 3x
 * the forward FLOPs: backward computes two products per forward one) and
 * the fraction of the single-core sgemm peak (blas_sgemm_peak) times the
 * BLAS threads per rank.
 *
 * Pure arithmetic and formatting: no MPI, no allocation.
 */
#ifndef MS_TIMING_H
#define MS_TIMING_H

#include <stddef.h>
#include <stdint.h>

enum { T_COMPUTE = 0, T_COMM, T_DATA, T_CKPT, T_EVAL, T_PARTS };

typedef struct {
  double wall;              /* seconds of the interval */
  double t[T_PARTS];        /* seconds per part, mean over ranks */
  double samples;           /* samples trained in the interval (all ranks) */
  double flops_per_sample;  /* forward (model_flops_per_sample) */
  int world;                /* ranks */
  int threads;              /* BLAS threads per rank */
  double peak;              /* single-core sgemm FLOP/s; 0 = not measured */
} ms_interval;

typedef struct {
  double frac[T_PARTS];   /* of wall */
  double other;           /* 1 - their sum (>= 0) */
  double samples_per_s;
  double flops_per_rank;  /* model FLOP/s per rank */
  double peak_frac;       /* flops_per_rank / (peak * threads); 0 when peak is 0 */
} ms_breakdown;

void timing_breakdown(const ms_interval *iv, ms_breakdown *b);

/* "compute 71.2% | comm 10.3% | data 4.1% | checkpoint 0.8% | eval 3.0% |
 * other 10.6%" into text, and the same as JSON members
 * ("\"compute\":0.712,...,\"samples_per_s\":...,\"gflops_per_rank\":...,
 * \"peak_frac\":...") into json (no braces). */
void timing_format(const ms_breakdown *b, char *text, size_t tn, char *json, size_t jn);

#endif
