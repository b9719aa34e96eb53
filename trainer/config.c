/* config — YAML run description → ms_config, driven by one schema table.
 *
 * The table `keys` has one row per key. Defaults, parsing, `--set` overrides,
 * range validation and the emitter all walk it, so adding a key is one row
 * (plus the struct field). `model.layers`, a list of mappings, is the one
 * special case; its items are described by the small table `layer_keys`.
 *
 * A failed config_parse() or config_override() leaves the caller's struct
 * untouched: parsing works on a copy, an override writes only on success.
 */
#include "config.h"

#include "ms_error.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- the schema ------------------------------------------------------------ */

typedef enum {
  K_STR,   /* char[size], any scalar */
  K_INT,   /* int, ranged */
  K_U64,   /* uint64_t, full range */
  K_DBL,   /* double, finite, ranged */
  K_BOOL,  /* int 0/1, only `true` / `false` */
  K_ENUM,  /* char[size] holding one of `allowed` */
  K_ENUMI, /* an int-sized enum holding the index into `allowed` */
  K_LAYERS /* model.layers: items follow layer_keys */
} key_type;

enum {
  F_MIN_EXCL = 1, /* the minimum itself is not allowed */
  F_MAX_EXCL = 2, /* the maximum itself is not allowed */
  F_REQUIRED = 4  /* a string that must not be empty */
};

typedef struct {
  const char *path; /* "optim.lr"; for layer items just "units" */
  key_type type;
  size_t off, size;
  const char *def_s; /* default of K_STR / K_ENUM */
  double def_n;      /* default of the numeric types */
  double min, max;
  unsigned flags;
  const char *const *allowed; /* K_ENUM / K_ENUMI values, NULL-terminated */
  const char *doc;
} key_spec;

_Static_assert(sizeof(ms_activation) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(ms_layer_type) == sizeof(int), "enum fields are stored as int");

static const char *const loss_names[] = {"softmax_cross_entropy", NULL};
static const char *const optim_names[] = {"sgd", NULL};
static const char *const schedule_names[] = {"constant", "cosine", NULL};
static const char *const layer_types[] = {"dense", NULL};        /* ms_layer_type order */
static const char *const activations[] = {"none", "relu", NULL}; /* ms_activation order */

#define FLD(T, f) .off = offsetof(T, f), .size = sizeof(((T *)0)->f)
#define STR(p, f, d, fl, doc_) \
  { .path = p, .type = K_STR, FLD(ms_config, f), .def_s = d, .flags = fl, .doc = doc_ }
#define ENUM(p, f, d, set, doc_) \
  { .path = p, .type = K_ENUM, FLD(ms_config, f), .def_s = d, .allowed = set, .doc = doc_ }
#define NUM(p, t, f, d, lo, hi, fl, doc_)                                                   \
  {                                                                                         \
    .path = p, .type = t, FLD(ms_config, f), .def_n = d, .min = lo, .max = hi, .flags = fl, \
    .doc = doc_                                                                             \
  }
#define INT(p, f, d, lo, hi, doc_) NUM(p, K_INT, f, d, lo, hi, 0, doc_)
#define DBL(p, f, d, lo, hi, fl, doc_) NUM(p, K_DBL, f, d, lo, hi, fl, doc_)
#define BOOL(p, f, d, doc_) NUM(p, K_BOOL, f, d, 0, 1, 0, doc_)

static const key_spec keys[] = {
    STR("run.name", run.name, "run", F_REQUIRED, "run name, used in messages and metrics"),
    STR("run.dir", run.dir, "runs/run", F_REQUIRED, "run directory: metrics, resolved config"),
    NUM("run.seed", K_U64, run.seed, 0, 0, 0, 0, "seeds init and the sample order"),
    INT("run.threads", run.threads, 0, 0, 1024, "BLAS threads per rank; 0 = cores / ranks"),
    STR("data.path", data.path, "", F_REQUIRED, "HDF5 file with the dataset"),
    STR("data.train_x", data.train_x, "/train/images", F_REQUIRED, "dataset of training inputs"),
    STR("data.train_y", data.train_y, "/train/labels", F_REQUIRED, "dataset of training labels"),
    STR("data.test_x", data.test_x, "/test/images", 0, "dataset of test inputs; \"\" = no eval"),
    STR("data.test_y", data.test_y, "/test/labels", 0, "dataset of test labels"),
    DBL("data.scale", data.scale, 1.0, 0, HUGE_VAL, F_MIN_EXCL, "multiplies uint8 inputs"),
    {.path = "model.layers", .type = K_LAYERS, .doc = "the layer stack, input to logits"},
    ENUM("model.loss", model.loss, "softmax_cross_entropy", loss_names, "loss function"),
    ENUM("optim.name", optim.name, "sgd", optim_names, "optimizer"),
    DBL("optim.lr", optim.lr, 0.01, 0, 10, F_MIN_EXCL, "peak learning rate"),
    DBL("optim.momentum", optim.momentum, 0.9, 0, 1, F_MAX_EXCL, "momentum coefficient"),
    DBL("optim.weight_decay", optim.weight_decay, 0, 0, 1, 0, "L2 weight decay"),
    BOOL("optim.nesterov", optim.nesterov, 0, "Nesterov momentum"),
    ENUM("schedule.name", schedule.name, "constant", schedule_names, "learning-rate schedule"),
    INT("schedule.warmup_steps", schedule.warmup_steps, 0, 0, INT_MAX, "linear warmup steps"),
    DBL("schedule.min_lr_ratio", schedule.min_lr_ratio, 0, 0, 1, 0, "cosine floor / lr"),
    INT("train.epochs", train.epochs, 1, 1, 100000, "passes over the training set"),
    INT("train.batch_size", train.batch_size, 64, 1, 1 << 24, "global batch, split over ranks"),
    INT("train.eval_batch_size", train.eval_batch_size, 1000, 1, 1 << 24, "global eval batch"),
    INT("train.max_steps", train.max_steps, 0, 0, INT_MAX, "stop after N steps; 0 = epochs"),
    STR("checkpoint.dir", checkpoint.dir, "", 0, "\"\" = <run.dir>/checkpoints"),
    INT("checkpoint.every_steps", checkpoint.every_steps, 0, 0, INT_MAX, "0 = only at the end"),
    INT("checkpoint.keep", checkpoint.keep, 3, 1, 1000, "keep the newest K checkpoints"),
    INT("checkpoint.level", checkpoint.level, 3, 1, 19, "zstd level"),
    DBL("comm.timeout_s", comm.timeout_s, 300, 0, HUGE_VAL, F_MIN_EXCL, "hang watchdog, seconds"),
    INT("log.every_steps", log.every_steps, 50, 1, INT_MAX, "log interval in steps"),
    BOOL("log.progress", log.progress, 1, "progress bar when stdout is a tty"),
};
#define N_KEYS (sizeof keys / sizeof keys[0])

