/* `midscale eval`: scores a checkpoint on a split of its data or on any
 * (inputs, labels) pair of an HDF5 file, through evaluate.c's evaluation
 * (every sample counted once, whatever the world), and reports it as text
 * or JSON. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cmd.h"
#include "evaluate.h"
#include "infer.h"
#include "ms_error.h"

/* Beyond this many classes the text report leaves the confusion matrix to
 * --json: a wider one does not fit a terminal. */
#define TEXT_MATRIX_MAX 32

const char cmd_eval_usage[] =
    "usage: [mpirun -np N] midscale eval CONFIG CHECKPOINT [--split test|train|PATH:DATASET]\n"
    "                                   [--labels DATASET] [--json] [--set KEY=VALUE]...\n"
    "\n"
    "Scores the model CONFIG describes, with the parameters of CHECKPOINT, on\n"
    "every sample of a set, each counted exactly once across the ranks (a\n"
    "world that does not divide the set leaves no sample out and repeats none).\n"
    "\n"
    "  --split test       data.test_x / data.test_y of data.path (the default)\n"
    "  --split train      data.train_x / data.train_y\n"
    "  --split PATH:DATASET  the inputs DATASET of the HDF5 file PATH; the labels\n"
    "                     are the dataset beside it named as data.test_y's last\n"
    "                     component (inputs /eval/x, test_y /test/labels:\n"
    "                     /eval/labels), or --labels DATASET\n"
    "  --labels DATASET   the labels' dataset in the same file (any split)\n"
    "  --json             one JSON object on stdout instead of the text report\n"
    "  --set KEY=VALUE    override a config key, as for train (repeatable)\n"
    "\n"
    "Classifiers: loss, accuracy, top-k accuracy (train.eval_top_k), a per-class\n"
    "table (samples, recall, precision, F1) and the confusion matrix (rows: true\n"
    "class, columns: predicted; in text up to 32 classes). Regression: loss,\n"
    "MSE, MAE and R^2 (per output when there are several). bce_with_logits: loss\n"
    "and the share of outputs on the target's side of 0.5. The evaluation is the\n"
    "one training runs at the end of each epoch: the test accuracy it prints for\n"
    "the final checkpoint is the run's final test accuracy. The input shape is\n"
    "the one training gave the model (model.input, or data.train_x's).\n"
    "\n"
    "exit codes: 0 done, 2 usage or config error, 3 data error (a missing\n"
    "            dataset, features or labels that do not fit the model),\n"
    "            4 checkpoint error (damaged, or made for another model)\n";

typedef struct {
  const char *config, *ckpt, *split, *labels;
  int json;
  const char *overrides[CMD_MAX_OVERRIDES];
  int n_overrides;
} eval_args;

static int parse_args(int argc, char **argv, eval_args *a) {
  memset(a, 0, sizeof *a);
  a->split = "test";
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    int set = cmd_take_set(argc, argv, &i, a->overrides, &a->n_overrides);
    if (set < 0) return set;
    if (set) continue;
    if ((strcmp(s, "--split") == 0 || strcmp(s, "--labels") == 0) && i + 1 < argc)
      *(s[2] == 's' ? &a->split : &a->labels) = argv[++i];
    else if (strcmp(s, "--json") == 0)
      a->json = 1;
    else if (s[0] == '-' && s[1])
      return ms_error_set(
          MS_EUSAGE, "eval: unknown option or missing value '%s' (see 'midscale help eval')", s);
    else if (!a->config)
      a->config = s;
    else if (!a->ckpt)
      a->ckpt = s;
    else
      return ms_error_set(MS_EUSAGE, "eval: unexpected argument '%s'", s);
  }
  if (!a->ckpt)
    return ms_error_set(MS_EUSAGE, "eval needs CONFIG and CHECKPOINT (see 'midscale help eval')");
  return 0;
}

