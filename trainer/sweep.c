/* sweep — SWEEP.yaml parsed into trials (sweep.h). */
#include "sweep.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "ms_error.h"

typedef struct {
  const char *file;
  yaml_document_t *doc;
  sweep_spec *s;
  int failed; /* the first problem is the message: one clear line */
} sctx;

__attribute__((format(printf, 3, 4))) static int bad(sctx *c, const yaml_node_t *n,
                                                     const char *fmt, ...) {
  char msg[768];
  va_list ap;
  if (c->failed) return -1;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->failed = 1;
  if (n)
    ms_error_set(MS_ECONFIG, "%s:%zu:%zu: %s", c->file, n->start_mark.line + 1,
                 n->start_mark.column + 1, msg);
  else
    ms_error_set(MS_ECONFIG, "%s: %s", c->file, msg);
  return -1;
}

static const char *kind_of(const yaml_node_t *n) {
  return n->type == YAML_MAPPING_NODE    ? "a mapping"
         : n->type == YAML_SEQUENCE_NODE ? "a list"
                                         : "a value";
}

static yaml_node_t *node(sctx *c, int id) { return yaml_document_get_node(c->doc, id); }

/* The scalar's text into out (cap bytes), or -1 after reporting. */
static int scalar(sctx *c, const yaml_node_t *n, const char *what, char *out, size_t cap) {
  if (n->type != YAML_SCALAR_NODE) return bad(c, n, "%s: expected a value, found %s", what, kind_of(n));
  if (n->data.scalar.length == 0 || n->data.scalar.length >= cap)
    return bad(c, n, "%s: expected a value of 1 to %zu characters", what, cap - 1);
  memcpy(out, n->data.scalar.value, n->data.scalar.length);
  out[n->data.scalar.length] = '\0';
  /* Values end up in a TSV file, a shell script and a table. */
  for (const char *p = out; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return bad(c, n, "%s: expected a value without control characters", what);
  return 0;
}

/* A value as --set takes it: config_override parses it as one YAML
 * scalar, so a value that was quoted in the sweep file is quoted again. */
static int set_value(sctx *c, const yaml_node_t *n, const char *what, char *out) {
  char raw[SWEEP_VALUE_MAX];
  if (scalar(c, n, what, raw, sizeof raw)) return -1;
  if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    memcpy(out, raw, sizeof raw);
    return 0;
  }
  size_t j = 0;
  out[j++] = '\'';
  for (const char *p = raw; *p; p++) {
    if (j + 3 >= SWEEP_VALUE_MAX) return bad(c, n, "%s: value too long", what);
    if (*p == '\'') out[j++] = '\'';
    out[j++] = *p;
  }
  out[j++] = '\'';
  out[j] = '\0';
  return 0;
}

static int integer(sctx *c, const yaml_node_t *n, const char *what, long lo, long hi, long *out) {
  char t[32], *end;
  if (scalar(c, n, what, t, sizeof t)) return -1;
  errno = 0;
  long v = strtol(t, &end, 10);
  if (errno || *end || v < lo || v > hi)
    return bad(c, n, "%s: expected an integer in [%ld, %ld], found '%s'", what, lo, hi, t);
  *out = v;
  return 0;
}

static int real(sctx *c, const yaml_node_t *n, const char *what, double *out) {
  char t[64], *end;
  if (scalar(c, n, what, t, sizeof t)) return -1;
  double v = strtod(t, &end);
  if (*end || !isfinite(v)) return bad(c, n, "%s: expected a number, found '%s'", what, t);
  *out = v;
  return 0;
}

/* The keys the sweep sets itself for every trial. */
static int reserved(const char *key) {
  return !strcmp(key, "run.dir") || !strcmp(key, "run.name") || !strcmp(key, "checkpoint.dir");
}

/* A new key of `set`, grid or random: not reserved, not given twice. */
static int new_key(sctx *c, const yaml_node_t *k, const char *section, char *out) {
  char what[64];
  snprintf(what, sizeof what, "%s key", section);
  if (scalar(c, k, what, out, SWEEP_KEY_MAX)) return -1;
  if (reserved(out))
    return bad(c, k, "%s.%s: the sweep sets run.dir, run.name and checkpoint.dir of each trial",
               section, out);
  const sweep_spec *s = c->s;
  for (int i = 0; i < s->n_params; i++)
    if (!strcmp(s->params[i].key, out)) return bad(c, k, "%s: '%s' is swept twice", section, out);
  for (int i = 0; i < s->n_set; i++)
    if (!strncmp(s->set[i], out, strlen(out)) && s->set[i][strlen(out)] == '=')
      return bad(c, k, "%s: '%s' is both set and swept", section, out);
  return 0;
}

