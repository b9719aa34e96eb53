/* convert_csv — `midscale prepare csv`: a CSV file with a header row into
 * the layout midscale reads (see convert.h).
 *
 * The whole file is read and checked before the output is touched: a bad
 * value on the last line leaves no half-written group behind.
 */
#include "convert.h"

#include "convert_internal.h"
#include "h5guard.h"
#include "h5util.h"
#include "sampler.h"

#include <errno.h>
#include <float.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* At most this many column names are listed when the label is not found. */
#define LIST_CAP 20
/* Bytes of values the filter trial compresses (about one chunk). */
#define CHUNK_TRIAL ((size_t)1 << 20)

/* A growable array of fields of the current record: offsets into a private
 * copy of the text (quotes removed, NUL-terminated). */
typedef struct {
  char **f;
  size_t n, cap;
} fields;

typedef struct {
  const char *path;
  char *text; /* the file, NUL-terminated; fields are unquoted in place */
  size_t len, at;
  long line; /* line of the next character */
} csv_reader;

static int push_field(fields *r, char *s) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 16;
    char **g = realloc(r->f, cap * sizeof *g);
    if (!g) return -1;
    r->f = g;
    r->cap = cap;
  }
  r->f[r->n++] = s;
  return 0;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
  return s;
}

/* Reads the next record into r (fields point into c->text). *line gets
 * the line it starts on. @return 1 for a record, 0 at the end, -1 on an
 * error (message set). Blank lines are skipped. */