/* The set --split and --labels name: file, inputs, labels. */
static int resolve_split(const ms_config *c, const eval_args *a, char *path, char *x, char *y) {
  const char *base;
  if (strcmp(a->split, "test") == 0 || strcmp(a->split, "train") == 0) {
    int test = a->split[1] == 'e';
    if (test && !c->data.test_x[0])
      return ms_error_set(MS_ECONFIG,
                          "%s sets no data.test_x: choose --split train or --split PATH:DATASET",
                          a->config);
    snprintf(path, MS_PATH_MAX, "%s", c->data.path);
    snprintf(x, MS_NAME_MAX, "%s", test ? c->data.test_x : c->data.train_x);
    snprintf(y, MS_NAME_MAX, "%s", a->labels ? a->labels : test ? c->data.test_y : c->data.train_y);
    return 0;
  }
  int rc = cmd_split_target(a->split, path, MS_PATH_MAX, x, MS_NAME_MAX);
  if (rc)
    return ms_error_set(MS_EUSAGE, "--split takes test, train or PATH:DATASET: %s", ms_error_msg());
  if (a->labels) {
    snprintf(y, MS_NAME_MAX, "%s", a->labels);
    return 0;
  }
  const char *ty = c->data.test_y[0] ? c->data.test_y : c->data.train_y;
  base = strrchr(ty, '/') ? strrchr(ty, '/') + 1 : ty;
  const char *slash = strrchr(x, '/');
  int dir = slash ? (int)(slash - x) + 1 : 0;
  if (snprintf(y, MS_NAME_MAX, "%.*s%s", dir, x, base) >= MS_NAME_MAX)
    return ms_error_set(MS_EUSAGE, "the labels' name beside '%s' is too long", x);
  return 0;
}

/* Per class k of a confusion matrix: samples, hits, recall, precision, F1
 * (NaN where a count is 0). */
typedef struct {
  double samples, hits, recall, precision, f1;
} class_row;

static class_row class_of(const eval_detail *d, int k) {
  const int K = d->n_classes;
  double row = 0, col = 0, hit = d->confusion[(size_t)k * K + k];
  for (int j = 0; j < K; j++)
    row += d->confusion[(size_t)k * K + j], col += d->confusion[(size_t)j * K + k];
  double r = row > 0 ? hit / row : NAN, p = col > 0 ? hit / col : NAN;
  double f = isnan(r) || isnan(p) ? NAN : r + p > 0 ? 2 * r * p / (r + p) : 0.0;
  return (class_row){row, hit, r, p, f};
}

static void print_metric(FILE *out, double v) {
  if (isnan(v))
    fprintf(out, " %9s", "-");
  else
    fprintf(out, " %9.4f", v);
}

static void print_classes(FILE *out, const eval_detail *d) {
  const int K = d->n_classes;
  fprintf(out, "\nper class:\n  %5s %9s %9s %9s %9s %9s\n", "class", "samples", "correct", "recall",
          "precision", "f1");
  for (int k = 0; k < K; k++) {
    class_row c = class_of(d, k);
    fprintf(out, "  %5d %9.0f %9.0f", k, c.samples, c.hits);
    print_metric(out, c.recall);
    print_metric(out, c.precision);
    print_metric(out, c.f1);
    fputc('\n', out);
  }
  if (K > TEXT_MATRIX_MAX) {
    fprintf(out, "\nconfusion matrix: %d classes, in --json only\n", K);
    return;
  }
  fprintf(out, "\nconfusion matrix (rows: true class, columns: predicted class):\n  %5s", "");
  for (int j = 0; j < K; j++) fprintf(out, " %6d", j);
  fputc('\n', out);
  for (int k = 0; k < K; k++) {
    fprintf(out, "  %5d", k);
    for (int j = 0; j < K; j++) fprintf(out, " %6.0f", d->confusion[(size_t)k * K + j]);
    fputc('\n', out);
  }
}