static int parse_set(sctx *c, const yaml_node_t *m) {
  if (m->type != YAML_MAPPING_NODE) return bad(c, m, "set: expected a mapping of key: value");
  sweep_spec *s = c->s;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    char key[SWEEP_KEY_MAX], val[SWEEP_VALUE_MAX];
    if (s->n_set == SWEEP_MAX_KEYS)
      return bad(c, node(c, p->key), "set: more than %d keys", SWEEP_MAX_KEYS);
    if (new_key(c, node(c, p->key), "set", key) || set_value(c, node(c, p->value), key, val))
      return -1;
    snprintf(s->set[s->n_set++], sizeof s->set[0], "%s=%s", key, val);
  }
  return 0;
}

/* A non-empty list of values into p. */
static int value_list(sctx *c, const yaml_node_t *l, sweep_param *p, const char *section) {
  if (l->type != YAML_SEQUENCE_NODE || l->data.sequence.items.top == l->data.sequence.items.start)
    return bad(c, l, "%s.%s: expected a non-empty list of values, found %s", section, p->key,
               l->type == YAML_SEQUENCE_NODE ? "an empty list" : kind_of(l));
  for (yaml_node_item_t *i = l->data.sequence.items.start; i < l->data.sequence.items.top; i++) {
    if (p->n_values == SWEEP_MAX_VALUES)
      return bad(c, l, "%s.%s: more than %d values", section, p->key, SWEEP_MAX_VALUES);
    if (set_value(c, node(c, *i), p->key, p->values[p->n_values++])) return -1;
  }
  return 0;
}

static sweep_param *add_param(sctx *c, const yaml_node_t *k, const char *section) {
  sweep_spec *s = c->s;
  if (s->n_params == SWEEP_MAX_KEYS) {
    bad(c, k, "%s: more than %d swept keys", section, SWEEP_MAX_KEYS);
    return NULL;
  }
  sweep_param *p = &s->params[s->n_params];
  memset(p, 0, sizeof *p);
  if (new_key(c, k, section, p->key)) return NULL;
  p->line = (int)k->start_mark.line + 1;
  s->n_params++;
  return p;
}

static int parse_grid(sctx *c, const yaml_node_t *m) {
  if (m->type != YAML_MAPPING_NODE || m->data.mapping.pairs.top == m->data.mapping.pairs.start)
    return bad(c, m, "grid: expected a mapping of key: [values...]");
  for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < m->data.mapping.pairs.top; q++) {
    sweep_param *p = add_param(c, node(c, q->key), "grid");
    if (!p || value_list(c, node(c, q->value), p, "grid")) return -1;
    p->kind = SWEEP_GRID;
    c->s->n_grid++;
  }
  return 0;
}

/* One random key: {uniform|log_uniform|int_uniform: [lo, hi]} or {choice: [...]}. */
static int parse_dist(sctx *c, sweep_param *p, const yaml_node_t *d) {
  static const char *const kinds[] = {"choice", "uniform", "log_uniform", "int_uniform"};
  if (d->type != YAML_MAPPING_NODE || d->data.mapping.pairs.top - d->data.mapping.pairs.start != 1)
    return bad(c, d,
               "random.params.%s: expected one of {uniform: [lo, hi]}, {log_uniform: [lo, hi]}, "
               "{int_uniform: [lo, hi]}, {choice: [values...]}",
               p->key);
  const yaml_node_t *k = node(c, d->data.mapping.pairs.start->key);
  const yaml_node_t *v = node(c, d->data.mapping.pairs.start->value);
  char name[32];
  if (scalar(c, k, "distribution", name, sizeof name)) return -1;
  int kind = -1;
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, kinds[i])) kind = i;
  if (kind < 0)
    return bad(c, k, "random.params.%s: unknown distribution '%s' (choice, uniform, "
               "log_uniform, int_uniform)", p->key, name);
  p->kind = (sweep_kind)(SWEEP_CHOICE + kind);
  if (p->kind == SWEEP_CHOICE) return value_list(c, v, p, "random.params");
  if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
    return bad(c, v, "random.params.%s: %s expects [lo, hi]", p->key, name);
  if (real(c, node(c, v->data.sequence.items.start[0]), p->key, &p->lo) ||
      real(c, node(c, v->data.sequence.items.start[1]), p->key, &p->hi))
    return -1;
  if (!(p->lo < p->hi) || (p->kind == SWEEP_LOG_UNIFORM && p->lo <= 0) ||
      (p->kind == SWEEP_INT_UNIFORM && (p->lo != floor(p->lo) || p->hi != floor(p->hi) ||
                                        fabs(p->lo) > 1e9 || fabs(p->hi) > 1e9)))
    return bad(c, v, "random.params.%s: %s expects lo < hi%s", p->key, name,
               p->kind == SWEEP_LOG_UNIFORM   ? " and lo > 0"
               : p->kind == SWEEP_INT_UNIFORM ? ", integers of at most 1e9"
                                              : "");
  return 0;
}

