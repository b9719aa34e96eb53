/* config_validate — what a parsed config must satisfy before anything runs:
 * the bounds of every key, the rules of each layer's type, the cross-field
 * checks (config_validate), and the checks that need the dataset or the
 * length of the run (config_check_input, config_check_steps).
 */
#include "config.h"

#include "config_internal.h"
#include "ms_error.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounds, and the rules of layer items ------------------------------------ */

/* The problem of the numeric, bool or K_ENUM field of row k inside base, as
 * "expected ..., found ..." in why (n bytes). @return 1, or 0 when the value
 * is within bounds (other types always are, here). */
int cfg_bounds_problem(const key_spec *k, const void *base, char *why, size_t n) {
  const char *field = (const char *)base + k->off;
  char want[160], got[40];
  int iv;
  double dv;
  switch (k->type) {
    case K_INT:
    case K_BOOL:
      memcpy(&iv, field, sizeof iv);
      if (k->type == K_BOOL)
        snprintf(want, sizeof want, "true or false");
      else
        cfg_range_desc(k, want, sizeof want);
      if (cfg_in_range(k, iv)) return 0;
      snprintf(why, n, "expected %s, found %d", want, iv);
      return 1;
    case K_ENUM:
      memcpy(&iv, field, sizeof iv);
      if (cfg_enum_valid(k, iv)) return 0;
      cfg_allowed_list(k, want, sizeof want);
      snprintf(why, n, "expected one of %s, found %d", want, iv);
      return 1;
    case K_DBL:
      memcpy(&dv, field, sizeof dv);
      if (isfinite(dv) && cfg_in_range(k, dv)) return 0;
      cfg_range_desc(k, want, sizeof want);
      cfg_fmt_double(got, sizeof got, dv);
      snprintf(why, n, "expected %s, found %s", want, got);
      return 1;
    default: return 0;
  }
}

/* The problem of row `row` of layer l under the rules of its type, in why
 * (n bytes), without the "model.layers[i].key: " prefix: a key of another
 * type that does not hold its default, alpha without leaky_relu, a value out
 * of bounds, a needed key missing (`missing`: the file did not give it, so it
 * is "found nothing"), an activation layer without an activation. The type
 * row is checked alone; the others need a valid type.
 * @return 1, or 0 when there is none. */
int cfg_layer_key_problem(const ms_layer_cfg *l, size_t row, int missing, char *why, size_t n) {
  const key_spec *k = &cfg_layer_keys[row];
  const key_spec *acts = &cfg_layer_keys[LAYER_ACTIVATION];
  unsigned type = (unsigned)l->type;
  char want[160];
  if (row == LAYER_TYPE) return cfg_bounds_problem(k, l, why, n);
  if (type >= CFG_N_LAYER_TYPES) return 0;
  const char *tname = cfg_enum_name(&cfg_layer_keys[LAYER_TYPE], (int)type);
  int needed = (k->needs >> type) & 1, is_default = cfg_layer_key_is_default(l, row);
  if (!cfg_layer_key_applies(l, row)) {
    if (is_default) return 0;
    if ((k->uses >> type) & 1) { /* alpha, under another activation */
      snprintf(why, n,
               "only used with activation leaky_relu (its slope below 0), found activation %s",
               cfg_enum_name(acts, (int)l->activation));
      return 1;
    }
    cfg_layer_type_keys((int)type, want, sizeof want);
    snprintf(why, n, "not a key of a %s layer (%s); %s%s%s", tname, cfg_layer_type_docs[type].note,
             want[0] ? "its keys: " : "it has no keys besides type", want,
             row == LAYER_ACTIVATION ? "; add a layer {type: activation, activation: ...} after it"
                                     : "");
    return 1;
  }
  if (needed && is_default && missing) {
    cfg_range_desc(k, want, sizeof want);
    snprintf(why, n, "expected %s, found nothing (every %s layer needs %s)", want, tname, k->path);
    return 1;
  }
  if (cfg_bounds_problem(k, l, why, n)) {
    size_t len = strlen(why);
    if (needed && is_default)
      snprintf(why + len, n - len, " (every %s layer needs %s)", tname, k->path);
    return 1;
  }
  if (row == LAYER_ACTIVATION && type == MS_LAYER_ACTIVATION && l->activation == MS_ACT_NONE) {
    size_t len = 0;
    for (int a = MS_ACT_NONE + 1; k->allowed[a] && len < sizeof want; a++)
      len +=
          (size_t)snprintf(want + len, sizeof want - len, "%s%s", len ? ", " : "", k->allowed[a]);
    snprintf(why, n,
             "expected one of %s on an activation layer (it only applies its activation), "
             "found none",
             want);
    return 1;
  }
  return 0;
}