static int next_record(csv_reader *c, fields *r, long *line, char *err, size_t errlen) {
  r->n = 0;
  while (c->at < c->len && (c->text[c->at] == '\n' || c->text[c->at] == '\r')) {
    if (c->text[c->at] == '\n') c->line++;
    c->at++;
  }
  if (c->at >= c->len) return 0;
  *line = c->line;
  for (;;) {
    /* One field: quoted ("" is a quote) or plain, up to , or the line end. */
    char *start = c->text + c->at, *out = start;
    size_t i = c->at;
    while (i < c->len && (c->text[i] == ' ' || c->text[i] == '\t')) i++;
    if (i < c->len && c->text[i] == '"') {
      i++;
      for (;;) {
        if (i >= c->len) {
          h5util_set_err(err, errlen, "%s:%ld: a quoted field is not closed", c->path, *line);
          return -1;
        }
        if (c->text[i] == '"') {
          if (i + 1 < c->len && c->text[i + 1] == '"') {
            *out++ = '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (c->text[i] == '\n') c->line++;
        *out++ = c->text[i++];
      }
      while (i < c->len && (c->text[i] == ' ' || c->text[i] == '\t' || c->text[i] == '\r')) i++;
      if (i < c->len && c->text[i] != ',' && c->text[i] != '\n') {
        h5util_set_err(err, errlen, "%s:%ld: text after a closing quote", c->path, c->line);
        return -1;
      }
    } else {
      while (i < c->len && c->text[i] != ',' && c->text[i] != '\n') *out++ = c->text[i++];
      if (out > start && out[-1] == '\r') out--;
    }
    char end = i < c->len ? c->text[i] : '\n';
    *out = '\0';
    if (push_field(r, trim(start)) < 0) {
      h5util_set_err(err, errlen, "out of memory reading '%s'", c->path);
      return -1;
    }
    c->at = i + 1;
    if (end == '\n') {
      c->line++;
      return 1;
    }
  }
}

/* Parses a float; 0, or -1 with the reason in err (file:line, column). */
static int parse_float(const char *s, const csv_reader *c, long line, const char *col, double *v,
                       char *err, size_t errlen) {
  char *end;
  if (!*s) {
    h5util_set_err(err, errlen,
                   "%s:%ld: column '%s' is empty (missing values must be filled before "
                   "converting)",
                   c->path, line, col);
    return -1;
  }
  errno = 0;
  *v = strtod(s, &end);
  if (*end) {
    h5util_set_err(err, errlen, "%s:%ld: column '%s': '%.40s' is not a number", c->path, line, col,
                   s);
    return -1;
  }
  if (!isfinite(*v) || fabs(*v) > FLT_MAX) {
    h5util_set_err(err, errlen, "%s:%ld: column '%s': '%.40s' is not a finite float32", c->path,
                   line, col, s);
    return -1;
  }
  return 0;
}

/* 1 when s is a whole integer in int64 range ("3", "-1", "+7"); 0 when it
 * is not an integer; -1 when it is one outside int64 (a uint64 label, say),
 * which a float would round: refused rather than silently changed. */
static int parse_int(const char *s, int64_t *v) {
  char *end;
  if (!*s) return 0;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (*end) return 0;
  if (errno == ERANGE) return -1;
  *v = (int64_t)x;
  return 1;
}

static int read_file(const char *path, char **text, size_t *len, char *err, size_t errlen) {
  if (h5guard_regular_file(path, "a CSV file", NULL, err, errlen) < 0)
    return -1; /* a FIFO would block */
  FILE *f = fopen(path, "rb");
  if (!f) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    char *g = realloc(buf, 2 * cap + 1);
    if (!g) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = g;
    cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf || bad) {
    free(buf);
    h5util_set_err(err, errlen, bad ? "cannot read '%s'" : "out of memory reading '%s'", path);
    return -1;
  }
  buf[n] = '\0';
  if (memchr(buf, '\0', n)) {
    free(buf);
    h5util_set_err(err, errlen, "'%s' has NUL bytes: not a CSV text file", path);
    return -1;
  }
  *text = buf;
  *len = n;
  return 0;
}

/* The parsed table: features (rows, cols) float32, labels as int64 when
 * every label is an integer, else as float32. */
typedef struct {
  size_t rows, cols, cap;
  float *x;
  int64_t *yi;
  float *yf;
  int all_int;
} table;

/* Room for more rows: doubling, from as many rows as about 1 MiB of
 * features holds (at most 1024), so that a file of one very wide row does
 * not reserve 1024 of them up front. */
static int grow(table *t) {
  size_t first = ((size_t)1 << 20) / (t->cols * sizeof *t->x + 1);
  size_t cap = t->cap ? 2 * t->cap : first < 1 ? 1 : first > 1024 ? 1024 : first;
  if (cap > SIZE_MAX / sizeof *t->x / t->cols) return -1;
  float *x = realloc(t->x, cap * t->cols * sizeof *x);
  if (x) t->x = x;
  int64_t *yi = realloc(t->yi, cap * sizeof *yi);
  if (yi) t->yi = yi;
  float *yf = realloc(t->yf, cap * sizeof *yf);
  if (yf) t->yf = yf;
  if (!x || !yi || !yf) return -1;
  t->cap = cap;
  return 0;
}

static void list_columns(const fields *h, size_t skip, char *buf, size_t len) {
  size_t used = 0, shown = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < h->n && used < len; i++) {
    if (i == skip) continue;
    if (shown == LIST_CAP) {
      snprintf(buf + used, len - used, ", ... (%zu more)", h->n - i);
      break;
    }
    int w = snprintf(buf + used, len - used, "%s'%s'", shown ? ", " : "", h->f[i]);
    if (w < 0) break;
    used += (size_t)w;
    shown++;
  }
}

