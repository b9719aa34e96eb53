/* config — YAML run description → ms_config: parsing, `--set` overrides,
 * validation and the cross-field checks, all driven by the schema table
 * `cfg_keys` of config_schema.c (which also holds defaults and emission).
 * Adding a key is one row there (plus the struct field). `model.layers`, a
 * list of mappings, is the one special case; its items are described by the
 * table `cfg_layer_keys`, whose rows also say which layer types each key
 * belongs to and which types need it. `model.input` is the one list of
 * scalars.
 *
 * Layer items: every item starts from the item defaults (a missing type is
 * dense). The rules of the layer's type (layer_key_problem) are checked once
 * a whole item is read, so that the file's messages carry the line of the
 * key, and again by config_validate() for what `--set` made. A `--set` on a
 * layer resets the keys it makes inapplicable (reset_dropped_keys).
 *
 * A failed config_parse() or config_override() leaves the caller's struct
 * untouched: parsing works on a copy, an override writes only on success.
 */
#include "config.h"

#include "config_internal.h"
#include "ms_error.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- the list of problems ----------------------------------------------------- */

#define MAX_SHOWN 20 /* problems listed in one message; ms_error keeps 4 KiB */

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
  cfg_sb_printf(&e->b, "%s%s%s%s", e->n > 1 ? "\n" : "", where ? where : "", where ? ": " : "",
                msg);
}

/* Turns the collected problems into the return code and the ms_error message. */
static int err_finish(errlist *e) {
  int rc = 0;
  if (e->n > MAX_SHOWN) cfg_sb_printf(&e->b, "\n(%d more problems not shown)", e->n - MAX_SHOWN);
  if (e->b.oom)
    rc = ms_error_set(MS_ENOMEM, "out of memory while reporting config problems");
  else if (e->n > 0)
    rc = ms_error_set(MS_ECONFIG, "%s", e->b.s);
  free(e->b.s);
  return rc;
}

/* ---- scalars, shared by the file and by --set ------------------------------ */

static const char *suggest_value(const key_spec *k, const char *s, size_t n);

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

/* Stores scalar s (n bytes, plain or quoted) into the field of k inside base;
 * writes nothing on failure.
 * @return 0, or -1 with "expected ..., found ..." in why (WHY_MAX bytes). */
