#include "metrics.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ms_error.h"

struct ms_metrics {
  FILE *jsonl;
  FILE *out;
  int bar;       /* progress bar enabled and out is a terminal */
  int bar_shown; /* a bar is on the current line */
};

int metrics_open(ms_metrics **out_m, const char *jsonl_path, FILE *out, int progress) {
  *out_m = NULL;
  ms_metrics *m = calloc(1, sizeof *m);
  if (!m) return ms_error_set(MS_ENOMEM, "metrics: out of memory");
  m->jsonl = fopen(jsonl_path, "a");
  if (!m->jsonl) {
    int e = errno;
    free(m);
    return ms_error_set(MS_EIO, "cannot open '%s' for writing: %s", jsonl_path, strerror(e));
  }
  m->out = out;
  /* Open MPI hands every rank a pseudo-terminal even when mpirun's output
   * goes to a file, so isatty alone would draw bars into log files; that
   * pseudo-terminal reports no size, a real one does. */
  struct winsize ws;
  m->bar =
      progress && isatty(fileno(out)) && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0;
  *out_m = m;
  return 0;
}

static void clear_bar(ms_metrics *m) {
  if (m->bar_shown) {
    fputs("\r\033[K", m->out);
    m->bar_shown = 0;
  }
}

void metrics_close(ms_metrics *m) {
  if (!m) return;
  clear_bar(m);
  fclose(m->jsonl);
  fflush(m->out);
  free(m);
}

/* Writes obj as one compact JSON line, keys in insertion order, and drops
 * obj. Reals print with 9 significant digits: enough for a float loss to
 * compare equal across runs, short enough to read. A record that cannot
 * be built (out of memory) is left out: metrics never stop a run. */
static void put_record(ms_metrics *m, json_t *obj) {
  char *line =
      obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(obj);
  if (!line) return;
  fprintf(m->jsonl, "%s\n", line);
  fflush(m->jsonl);
  free(line);
}

/* x rounded to `decimals` places: the fixed-point fields (accuracies,
 * seconds, rates) keep the precision they were measured to. */
static double fixed(double x, int decimals) {
  double scale = pow(10.0, decimals);
  return isfinite(x) ? round(x * scale) / scale : x;
}

/* json_real refuses NaN and infinities (JSON has none): a diverged loss is
 * written as null rather than losing the record. */
static json_t *real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* Adds key: value to obj. Either may be NULL after a failed allocation:
 * then that key is missing and the rest of the record is still written. */
static void add(json_t *obj, const char *key, json_t *value) {
  if (obj)
    json_object_set_new(obj, key, value);
  else
    json_decref(value);
}

static json_t *record(const char *kind) {
  json_t *o = json_object();
  add(o, "kind", json_string(kind));
  return o;
}

void metrics_train(ms_metrics *m, int64_t step, int64_t total_steps, int64_t epoch, double loss,
                   double acc, double lr, double samples_per_s) {
  if (!m) return;
  clear_bar(m);
  char a[32] = "";
  if (acc >= 0) snprintf(a, sizeof a, "  acc %.4f", acc);
  fprintf(m->out, "step %7lld/%lld  epoch %3lld  loss %.6f%s  lr %.5g  %.0f samples/s\n",
          (long long)step, (long long)total_steps, (long long)epoch, loss, a, lr, samples_per_s);
  fflush(m->out);
  json_t *o = record("train");
  add(o, "step", json_integer(step));
  add(o, "epoch", json_integer(epoch));
  add(o, "loss", real_or_null(loss));
  if (acc >= 0) add(o, "acc", real_or_null(fixed(acc, 6)));
  add(o, "lr", real_or_null(lr));
  add(o, "samples_per_s", real_or_null(fixed(samples_per_s, 1)));
  put_record(m, o);
}