/* Items of model.layers. A missing type is dense, a missing activation none;
 * units has no default (0 fails validation). */
static const key_spec layer_keys[] = {
    {.path = "type", .type = K_ENUMI, FLD(ms_layer_cfg, type), .allowed = layer_types},
    {.path = "units", .type = K_INT, FLD(ms_layer_cfg, units), .min = 1, .max = INT_MAX},
    {.path = "activation", .type = K_ENUMI, FLD(ms_layer_cfg, activation), .allowed = activations},
};
#define N_LAYER_KEYS (sizeof layer_keys / sizeof layer_keys[0])
#define LAYER_UNITS 1 /* row of `units` in layer_keys */
static const char *const layer_key_names[] = {"type", "units", "activation"};

static const char *const sections[] = {"run",   "data",       "model", "optim", "schedule",
                                       "train", "checkpoint", "comm",  "log"};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

#define MAX_SHOWN 20 /* problems listed in one message; ms_error keeps 4 KiB */
#define WHY_MAX 512  /* one "expected ..., found ..." clause */

/* ---- growable text, and the list of problems ----------------------------- */

typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = b->oom ? -1 : vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (n >= 0 && b->len + (size_t)n + 1 > cap) cap *= 2;
    char *s = n < 0 ? NULL : realloc(b->s, cap);
    if (!s) {
      b->oom = 1;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

typedef struct {
  sbuf b;
  int n;
} errlist;

/* Adds one problem line, "WHERE: message" (WHERE may be NULL). */
__attribute__((format(printf, 3, 4))) static void err_add(errlist *e, const char *where,
                                                          const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  if (e->n++ >= MAX_SHOWN) return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sb_printf(&e->b, "%s%s%s%s", e->n > 1 ? "\n" : "", where ? where : "", where ? ": " : "", msg);
}

/* Turns the collected problems into the return code and the ms_error message. */
static int err_finish(errlist *e) {
  int rc = 0;
  if (e->n > MAX_SHOWN) sb_printf(&e->b, "\n(%d more problems not shown)", e->n - MAX_SHOWN);
  if (e->b.oom)
    rc = ms_error_set(MS_ENOMEM, "out of memory while reporting config problems");
  else if (e->n > 0)
    rc = ms_error_set(MS_ECONFIG, "%s", e->b.s);
  free(e->b.s);
  return rc;
}

/* ---- scalars, shared by the file and by --set ------------------------------ */

__attribute__((format(printf, 2, 3))) static int fail(char *why, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, WHY_MAX, fmt, ap);
  va_end(ap);
  return -1;
}

/* A scalar for a "found ..." clause: 'abc', nothing, the quoted string '42'.
 * Long values are cut, control characters masked. */
