#include "infer.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ms_error.h"

/* Rank 0 reads the file and broadcasts its bytes, so a config that only
 * rank 0's node holds still works; each rank parses them. Collective. */
static int load_config(infer_model *im, const ranks *rk, const char *path,
                       const char *const *overrides, int n_overrides) {
  char *text = NULL;
  size_t len = 0;
  int rc = rk->w->rank == 0 ? config_read_file(path, &text, &len) : 0;
  if ((rc = ranks_agree(rk, rc))) goto done;
  rc = ms_from_comm(comm_bcast_bytes(rk->w, &text, &len, 0), comm_errmsg(rk->w));
  if (rc) goto done;
  rc = check_load_config(&im->cfg, text, len, path, overrides, n_overrides, 1);
  rc = ranks_agree(rk, rc);
done:
  free(text);
  return rc;
}

/* The input shape training gave the model (the header's order of
 * sources); the training inputs are opened without their labels and
 * without a memory budget, so only their shape is read. Rank-local. */
static int input_shape(const ms_config *c, const data_set *input, int64_t *shape) {
  if (c->model.input.ndim > 0) return check_input_shape(c, input, shape);
  data_set *train = NULL;
  if (data_open(&train, c->data.path, c->data.train_x, NULL, 0, NULL, 0) != 0)
    return check_input_shape(c, input, shape);
  int nd = check_input_shape(c, train, shape);
  data_close(train);
  return nd;
}

/* Copies the model's tensors out of a loaded checkpoint, by name, after
 * the layout hash and each shape matched. Rank 0. */
static int fill_params(ms_model *m, const char *path, const ckpt_contents *c) {
  uint64_t want = model_layout_hash(m);
  if (c->meta.layout_hash != want)
    return ms_error_set(MS_ECKPT,
                        "'%s' was made for another model (layout hash %016" PRIx64
                        ", this config's model %016" PRIx64
                        "): evaluate it with the config it was trained with",
                        path, c->meta.layout_hash, want);
  for (int i = 0; i < m->n_p; i++) {
    const ms_param *p = &m->p[i];
    const ckpt_tensor *t = NULL;
    for (int k = 0; k < c->n_tensors && !t; k++)
      if (strcmp(c->tensors[k].name, p->name) == 0) t = &c->tensors[k];
    int same = t && t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same)
      return ms_error_set(MS_ECKPT, "'%s' has no tensor '%s' of this config's shape", path,
                          p->name);
    memcpy(m->params + p->off, t->data, p->len * sizeof *m->params);
  }
  return 0;
}

/* Rank 0 reads and verifies the checkpoint, every rank gets its
 * parameters. Collective. */
static int load_params(infer_model *im, const ranks *rk, const char *path) {
  ckpt_contents c;
  memset(&c, 0, sizeof c);
  int rc = 0;
  if (rk->w->rank == 0) {
    rc = ckpt_load(path, &c);
    if (rc == 0) rc = fill_params(im->model, path, &c);
    im->step = c.meta.step;
  }
  ckpt_contents_free(&c);
  if ((rc = ranks_agree(rk, rc))) return rc;
  double step = (double)im->step;
  rc = ms_from_comm(comm_bcast_f32(rk->w, im->model->params, im->model->n_params, 0),
                    comm_errmsg(rk->w));
  if (rc == 0) rc = ms_from_comm(comm_allreduce_max_f64(rk->w, &step, 1), comm_errmsg(rk->w));
  im->step = (int64_t)step;
  return rc;
}

/* The input set against the model: features per sample and the
 * normalisation. Rank-local (every rank opened the same set). */
static int check_input(const infer_model *im, const data_set *input) {
  char err[DATA_ERRLEN] = "";
  size_t have = data_sample_elems(input);
  if ((long)have != im->model->in_features)
    return ms_error_set(MS_EDATA,
                        "'%s' in '%s' has %zu feature%s per sample, but the model takes %ld "
                        "(the shape it was trained on)",
                        data_x_name(input), data_path(input), have, have == 1 ? "" : "s",
                        im->model->in_features);
  return ms_from_data(data_norm_check(input, &im->norm, err, sizeof err), err);
}

int infer_config(infer_model *im, const ranks *rk, const char *config_path,
                 const char *const *overrides, int n_overrides) {
  memset(im, 0, sizeof *im);
  int rc = load_config(im, rk, config_path, overrides, n_overrides);
  if (rc) return rc;
  /* Every rank parsed the same config: they all return this together. */
  if (im->cfg.data.tokens)
    return ms_error_set(MS_ECONFIG,
                        "%s sets data.tokens: eval and predict read one sample per row with one "
                        "label, not token windows of a sequence model",
                        config_path);
  im->norm = check_data_norm(&im->cfg);
  data_allow_links(im->cfg.data.allow_links);
  return 0;
}

int infer_open_set(const infer_model *im, const char *path, const char *x_name, const char *y_name,
                   data_set **out) {
  const ms_config *c = &im->cfg;
  char err[DATA_ERRLEN] = "";
  data_cache cache = c->data.cache == MS_CACHE_MEMORY   ? DATA_CACHE_MEMORY
                     : c->data.cache == MS_CACHE_STREAM ? DATA_CACHE_STREAM
                                                        : DATA_CACHE_AUTO;
  return ms_from_data(data_open_cached(out, path, x_name, y_name, (size_t)c->data.memory_mb << 20,
                                       cache, err, sizeof err),
                      err);
}

int infer_load(infer_model *im, const ranks *rk, const char *ckpt_path, const data_set *input) {
  const ms_config *c = &im->cfg;
  int rc;
  im->chunk = c->train.eval_batch_size / rk->w->size;
  if (im->chunk < 1) im->chunk = 1;
  int64_t shape[MS_MAX_DIMS];
  int nd = input_shape(c, input, shape);
  rc = model_create(&im->model, c, shape, nd, (int)im->chunk);
  /* Its n_out is seq_T * vocab logits; the metrics and outputs here are one
   * row per sample, so they would read them as that many classes. */
  if (rc == 0 && im->model->seq_T > 0)
    rc = ms_error_set(MS_ECONFIG,
                      "the config describes a sequence model (%d positions of %d logits): eval "
                      "and predict take one label per sample",
                      im->model->seq_T, im->model->vocab);
  if ((rc = ranks_agree(rk, rc))) return rc;
  if ((rc = load_params(im, rk, ckpt_path))) return rc;
  return ranks_agree(rk, check_input(im, input));
}

void infer_close(infer_model *im) {
  model_free(im->model);
  im->model = NULL;
}
