#include "blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dnn.h"

const char *blas_corename(void) {
  const char *name = openblas_get_corename();
  return name ? name : "unknown";
}

const char *blas_suggested_coretype(void) {
  if (getenv("OPENBLAS_CORETYPE")) return NULL;
  const char *core = blas_corename();
  /* The generic x86-64 fallbacks that OpenBLAS reports for CPUs it does not
   * recognise. */
  static const char *const generic[] = {"Prescott", "Core2", "Nehalem", "Atom", "Katmai",
                                        "Coppermine", "Northwood", "Banias", "Opteron",
                                        "Opteron_SSE3", "Barcelona"};
  int is_generic = 0;
  for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
    if (strcmp(core, generic[i]) == 0) is_generic = 1;
  if (!is_generic) return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

void blas_set_threads(int n) {
  openblas_set_num_threads(n < 1 ? 1 : n);
  dnn_set_threads(n);
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double blas_sgemm_peak(void) {
  enum { N = 256 };
  float *a = malloc(sizeof(float) * 3 * N * N);
  if (!a) return 0.0;
  float *b = a + N * N, *c = b + N * N;
  for (int i = 0; i < N * N; i++) a[i] = (float)(i % 7) * 0.25f, b[i] = (float)(i % 5) * 0.5f;
  int threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  double best = 1e30, start = seconds();
  /* The first product warms the caches and the kernel; keep the fastest. */
  for (int rep = 0; rep < 8 && (rep < 3 || seconds() - start < 2e-3); rep++) {
    double t = seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
    t = seconds() - t;
    if (rep > 0 && t < best) best = t;
  }
  openblas_set_num_threads(threads);
  free(a);
  return best < 1e30 && best > 0 ? 2.0 * N * N * N / best : 0.0;
}