static void describe(char *out, size_t n, const char *s, size_t len, int plain) {
  char shown[64];
  size_t k = 0;
  if (plain && len == 0) {
    snprintf(out, n, "nothing");
    return;
  }
  for (size_t i = 0; i < len && k < 48; i++)
    shown[k++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  shown[k] = '\0';
  snprintf(out, n, "%s'%s%s'", plain ? "" : "the quoted string ", shown, len > 48 ? "..." : "");
}

static int is_null_word(const char *s, size_t n) {
  return n == 0 || (n == 1 && s[0] == '~') ||
         (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* The shortest %g form, from 6 digits up, that reads back as exactly v: 300
 * stays 300 (not 3e+02) and 0.05 stays 0.05 (not 0.050000000000000003). */
static void fmt_double(char *out, size_t n, double v) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(out, n, "%.*g", prec, v);
    if (strtod(out, NULL) == v) return;
  }
}

/* "an integer in [1, 100000]", "a number > 0", "a number in [0, 1)". */
static void range_desc(const key_spec *k, char *out, size_t n) {
  const char *what = k->type == K_DBL ? "a number" : "an integer";
  if (k->max >= (k->type == K_DBL ? HUGE_VAL : INT_MAX))
    snprintf(out, n, "%s %s %.15g", what, k->flags & F_MIN_EXCL ? ">" : ">=", k->min);
  else
    snprintf(out, n, "%s in %c%.15g, %.15g%c", what, k->flags & F_MIN_EXCL ? '(' : '[', k->min,
             k->max, k->flags & F_MAX_EXCL ? ')' : ']');
}

static int in_range(const key_spec *k, double v) {
  if (k->flags & F_MIN_EXCL ? !(v > k->min) : !(v >= k->min)) return 0;
  return k->flags & F_MAX_EXCL ? v < k->max : v <= k->max;
}

/* "constant, cosine" */
static void allowed_list(const key_spec *k, char *out, size_t n) {
  size_t len = 0;
  out[0] = '\0';
  for (const char *const *a = k->allowed; a && *a && len < n; a++)
    len += (size_t)snprintf(out + len, n - len, "%s%s", a == k->allowed ? "" : ", ", *a);
}

static int find_allowed(const key_spec *k, const char *s, size_t n) {
  for (int i = 0; k->allowed[i]; i++)
    if (strlen(k->allowed[i]) == n && !memcmp(k->allowed[i], s, n)) return i;
  return -1;
}

static const char *enum_name(const key_spec *k, int v) {
  for (int i = 0; k->allowed[i]; i++)
    if (i == v) return k->allowed[i];
  return "invalid";
}

/* Stores scalar s (n bytes, plain or quoted) into the field of k inside base;
 * writes nothing on failure.
 * @return 0, or -1 with "expected ..., found ..." in why (WHY_MAX bytes). */
static int set_scalar(const key_spec *k, void *base, const char *s, size_t n, int plain,
                      char *why) {
  char found[96], want[96], tmp[64], *end;
  char *field = (char *)base + k->off;
  int iv;
  describe(found, sizeof found, s, n, plain);
  switch (k->type) {
    case K_STR:
      if (plain && is_null_word(s, n)) n = 0;
      if (memchr(s, '\0', n))
        return fail(why, "expected a string without NUL characters, found %s", found);
      if (n >= k->size)
        return fail(why, "expected a string of at most %zu bytes, found %zu bytes (%s)",
                    k->size - 1, n, found);
      memset(field, 0, k->size);
      memcpy(field, s, n);
      return 0;
    case K_ENUM:
    case K_ENUMI:
      iv = find_allowed(k, s, n);
      allowed_list(k, want, sizeof want);
      if (iv < 0) return fail(why, "expected one of %s, found %s", want, found);
      if (k->type == K_ENUMI) {
        memcpy(field, &iv, sizeof iv);
      } else {
        memset(field, 0, k->size);
        memcpy(field, s, n);
      }
      return 0;
    case K_BOOL:
      iv = !plain                             ? -1
           : n == 4 && !memcmp(s, "true", 4)  ? 1
           : n == 5 && !memcmp(s, "false", 5) ? 0
                                              : -1;
      if (iv < 0) return fail(why, "expected true or false, found %s", found);
      memcpy(field, &iv, sizeof iv);
      return 0;
    case K_LAYERS: return fail(why, "expected a list of layers, found %s", found);
    case K_INT:
    case K_U64:
    case K_DBL: break;
  }

  /* Numbers: plain scalars only, the whole text consumed, no overflow.
   * strtoll/strtod skip leading blanks and strtoull takes a sign: refuse both. */
  const char *what = k->type == K_DBL   ? "a number"
                     : k->type == K_U64 ? "an unsigned integer"
                                        : "an integer";
  int start_ok = n > 0 && !isspace((unsigned char)s[0]) &&
                 (k->type == K_DBL || isdigit((unsigned char)s[0]) ||
                  (k->type == K_INT && n > 1 && (s[0] == '-' || s[0] == '+')));
  if (!plain || !start_ok || n >= sizeof tmp)
    return fail(why, "expected %s, found %s", what, found);
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  errno = 0;
  if (k->type == K_U64) {
    uint64_t v = strtoull(tmp, &end, 10);
    if (*end) return fail(why, "expected %s, found %s", what, found);
    if (errno == ERANGE)
      return fail(why, "expected an integer in [0, %" PRIu64 "], found %s", UINT64_MAX, tmp);
    memcpy(field, &v, sizeof v);
    return 0;
  }
  range_desc(k, want, sizeof want);
  if (k->type == K_INT) {
    long long v = strtoll(tmp, &end, 10);
    if (*end) return fail(why, "expected %s, found %s", what, found);
    if (errno == ERANGE || !in_range(k, (double)v))
      return fail(why, "expected %s, found %s", want, tmp);
    iv = (int)v; /* in range, so it fits */
    memcpy(field, &iv, sizeof iv);
    return 0;
  }
  double v = strtod(tmp, &end);
  if (*end) return fail(why, "expected %s, found %s", what, found);
  if (!isfinite(v)) return fail(why, "expected a finite number, found %s", found);
  if (errno == ERANGE && v == 0)
    return fail(why, "expected %s, found %s, which is too small for a double", want, tmp);
  if (!in_range(k, v)) return fail(why, "expected %s, found %s", want, tmp);
  memcpy(field, &v, sizeof v);
  return 0;
}

/* ---- did you mean ----------------------------------------------------------- */

static size_t levenshtein(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), row[65];
  if (la > 64 || lb > 64) return SIZE_MAX;
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

static const char *leaf(const char *path) {
  const char *dot = strrchr(path, '.');
  return dot ? dot + 1 : path;
}

/* The closest of names to name, or NULL when none is within max(2, len/3)
 * edits. A longer or shorter spelling (`optimizer`, `sched`) counts as one
 * edit. The candidates sit `stride` bytes apart, so the same walk serves a
 * plain array of strings and the `path` members of a key_spec table. */
static const char *nearest(const char *name, const char *const *names, size_t count,
                           size_t stride) {
  const char *best = NULL;
  size_t best_d = SIZE_MAX, len = strlen(name), limit = len / 3 > 2 ? len / 3 : 2;
  for (size_t i = 0; i < count; i++) {
    const char *cand = *(const char *const *)((const char *)names + i * stride);
    size_t lc = strlen(cand), m = lc < len ? lc : len;
    size_t d = m >= 3 && !strncmp(name, cand, m) ? 1 : levenshtein(name, cand);
    if (d < best_d) best_d = d, best = cand;
  }
  return best_d <= limit ? best : NULL;
}

/* The known key nearest to path. A key whose last part matches exactly
 * (`train.lr`, or `lr` alone → `optim.lr`) wins over spelling. */
static const char *suggest_key(const char *path) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (!strcmp(leaf(path), leaf(keys[i].path))) return keys[i].path;
  return nearest(path, &keys[0].path, N_KEYS, sizeof keys[0]);
}