static void validate_field(cfg_errlist *e, const key_spec *k, const void *base, const char *path) {
  const char *field = (const char *)base + k->off;
  char want[160], why[WHY_MAX], got[40];
  switch (k->type) {
    case K_STR:
      if (!memchr(field, '\0', k->size))
        cfg_err_add(e, NULL,
                    "%s: expected a string of at most %zu bytes, found an unterminated one", path,
                    k->size - 1);
      else if ((k->flags & F_REQUIRED) && !field[0])
        cfg_err_add(e, NULL, "%s is required (%s)", path, k->doc);
      break;
    case K_INT:
    case K_BOOL:
    case K_ENUM:
    case K_DBL:
      if (cfg_bounds_problem(k, base, why, sizeof why)) cfg_err_add(e, NULL, "%s: %s", path, why);
      break;
    case K_DIMS: {
      ms_dims d;
      memcpy(&d, field, sizeof d);
      if (d.ndim < 0 || d.ndim > MS_MAX_DIMS) {
        cfg_err_add(e, NULL, "%s: expected 0 to %d dimensions, found %d", path, MS_MAX_DIMS,
                    d.ndim);
        break;
      }
      cfg_range_desc(k, want, sizeof want);
      for (int i = 0; i < d.ndim; i++)
        if (!cfg_in_range(k, d.dims[i]))
          cfg_err_add(e, NULL, "%s: item %d: expected %s, found %d", path, i, want, d.dims[i]);
      break;
    }
    case K_FLOATS: {
      int n;
      memcpy(&n, field, sizeof n);
      if (n < 0 || n > MS_NORM_MAX) {
        cfg_err_add(e, NULL, "%s: expected 0 to %d numbers, found %d", path, MS_NORM_MAX, n);
        break;
      }
      const float *v = (const float *)(field + offsetof(ms_floats, v));
      cfg_range_desc(k, want, sizeof want);
      for (int i = 0; i < n; i++)
        if (!isfinite(v[i]) || !cfg_in_range(k, v[i])) {
          cfg_fmt_double(got, sizeof got, v[i]);
          cfg_err_add(e, NULL, "%s: item %d: expected %s, found %s", path, i,
                      isfinite(v[i]) ? want : "a finite number", got);
        }
      break;
    }
    case K_U64:
    case K_LAYERS: break;
  }
}

