/* sweep_report — `midscale sweep-report`: every trial of a sweep in one
 * table, sorted by a metric (cmd_sweep.h). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_sweep.h"
#include "config.h"
#include "ms_error.h"
#include "runlog.h"
#include "sweep.h"

#define MAX_COLS (SWEEP_MAX_KEYS + 1)

/* One row of trials.tsv and what its run logged. */
typedef struct {
  char *cell[MAX_COLS]; /* trial name, then the swept values (into the tsv text) */
  char status[48];
  int64_t step;
  double m[RUNLOG_N_SERIES];
} trial_row;

typedef struct {
  char *text; /* trials.tsv, cut into cells in place */
  int n_cols; /* trial + swept keys */
  char *head[MAX_COLS];
  int n;
  trial_row *rows;
  int metric; /* a runlog_which, or -1 for the step */
  int maximize;
} report;

/* Splits line at tabs into cells (at most MAX_COLS). @return the count. */
static int split(char *line, char **cells) {
  int n = 0;
  for (char *c = line; n < MAX_COLS;) {
    cells[n++] = c;
    char *t = strchr(c, '\t');
    if (!t) break;
    *t = '\0';
    c = t + 1;
  }
  return n;
}

static int read_trials(report *r, const char *dir) {
  char p[PATH_MAX];
  size_t len;
  snprintf(p, sizeof p, "%s/trials.tsv", dir);
  int rc = config_read_file(p, &r->text, &len);
  if (rc) return rc;
  char *save = NULL, *line = strtok_r(r->text, "\n", &save);
  if (!line || strncmp(line, "trial", 5))
    return ms_error_set(MS_EUSAGE, "'%s' is not a sweep's trials.tsv", p);
  r->n_cols = split(line, r->head);
  int cap = 0;
  while ((line = strtok_r(NULL, "\n", &save))) {
    if (r->n == cap) {
      cap = cap ? 2 * cap : 64;
      trial_row *nr = realloc(r->rows, (size_t)cap * sizeof *nr);
      if (!nr) return ms_error_set(MS_ENOMEM, "out of memory");
      r->rows = nr;
    }
    trial_row *t = &r->rows[r->n];
    memset(t, 0, sizeof *t);
    if (split(line, t->cell) != r->n_cols)
      return ms_error_set(MS_EUSAGE, "'%s': row %d does not match the header", p, r->n + 2);
    if (strncmp(t->cell[0], "trial-", 6) || strchr(t->cell[0], '/'))
      return ms_error_set(MS_EUSAGE, "'%s': row %d names '%s', not a trial-NNN of this folder", p,
                          r->n + 2, t->cell[0]);
    r->n++;
  }
  if (r->n == 0) return ms_error_set(MS_EUSAGE, "'%s' lists no trials", p);
  return 0;
}

/* What the trial's files say: its exit status and its metrics. */
static int read_trial(const char *dir, trial_row *t) {
  char p[PATH_MAX + 64];
  int status = -1;
  runlog log;
  snprintf(p, sizeof p, "%s/%s/exit_status", dir, t->cell[0]);
  FILE *f = fopen(p, "r");
  if (f) {
    if (fscanf(f, "%d", &status) != 1) status = -1;
    fclose(f);
  }
  for (int i = 0; i < RUNLOG_N_SERIES; i++) t->m[i] = NAN;
  snprintf(p, sizeof p, "%s/%s/metrics.jsonl", dir, t->cell[0]);
  int rc = runlog_read(p, &log);
  if (rc == MS_EUSAGE) { /* no log yet */
    snprintf(t->status, sizeof t->status, status > 0 ? "failed (exit %d)" : "not started", status);
    return 0;
  }
  if (rc) return rc;
  for (int i = 0; i < RUNLOG_N_SERIES; i++) t->m[i] = runlog_last(&log, (runlog_which)i);
  t->step = log.last_step;
  if (status == 0) snprintf(t->status, sizeof t->status, "done");
  else if (status == 75) snprintf(t->status, sizeof t->status, "stopped (requeued)");
  else if (status > 0) snprintf(t->status, sizeof t->status, "failed (exit %d)", status);
  else snprintf(t->status, sizeof t->status, "running");
  runlog_free(&log);
  return 0;
}

static double key_of(const report *r, const trial_row *t) {
  return r->metric < 0 ? (double)t->step : t->m[r->metric];
}

static const report *sort_ctx;

/* By the metric (best first), trials without it last, then by name. */
static int by_metric(const void *a, const void *b) {
  const trial_row *x = a, *y = b;
  double u = key_of(sort_ctx, x), v = key_of(sort_ctx, y);
  if (isnan(u) != isnan(v)) return isnan(u) ? 1 : -1;
  if (!isnan(u) && u != v) return (u < v) == !sort_ctx->maximize ? -1 : 1;
  return strcmp(x->cell[0], y->cell[0]);
}

/* The metric columns: those any trial logged. */
static int metric_cols(const report *r, int *cols) {
  int n = 0;
  for (int i = 0; i < RUNLOG_N_SERIES; i++) {
    if (i == RUNLOG_LR || i == RUNLOG_TRAIN_ACC) continue;
    for (int k = 0; k < r->n; k++)
      if (!isnan(r->rows[k].m[i])) {
        cols[n++] = i;
        break;
      }
  }
  return n;
}