static const key_spec *find_key(const key_spec *table, size_t count, const char *path) {
  for (size_t i = 0; i < count; i++)
    if (!strcmp(table[i].path, path)) return &table[i];
  return NULL;
}

/* ---- parsing a document ------------------------------------------------------- */

typedef struct {
  const char *file;
  yaml_document_t *doc;
  ms_config *cfg;
  errlist err;
} pctx;

__attribute__((format(printf, 3, 4))) static void perr(pctx *c, yaml_mark_t m, const char *fmt,
                                                       ...) {
  char loc[MS_PATH_MAX + 64], msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(loc, sizeof loc, "%s:%zu:%zu", c->file, m.line + 1, m.column + 1);
  err_add(&c->err, loc, "%s", msg);
}

/* "found ..." for any node. */
static void describe_node(const yaml_node_t *node, char *out, size_t n) {
  if (node->type == YAML_MAPPING_NODE)
    snprintf(out, n, "a mapping");
  else if (node->type == YAML_SEQUENCE_NODE)
    snprintf(out, n, "a list");
  else
    describe(out, n, (const char *)node->data.scalar.value, node->data.scalar.length,
             node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
}

static int is_empty_plain(const yaml_node_t *node) {
  return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         is_null_word((const char *)node->data.scalar.value, node->data.scalar.length);
}

/* Checks that node is a mapping (or, when empty_ok, nothing at all). */
static int want_mapping(pctx *c, const yaml_node_t *node, const char *path, const char *what,
                        int empty_ok) {
  char found[96];
  if (node->type == YAML_MAPPING_NODE) return 1;
  if (empty_ok && is_empty_plain(node)) return 0;
  describe_node(node, found, sizeof found);
  perr(c, node->start_mark, "%s%sexpected %s, found %s", path, *path ? ": " : "", what, found);
  return 0;
}

static void set_from_node(pctx *c, const key_spec *k, void *base, const char *path,
                          const yaml_node_t *v) {
  char why[WHY_MAX], found[96];
  if (v->type != YAML_SCALAR_NODE) {
    describe_node(v, found, sizeof found);
    snprintf(why, sizeof why, "expected a single value, found %s", found);
  } else if (!set_scalar(k, base, (const char *)v->data.scalar.value, v->data.scalar.length,
                         v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, why)) {
    return;
  }
  perr(c, v->start_mark, "%s: %s", path, why);
}

static void parse_layers(pctx *c, const yaml_node_t *v);

/* Reads the keys of one mapping into base: a section (`table` = keys, looked
 * up as `prefix.key`) or a layer item (`table` = layer_keys, looked up as
 * `key`). first_line[row] records where each row was set, for duplicates. */
static void parse_keys(pctx *c, const yaml_node_t *map, const char *prefix, const key_spec *table,
                       size_t count, void *base, size_t *first_line) {
  char name[128], path[256], found[96];
  int is_section = table == keys;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    if (kn->type != YAML_SCALAR_NODE ||
        memchr(kn->data.scalar.value, '\0', kn->data.scalar.length)) {
      describe_node(kn, found, sizeof found);
      perr(c, kn->start_mark, "%s: expected a key name, found %s", prefix, found);
      continue;
    }
    snprintf(name, sizeof name, "%.*s", (int)kn->data.scalar.length,
             (const char *)kn->data.scalar.value);
    snprintf(path, sizeof path, "%s.%s", prefix, name);
    const key_spec *k = find_key(table, count, is_section ? path : name);
    if (!k) {
      const char *s = is_section ? suggest_key(path)
                                 : nearest(name, layer_key_names, N_LAYER_KEYS, sizeof(char *));
      if (s && is_section) {
        perr(c, kn->start_mark, "%s: unknown key, did you mean '%s'?", path, s);
      } else if (s) {
        perr(c, kn->start_mark, "%s: unknown key, did you mean '%s.%s'?", path, prefix, s);
      } else {
        sbuf known = {0};
        for (size_t i = 0; i < count; i++)
          if (!is_section || !strncmp(table[i].path, path, strlen(prefix) + 1))
            sb_printf(&known, "%s%s", known.len ? ", " : "", leaf(table[i].path));
        perr(c, kn->start_mark, "%s: unknown key (%s has: %s)", path, prefix,
             known.s ? known.s : "");
        free(known.s);
      }
      continue;
    }
    size_t row = (size_t)(k - table);
    if (first_line[row]) {
      perr(c, kn->start_mark, "%s: duplicate key (first set at line %zu)", path, first_line[row]);
      continue;
    }
    first_line[row] = kn->start_mark.line + 1;
    if (k->type == K_LAYERS)
      parse_layers(c, vn);
    else
      set_from_node(c, k, base, path, vn);
  }
}