static int parse_random(sctx *c, const yaml_node_t *m) {
  const yaml_node_t *params = NULL;
  long v;
  if (m->type != YAML_MAPPING_NODE)
    return bad(c, m, "random: expected a mapping with trials, seed and params");
  c->s->random_trials = 0;
  for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < m->data.mapping.pairs.top; q++) {
    char key[32];
    const yaml_node_t *val = node(c, q->value);
    if (scalar(c, node(c, q->key), "random key", key, sizeof key)) return -1;
    if (!strcmp(key, "trials")) {
      if (integer(c, val, "random.trials", 1, SWEEP_MAX_TRIALS, &v)) return -1;
      c->s->random_trials = (int)v;
    } else if (!strcmp(key, "seed")) {
      if (integer(c, val, "random.seed", 0, 0x7fffffffL, &v)) return -1;
      c->s->seed = (uint64_t)v;
    } else if (!strcmp(key, "params")) {
      params = val;
    } else {
      return bad(c, node(c, q->key), "random: unknown key '%s' (trials, seed, params)", key);
    }
  }
  if (!c->s->random_trials) return bad(c, m, "random: expected trials: N (1 to %d)", SWEEP_MAX_TRIALS);
  if (!params || params->type != YAML_MAPPING_NODE ||
      params->data.mapping.pairs.top == params->data.mapping.pairs.start)
    return bad(c, params ? params : m, "random: expected params: a mapping of key: distribution");
  for (yaml_node_pair_t *q = params->data.mapping.pairs.start; q < params->data.mapping.pairs.top;
       q++) {
    sweep_param *p = add_param(c, node(c, q->key), "random.params");
    if (!p || parse_dist(c, p, node(c, q->value))) return -1;
  }
  return 0;
}

/* A value for a line of the generated Slurm script: no characters that
 * would end the #SBATCH line or need quoting there. */
static int plain_text(sctx *c, const yaml_node_t *n, const char *what, char *out, size_t cap) {
  if (scalar(c, n, what, out, cap)) return -1;
  for (const char *p = out; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr(":-_.,", *p))
      return bad(c, n, "%s: expected letters, digits and ':-_.,' only, found '%s'", what, out);
  return 0;
}

static int parse_slurm(sctx *c, const yaml_node_t *m) {
  long v;
  if (m->type != YAML_MAPPING_NODE) return bad(c, m, "slurm: expected a mapping");
  for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < m->data.mapping.pairs.top; q++) {
    char key[32];
    const yaml_node_t *val = node(c, q->value);
    sweep_spec *s = c->s;
    if (scalar(c, node(c, q->key), "slurm key", key, sizeof key)) return -1;
    if (!strcmp(key, "max_parallel")) {
      if (integer(c, val, "slurm.max_parallel", 1, SWEEP_MAX_TRIALS, &v)) return -1;
      s->max_parallel = (int)v;
    } else if (!strcmp(key, "cpus_per_task")) {
      if (integer(c, val, "slurm.cpus_per_task", 1, 4096, &v)) return -1;
      s->cpus_per_task = (int)v;
    } else if (!strcmp(key, "signal_seconds")) {
      if (integer(c, val, "slurm.signal_seconds", 1, 65535, &v)) return -1;
      s->signal_s = (int)v;
    } else if (!strcmp(key, "time")) {
      if (plain_text(c, val, "slurm.time", s->time, sizeof s->time)) return -1;
    } else if (!strcmp(key, "partition")) {
      if (plain_text(c, val, "slurm.partition", s->partition, sizeof s->partition)) return -1;
    } else {
      return bad(c, node(c, q->key),
                 "slurm: unknown key '%s' (max_parallel, cpus_per_task, signal_seconds, time, "
                 "partition)", key);
    }
  }
  return 0;
}