/* A CSV cell, quoted when it holds a comma or a quote. */
static void csv_cell(FILE *f, const char *s, int last) {
  if (strpbrk(s, ",\"")) {
    fputc('"', f);
    for (; *s; s++) fputs(*s == '"' ? "\"\"" : (char[2]){*s, 0}, f);
    fputc('"', f);
  } else {
    fputs(s, f);
  }
  fputc(last ? '\n' : ',', f);
}

/* The table as Markdown (csv 0) or CSV (csv 1). */
static void table(const report *r, FILE *f, int csv) {
  int cols[RUNLOG_N_SERIES], nm = metric_cols(r, cols);
  const char *sep = csv ? "," : " | ";
  fprintf(f, "%srank%strial%sstatus%sstep", csv ? "" : "| ", sep, sep, sep);
  for (int c = 1; c < r->n_cols; c++) fprintf(f, "%s%s", sep, r->head[c]);
  for (int c = 0; c < nm; c++) fprintf(f, "%s%s", sep, runlog_name((runlog_which)cols[c]));
  fputs(csv ? "\n" : " |\n", f);
  if (!csv) {
    fputs("| ---: | --- | --- | ---: |", f);
    for (int c = 1; c < r->n_cols + nm; c++) fputs(" ---: |", f);
    fputc('\n', f);
  }
  for (int k = 0; k < r->n; k++) {
    const trial_row *t = &r->rows[k];
    char v[64];
    int total = 4 + (r->n_cols - 1) + nm, i = 0;
    if (!csv) fputs("| ", f);
#define CELL(s) (csv ? csv_cell(f, (s), ++i == total) : (void)fprintf(f, "%s%s", (s), ++i == total ? " |\n" : " | "))
    snprintf(v, sizeof v, "%d", k + 1);
    CELL(v);
    CELL(t->cell[0]);
    CELL(t->status);
    snprintf(v, sizeof v, "%lld", (long long)t->step);
    CELL(v);
    for (int c = 1; c < r->n_cols; c++) CELL(t->cell[c]);
    for (int c = 0; c < nm; c++) {
      if (isnan(t->m[cols[c]])) snprintf(v, sizeof v, "%s", csv ? "" : "-");
      else snprintf(v, sizeof v, "%.6g", t->m[cols[c]]);
      CELL(v);
    }
#undef CELL
  }
}

static int write_table(const report *r, const char *dir, const char *name, int csv) {
  char p[PATH_MAX + 64];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  if (!f) return ms_error_set(MS_EIO, "cannot write '%s'", p);
  table(r, f, csv);
  if (fclose(f) != 0) return ms_error_set(MS_EIO, "cannot write '%s'", p);
  return 0;
}

/* --metric NAME into r (a series name or "step"). */
static int pick_metric(report *r, const char *name, const char *mode) {
  char known[256] = "step";
  r->metric = -2;
  if (!strcmp(name, "step")) r->metric = -1;
  for (int i = 0; i < RUNLOG_N_SERIES; i++) {
    if (!strcmp(name, runlog_name((runlog_which)i))) r->metric = i;
    size_t l = strlen(known);
    snprintf(known + l, sizeof known - l, ", %s", runlog_name((runlog_which)i));
  }
  if (r->metric == -2)
    return ms_error_set(MS_EUSAGE, "sweep-report: unknown metric '%s' (%s)", name, known);
  if (!mode) r->maximize = strstr(name, "acc") != NULL || r->metric == -1;
  else if (!strcmp(mode, "max") || !strcmp(mode, "min")) r->maximize = !strcmp(mode, "max");
  else return ms_error_set(MS_EUSAGE, "sweep-report: --mode takes min or max, found '%s'", mode);
  return 0;
}

int sweep_report_main(int argc, char **argv, const char *usage, FILE *out) {
  const char *dir = NULL, *metric = "eval_loss", *mode = NULL;
  report r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, out);
      return 0;
    } else if (!strcmp(argv[i], "--metric") && i + 1 < argc) {
      metric = argv[++i];
    } else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
      mode = argv[++i];
    } else if (argv[i][0] != '-' && !dir) {
      dir = argv[i];
    } else {
      return ms_error_set(MS_EUSAGE, "sweep-report: unexpected argument '%s'", argv[i]);
    }
  }
  if (!dir) return ms_error_set(MS_EUSAGE, "sweep-report needs a sweep's DIR");
  int rc = pick_metric(&r, metric, mode);
  if (!rc) rc = read_trials(&r, dir);
  for (int k = 0; rc == 0 && k < r.n; k++) rc = read_trial(dir, &r.rows[k]);
  if (rc == 0) {
    sort_ctx = &r;
    qsort(r.rows, (size_t)r.n, sizeof *r.rows, by_metric);
    int done = 0;
    for (int k = 0; k < r.n; k++) done += !strcmp(r.rows[k].status, "done");
    fprintf(out, "sweep %s: %d trials, %d done; sorted by %s (%s)\n\n", dir, r.n, done, metric,
            r.maximize ? "max" : "min");
    table(&r, out, 0);
    rc = write_table(&r, dir, "report.md", 0);
    if (!rc) rc = write_table(&r, dir, "report.csv", 1);
    if (!rc) fprintf(out, "\nwrote %s/report.md and %s/report.csv\n", dir, dir);
  }
  free(r.rows);
  free(r.text);
  return rc;
}
