#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sampler.h"

void tu_fill(float *x, long n, uint64_t seed) {
  for (long i = 0; i < n; i++)
    x[i] = (float)((sampler_mix64(seed * 1000003ULL + (uint64_t)i) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

void tu_conv2d_naive(const ms_conv2d *g, int n, const float *x, const float *w, const float *b,
                     double *out) {
  for (int s = 0; s < n; s++)
    for (int o = 0; o < g->OC; o++)
      for (int oh = 0; oh < g->OH; oh++)
        for (int ow = 0; ow < g->OW; ow++) {
          double d = b[o];
          for (int c = 0; c < g->C; c++)
            for (int kh = 0; kh < g->KH; kh++)
              for (int kw = 0; kw < g->KW; kw++) {
                int ih = oh * g->SH - g->PH + kh, iw = ow * g->SW - g->PW + kw;
                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                d += (double)x[((s * g->C + c) * g->H + ih) * g->W + iw] *
                     w[((o * g->C + c) * g->KH + kh) * g->KW + kw];
              }
          out[((s * g->OC + o) * g->OH + oh) * g->OW + ow] = d;
        }
}

void tu_assert_close(double analytic, double numeric, double rtol, double atol) {
  double diff = fabs(analytic - numeric);
  double scale = fmax(fabs(analytic), fabs(numeric));
  if (diff > atol && diff > rtol * scale)
    fail_msg("analytic %.7g vs numeric %.7g (diff %.3g)", analytic, numeric, diff);
}

void tu_assert_contains(const char *msg, const char *sub) {
  if (!msg || !strstr(msg, sub))
    fail_msg("message:\n%s\n-- does not contain:\n%s", msg ? msg : "(null)", sub);
}

int tu_make_tmpdir(char *dir, size_t cap, const char *name) {
  const char *base = getenv("TMPDIR");
  int n = snprintf(dir, cap, "%s/ms_test_%s_XXXXXX", base && *base ? base : "/tmp", name);
  if (n < 0 || (size_t)n >= cap) return -1;
  return mkdtemp(dir) ? 0 : -1;
}

int tu_remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0; /* nothing there */
  if (!S_ISDIR(st.st_mode)) return unlink(path);
  DIR *d = opendir(path);
  int rc = d ? 0 : -1;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    char *sub = malloc(len);
    if (!sub) {
      rc = -1;
      break;
    }
    snprintf(sub, len, "%s/%s", path, e->d_name);
    if (tu_remove_tree(sub) != 0) rc = -1;
    free(sub);
  }
  if (d) closedir(d);
  return rmdir(path) != 0 ? -1 : rc;
}
