/* testutil — helpers the numeric cmocka tests share (linked into every
 * unit test by tests/CMakeLists.txt). */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <stdint.h>

/* Deterministic values in [-1, 1): element i of the stream `seed`. */
void tu_fill(float *x, long n, uint64_t seed);

/* Fails the running test unless |analytic - numeric| is within rtol of the
 * larger magnitude, or within atol. */
void tu_assert_close(double analytic, double numeric, double rtol, double atol);

#endif