/* Parses the whole CSV into t. */
static int parse_csv(csv_reader *c, const char *label, table *t, char *err, size_t errlen) {
  fields head = {0}, rec = {0};
  long line = 1;
  int rc = -1;
  size_t lab = SIZE_MAX;
  char names[1024];
  int r = next_record(c, &head, &line, err, errlen);
  if (r <= 0) {
    if (r == 0) h5util_set_err(err, errlen, "'%s' is empty: expected a header row", c->path);
    goto done;
  }
  for (size_t i = 0; i < head.n; i++)
    if (strcmp(head.f[i], label) == 0) {
      if (lab != SIZE_MAX) {
        h5util_set_err(err, errlen, "%s:%ld: the header has two columns named '%s'", c->path, line,
                       label);
        goto done;
      }
      lab = i;
    }
  if (lab == SIZE_MAX) {
    list_columns(&head, SIZE_MAX, names, sizeof names);
    h5util_set_err(err, errlen, "%s:%ld: no column named '%s' in the header; columns: %s", c->path,
                   line, label, names);
    goto done;
  }
  if (head.n < 2) {
    h5util_set_err(err, errlen, "%s:%ld: the header has only the label column '%s'; no features",
                   c->path, line, label);
    goto done;
  }
  t->cols = head.n - 1;
  t->all_int = 1;
  while ((r = next_record(c, &rec, &line, err, errlen)) == 1) {
    if (rec.n != head.n) {
      h5util_set_err(err, errlen, "%s:%ld: %zu fields, but the header has %zu", c->path, line,
                     rec.n, head.n);
      goto done;
    }
    if (t->rows == t->cap && grow(t) < 0) {
      h5util_set_err(err, errlen, "out of memory reading '%s'", c->path);
      goto done;
    }
    float *row = t->x + t->rows * t->cols;
    for (size_t i = 0, k = 0; i < rec.n; i++) {
      double v;
      if (parse_float(rec.f[i], c, line, head.f[i], &v, err, errlen) < 0) goto done;
      if (i == lab) {
        t->yf[t->rows] = (float)v;
        int is_int = t->all_int ? parse_int(rec.f[i], &t->yi[t->rows]) : 0;
        if (is_int < 0) {
          h5util_set_err(err, errlen,
                         "%s:%ld: label %s in column '%s' is an integer outside the int64 range; "
                         "class labels are small integers",
                         c->path, line, rec.f[i], head.f[i]);
          goto done;
        }
        if (!is_int) t->all_int = 0;
      } else {
        row[k++] = (float)v;
      }
    }
    t->rows++;
  }
  if (r < 0) goto done;
  if (t->rows == 0) {
    h5util_set_err(err, errlen, "'%s' has a header but no data rows", c->path);
    goto done;
  }
  rc = 0;
done:
  free(head.f);
  free(rec.f);
  return rc;
}