static void parse_layers(pctx *c, const yaml_node_t *v) {
  char found[96], prefix[64];
  /* The file's list replaces whatever was there. */
  memset(c->cfg->model.layers, 0, sizeof c->cfg->model.layers);
  c->cfg->model.n_layers = 0;
  if (is_empty_plain(v)) return; /* `layers:` with nothing: validate reports it */
  if (v->type != YAML_SEQUENCE_NODE) {
    describe_node(v, found, sizeof found);
    perr(c, v->start_mark, "model.layers: expected a list of layers, found %s", found);
    return;
  }
  long count = v->data.sequence.items.top - v->data.sequence.items.start;
  if (count > MS_MAX_LAYERS) {
    perr(c, v->start_mark, "model.layers: expected at most %d layers, found %ld", MS_MAX_LAYERS,
         count);
    return;
  }
  for (int i = 0; i < (int)count; i++) {
    yaml_node_t *item = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
    size_t first_line[N_LAYER_KEYS] = {0};
    snprintf(prefix, sizeof prefix, "model.layers[%d]", i);
    if (!want_mapping(c, item, prefix, "a mapping like {type: dense, units: 10, activation: relu}",
                      0))
      continue;
    parse_keys(c, item, prefix, layer_keys, N_LAYER_KEYS, &c->cfg->model.layers[i], first_line);
    if (!first_line[LAYER_UNITS])
      perr(c, item->start_mark,
           "%s.units: expected an integer >= 1, found nothing (every layer needs units)", prefix);
  }
  c->cfg->model.n_layers = (int)count;
}

static void parse_root(pctx *c, const yaml_node_t *root) {
  char name[128];
  size_t sec_line[N_SECTIONS] = {0}, key_line[N_KEYS] = {0};
  if (!want_mapping(c, root, "",
                    "a mapping of sections (run, data, model, optim, ...) at the top level", 0))
    return;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    size_t s = 0;
    if (kn->type == YAML_SCALAR_NODE)
      snprintf(name, sizeof name, "%.*s", (int)kn->data.scalar.length,
               (const char *)kn->data.scalar.value);
    else
      snprintf(name, sizeof name, "(%s)", kn->type == YAML_MAPPING_NODE ? "a mapping" : "a list");
    while (s < N_SECTIONS && strcmp(sections[s], name)) s++;
    if (s == N_SECTIONS) {
      /* `lr:` at the top level is optim.lr out of its section. */
      const char *hint = suggest_key(name);
      if (!hint || strcmp(leaf(hint), name))
        hint = nearest(name, sections, N_SECTIONS, sizeof(char *));
      if (hint)
        perr(c, kn->start_mark, "%s: unknown section, did you mean '%s'?", name, hint);
      else
        perr(c, kn->start_mark,
             "%s: unknown section (expected one of run, data, model, optim, schedule, train, "
             "checkpoint, comm, log)",
             name);
    } else if (sec_line[s]) {
      perr(c, kn->start_mark, "%s: duplicate section (first at line %zu)", name, sec_line[s]);
    } else {
      sec_line[s] = kn->start_mark.line + 1;
      /* `log:` with nothing under it means all defaults. */
      if (want_mapping(c, vn, sections[s], "a mapping of keys", 1))
        parse_keys(c, vn, sections[s], keys, N_KEYS, c->cfg, key_line);
    }
  }
}