static int parse_local(sctx *c, const yaml_node_t *m) {
  if (m->type != YAML_MAPPING_NODE) return bad(c, m, "local: expected a mapping");
  for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < m->data.mapping.pairs.top; q++) {
    char key[32];
    if (scalar(c, node(c, q->key), "local key", key, sizeof key)) return -1;
    if (strcmp(key, "mpirun"))
      return bad(c, node(c, q->key), "local: unknown key '%s' (mpirun)", key);
    if (scalar(c, node(c, q->value), "local.mpirun", c->s->mpirun, sizeof c->s->mpirun))
      return -1;
  }
  return 0;
}

/* The top-level keys, in the order they are applied: `set` before the
 * swept keys so that a key both set and swept is caught, the grid's keys
 * before the random ones (the trial order depends on it). */
enum { R_BASE, R_NAME, R_OUT, R_RANKS, R_SET, R_GRID, R_RANDOM, R_SLURM, R_LOCAL, R_N };
static const char *const root_keys[R_N] = {"base", "name", "out",   "ranks", "set",
                                           "grid", "random", "slurm", "local"};

static int parse_root(sctx *c, const yaml_node_t *root) {
  const yaml_node_t *v[R_N] = {0};
  sweep_spec *s = c->s;
  long n;
  if (root->type != YAML_MAPPING_NODE)
    return bad(c, root, "expected a mapping (base, grid, random, ...), found %s", kind_of(root));
  for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < root->data.mapping.pairs.top; q++) {
    char key[32];
    int r = -1;
    if (scalar(c, node(c, q->key), "key", key, sizeof key)) return -1;
    for (int i = 0; i < R_N; i++)
      if (!strcmp(key, root_keys[i])) r = i;
    if (r < 0)
      return bad(c, node(c, q->key),
                 "unknown key '%s' (base, name, out, ranks, set, grid, random, slurm, local)", key);
    if (v[r]) return bad(c, node(c, q->key), "'%s' is given twice", key);
    v[r] = node(c, q->value);
  }
  if (!v[R_BASE]) return bad(c, root, "expected base: the config every trial starts from");
  if (scalar(c, v[R_BASE], "base", s->base, sizeof s->base)) return -1;
  if (v[R_NAME] && plain_text(c, v[R_NAME], "name", s->name, sizeof s->name)) return -1;
  if (v[R_OUT] && scalar(c, v[R_OUT], "out", s->out, sizeof s->out)) return -1;
  if (v[R_RANKS] && integer(c, v[R_RANKS], "ranks", 1, 4096, &n)) return -1;
  if (v[R_RANKS]) s->ranks = (int)n;
  if (v[R_SET] && parse_set(c, v[R_SET])) return -1;
  if (v[R_GRID] && parse_grid(c, v[R_GRID])) return -1;
  if (v[R_RANDOM] && parse_random(c, v[R_RANDOM])) return -1;
  if (v[R_SLURM] && parse_slurm(c, v[R_SLURM])) return -1;
  if (v[R_LOCAL] && parse_local(c, v[R_LOCAL])) return -1;
  if (!v[R_GRID] && !v[R_RANDOM]) return bad(c, root, "expected grid, random or both");
  double trials = s->random_trials ? s->random_trials : 1;
  for (int i = 0; i < s->n_grid; i++) trials *= s->params[i].n_values;
  if (trials > SWEEP_MAX_TRIALS)
    return bad(c, root, "expected at most %d trials, found %.0f", SWEEP_MAX_TRIALS, trials);
  return 0;
}

/* libyaml's scanner slows down with the square of the nesting depth, so
 * the depth is checked event by event before the document is loaded.
 * @return 0, or -1 after reporting. */
static int check_depth(sctx *c, const char *text, size_t len) {
  yaml_parser_t p;
  yaml_event_t ev;
  int depth = 0, rc = 0;
  if (!yaml_parser_initialize(&p)) return ms_error_set(MS_ENOMEM, "out of memory"), c->failed = 1, -1;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  while (rc == 0 && yaml_parser_parse(&p, &ev)) {
    yaml_event_type_t t = ev.type;
    yaml_node_t at = {.start_mark = ev.start_mark};
    yaml_event_delete(&ev);
    if (t == YAML_STREAM_END_EVENT) break;
    if ((t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) &&
        ++depth > SWEEP_MAX_DEPTH)
      rc = bad(c, &at, "expected lists and mappings nested at most %d deep", SWEEP_MAX_DEPTH);
    if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) depth--;
  }
  yaml_parser_delete(&p);
  return rc;
}