/* Writes rows with keep[i] == want of t into group `group`. */
static int write_group(hid_t file, const char *group, char *tmp, const table *t,
                       const unsigned char *keep, unsigned char want, size_t count, const char *out,
                       char *err, size_t errlen) {
  int rc = -1;
  hid_t grp = H5I_INVALID_HID, xset = H5I_INVALID_HID, yset = H5I_INVALID_HID;
  float *x = malloc(count * t->cols * sizeof *x);
  void *y = malloc(count * sizeof(int64_t));
  if (!x || !y) {
    h5util_set_err(err, errlen, "out of memory writing '%s'", out);
    goto done;
  }
  for (size_t i = 0, j = 0; i < t->rows; i++) {
    if (keep && keep[i] != want) continue;
    memcpy(x + j * t->cols, t->x + i * t->cols, t->cols * sizeof *x);
    if (t->all_int)
      ((int64_t *)y)[j] = t->yi[i];
    else
      ((float *)y)[j] = t->yf[i];
    j++;
  }
  hsize_t xd[2] = {count, t->cols}, yd[1] = {count};
  hid_t yft = t->all_int ? H5T_STD_I64LE : H5T_IEEE_F32LE;
  hid_t ymt = t->all_int ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
  /* Filters from a trial on the first ~1 MiB of the values. */
  size_t xs = count * t->cols * sizeof *x, ys = count * H5Tget_size(yft);
  int xf = convert_pick_filters(x, xs < CHUNK_TRIAL ? xs : CHUNK_TRIAL, sizeof *x);
  int yf = convert_pick_filters(y, ys < CHUNK_TRIAL ? ys : CHUNK_TRIAL, H5Tget_size(yft));
  grp = convert_stage_group(file, group, tmp, 1024);
  if (grp >= 0)
    xset =
        convert_create_chunked(grp, "images", H5T_IEEE_F32LE, 2, xd, t->cols * sizeof(float), xf);
  if (xset >= 0) yset = convert_create_chunked(grp, "labels", yft, 1, yd, H5Tget_size(yft), yf);
  if (yset < 0 || H5Dwrite(xset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0 ||
      H5Dwrite(yset, ymt, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0) {
    h5util_set_err(err, errlen, "cannot write group '%s' of '%s'", group, out);
    goto done;
  }
  rc = 0;
done:
  if (yset >= 0) H5Dclose(yset);
  if (xset >= 0) H5Dclose(xset);
  if (grp >= 0) H5Gclose(grp);
  free(x);
  free(y);
  return rc;
}

int convert_csv(const char *csv_path, const char *out_path, const convert_csv_opts *o, char *err,
                size_t errlen) {
  csv_reader c = {.path = csv_path, .line = 1};
  table t = {0};
  unsigned char *is_test = NULL;
  uint64_t *perm = NULL;
  hid_t file = H5I_INVALID_HID;
  char tmp[2][1024] = {"", ""};
  size_t n_test = 0;
  int rc = -1;
  h5util_guard q;
  h5util_enter(&q);
  const char *group = o->group && *o->group ? o->group : "train";
  const char *test_group = o->test_group && *o->test_group ? o->test_group : "test";
  if (!o->label || !*o->label) {
    h5util_set_err(err, errlen, "converting '%s': the label column is not named", csv_path);
    goto done;
  }
  if (!(o->test_fraction >= 0 && o->test_fraction < 1)) {
    h5util_set_err(err, errlen, "test fraction %g: expected a number in [0, 1)", o->test_fraction);
    goto done;
  }
  if (o->test_fraction > 0 && strcmp(group, test_group) == 0) {
    h5util_set_err(err, errlen, "the training and the test group are both '%s'", group);
    goto done;
  }
  if (read_file(csv_path, &c.text, &c.len, err, errlen) < 0) goto done;
  /* A UTF-8 byte order mark (Excel writes one) is not part of the first
   * column's name. */
  if (c.len >= 3 && memcmp(c.text, "\xEF\xBB\xBF", 3) == 0) c.at = 3;
  if (parse_csv(&c, o->label, &t, err, errlen) < 0) goto done;

  if (o->test_fraction > 0) {
    n_test = (size_t)llround(o->test_fraction * (double)t.rows);
    if (n_test < 1 || n_test >= t.rows) {
      h5util_set_err(err, errlen,
                     "'%s' has %zu rows: a test fraction of %g leaves %zu test and %zu training "
                     "rows; both need at least one",
                     csv_path, t.rows, o->test_fraction, n_test, t.rows - n_test);
      goto done;
    }
    /* The test rows: the first n_test of a permutation from the seed (the
     * sampler's), so a sorted file still gives a representative split; both
     * groups keep the file's order. */
    perm = malloc(t.rows * sizeof *perm);
    is_test = calloc(t.rows, 1);
    if (!perm || !is_test) {
      h5util_set_err(err, errlen, "out of memory converting '%s'", csv_path);
      goto done;
    }
    sampler_permutation(o->seed, 0, t.rows, perm);
    for (size_t i = 0; i < n_test; i++) is_test[perm[i]] = 1;
  }
  file = convert_open_output(out_path, err, errlen);
  if (file < 0) goto done;
  if (write_group(file, group, tmp[0], &t, is_test, 0, t.rows - n_test, out_path, err, errlen) < 0)
    goto done;
  if (n_test &&
      write_group(file, test_group, tmp[1], &t, is_test, 1, n_test, out_path, err, errlen) < 0)
    goto done;
  /* Both groups written: only now replace what was there. */
  if (convert_commit_group(file, group, tmp[0]) < 0 ||
      (n_test && convert_commit_group(file, test_group, tmp[1]) < 0)) {
    h5util_set_err(err, errlen, "cannot replace the groups of '%s'", out_path);
    goto done;
  }
  rc = 0;
done:
  if (rc < 0 && file >= 0) convert_drop_group(file, tmp[0]), convert_drop_group(file, tmp[1]);
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
    h5util_set_err(err, errlen, "cannot finish writing '%s'", out_path);
    rc = -1;
  }
  free(perm);
  free(is_test);
  free(t.x);
  free(t.yi);
  free(t.yf);
  free(c.text);
  h5util_leave(&q);
  return rc;
}
