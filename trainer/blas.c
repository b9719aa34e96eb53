#include "blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

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

void blas_set_threads(int n) { openblas_set_num_threads(n < 1 ? 1 : n); }