static void defaults(sweep_spec *s, const char *path) {
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  size_t n = strlen(base);
  if (n > 5 && !strcmp(base + n - 5, ".yaml")) n -= 5;
  else if (n > 4 && !strcmp(base + n - 4, ".yml")) n -= 4;
  if (n >= sizeof s->name) n = sizeof s->name - 1;
  memset(s, 0, sizeof *s);
  snprintf(s->path, sizeof s->path, "%s", path);
  /* Only characters the generated script can carry in a job name. */
  for (size_t i = 0; i < n; i++)
    s->name[i] = isalnum((unsigned char)base[i]) || strchr("-_.", base[i]) ? base[i] : '_';
  s->seed = 1;
  s->ranks = 2;
  s->max_parallel = 4;
  s->cpus_per_task = 1;
  s->signal_s = 120;
  snprintf(s->time, sizeof s->time, "01:00:00");
  snprintf(s->mpirun, sizeof s->mpirun, "mpirun");
}

int sweep_parse_file(const char *path, sweep_spec **out) {
  char *text = NULL;
  size_t len = 0;
  yaml_parser_t parser;
  yaml_document_t doc;
  sctx c = {.file = path};
  *out = NULL;
  int rc = config_read_file(path, &text, &len);
  if (rc) return rc;
  if (!(c.s = malloc(sizeof *c.s))) {
    free(text);
    return ms_error_set(MS_ENOMEM, "out of memory reading '%s'", path);
  }
  defaults(c.s, path);
  if (check_depth(&c, text, len) == 0) {
    if (!yaml_parser_initialize(&parser)) {
      rc = ms_error_set(MS_ENOMEM, "out of memory reading '%s'", path);
      goto out;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
      yaml_node_t at = {.start_mark = parser.problem_mark};
      bad(&c, &at, "YAML syntax error: %s", parser.problem ? parser.problem : "unknown");
    } else {
      c.doc = &doc;
      yaml_node_t *root = yaml_document_get_root_node(&doc);
      if (!root) bad(&c, NULL, "expected a mapping (base, grid, random, ...), found nothing");
      else parse_root(&c, root);
      yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
  }
  if (c.failed) rc = MS_ECONFIG;
out:
  free(text);
  if (rc) free(c.s);
  else *out = c.s;
  return rc;
}

int sweep_n_trials(const sweep_spec *s) {
  int n = s->random_trials ? s->random_trials : 1;
  for (int i = 0; i < s->n_grid; i++) n *= s->params[i].n_values;
  return n;
}

/* splitmix64: one 64-bit state, good enough to draw a handful of values,
 * and the same on every machine (no libc rand). */
static uint64_t mix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* A uniform double in [0, 1) from the top 53 bits. */
static double unit(uint64_t *x) { return (double)(mix(x) >> 11) * 0x1.0p-53; }

void sweep_trial_values(const sweep_spec *s, int i, char values[][SWEEP_VALUE_MAX]) {
  int r_trials = s->random_trials ? s->random_trials : 1;
  int g = i / r_trials;
  /* The grid point g in mixed radix, the last key fastest. */
  for (int k = s->n_grid - 1; k >= 0; k--) {
    const sweep_param *p = &s->params[k];
    memcpy(values[k], p->values[g % p->n_values], SWEEP_VALUE_MAX);
    g /= p->n_values;
  }
  uint64_t state = s->seed * 0x100000001b3ULL ^ (uint64_t)i;
  (void)mix(&state);
  for (int k = s->n_grid; k < s->n_params; k++) {
    const sweep_param *p = &s->params[k];
    double u = unit(&state), v;
    switch (p->kind) {
      case SWEEP_CHOICE:
        memcpy(values[k], p->values[(int)(u * p->n_values)], SWEEP_VALUE_MAX);
        continue;
      case SWEEP_INT_UNIFORM:
        snprintf(values[k], SWEEP_VALUE_MAX, "%.0f", p->lo + floor(u * (p->hi - p->lo + 1)));
        continue;
      case SWEEP_LOG_UNIFORM:
        v = exp(log(p->lo) + u * (log(p->hi) - log(p->lo)));
        break;
      default:
        v = p->lo + u * (p->hi - p->lo);
        break;
    }
    snprintf(values[k], SWEEP_VALUE_MAX, "%.6g", v);
  }
}