int config_validate(const ms_config *cfg, int world_size) {
  cfg_errlist e = {0};
  char why[WHY_MAX];
  int n = cfg->model.n_layers;
  /* The losses that take logits; mse and mae take the last layer as it is. */
  int logits = cfg->model.loss == MS_LOSS_XENT || cfg->model.loss == MS_LOSS_BCE;
  int classes = cfg->model.loss == MS_LOSS_XENT;
  const char *loss = config_enum_name("model.loss", (int)cfg->model.loss);
  for (size_t i = 0; i < cfg_n_keys; i++) validate_field(&e, &cfg_keys[i], cfg, cfg_keys[i].path);
  if (n < 1 || n > MS_MAX_LAYERS) {
    cfg_err_add(&e, NULL, "model.layers is required: expected 1 to %d layers, found %d",
                MS_MAX_LAYERS, n);
  } else {
    const ms_layer_cfg *last = &cfg->model.layers[n - 1];
    const key_spec *acts = &cfg_layer_keys[LAYER_ACTIVATION];
    for (int l = 0; l < n; l++)
      for (size_t j = 0; j < cfg_n_layer_keys; j++)
        if (cfg_layer_key_problem(&cfg->model.layers[l], j, 0, why, sizeof why))
          cfg_err_add(&e, NULL, "model.layers[%d].%s: %s", l, cfg_layer_keys[j].path, why);
    int act = (int)last->activation;
    if (logits && act != MS_ACT_NONE && cfg_enum_valid(acts, act))
      cfg_err_add(&e, NULL,
                  "model.layers[%d].activation: expected none on the last layer (it produces "
                  "the logits for %s), found %s",
                  n - 1, loss, cfg_enum_name(acts, act));
    if (classes && cfg->train.eval_top_k > 0 && last->type == MS_LAYER_DENSE && last->units > 0 &&
        cfg->train.eval_top_k > last->units)
      cfg_err_add(&e, NULL,
                  "train.eval_top_k %d is more than the %d classes of the last layer "
                  "(model.layers[%d].units)",
                  cfg->train.eval_top_k, last->units, n - 1);
  }
  if (cfg->model.label_smoothing != 0 && !classes)
    cfg_err_add(&e, NULL,
                "model.label_smoothing: only softmax_cross_entropy smooths its labels, found "
                "model.loss %s (set label_smoothing 0)",
                loss);
  if (cfg->train.eval_top_k > 0 && !classes)
    cfg_err_add(
        &e, NULL,
        "train.eval_top_k: top-k accuracy needs classes (model.loss softmax_cross_entropy), "
        "found model.loss %s (set eval_top_k 0)",
        loss);
  if (cfg->data.tokens && cfg->data.seq_len < 1)
    cfg_err_add(&e, NULL, "data.seq_len: data.tokens needs a window length of 1 or more");
  if (!cfg->data.tokens && (cfg->data.seq_len || cfg->data.stride))
    cfg_err_add(&e, NULL, "data.seq_len and data.stride apply to token sets only (data.tokens)");
  if (cfg->data.tokens && (cfg->data.scale != 1.0 || cfg->data.mean.n || cfg->data.std.n))
    cfg_err_add(&e, NULL,
                "data.scale, data.mean and data.std do not apply to token ids (data.tokens)");
  if (cfg->data.test_x[0] && !cfg->data.test_y[0])
    cfg_err_add(&e, NULL, "data.test_y is required when data.test_x is set (\"\" = no evaluation)");
  if (world_size < 1)
    cfg_err_add(&e, NULL, "world size %d: expected at least 1 rank", world_size);
  else if (cfg->train.batch_size > 0 && cfg->train.batch_size % world_size)
    cfg_err_add(&e, NULL,
                "train.batch_size %d is not divisible by the world size %d: the global batch "
                "is split evenly across ranks",
                cfg->train.batch_size, world_size);
  if (cfg->train.max_steps > 0 && cfg->schedule.warmup_steps >= cfg->train.max_steps)
    cfg_err_add(&e, NULL,
                "schedule.warmup_steps %d is not less than train.max_steps %d: the run would end "
                "before the warmup does",
                cfg->schedule.warmup_steps, cfg->train.max_steps);
  int64_t features = config_input_features(cfg);
  if (features > INT_MAX)
    cfg_err_add(&e, NULL, "model.input: expected at most %d features in all, found %lld", INT_MAX,
                (long long)features);
  return cfg_err_finish(&e);
}

/* ---- cross-field checks that need the data ----------------------------------- */

int64_t config_input_features(const ms_config *cfg) {
  const ms_dims *d = &cfg->model.input;
  int64_t f = 1;
  if (d->ndim <= 0) return 0;
  for (int i = 0; i < d->ndim && i < MS_MAX_DIMS; i++) {
    if (d->dims[i] <= 0) return 0;
    f = f > INT64_MAX / d->dims[i] ? INT64_MAX : f * d->dims[i]; /* saturates */
  }
  return f;
}

int config_check_input(const ms_config *cfg, const uint64_t *shape, int ndim, const char *source) {
  sbuf a = {0}, b = {0};
  uint64_t have = 1;
  int64_t want = config_input_features(cfg);
  if (want == 0) return 0;
  cfg_sb_printf(&b, "[");
  for (int i = 0; i < ndim; i++) {
    have = shape[i] && have > UINT64_MAX / shape[i] ? UINT64_MAX : have * shape[i];
    cfg_sb_printf(&b, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
  }
  cfg_sb_printf(&b, "]");
  if ((uint64_t)want == have) {
    free(b.s);
    return 0;
  }
  cfg_emit_dims(&a, &cfg->model.input);
  int rc = a.oom || b.oom
               ? ms_error_set(MS_ENOMEM, "out of memory comparing model.input with the data")
               : ms_error_set(MS_ECONFIG,
                              "model.input %s (%lld features) does not match the samples of %s, "
                              "of shape %s (%llu features): inputs are flattened, so both must "
                              "have the same number of features",
                              a.s, (long long)want, source, b.s, (unsigned long long)have);
  free(a.s);
  free(b.s);
  return rc;
}

int config_check_steps(const ms_config *cfg, int64_t total_steps) {
  if (cfg->schedule.warmup_steps > 0 && cfg->schedule.warmup_steps >= total_steps)
    return ms_error_set(MS_ECONFIG,
                        "schedule.warmup_steps %d is not less than the %lld steps of this run "
                        "(from train.epochs, train.batch_size, the number of training samples "
                        "and train.max_steps): the run would end before the warmup does",
                        cfg->schedule.warmup_steps, (long long)total_steps);
  return 0;
}
