#include "metrics.h"

#include <errno.h>
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

void metrics_train(ms_metrics *m, int64_t step, int64_t total_steps, int64_t epoch, double loss,
                   double acc, double lr, double samples_per_s) {
  if (!m) return;
  clear_bar(m);
  char a[32] = "", ja[32] = "";
  if (acc >= 0) {
    snprintf(a, sizeof a, "  acc %.4f", acc);
    snprintf(ja, sizeof ja, ",\"acc\":%.6f", acc);
  }
  fprintf(m->out, "step %7lld/%lld  epoch %3lld  loss %.6f%s  lr %.5g  %.0f samples/s\n",
          (long long)step, (long long)total_steps, (long long)epoch, loss, a, lr, samples_per_s);
  fflush(m->out);
  fprintf(m->jsonl,
          "{\"kind\":\"train\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g%s,"
          "\"lr\":%.9g,\"samples_per_s\":%.1f}\n",
          (long long)step, (long long)epoch, loss, ja, lr, samples_per_s);
  fflush(m->jsonl);
}

void metrics_eval(ms_metrics *m, int64_t step, int64_t epoch, const ms_eval *e) {
  if (!m) return;
  clear_bar(m);
  char text[160], json[200];
  if (e->classifier && e->top_k > 0) {
    snprintf(text, sizeof text, "test accuracy %.4f  top-%d %.4f", e->acc, e->top_k, e->topk_acc);
    snprintf(json, sizeof json, "\"acc\":%.6f,\"top_k\":%d,\"topk_acc\":%.6f", e->acc, e->top_k,
             e->topk_acc);
  } else if (e->classifier) {
    snprintf(text, sizeof text, "test accuracy %.4f", e->acc);
    snprintf(json, sizeof json, "\"acc\":%.6f", e->acc);
  } else if (e->binary) {
    snprintf(text, sizeof text, "test binary accuracy %.4f", e->acc);
    snprintf(json, sizeof json, "\"binary_acc\":%.6f", e->acc);
  } else {
    snprintf(text, sizeof text, "test mse %.6g  mae %.6g", e->mse, e->mae);
    snprintf(json, sizeof json, "\"mse\":%.9g,\"mae\":%.9g", e->mse, e->mae);
  }
  fprintf(m->out, "eval after epoch %lld (step %lld): test loss %.4f  %s  (%ld samples)\n",
          (long long)epoch, (long long)step, e->loss, text, e->n_samples);
  fflush(m->out);
  fprintf(m->jsonl,
          "{\"kind\":\"eval\",\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g,%s,\"samples\":%ld}\n",
          (long long)step, (long long)epoch, e->loss, json, e->n_samples);
  fflush(m->jsonl);
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
