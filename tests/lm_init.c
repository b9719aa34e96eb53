/* lm_init — writes the checkpoint a run of CONFIG would start from (its
 * model initialised with run.seed, step 0), without data: a fixture for
 * tests of `midscale generate` before any training. CONFIG must give
 * model.input [T].
 *
 * usage: lm_init CONFIG DIR     (writes DIR/step-00000000.safetensors.zst)
 * Exit status 0, or 1 with a message on stderr. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "ckpt.h"
#include "config.h"
#include "model.h"
#include "ms_error.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: lm_init CONFIG DIR\n");
    return 1;
  }
  static ms_config cfg;
  static ckpt_tensor t[MS_MAX_PARAMS];
  char *text = NULL, *path = NULL;
  size_t len = 0;
  ms_model *m = NULL;
  int64_t T = 0;
  int rc = config_read_file(argv[1], &text, &len);
  if (!rc) rc = check_load_config(&cfg, text, len, argv[1], NULL, 0, 1);
  if (!rc && cfg.model.input.ndim != 1)
    rc = ms_error_set(MS_ECONFIG, "%s: lm_init needs model.input [T]", argv[1]);
  if (!rc) T = cfg.model.input.dims[0], rc = model_create(&m, &cfg, &T, 1, 1);
  if (!rc) {
    model_init(m, cfg.run.seed);
    for (int i = 0; i < m->n_p; i++) {
      t[i] = (ckpt_tensor){.name = m->p[i].name, .data = m->params + m->p[i].off,
                           .ndim = m->p[i].ndim};
      for (int d = 0; d < m->p[i].ndim; d++) t[i].shape[d] = m->p[i].shape[d];
    }
    ckpt_meta meta = {.world_size = 1, .seed = cfg.run.seed, .layout_hash = model_layout_hash(m),
                      .config = text};
    rc = ckpt_write(argv[2], t, m->n_p, &meta, 1, &path);
  }
  if (rc) fprintf(stderr, "lm_init: %s\n", ms_error_msg());
  else printf("%s\n", path);
  free(path);
  free(text);
  model_free(m);
  return rc ? 1 : 0;
}
