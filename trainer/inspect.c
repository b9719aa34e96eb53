#include "inspect.h"

#include <inttypes.h>
#include <math.h>
#include <sys/stat.h>

#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "ms_error.h"

static void shape_str(char *buf, size_t cap, const ckpt_tensor *t) {
  int off = snprintf(buf, cap, "[");
  for (int d = 0; d < t->ndim && off < (int)cap; d++)
    off += snprintf(buf + off, cap - (size_t)off, "%s%" PRId64, d ? ", " : "", t->shape[d]);
  if (off < (int)cap) snprintf(buf + off, cap - (size_t)off, "]");
}

int inspect_checkpoint(const char *path, int show_config, FILE *out) {
  ckpt_contents c;
  int rc = ckpt_load(path, &c);
  if (rc) return rc;
  const ckpt_meta *m = &c.meta;
  struct stat st;
  long long file_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
  long long raw = 0;
  for (int i = 0; i < c.n_tensors; i++) {
    long long n = 1;
    for (int d = 0; d < c.tensors[i].ndim; d++) n *= c.tensors[i].shape[d];
    raw += n * (long long)sizeof(float);
  }
  fprintf(out, "%s: verified (zstd checksum, data hash, header)\n", path);
  fprintf(out, "  step %" PRId64 ", epoch %" PRId64 ", step in epoch %" PRId64
               ", saved on %d rank(s), seed %" PRIu64 "\n",
          m->step, m->epoch, m->step_in_epoch, m->world_size, m->seed);
  fprintf(out, "  layout hash %016" PRIx64 ", rng state %016" PRIx64 "\n", m->layout_hash,
          m->rng_state);
  fprintf(out, "  %lld bytes on disk, %lld tensor bytes, ratio %.3f\n", file_bytes, raw,
          file_bytes > 0 ? (double)raw / (double)file_bytes : 0.0);
  fprintf(out, "\n  %-36s %-7s %-16s %12s %12s %12s %12s\n", "tensor", "dtype", "shape",
          "elements", "min", "max", "mean|x|");
  for (int i = 0; i < c.n_tensors; i++) {
    const ckpt_tensor *t = &c.tensors[i];
    long long n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    double lo = INFINITY, hi = -INFINITY, abs_sum = 0;
    for (long long k = 0; k < n; k++) {
      double v = t->data[k];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      abs_sum += fabs(v);
    }
    char shape[64], name[256];
    shape_str(shape, sizeof shape, t);
    fprintf(out, "  %-36s %-7s %-16s %12lld %12.5g %12.5g %12.5g\n",
            ms_escape(t->name, 0, name, sizeof name), "F32", shape, n,
            n ? lo : 0.0, n ? hi : 0.0, n ? abs_sum / (double)n : 0.0);
  }
  if (show_config && m->config) {
    /* The config as stored, printable: no terminal escape from the file. */
    size_t cap = 4 * strlen(m->config) + 8;
    char *safe = malloc(cap);
    if (!safe) {
      ckpt_contents_free(&c);
      return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
    }
    fprintf(out, "\nconfig:\n%s", ms_escape(m->config, 1, safe, cap));
    free(safe);
  } else if (show_config) {
    fprintf(out, "\nconfig:\n");
  }
  ckpt_contents_free(&c);
  return 0;
}