static void print_text(FILE *out, const char *word, const ms_eval *e, const eval_detail *d,
                       const char *loss_name) {
  if (e->classifier || e->binary)
    fprintf(out, "%s accuracy %.4f (loss %.4f)\n", word, e->acc, e->loss);
  else
    fprintf(out, "%s loss %.6g (%s)\n", word, e->loss, loss_name);
  if (e->top_k > 0) fprintf(out, "%s top-%d accuracy %.4f\n", word, e->top_k, e->topk_acc);
  if (e->binary) fprintf(out, "(accuracy: the share of outputs on the target's side of 0.5)\n");
  if (d->n_out > 0) {
    fprintf(out, "%s mse %.6g  mae %.6g  r2 %.6g\n", word, e->mse, e->mae, d->r2_mean);
    for (int k = 0; d->n_out > 1 && k < d->n_out; k++)
      fprintf(out, "  output %d: r2 %.6g\n", k, d->r2[k]);
  }
  if (d->n_classes > 0) print_classes(out, d);
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *json_report(const eval_args *a, const infer_model *im, const data_set *ds, int world,
                           const ms_eval *e, const eval_detail *d) {
  json_t *o = json_object();
  json_object_set_new(o, "checkpoint", json_string(a->ckpt));
  json_object_set_new(o, "step", json_integer(im->step));
  json_object_set_new(o, "file", json_string(data_path(ds)));
  json_object_set_new(o, "inputs", json_string(data_x_name(ds)));
  json_object_set_new(o, "labels", json_string(data_y_name(ds)));
  json_object_set_new(o, "samples", json_integer(e->n_samples));
  json_object_set_new(o, "world", json_integer(world));
  json_object_set_new(o, "loss_fn",
                      json_string(config_enum_name("model.loss", (int)im->cfg.model.loss)));
  json_object_set_new(o, "loss", real_or_null(e->loss));
  if (e->classifier || e->binary) json_object_set_new(o, "accuracy", real_or_null(e->acc));
  if (e->top_k > 0) {
    json_object_set_new(o, "top_k", json_integer(e->top_k));
    json_object_set_new(o, "top_k_accuracy", real_or_null(e->topk_acc));
  }
  if (d->n_out > 0) {
    json_t *r2 = json_array();
    for (int k = 0; k < d->n_out; k++) json_array_append_new(r2, real_or_null(d->r2[k]));
    json_object_set_new(o, "mse", real_or_null(e->mse));
    json_object_set_new(o, "mae", real_or_null(e->mae));
    json_object_set_new(o, "r2", real_or_null(d->r2_mean));
    json_object_set_new(o, "r2_per_output", r2);
  }
  if (d->n_classes > 0) {
    const int K = d->n_classes;
    json_t *classes = json_array(), *matrix = json_array();
    for (int k = 0; k < K; k++) {
      class_row c = class_of(d, k);
      json_t *row = json_array();
      for (int j = 0; j < K; j++)
        json_array_append_new(row, json_integer((json_int_t)d->confusion[(size_t)k * K + j]));
      json_array_append_new(matrix, row);
      json_array_append_new(
          classes,
          json_pack("{s:i, s:I, s:I, s:o, s:o, s:o}", "class", k, "samples", (json_int_t)c.samples,
                    "correct", (json_int_t)c.hits, "recall", real_or_null(c.recall), "precision",
                    real_or_null(c.precision), "f1", real_or_null(c.f1)));
    }
    json_object_set_new(o, "classes", classes);
    json_object_set_new(o, "confusion", matrix);
  }
  return o;
}

static int report(FILE *out, const eval_args *a, const infer_model *im, const data_set *ds,
                  int world, const ms_eval *e, const eval_detail *d) {
  if (a->json) {
    json_t *o = json_report(a, im, ds, world, e, d);
    char *text = o ? json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    if (!text) return ms_error_set(MS_ENOMEM, "out of memory writing the JSON report");
    fprintf(out, "%s\n", text);
    free(text);
    return 0;
  }
  const char *word = strcmp(a->split, "test") == 0    ? "test"
                     : strcmp(a->split, "train") == 0 ? "train"
                                                      : "eval";
  fprintf(out, "eval: %s (step %lld) on '%s' in '%s', labels '%s': %ld samples, %d rank%s\n",
          a->ckpt, (long long)im->step, data_x_name(ds), data_path(ds), data_y_name(ds),
          e->n_samples, world, world == 1 ? "" : "s");
  print_text(out, word, e, d, config_enum_name("model.loss", (int)im->cfg.model.loss));
  return 0;
}

int cmd_eval(comm_world *w, int argc, char **argv, FILE *out) {
  ranks rk = {.w = w, .wd = NULL, .step = NULL};
  eval_args a;
  infer_model im;
  data_set *ds = NULL;
  evaluator *ev = NULL;
  ms_eval e;
  eval_detail d = {0};
  char path[MS_PATH_MAX], x[MS_NAME_MAX], y[MS_NAME_MAX];
  memset(&im, 0, sizeof im);
  int rc = ranks_agree(&rk, parse_args(argc, argv, &a));
  if (rc == 0) rc = infer_config(&im, &rk, a.config, a.overrides, a.n_overrides);
  if (rc == 0) rc = ranks_agree(&rk, resolve_split(&im.cfg, &a, path, x, y));
  if (rc) goto done;
  const ms_config *c = &im.cfg;
  rc = infer_open_set(&im, path, x, y, &ds);
  if ((rc = ranks_agree(&rk, rc))) goto done;
  if ((rc = infer_load(&im, &rk, a.ckpt, ds))) goto done;
  if ((rc = ranks_agree(&rk, check_labels(c, im.model->n_out, ds)))) goto done;
  loss_fn loss;
  loss_init(&loss, c, (int)im.model->n_out);
  if ((rc = eval_create(&ev, &rk, im.model, &loss, ds, &im.norm, im.chunk, c->train.eval_top_k)))
    goto done;
  if ((rc = eval_run_detail(ev, &e, &d))) goto done;
  if (w->rank == 0) rc = report(out, &a, &im, ds, w->size, &e, &d);
  rc = ranks_agree(&rk, rc);
done:
  eval_detail_free(&d);
  eval_free(ev);
  infer_close(&im);
  data_close(ds);
  return rc;
}