void metrics_eval(ms_metrics *m, int64_t step, int64_t epoch, const ms_eval *e) {
  if (!m) return;
  clear_bar(m);
  char text[160];
  json_t *o = record("eval");
  add(o, "step", json_integer(step));
  add(o, "epoch", json_integer(epoch));
  add(o, "loss", real_or_null(e->loss));
  if (e->classifier && e->top_k > 0) {
    snprintf(text, sizeof text, "test accuracy %.4f  top-%d %.4f", e->acc, e->top_k, e->topk_acc);
    add(o, "acc", real_or_null(fixed(e->acc, 6)));
    add(o, "top_k", json_integer(e->top_k));
    add(o, "topk_acc", real_or_null(fixed(e->topk_acc, 6)));
  } else if (e->classifier && e->sequence) {
    /* A language model's loss is read in bits per token (per character
     * for byte-level text). */
    snprintf(text, sizeof text, "%.4f bits per token  test accuracy %.4f (per position)",
             e->loss / log(2.0), e->acc);
    add(o, "bits_per_token", real_or_null(e->loss / log(2.0)));
    add(o, "acc", real_or_null(fixed(e->acc, 6)));
  } else if (e->classifier) {
    snprintf(text, sizeof text, "test accuracy %.4f", e->acc);
    add(o, "acc", real_or_null(fixed(e->acc, 6)));
  } else if (e->binary) {
    snprintf(text, sizeof text, "test binary accuracy %.4f", e->acc);
    add(o, "binary_acc", real_or_null(fixed(e->acc, 6)));
  } else {
    snprintf(text, sizeof text, "test mse %.6g  mae %.6g", e->mse, e->mae);
    add(o, "mse", real_or_null(e->mse));
    add(o, "mae", real_or_null(e->mae));
  }
  add(o, "samples", json_integer(e->n_samples));
  fprintf(m->out, "eval after epoch %lld (step %lld): test loss %.4f  %s  (%ld samples)\n",
          (long long)epoch, (long long)step, e->loss, text, e->n_samples);
  fflush(m->out);
  put_record(m, o);
}

void metrics_checkpoint(ms_metrics *m, const metrics_ckpt *c) {
  if (!m) return;
  json_t *o = record("checkpoint");
  add(o, "step", json_integer(c->step));
  add(o, "path", json_string(c->path ? c->path : ""));
  add(o, "bytes", json_integer(c->bytes));
  add(o, "raw_bytes", json_integer(c->raw_bytes));
  add(o, "world", json_integer(c->world));
  add(o, "background_compress", json_integer(c->background_compress));
  add(o, "ranks_write", json_integer(c->ranks_write));
  add(o, "write_s", real_or_null(fixed(c->write_s, 4)));
  add(o, "stall_s", real_or_null(fixed(c->stall_s, 5)));
  add(o, "compress_s", real_or_null(fixed(c->compress_s, 4)));
  add(o, "gather_s", real_or_null(fixed(c->gather_s, 4)));
  add(o, "file_s", real_or_null(fixed(c->file_s, 4)));
  put_record(m, o);
}

void metrics_progress(ms_metrics *m, int64_t step, int64_t total_steps, double loss) {
  if (!m || !m->bar || total_steps <= 0) return;
  enum { WIDTH = 30 };
  int filled = (int)(WIDTH * step / total_steps);
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  fprintf(m->out, "\r[%s] %lld/%lld  loss %.4f\033[K", bar, (long long)step, (long long)total_steps,
          loss);
  fflush(m->out);
  m->bar_shown = 1;
}

void metrics_json(ms_metrics *m, const char *json_object) {
  if (!m) return;
  fprintf(m->jsonl, "%s\n", json_object);
  fflush(m->jsonl);
}

void metrics_say(ms_metrics *m, const char *fmt, ...) {
  if (!m) return;
  clear_bar(m);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(m->out, fmt, ap);
  va_end(ap);
  fputc('\n', m->out);
  fflush(m->out);
}
