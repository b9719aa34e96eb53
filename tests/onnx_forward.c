/* onnx_forward — midscale's own inference outputs for the ONNX export's test
 * (tests/e2e/onnx_export.sh): the model of a checkpoint, built from its
 * saved config exactly as training builds it (check_input_shape on the
 * training set, model_create, fp32 kernels), its parameters from the file,
 * and the first N samples of a dataset read through the run's own loader
 * path (data_read with data.scale/mean/std), forward in inference mode
 * (dropout off). Writes the (N, n_out) outputs as raw little-endian float32.
 *
 * usage: onnx_forward CHECKPOINT DATA.h5 X_DATASET Y_DATASET N OUT.f32
 * Exit status 0, or 1 with a message on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ckpt.h"
#include "config.h"
#include "dataset.h"
#include "model.h"
#include "ms_error.h"

static int die(const char *what) {
  fprintf(stderr, "onnx_forward: %s: %s\n", what, ms_error_msg());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: onnx_forward CHECKPOINT DATA.h5 X_DATASET Y_DATASET N OUT.f32\n");
    return 1;
  }
  long n = atol(argv[5]);
  ckpt_contents c;
  if (ckpt_load(argv[1], &c)) return die(argv[1]);
  static ms_config cfg;
  config_defaults(&cfg);
  if (!c.meta.config || config_parse(&cfg, c.meta.config, strlen(c.meta.config), "saved config"))
    return die("saved config");
  /* The export is the fp32 forward: compare with it whatever the run used. */
  cfg.model.precision = MS_PRECISION_FP32;
  char err[MS_MSG_MAX];
  data_set *ds = NULL;
  if (data_open(&ds, argv[2], argv[3], argv[4], (size_t)1 << 30, err, sizeof err)) {
    fprintf(stderr, "onnx_forward: %s\n", err);
    return 1;
  }
  if (n < 1 || (uint64_t)n > data_count(ds)) {
    fprintf(stderr, "onnx_forward: N must be 1..%llu\n", (unsigned long long)data_count(ds));
    return 1;
  }
  int64_t shape[MS_MAX_DIMS];
  int nd = check_input_shape(&cfg, ds, shape);
  ms_model *m = NULL;
  if (model_create(&m, &cfg, shape, nd, (int)n)) return die("model");
  for (int i = 0; i < m->n_p; i++) {
    const ms_param *p = &m->p[i];
    int found = 0;
    for (int k = 0; k < c.n_tensors && !found; k++)
      if (strcmp(c.tensors[k].name, p->name) == 0) {
        memcpy(m->params + p->off, c.tensors[k].data, sizeof(float) * p->len);
        found = 1;
      }
    if (!found) {
      fprintf(stderr, "onnx_forward: %s: no tensor %s\n", argv[1], p->name);
      return 1;
    }
  }
  size_t e = data_sample_elems(ds);
  float *x = malloc(sizeof(float) * e * (size_t)n);
  uint64_t *idx = malloc(sizeof(uint64_t) * (size_t)n);
  if (!x || !idx) return 1;
  for (long i = 0; i < n; i++) idx[i] = (uint64_t)i;
  data_norm norm = check_data_norm(&cfg);
  if (data_read(ds, idx, (size_t)n, &norm, x, NULL, NULL, err, sizeof err)) {
    fprintf(stderr, "onnx_forward: %s\n", err);
    return 1;
  }
  const float *y = model_forward(m, x, (int)n, NULL);
  FILE *f = fopen(argv[6], "wb");
  if (!f || fwrite(y, sizeof(float), (size_t)n * (size_t)m->n_out, f) != (size_t)n * (size_t)m->n_out ||
      fclose(f) != 0) {
    fprintf(stderr, "onnx_forward: cannot write %s\n", argv[6]);
    return 1;
  }
  printf("%ld samples, %ld outputs each\n", n, m->n_out);
  free(idx);
  free(x);
  model_free(m);
  data_close(ds);
  ckpt_contents_free(&c);
  return 0;
}
