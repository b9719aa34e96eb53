/* testutil — helpers the cmocka tests share (linked into every unit and MPI
 * test by tests/CMakeLists.txt): deterministic values, a tolerance check
 * and a reference convolution for the numeric tests, a substring assertion
 * for messages, and temporary directories. */
#ifndef MS_TESTUTIL_H
#define MS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "layers.h"

/* Deterministic values in [-1, 1): element i of the stream `seed`. */
void tu_fill(float *x, long n, uint64_t seed);

/* A conv2d forward by its definition, one output at a time in double:
 * out[(s, o, oh, ow)] = b[o] + the sum over (c, kh, kw) inside the
 * (zero-padded) input of x * w, for the n samples of x (NCHW) and the
 * geometry g (conv2d_geometry done; PyTorch's OIHW weights). */
void tu_conv2d_naive(const ms_conv2d *g, int n, const float *x, const float *w, const float *b,
                     double *out);

/* Fails the running test unless |analytic - numeric| is within rtol of the
 * larger magnitude, or within atol. */
void tu_assert_close(double analytic, double numeric, double rtol, double atol);

/* Fails the running test, showing the whole message, unless msg contains
 * sub. */
void tu_assert_contains(const char *msg, const char *sub);

/* Creates a fresh directory "$TMPDIR/ms_test_<name>_XXXXXX" (/tmp without
 * TMPDIR) and writes its path into dir (cap bytes).
 * @return 0, or -1 when it cannot be made. */
int tu_make_tmpdir(char *dir, size_t cap, const char *name);

/* Removes path and, when it is a directory, everything under it. Accepts a
 * path that does not exist. @return 0, or -1 when something remains. */
int tu_remove_tree(const char *path);

#endif