/* Reports a libyaml failure (encoding, syntax) as one problem. */
static void yaml_problem(pctx *c, const yaml_parser_t *p, const char *text, size_t len) {
  const char *problem = p->problem ? p->problem : "unknown problem";
  if (p->error == YAML_READER_ERROR) {
    /* Reader errors carry a byte offset, not a mark. Inside a multi-byte
     * sequence libyaml points at the bad trailing byte; point at the lead
     * byte instead, which is the one the user has to fix. */
    size_t at = p->problem_offset < len ? p->problem_offset : len;
    for (int k = 0; k < 3 && at > 0 && at < len && ((unsigned char)text[at] & 0xC0) != 0xC0 &&
                    ((unsigned char)text[at - 1] & 0x80);
         k++)
      at--;
    yaml_mark_t m = {0};
    for (size_t i = 0; i < at; i++) {
      m.column = text[i] == '\n' ? 0 : m.column + 1;
      m.line += text[i] == '\n';
    }
    unsigned byte = at < len ? (unsigned char)text[at] : 0;
    if (strstr(problem, "UTF-8") || strstr(problem, "Unicode"))
      perr(c, m,
           "expected UTF-8 text, found bytes that are not valid UTF-8 (0x%02X at offset %zu: "
           "%s); save the file as UTF-8",
           byte, at, problem);
    else
      perr(c, m, "expected YAML text, found an invalid character (0x%02X at offset %zu: %s)", byte,
           at, problem);
  } else if (p->context) {
    perr(c, p->problem_mark, "YAML syntax error: %s (%s at line %zu)", problem, p->context,
         p->context_mark.line + 1);
  } else {
    perr(c, p->problem_mark, "YAML syntax error: %s", problem);
  }
}

int config_parse(ms_config *cfg, const char *text, size_t len, const char *filename) {
  yaml_parser_t parser;
  yaml_document_t doc, extra;
  pctx c = {.file = filename ? filename : "<config>"};
  int rc = MS_ENOMEM;

  if (!text) text = "", len = 0; /* libyaml asserts on a NULL input */
  c.cfg = malloc(sizeof *c.cfg);
  if (!c.cfg) goto out;
  memcpy(c.cfg, cfg, sizeof *cfg);
  if (!yaml_parser_initialize(&parser)) goto out_cfg;
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    if (parser.error == YAML_MEMORY_ERROR) goto out_parser;
    yaml_problem(&c, &parser, text, len);
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    c.doc = &doc;
    if (!root) {
      perr(
          &c, (yaml_mark_t){0},
          "expected a mapping of sections (run, data, model, optim, ...), found an empty document");
    } else {
      parse_root(&c, root);
      /* A second document would be silently ignored: refuse it. */
      if (!yaml_parser_load(&parser, &extra)) {
        yaml_problem(&c, &parser, text, len);
      } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&extra);
        if (r2) perr(&c, r2->start_mark, "expected one YAML document, found a second one");
        yaml_document_delete(&extra);
      }
    }
    yaml_document_delete(&doc);
  }
  rc = err_finish(&c.err);
  if (rc == 0) memcpy(cfg, c.cfg, sizeof *cfg);
  c.err.b.s = NULL;
out_parser:
  free(c.err.b.s);
  yaml_parser_delete(&parser);
out_cfg:
  free(c.cfg);
out:
  return rc == MS_ENOMEM ? ms_error_set(MS_ENOMEM, "out of memory parsing %s", c.file) : rc;
}

/* ---- defaults, overrides, validation, emission --------------------------------- */

void config_defaults(ms_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &keys[i];
    char *field = (char *)cfg + k->off;
    int iv = (int)k->def_n;
    uint64_t uv = (uint64_t)k->def_n;
    switch (k->type) {
      case K_STR:
      case K_ENUM: memcpy(field, k->def_s, strlen(k->def_s) + 1); break;
      case K_INT:
      case K_BOOL:
      case K_ENUMI: memcpy(field, &iv, sizeof iv); break;
      case K_U64: memcpy(field, &uv, sizeof uv); break;
      case K_DBL: memcpy(field, &k->def_n, sizeof k->def_n); break;
      case K_LAYERS: break; /* no layers: the config must give them */
    }
  }
}

/* Splits `model.layers[3].units` into 3 and "units". @return 0 or -1. */
static int layer_path(const char *path, int *index, const char **field) {
  static const char prefix[] = "model.layers[";
  char *end;
  const char *num = path + sizeof prefix - 1;
  if (strncmp(path, prefix, sizeof prefix - 1) || !isdigit((unsigned char)*num)) return -1;
  errno = 0;
  long v = strtol(num, &end, 10);
  if (errno || v > INT_MAX || strncmp(end, "].", 2)) return -1;
  *index = (int)v;
  *field = end + 2;
  return 0;
}

