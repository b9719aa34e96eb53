#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "sampler.h"

void tu_fill(float *x, long n, uint64_t seed) {
  for (long i = 0; i < n; i++)
    x[i] = (float)((sampler_mix64(seed * 1000003ULL + (uint64_t)i) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

void tu_assert_close(double analytic, double numeric, double rtol, double atol) {
  double diff = fabs(analytic - numeric);
  double scale = fmax(fabs(analytic), fabs(numeric));
  if (diff > atol && diff > rtol * scale)
    fail_msg("analytic %.7g vs numeric %.7g (diff %.3g)", analytic, numeric, diff);
}
