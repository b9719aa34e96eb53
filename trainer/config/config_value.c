/* config_value — turning YAML values into fields of ms_config, shared by the
 * file (config_parse.c) and by `--set` (config.c): scalars and the two lists,
 * the "did you mean" suggestions, and the list of problems a config report
 * collects. Every setter writes nothing when it refuses a value.
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

#define MAX_SHOWN 20    /* problems listed in one message */
#define PROBLEM_MAX 800 /* bytes of one problem line, its "file:line:col: " included */
/* The whole report fits this thread's message, so no layer above cuts it. */
_Static_assert(MAX_SHOWN *(PROBLEM_MAX + 1) + 64 <= MS_MSG_MAX, "a config report fits MS_MSG_MAX");

void cfg_err_add(cfg_errlist *e, const char *where, const char *fmt, ...) {
  char msg[PROBLEM_MAX];
  va_list ap;
  if (e->n++ >= MAX_SHOWN) return;
  int n = where ? snprintf(msg, sizeof msg, "%s: ", where) : 0;
  size_t at = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
  va_start(ap, fmt);
  n = vsnprintf(msg + at, sizeof msg - at, fmt, ap);
  va_end(ap);
  if (n >= 0 && at + (size_t)n >= sizeof msg) { /* cut on a whole UTF-8 character */
    size_t keep = sizeof msg - 4;
    while (keep > 0 && ((unsigned char)msg[keep] & 0xC0) == 0x80) keep--;
    memcpy(msg + keep, "...", 4);
  }
  cfg_sb_printf(&e->b, "%s%s", e->n > 1 ? "\n" : "", msg);
}

int cfg_err_finish(cfg_errlist *e) {
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
int cfg_set_scalar(const key_spec *k, void *base, const char *s, size_t n, int plain, char *why) {
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

/* "found ..." for any node. */
void cfg_describe_node(const yaml_node_t *node, char *out, size_t n) {
  if (node->type == YAML_MAPPING_NODE)
    snprintf(out, n, "a mapping");
  else if (node->type == YAML_SEQUENCE_NODE)
    snprintf(out, n, "a list");
  else
    describe(out, n, (const char *)node->data.scalar.value, node->data.scalar.length,
             node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
}

int cfg_is_empty_plain(const yaml_node_t *node) {
  return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
         cfg_is_null_word((const char *)node->data.scalar.value, node->data.scalar.length);
}

/* Stores a list node into the K_DIMS field of k inside base; writes nothing
 * on failure. @return 0, or -1 with the reason in why (WHY_MAX bytes). */
int cfg_set_dims(const key_spec *k, void *base, yaml_document_t *doc, const yaml_node_t *v,
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
      cfg_describe_node(n, found, sizeof found);
      return fail(why, "item %d: expected an integer, found %s", i, found);
    }
    if (cfg_set_scalar(&item, &d.dims[i], (const char *)n->data.scalar.value, n->data.scalar.length,
                       n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, inner))
      return fail(why, "item %d: %s", i, inner);
  }
  d.ndim = (int)count;
  memcpy((char *)base + k->off, &d, sizeof d);
  return 0;
}

/* Stores a list node into the K_FLOATS field of k inside base (ms_floats);
 * writes nothing on failure. @return 0, or -1 with the reason in why. */
int cfg_set_floats(const key_spec *k, void *base, yaml_document_t *doc, const yaml_node_t *v,
                   char *why) {
  key_spec item = {.type = K_DBL,
                   .off = 0,
                   .size = sizeof(double),
                   .min = k->min,
                   .max = k->max,
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
      cfg_describe_node(n, found, sizeof found);
      free(f);
      return fail(why, "item %d: expected a number, found %s", i, found);
    }
    if (cfg_set_scalar(&item, &d, (const char *)n->data.scalar.value, n->data.scalar.length,
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
const char *cfg_nearest(const char *name, const char *const *names, size_t count, size_t stride) {
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
  return cfg_nearest(name, k->allowed, count, sizeof(char *));
}

/* The known key nearest to path. A key whose last part matches exactly
 * (`train.lr`, or `lr` alone → `optim.lr`) wins over spelling. */
const char *cfg_suggest_key(const char *path) {
  for (size_t i = 0; i < cfg_n_keys; i++)
    if (!strcmp(cfg_leaf(path), cfg_leaf(cfg_keys[i].path))) return cfg_keys[i].path;
  return cfg_nearest(path, &cfg_keys[0].path, cfg_n_keys, sizeof cfg_keys[0]);
}

const key_spec *cfg_find_key(const key_spec *table, size_t count, const char *path) {
  for (size_t i = 0; i < count; i++)
    if (!strcmp(table[i].path, path)) return &table[i];
  return NULL;
}