int config_override(ms_config *cfg, const char *assignment) {
  char path[256], why[WHY_MAX] = "", found[96];
  const char *eq = strchr(assignment, '='), *field = path, *hint;
  const key_spec *k;
  int index = -1, n = cfg->model.n_layers, rc = 0;
  yaml_parser_t parser;
  yaml_document_t doc;

  if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof path)
    return ms_error_set(MS_ECONFIG, "--set %s: expected section.key=value", assignment);
  snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
  if (!strncmp(path, "model.layers", 12) && strcmp(path, "model.layers") &&
      layer_path(path, &index, &field))
    return ms_error_set(MS_ECONFIG, "--set %s: expected model.layers[INDEX].KEY=value", assignment);
  if (index >= 0 && (index > n || index >= MS_MAX_LAYERS)) {
    if (n < MS_MAX_LAYERS)
      return ms_error_set(MS_ECONFIG,
                          "--set %s: expected a layer index in [0, %d] (%d layers; index %d "
                          "appends one), found %d",
                          assignment, n, n, n, index);
    return ms_error_set(MS_ECONFIG, "--set %s: expected a layer index in [0, %d], found %d",
                        assignment, MS_MAX_LAYERS - 1, index);
  }
  k = index >= 0 ? find_key(layer_keys, N_LAYER_KEYS, field) : find_key(keys, N_KEYS, path);
  if (k && k->type == K_LAYERS)
    return ms_error_set(MS_ECONFIG, "--set %s: expected model.layers[INDEX].KEY=value", assignment);
  if (!k && index >= 0 && (hint = nearest(field, layer_key_names, N_LAYER_KEYS, sizeof(char *))))
    return ms_error_set(MS_ECONFIG,
                        "--set %s: unknown key '%s', did you mean 'model.layers[%d].%s'?",
                        assignment, path, index, hint);
  if (!k && index < 0 && (hint = suggest_key(path)))
    return ms_error_set(MS_ECONFIG, "--set %s: unknown key '%s', did you mean '%s'?", assignment,
                        path, hint);
  if (!k) return ms_error_set(MS_ECONFIG, "--set %s: unknown key '%s'", assignment, path);

  /* The value is one YAML scalar, so quotes and escapes work as in the file. */
  if (!yaml_parser_initialize(&parser))
    return ms_error_set(MS_ENOMEM, "out of memory applying --set %s", assignment);
  yaml_parser_set_input_string(&parser, (const unsigned char *)eq + 1, strlen(eq + 1));
  if (!yaml_parser_load(&parser, &doc)) {
    rc = ms_error_set(MS_ECONFIG,
                      "--set %s: expected a YAML scalar value, found a syntax error (%s)",
                      assignment, parser.problem ? parser.problem : "unknown problem");
    goto out;
  }
  const yaml_node_t *node = yaml_document_get_root_node(&doc);
  ms_layer_cfg layer = {0};
  if (index >= 0 && index < n) layer = cfg->model.layers[index];
  if (node && node->type != YAML_SCALAR_NODE) {
    describe_node(node, found, sizeof found);
    snprintf(why, sizeof why, "expected a single value, found %s", found);
  } else if (!set_scalar(k, index >= 0 ? (void *)&layer : (void *)cfg,
                         node ? (const char *)node->data.scalar.value : "",
                         node ? node->data.scalar.length : 0,
                         !node || node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, why)) {
    why[0] = '\0';
    if (index >= 0) {
      cfg->model.layers[index] = layer; /* index == n appends a layer */
      if (index == n) cfg->model.n_layers++;
    }
  }
  if (why[0]) rc = ms_error_set(MS_ECONFIG, "--set %s: %s", assignment, why);
  yaml_document_delete(&doc);
out:
  yaml_parser_delete(&parser);
  return rc;
}

/* Checks one field against its row; adds a problem when it is out of bounds. */
static void validate_field(errlist *e, const key_spec *k, const void *base, const char *path) {
  const char *field = (const char *)base + k->off;
  char want[128], got[40];
  int iv;
  double dv;
  switch (k->type) {
    case K_STR:
    case K_ENUM:
      allowed_list(k, want, sizeof want);
      if (!memchr(field, '\0', k->size))
        err_add(e, NULL, "%s: expected a string of at most %zu bytes, found an unterminated one",
                path, k->size - 1);
      else if (k->type == K_ENUM && find_allowed(k, field, strlen(field)) < 0)
        err_add(e, NULL, "%s: expected one of %s, found '%s'", path, want, field);
      else if ((k->flags & F_REQUIRED) && !field[0])
        err_add(e, NULL, "%s is required (%s)", path, k->doc);
      break;
    case K_INT:
    case K_BOOL:
      memcpy(&iv, field, sizeof iv);
      if (k->type == K_BOOL)
        snprintf(want, sizeof want, "true or false");
      else
        range_desc(k, want, sizeof want);
      if (!in_range(k, iv)) err_add(e, NULL, "%s: expected %s, found %d", path, want, iv);
      break;
    case K_ENUMI:
      memcpy(&iv, field, sizeof iv);
      allowed_list(k, want, sizeof want);
      if (!strcmp(enum_name(k, iv), "invalid"))
        err_add(e, NULL, "%s: expected one of %s, found %d", path, want, iv);
      break;
    case K_DBL:
      memcpy(&dv, field, sizeof dv);
      range_desc(k, want, sizeof want);
      fmt_double(got, sizeof got, dv);
      if (!isfinite(dv) || !in_range(k, dv))
        err_add(e, NULL, "%s: expected %s, found %s", path, want, got);
      break;
    case K_U64:
    case K_LAYERS: break;
  }
}

