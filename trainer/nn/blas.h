/* blas — which BLAS kernel runs, and how many threads it uses.
 *
 * OpenBLAS picks its kernels when the library loads, from the CPU it
 * detects. Debian's OpenBLAS 0.3.21 does not know some newer CPUs (AMD Zen 4,
 * some virtualised Xeons) and falls back to the generic "Prescott" kernels,
 * about 4x slower for sgemm than the AVX-512 ones. OPENBLAS_CORETYPE fixes
 * the choice but is read only when the library loads, so midscale checks at
 * start-up and, when the detected core is generic on a CPU with AVX2 or
 * AVX-512, re-executes itself with the variable set (before MPI starts).
 * MIDSCALE_BLAS_AUTOFIX=0 turns that off; a user-set OPENBLAS_CORETYPE is
 * never overridden.
 */
#ifndef MS_BLAS_H
#define MS_BLAS_H

/* @return OpenBLAS's name of the kernel in use ("SkylakeX", "Prescott", ...),
 * or "unknown" for another BLAS. */
const char *blas_corename(void);

/* @return the OPENBLAS_CORETYPE this CPU should use when the detected core is
 * a generic fallback ("SkylakeX" with AVX-512, "Haswell" with AVX2), or NULL
 * when nothing needs fixing (good core detected, variable already set, or
 * the CPU has neither). */
const char *blas_suggested_coretype(void);

/* The single-core sgemm rate in FLOP/s: the best of a few 256x256x256
 * products (about 1-2 ms in all), on one BLAS thread (the count is
 * restored). A noisy machine lowers it. @return 0 when out of memory. */
double blas_sgemm_peak(void);

/* Sets the thread count of both kernel libraries for this process (n >= 1):
 * OpenBLAS's, and oneDNN's OpenMP threads for the calling thread's parallel
 * regions (dnn_set_threads). Call it from the thread that runs the model,
 * with the per-rank share of the node's cores, so that ranks sharing a node
 * do not oversubscribe it. */
void blas_set_threads(int n);

#endif
