/* runlog — metrics.jsonl read back into series (runlog.h). */
#include "runlog.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ms_error.h"

static const char *const names[RUNLOG_N_SERIES] = {
    "train_loss", "train_acc", "lr", "eval_loss", "eval_acc", "eval_topk_acc", "eval_mse",
    "eval_mae"};

const char *runlog_name(runlog_which w) {
  return (unsigned)w < RUNLOG_N_SERIES ? names[w] : "invalid";
}

/* Appends (step, v), first dropping the points at or after step (the
 * steps a resumed run logs again). @return 0 or MS_ENOMEM. */
static int push(runlog_series *s, int64_t step, double v) {
  while (s->n > 0 && s->step[s->n - 1] >= step) s->n--;
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 256;
    int64_t *st = realloc(s->step, cap * sizeof *st);
    if (!st) return MS_ENOMEM;
    s->step = st;
    double *nv = realloc(s->v, cap * sizeof *nv);
    if (!nv) return MS_ENOMEM;
    s->v = nv;
    s->cap = cap;
  }
  s->step[s->n] = step;
  s->v[s->n++] = v;
  return 0;
}

/* The number under key, NaN when it is missing or not a number (null). */
static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Adds key's value to series w when the record has the key at all. */
static int take(runlog *log, runlog_which w, json_t *o, const char *key, int64_t step) {
  if (!json_object_get(o, key)) return 0;
  return push(&log->s[w], step, num(o, key));
}

static int record(runlog *log, json_t *o) {
  const char *kind = json_string_value(json_object_get(o, "kind"));
  json_t *js = json_object_get(o, "step");
  int rc = 0;
  if (!kind) return 0;
  if (strcmp(kind, "summary") == 0) {
    json_t *steps = json_object_get(o, "steps");
    if (!json_is_integer(steps)) return 0;
    log->has_summary = 1;
    log->summary_step = json_integer_value(steps);
    log->seconds = num(o, "seconds");
    log->samples_per_s = num(o, "samples_per_s");
    return 0;
  }
  if (!json_is_integer(js)) return 0;
  int64_t step = json_integer_value(js);
  if (strcmp(kind, "train") == 0) {
    if (step > log->last_step) log->last_step = step;
    rc = take(log, RUNLOG_TRAIN_LOSS, o, "loss", step);
    if (!rc) rc = take(log, RUNLOG_TRAIN_ACC, o, "acc", step);
    if (!rc) rc = take(log, RUNLOG_LR, o, "lr", step);
  } else if (strcmp(kind, "eval") == 0) {
    rc = take(log, RUNLOG_EVAL_LOSS, o, "loss", step);
    if (!rc) rc = take(log, RUNLOG_EVAL_ACC, o, "acc", step);
    if (!rc) rc = take(log, RUNLOG_EVAL_ACC, o, "binary_acc", step);
    if (!rc) rc = take(log, RUNLOG_EVAL_TOPK_ACC, o, "topk_acc", step);
    if (!rc) rc = take(log, RUNLOG_EVAL_MSE, o, "mse", step);
    if (!rc) rc = take(log, RUNLOG_EVAL_MAE, o, "mae", step);
  }
  return rc;
}

int runlog_read(const char *path, runlog *log) {
  memset(log, 0, sizeof *log);
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0)
    return ms_error_set(errno == ENOENT ? MS_EUSAGE : MS_EIO, "cannot read '%s': %s", path,
                        strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return ms_error_set(MS_EUSAGE, "cannot read '%s': not a regular file", path);
  }
  if ((uint64_t)st.st_size > RUNLOG_MAX_BYTES) {
    close(fd);
    return ms_error_set(MS_EIO, "'%s': expected a metrics log of at most %u bytes, found %lld",
                        path, RUNLOG_MAX_BYTES, (long long)st.st_size);
  }
  FILE *f = fdopen(fd, "r");
  if (!f) {
    close(fd);
    return ms_error_set(MS_ENOMEM, "out of memory reading '%s'", path);
  }
  char *line = malloc(RUNLOG_MAX_LINE + 2);
  int rc = line ? 0 : MS_ENOMEM;
  while (rc == 0 && fgets(line, RUNLOG_MAX_LINE + 2, f)) {
    size_t n = strlen(line);
    if (n > RUNLOG_MAX_LINE) {
      /* Longer than any record midscale writes: skip the rest of it. */
      int ch;
      while ((ch = fgetc(f)) != EOF && ch != '\n') {
      }
      continue;
    }
    json_t *o = json_loadb(line, n, 0, NULL);
    if (json_is_object(o)) rc = record(log, o);
    json_decref(o);
  }
  if (rc == 0 && ferror(f)) rc = ms_error_set(MS_EIO, "cannot read '%s'", path);
  if (rc == MS_ENOMEM) rc = ms_error_set(MS_ENOMEM, "out of memory reading '%s'", path);
  free(line);
  fclose(f);
  if (rc) runlog_free(log);
  return rc;
}

double runlog_last(const runlog *log, runlog_which w) {
  const runlog_series *s = &log->s[w];
  return s->n ? s->v[s->n - 1] : NAN;
}

void runlog_free(runlog *log) {
  if (!log) return;
  for (int i = 0; i < RUNLOG_N_SERIES; i++) {
    free(log->s[i].step);
    free(log->s[i].v);
  }
  memset(log, 0, sizeof *log);
}