int config_validate(const ms_config *cfg, int world_size) {
  errlist e = {0};
  char path[64];
  int n = cfg->model.n_layers;
  for (size_t i = 0; i < N_KEYS; i++) validate_field(&e, &keys[i], cfg, keys[i].path);
  if (n < 1 || n > MS_MAX_LAYERS) {
    err_add(&e, NULL, "model.layers is required: expected 1 to %d layers, found %d", MS_MAX_LAYERS,
            n);
  } else {
    for (int l = 0; l < n; l++)
      for (size_t j = 0; j < N_LAYER_KEYS; j++) {
        snprintf(path, sizeof path, "model.layers[%d].%s", l, layer_keys[j].path);
        validate_field(&e, &layer_keys[j], &cfg->model.layers[l], path);
      }
    int act = (int)cfg->model.layers[n - 1].activation;
    if (act != MS_ACT_NONE && strcmp(enum_name(&layer_keys[2], act), "invalid"))
      err_add(&e, NULL,
              "model.layers[%d].activation: expected none on the last layer (it produces "
              "the logits for %.32s), found %s",
              n - 1, cfg->model.loss, enum_name(&layer_keys[2], act));
  }
  if (cfg->data.test_x[0] && !cfg->data.test_y[0])
    err_add(&e, NULL, "data.test_y is required when data.test_x is set (\"\" = no evaluation)");
  if (world_size < 1)
    err_add(&e, NULL, "world size %d: expected at least 1 rank", world_size);
  else if (cfg->train.batch_size > 0 && cfg->train.batch_size % world_size)
    err_add(&e, NULL,
            "train.batch_size %d is not divisible by the world size %d: the global batch "
            "is split evenly across ranks",
            cfg->train.batch_size, world_size);
  if (cfg->train.max_steps > 0 && cfg->schedule.warmup_steps > cfg->train.max_steps)
    err_add(&e, NULL,
            "schedule.warmup_steps %d exceeds train.max_steps %d: the run would end "
            "before the warmup does",
            cfg->schedule.warmup_steps, cfg->train.max_steps);
  return err_finish(&e);
}

/* Writes s so that it reads back as itself: plain when that is safe,
 * double-quoted with escapes otherwise. */
static void emit_string(sbuf *b, const char *s, size_t size) {
  size_t n = strnlen(s, size), i = 0;
  int plain = n > 0 && s[0] != '-' && !is_null_word(s, n);
  for (; plain && i < n; i++) plain = isalnum((unsigned char)s[i]) || strchr("_./-", s[i]);
  if (plain) {
    sb_printf(b, "%.*s", (int)n, s);
    return;
  }
  sb_printf(b, "\"");
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      sb_printf(b, "\\%c", ch);
    else if (ch == '\n')
      sb_printf(b, "\\n");
    else if (ch == '\t')
      sb_printf(b, "\\t");
    else if (ch < 0x20 || ch == 0x7f)
      sb_printf(b, "\\x%02X", ch);
    else
      sb_printf(b, "%c", ch);
  }
  sb_printf(b, "\"");
}

char *config_emit(const ms_config *cfg) {
  sbuf b = {0};
  char num[40];
  size_t section_len = 0;
  sb_printf(&b, "# midscale resolved config: every key, defaults filled in\n");
  for (size_t i = 0; i < N_KEYS; i++) {
    const key_spec *k = &keys[i];
    const char *field = (const char *)cfg + k->off, *name = leaf(k->path);
    size_t sec_len = (size_t)(name - 1 - k->path), start;
    int iv = 0;
    uint64_t uv;
    double dv;
    if (i == 0 || sec_len != section_len || strncmp(keys[i - 1].path, k->path, sec_len + 1))
      sb_printf(&b, "%.*s:\n", (int)sec_len, k->path);
    section_len = sec_len;
    start = b.len;
    sb_printf(&b, "  %s: ", name);
    memcpy(&iv, field, k->type == K_INT || k->type == K_BOOL ? sizeof iv : 0);
    switch (k->type) {
      case K_STR:
      case K_ENUM: emit_string(&b, field, k->size); break;
      case K_INT: sb_printf(&b, "%d", iv); break;
      case K_BOOL: sb_printf(&b, "%s", iv == 1 ? "true" : iv ? "invalid" : "false"); break;
      case K_U64:
        memcpy(&uv, field, sizeof uv);
        sb_printf(&b, "%" PRIu64, uv);
        break;
      case K_DBL:
        memcpy(&dv, field, sizeof dv);
        fmt_double(num, sizeof num, dv);
        sb_printf(&b, "%s", num);
        break;
      case K_ENUMI: break;
      case K_LAYERS: sb_printf(&b, "%s", cfg->model.n_layers > 0 ? "" : "[]"); break;
    }
    /* Comments line up at column 40 when the value leaves room. */
    size_t w = b.oom ? 0 : b.len - start;
    sb_printf(&b, "%*s# %s\n", w < 38 ? (int)(38 - w) : 2, "", k->doc);
    for (int l = 0; k->type == K_LAYERS && l < cfg->model.n_layers && l < MS_MAX_LAYERS; l++)
      sb_printf(&b, "    - {type: %s, units: %d, activation: %s}\n",
                enum_name(&layer_keys[0], (int)cfg->model.layers[l].type),
                cfg->model.layers[l].units,
                enum_name(&layer_keys[2], (int)cfg->model.layers[l].activation));
  }
  if (b.oom) free(b.s);
  return b.oom ? NULL : b.s;
}

int config_read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL, *nb;
  size_t n = 0, cap = 0, got;
  int err;
  *out = NULL;
  *len = 0;
  if (!f) return ms_error_set(MS_EUSAGE, "cannot read config '%s': %s", path, strerror(errno));
  do {
    if (cap - n < 4096 + 1) {
      cap = cap ? cap * 2 : 8192;
      if (!(nb = realloc(buf, cap))) {
        free(buf);
        fclose(f);
        return ms_error_set(MS_ENOMEM, "out of memory reading config '%s'", path);
      }
      buf = nb;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
  } while (got > 0);
  err = ferror(f) ? errno : 0;
  fclose(f);
  if (err) {
    free(buf);
    return ms_error_set(MS_EUSAGE, "cannot read config '%s': %s", path, strerror(err));
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}