static int set_scalar(const key_spec *k, void *base, const char *s, size_t n, int plain,
                      char *why) {
  char found[96], want[160], tmp[64], *end;
  char *field = (char *)base + k->off;
  const char *hint;
  int iv;
  describe(found, sizeof found, s, n, plain);
  switch (k->type) {
    case K_STR:
      if (plain && cfg_is_null_word(s, n)) n = 0;
      if (memchr(s, '\0', n))
        return fail(why, "expected a string without NUL characters, found %s", found);
      if (n >= k->size)
        return fail(why, "expected a string of at most %zu bytes, found %zu bytes (%s)",
                    k->size - 1, n, found);
      memset(field, 0, k->size);
      memcpy(field, s, n);
      return 0;
    case K_ENUM:
      iv = cfg_find_allowed(k, s, n);
      cfg_allowed_list(k, want, sizeof want);
      if (iv < 0 && (hint = suggest_value(k, s, n)))
        return fail(why, "expected one of %s, found %s, did you mean '%s'?", want, found, hint);
      if (iv < 0) return fail(why, "expected one of %s, found %s", want, found);
      memcpy(field, &iv, sizeof iv);
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
    case K_DIMS:
      if (plain && cfg_is_null_word(s, n)) {
        memset(field, 0, k->size); /* nothing: the shape comes from the data */
        return 0;
      }
      return fail(why, "expected a list of integers like [28, 28], found %s", found);
    case K_FLOATS:
      if (plain && cfg_is_null_word(s, n)) {
        memset(field, 0, sizeof(ms_floats)); /* n = 0: not given */
        return 0;
      }
      return fail(why, "expected a list of numbers like [0.5] or [0.49, 0.48, 0.45], found %s",
                  found);
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
  cfg_range_desc(k, want, sizeof want);
  if (k->type == K_INT) {
    long long v = strtoll(tmp, &end, 10);
    if (*end) return fail(why, "expected %s, found %s", what, found);
    if (errno == ERANGE || !cfg_in_range(k, (double)v))
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
  if (!cfg_in_range(k, v)) return fail(why, "expected %s, found %s", want, tmp);
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

/* The allowed value of k nearest to s (n bytes): one that differs only in
 * case, else the nearest spelling; NULL when none is close. */
static const char *suggest_value(const key_spec *k, const char *s, size_t n) {
  char name[65];
  size_t count = 0;
  if (n == 0 || n >= sizeof name || memchr(s, '\0', n)) return NULL;
  memcpy(name, s, n);
  name[n] = '\0';
  for (; k->allowed[count]; count++) {
    const char *a = k->allowed[count];
    size_t i = 0;
    while (i < n && a[i] && tolower((unsigned char)a[i]) == tolower((unsigned char)name[i])) i++;
    if (i == n && !a[i]) return a;
  }
  return nearest(name, k->allowed, count, sizeof(char *));
}

/* The known key nearest to path. A key whose last part matches exactly
 * (`train.lr`, or `lr` alone → `optim.lr`) wins over spelling. */
static const char *suggest_key(const char *path) {
  for (size_t i = 0; i < cfg_n_keys; i++)
    if (!strcmp(cfg_leaf(path), cfg_leaf(cfg_keys[i].path))) return cfg_keys[i].path;
  return nearest(path, &cfg_keys[0].path, cfg_n_keys, sizeof cfg_keys[0]);
}

static const key_spec *find_key(const key_spec *table, size_t count, const char *path) {
  for (size_t i = 0; i < count; i++)
    if (!strcmp(table[i].path, path)) return &table[i];
  return NULL;
}

/* ---- bounds, and the rules of layer items ------------------------------------ */

/* The problem of the numeric, bool or K_ENUM field of row k inside base, as
 * "expected ..., found ..." in why (n bytes). @return 1, or 0 when the value
 * is within bounds (other types always are, here). */
static int bounds_problem(const key_spec *k, const void *base, char *why, size_t n) {
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
static int layer_key_problem(const ms_layer_cfg *l, size_t row, int missing, char *why, size_t n) {
  const key_spec *k = &cfg_layer_keys[row];
  const key_spec *acts = &cfg_layer_keys[LAYER_ACTIVATION];
  unsigned type = (unsigned)l->type;
  char want[160];
  if (row == LAYER_TYPE) return bounds_problem(k, l, why, n);
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
  if (bounds_problem(k, l, why, n)) {
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
         cfg_is_null_word((const char *)node->data.scalar.value, node->data.scalar.length);
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

/* Stores a list node into the K_DIMS field of k inside base; writes nothing
 * on failure. @return 0, or -1 with the reason in why (WHY_MAX bytes). */
static int set_dims(const key_spec *k, void *base, yaml_document_t *doc, const yaml_node_t *v,
                    char *why) {
  ms_dims d = {0};
  key_spec item = {.type = K_INT, .off = 0, .size = sizeof(int), .min = k->min, .max = k->max};
  char inner[WHY_MAX], found[96];
  long count = v->data.sequence.items.top - v->data.sequence.items.start;
  if (count > MS_MAX_DIMS)
    return fail(why, "expected at most %d dimensions, found %ld", MS_MAX_DIMS, count);
  for (int i = 0; i < (int)count; i++) {
    const yaml_node_t *n = yaml_document_get_node(doc, v->data.sequence.items.start[i]);
    if (n->type != YAML_SCALAR_NODE) {
      describe_node(n, found, sizeof found);
      return fail(why, "item %d: expected an integer, found %s", i, found);
    }
    if (set_scalar(&item, &d.dims[i], (const char *)n->data.scalar.value, n->data.scalar.length,
                   n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, inner))
      return fail(why, "item %d: %s", i, inner);
  }
  d.ndim = (int)count;
  memcpy((char *)base + k->off, &d, sizeof d);
  return 0;
}

/* Stores a list node into the K_FLOATS field of k inside base (ms_floats);
 * writes nothing on failure. @return 0, or -1 with the reason in why. */
static int set_floats(const key_spec *k, void *base, yaml_document_t *doc, const yaml_node_t *v,
                      char *why) {
  key_spec item = {
      .type = K_DBL, .off = 0, .size = sizeof(double), .min = k->min, .max = k->max,
      .flags = k->flags};
  char inner[WHY_MAX], found[96];
  long count = v->data.sequence.items.top - v->data.sequence.items.start;
  if (count > MS_NORM_MAX)
    return fail(why, "expected at most %d numbers, found %ld", MS_NORM_MAX, count);
  ms_floats *f = calloc(1, sizeof *f); /* unused values stay 0: configs compare bytewise */
  if (!f) return fail(why, "out of memory");
  for (int i = 0; i < (int)count; i++) {
    const yaml_node_t *n = yaml_document_get_node(doc, v->data.sequence.items.start[i]);
    double d;
    if (n->type != YAML_SCALAR_NODE) {
      describe_node(n, found, sizeof found);
      free(f);
      return fail(why, "item %d: expected a number, found %s", i, found);
    }
    if (set_scalar(&item, &d, (const char *)n->data.scalar.value, n->data.scalar.length,
                   n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, inner)) {
      free(f);
      return fail(why, "item %d: %s", i, inner);
    }
    if (fabs(d) > FLT_MAX) {
      free(f);
      return fail(why, "item %d: %g does not fit a float", i, d);
    }
    f->v[i] = (float)d;
  }
  f->n = (int)count;
  memcpy((char *)base + k->off, f, sizeof *f);
  free(f);
  return 0;
}

/* @return 0, or -1 after reporting why the value of v does not fit k. */
static int set_from_node(pctx *c, const key_spec *k, void *base, const char *path,
                         const yaml_node_t *v) {
  char why[WHY_MAX], found[96];
  if (k->type == K_DIMS && v->type == YAML_SEQUENCE_NODE) {
    if (!set_dims(k, base, c->doc, v, why)) return 0;
  } else if (k->type == K_FLOATS && v->type == YAML_SEQUENCE_NODE) {
    if (!set_floats(k, base, c->doc, v, why)) return 0;
  } else if (v->type != YAML_SCALAR_NODE) {
    describe_node(v, found, sizeof found);
    snprintf(why, sizeof why, "expected a single value, found %s", found);
  } else if (!set_scalar(k, base, (const char *)v->data.scalar.value, v->data.scalar.length,
                         v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, why)) {
    return 0;
  }
  perr(c, v->start_mark, "%s: %s", path, why);
  return -1;
}

/* What parse_keys saw of one row of its table. */
typedef struct {
  size_t line;      /* 1-based line of the key; 0 = not given */
  yaml_mark_t mark; /* of the key */
  int bad;          /* the value was refused (and reported) */
} key_seen;

static void parse_layers(pctx *c, const yaml_node_t *v);

/* Reads the keys of one mapping into base: a section (`table` = keys, looked
 * up as `prefix.key`) or a layer item (`table` = cfg_layer_keys, looked up as
 * `key`). seen[row] records where each row was set (for duplicates and for
 * the rules of layer items) and whether its value was refused. */
static void parse_keys(pctx *c, const yaml_node_t *map, const char *prefix, const key_spec *table,
                       size_t count, void *base, key_seen *seen) {
  char name[128], path[256], found[96];
  int is_section = table == cfg_keys;
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
      const char *s = is_section
                          ? suggest_key(path)
                          : nearest(name, cfg_layer_key_names, cfg_n_layer_keys, sizeof(char *));
      if (s && is_section) {
        perr(c, kn->start_mark, "%s: unknown key, did you mean '%s'?", path, s);
      } else if (s) {
        perr(c, kn->start_mark, "%s: unknown key, did you mean '%s.%s'?", path, prefix, s);
      } else {
        sbuf known = {0};
        for (size_t i = 0; i < count; i++)
          if (!is_section || !strncmp(table[i].path, path, strlen(prefix) + 1))
            cfg_sb_printf(&known, "%s%s", known.len ? ", " : "", cfg_leaf(table[i].path));
        perr(c, kn->start_mark, "%s: unknown key (%s has: %s)", path, prefix,
             known.s ? known.s : "");
        free(known.s);
      }
      continue;
    }
    size_t row = (size_t)(k - table);
    if (seen[row].line) {
      perr(c, kn->start_mark, "%s: duplicate key (first set at line %zu)", path, seen[row].line);
      continue;
    }
    seen[row].line = kn->start_mark.line + 1;
    seen[row].mark = kn->start_mark;
    if (k->type == K_LAYERS)
      parse_layers(c, vn);
    else
      seen[row].bad = set_from_node(c, k, base, path, vn) != 0;
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
    ms_layer_cfg *l = &c->cfg->model.layers[i];
    key_seen seen[CFG_N_LAYER_KEYS];
    char why[WHY_MAX];
    memset(seen, 0, sizeof seen);
    cfg_layer_defaults(l);
    snprintf(prefix, sizeof prefix, "model.layers[%d]", i);
    if (!want_mapping(c, item, prefix, "a mapping like {type: dense, units: 10, activation: relu}",
                      0))
      continue;
    parse_keys(c, item, prefix, cfg_layer_keys, cfg_n_layer_keys, l, seen);
    /* The rules of the layer's type, once all its keys are read (type need
     * not come first). An unknown type leaves nothing to judge by; a refused
     * value is already reported, and alpha depends on the activation. */
    if (seen[LAYER_TYPE].bad) continue;
    for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++) {
      if (seen[j].bad || (j == LAYER_ALPHA && seen[LAYER_ACTIVATION].bad) ||
          !layer_key_problem(l, j, !seen[j].line, why, sizeof why))
        continue;
      perr(c, seen[j].line ? seen[j].mark : item->start_mark, "%s.%s: %s", prefix,
           cfg_layer_keys[j].path, why);
    }
  }
  c->cfg->model.n_layers = (int)count;
}

static void parse_root(pctx *c, const yaml_node_t *root) {
  char name[128];
  size_t sec_line[CFG_N_SECTIONS] = {0};
  key_seen key_line[CFG_MAX_KEYS];
  memset(key_line, 0, sizeof key_line);
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
    while (s < cfg_n_sections && strcmp(cfg_sections[s], name)) s++;
    if (s == cfg_n_sections) {
      /* `lr:` at the top level is optim.lr out of its section. */
      const char *hint = suggest_key(name);
      if (!hint || strcmp(cfg_leaf(hint), name))
        hint = nearest(name, cfg_sections, cfg_n_sections, sizeof(char *));
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
      if (want_mapping(c, vn, cfg_sections[s], "a mapping of keys", 1))
        parse_keys(c, vn, cfg_sections[s], cfg_keys, cfg_n_keys, c->cfg, key_line);
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

/* ---- overrides, validation ------------------------------------------------------ */

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

/* After a --set on a layer: the keys that belonged to `before` but no longer
 * belong to `after` (another type; an activation other than leaky_relu for
 * alpha) go back to their defaults, so that `--set model.layers[2].type=
 * maxpool2d` turns a dense layer into a pool without a units to unset. */
static void reset_dropped_keys(const ms_layer_cfg *before, ms_layer_cfg *after) {
  ms_layer_cfg d;
  cfg_layer_defaults(&d);
  for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++) {
    const key_spec *k = &cfg_layer_keys[j];
    if (cfg_layer_key_applies(before, j) && !cfg_layer_key_applies(after, j))
      memcpy((char *)after + k->off, (const char *)&d + k->off, k->size);
  }
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
  k = index >= 0 ? find_key(cfg_layer_keys, cfg_n_layer_keys, field)
                 : find_key(cfg_keys, cfg_n_keys, path);
  if (k && k->type == K_LAYERS)
    return ms_error_set(MS_ECONFIG, "--set %s: expected model.layers[INDEX].KEY=value", assignment);
  if (!k && index >= 0 &&
      (hint = nearest(field, cfg_layer_key_names, cfg_n_layer_keys, sizeof(char *))))
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
  ms_layer_cfg layer, before;
  if (index >= 0 && index < n)
    memcpy(&layer, &cfg->model.layers[index], sizeof layer);
  else
    cfg_layer_defaults(&layer); /* index == n: a new layer starts from the item defaults */
  memcpy(&before, &layer, sizeof before);
  if (node && k->type == K_DIMS && node->type == YAML_SEQUENCE_NODE) {
    if (!set_dims(k, cfg, &doc, node, why)) why[0] = '\0';
  } else if (node && k->type == K_FLOATS && node->type == YAML_SEQUENCE_NODE) {
    if (!set_floats(k, cfg, &doc, node, why)) why[0] = '\0';
  } else if (node && node->type != YAML_SCALAR_NODE) {
    describe_node(node, found, sizeof found);
    snprintf(why, sizeof why, "expected a single value, found %s", found);
  } else if (!set_scalar(k, index >= 0 ? (void *)&layer : (void *)cfg,
                         node ? (const char *)node->data.scalar.value : "",
                         node ? node->data.scalar.length : 0,
                         !node || node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, why)) {
    why[0] = '\0';
    if (index >= 0) {
      reset_dropped_keys(&before, &layer);
      memcpy(&cfg->model.layers[index], &layer, sizeof layer);
      if (index == n) cfg->model.n_layers++; /* index == n appends a layer */
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
  char want[160], why[WHY_MAX], got[40];
  switch (k->type) {
    case K_STR:
      if (!memchr(field, '\0', k->size))
        err_add(e, NULL, "%s: expected a string of at most %zu bytes, found an unterminated one",
                path, k->size - 1);
      else if ((k->flags & F_REQUIRED) && !field[0])
        err_add(e, NULL, "%s is required (%s)", path, k->doc);
      break;
    case K_INT:
    case K_BOOL:
    case K_ENUM:
    case K_DBL:
      if (bounds_problem(k, base, why, sizeof why)) err_add(e, NULL, "%s: %s", path, why);
      break;
    case K_DIMS: {
      ms_dims d;
      memcpy(&d, field, sizeof d);
      if (d.ndim < 0 || d.ndim > MS_MAX_DIMS) {
        err_add(e, NULL, "%s: expected 0 to %d dimensions, found %d", path, MS_MAX_DIMS, d.ndim);
        break;
      }
      cfg_range_desc(k, want, sizeof want);
      for (int i = 0; i < d.ndim; i++)
        if (!cfg_in_range(k, d.dims[i]))
          err_add(e, NULL, "%s: item %d: expected %s, found %d", path, i, want, d.dims[i]);
      break;
    }
    case K_FLOATS: {
      int n;
      memcpy(&n, field, sizeof n);
      if (n < 0 || n > MS_NORM_MAX) {
        err_add(e, NULL, "%s: expected 0 to %d numbers, found %d", path, MS_NORM_MAX, n);
        break;
      }
      const float *v = (const float *)(field + offsetof(ms_floats, v));
      cfg_range_desc(k, want, sizeof want);
      for (int i = 0; i < n; i++)
        if (!isfinite(v[i]) || !cfg_in_range(k, v[i])) {
          cfg_fmt_double(got, sizeof got, v[i]);
          err_add(e, NULL, "%s: item %d: expected %s, found %s", path, i,
                  isfinite(v[i]) ? want : "a finite number", got);
        }
      break;
    }
    case K_U64:
    case K_LAYERS: break;
  }
}

int config_validate(const ms_config *cfg, int world_size) {
  errlist e = {0};
  char why[WHY_MAX];
  int n = cfg->model.n_layers;
  /* The losses that take logits; mse and mae take the last layer as it is. */
  int logits = cfg->model.loss == MS_LOSS_XENT || cfg->model.loss == MS_LOSS_BCE;
  int classes = cfg->model.loss == MS_LOSS_XENT;
  const char *loss = config_enum_name("model.loss", (int)cfg->model.loss);
  for (size_t i = 0; i < cfg_n_keys; i++) validate_field(&e, &cfg_keys[i], cfg, cfg_keys[i].path);
  if (n < 1 || n > MS_MAX_LAYERS) {
    err_add(&e, NULL, "model.layers is required: expected 1 to %d layers, found %d", MS_MAX_LAYERS,
            n);
  } else {
    const ms_layer_cfg *last = &cfg->model.layers[n - 1];
    const key_spec *acts = &cfg_layer_keys[LAYER_ACTIVATION];
    for (int l = 0; l < n; l++)
      for (size_t j = 0; j < cfg_n_layer_keys; j++)
        if (layer_key_problem(&cfg->model.layers[l], j, 0, why, sizeof why))
          err_add(&e, NULL, "model.layers[%d].%s: %s", l, cfg_layer_keys[j].path, why);
    int act = (int)last->activation;
    if (logits && act != MS_ACT_NONE && cfg_enum_valid(acts, act))
      err_add(&e, NULL,
              "model.layers[%d].activation: expected none on the last layer (it produces "
              "the logits for %s), found %s",
              n - 1, loss, cfg_enum_name(acts, act));
    if (classes && cfg->train.eval_top_k > 0 && last->type == MS_LAYER_DENSE && last->units > 0 &&
        cfg->train.eval_top_k > last->units)
      err_add(&e, NULL,
              "train.eval_top_k %d is more than the %d classes of the last layer "
              "(model.layers[%d].units)",
              cfg->train.eval_top_k, last->units, n - 1);
  }
  if (cfg->model.label_smoothing != 0 && !classes)
    err_add(&e, NULL,
            "model.label_smoothing: only softmax_cross_entropy smooths its labels, found "
            "model.loss %s (set label_smoothing 0)",
            loss);
  if (cfg->train.eval_top_k > 0 && !classes)
    err_add(&e, NULL,
            "train.eval_top_k: top-k accuracy needs classes (model.loss softmax_cross_entropy), "
            "found model.loss %s (set eval_top_k 0)",
            loss);
  if (cfg->data.test_x[0] && !cfg->data.test_y[0])
    err_add(&e, NULL, "data.test_y is required when data.test_x is set (\"\" = no evaluation)");
  if (world_size < 1)
    err_add(&e, NULL, "world size %d: expected at least 1 rank", world_size);
  else if (cfg->train.batch_size > 0 && cfg->train.batch_size % world_size)
    err_add(&e, NULL,
            "train.batch_size %d is not divisible by the world size %d: the global batch "
            "is split evenly across ranks",
            cfg->train.batch_size, world_size);
  if (cfg->train.max_steps > 0 && cfg->schedule.warmup_steps >= cfg->train.max_steps)
    err_add(&e, NULL,
            "schedule.warmup_steps %d is not less than train.max_steps %d: the run would end "
            "before the warmup does",
            cfg->schedule.warmup_steps, cfg->train.max_steps);
  int64_t features = config_input_features(cfg);
  if (features > INT_MAX)
    err_add(&e, NULL, "model.input: expected at most %d features in all, found %lld", INT_MAX,
            (long long)features);
  return err_finish(&e);
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
