#include "earlystop.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ms_error.h"

void earlystop_init(earlystop *es, const ms_config *cfg) {
  const ms_es_metric m = cfg->train.early_stop.metric;
  memset(es, 0, sizeof *es);
  es->metric = m;
  int accuracy = m == MS_ES_ACC || m == MS_ES_TOPK_ACC || m == MS_ES_BINARY_ACC;
  es->maximize = cfg->train.early_stop.mode == MS_ES_MAX ||
                 (cfg->train.early_stop.mode == MS_ES_AUTO && accuracy);
  es->patience = cfg->train.early_stop.patience;
  es->min_delta = cfg->train.early_stop.min_delta;
  es->left = es->patience;
  es->best_step = es->stop_step = -1;
}

int earlystop_on(const earlystop *es) { return es->metric != MS_ES_NONE; }

double earlystop_value(const earlystop *es, const ms_eval *e) {
  switch (es->metric) {
    case MS_ES_LOSS: return e->loss;
    case MS_ES_ACC:
    case MS_ES_BINARY_ACC: return e->acc;
    case MS_ES_TOPK_ACC: return e->topk_acc;
    case MS_ES_MSE: return e->mse;
    case MS_ES_MAE: return e->mae;
    case MS_ES_NONE: break;
  }
  return NAN;
}

int earlystop_update(earlystop *es, const ms_eval *e, int64_t step) {
  if (!earlystop_on(es) || earlystop_stopped(es)) return 0;
  double v = earlystop_value(es, e);
  int better = isfinite(v) && (!es->have_best || (es->maximize ? v > es->best + es->min_delta
                                                               : v < es->best - es->min_delta));
  if (better) {
    es->have_best = 1;
    es->best = v;
    es->best_step = step;
    es->left = es->patience;
    return 1;
  }
  if (--es->left <= 0) es->stop_step = step;
  return 0;
}

int earlystop_stopped(const earlystop *es) { return es->stop_step >= 0; }

static const char *metric_name(const earlystop *es) {
  return config_enum_name("train.early_stop.metric", (int)es->metric);
}

void earlystop_format(const earlystop *es, char *buf, size_t n) {
  if (!earlystop_on(es)) {
    if (n) buf[0] = '\0';
    return;
  }
  /* %a keeps every bit of the best value: a resumed run compares against
   * exactly the number the uninterrupted one holds. */
  snprintf(buf, n,
           "early_stop metric=%s mode=%s have_best=%d best=%a best_step=%" PRId64
           " left=%d stop_step=%" PRId64,
           metric_name(es), es->maximize ? "max" : "min", es->have_best,
           es->have_best ? es->best : 0.0, es->best_step, es->left, es->stop_step);
}

int earlystop_parse(earlystop *es, const char *state, const char *what, int *reset) {
  *reset = 0;
  if (!state || !state[0] || !earlystop_on(es)) return 0;
  char metric[32], mode[8], best[64];
  int have_best, left;
  long long best_step, stop_step;
  if (sscanf(state,
             "early_stop metric=%31s mode=%7s have_best=%d best=%63s best_step=%lld left=%d "
             "stop_step=%lld",
             metric, mode, &have_best, best, &best_step, &left, &stop_step) != 7)
    return ms_error_set(MS_ECKPT, "%s: cannot read the early-stopping state '%.80s'", what, state);
  if (strcmp(metric, metric_name(es)) || strcmp(mode, es->maximize ? "max" : "min")) {
    *reset = 1;
    return 0;
  }
  char *end;
  double b = strtod(best, &end);
  if (*end || (have_best != 0 && have_best != 1) || left < 0 || best_step < -1 || stop_step < -1)
    return ms_error_set(MS_ECKPT, "%s: invalid early-stopping state '%.80s'", what, state);
  es->have_best = have_best;
  es->best = b;
  es->best_step = best_step;
  es->left = left;
  es->stop_step = stop_step;
  return 0;
}

void earlystop_describe(const earlystop *es, char *buf, size_t n) {
  char delta[48];
  snprintf(delta, sizeof delta, "%g", es->min_delta);
  snprintf(buf, n,
           "eval %s did not improve by more than %s for %d evaluation%s; best %.6g at step "
           "%" PRId64,
           metric_name(es), delta, es->patience, es->patience == 1 ? "" : "s", es->best,
           es->best_step);
}
