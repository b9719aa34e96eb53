/* convert_text — `midscale prepare text`: text files into token streams
 * (convert.h, convert_text).
 *
 * Every input is read and tokenised before the output is touched, so a
 * character outside the vocabulary in the last file leaves no half-written
 * group behind. The held-out split is made per file, at a line boundary,
 * rather than at the end of the concatenation: corpora such as fortunes
 * are one topic per file, and a split at the end would test on the last
 * topics only.
 */
#include "convert.h"

#include "convert_internal.h"
#include "h5guard.h"
#include "h5util.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The vocabulary: a sorted table of code points and their ids. */
typedef struct {
  uint32_t cp;
  int32_t id;
} vocab_entry;

typedef struct {
  int bytes;          /* byte-level: id = byte, 256 ids */
  vocab_entry *table; /* sorted by cp (chars) */
  size_t n;           /* entries in table */
  uint32_t *cps;      /* (size) code point of each id; UNK_CP for <unk> */
  int32_t size, unk;  /* ids; unk -1 = none */
} vocab;

#define UNK_CP 0xFFFFFFFFu

/* A growable id stream. */
typedef struct {
  int32_t *v;
  size_t n, cap;
} ids;

static int push_id(ids *s, int32_t id) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 1 << 16;
    int32_t *g = realloc(s->v, cap * sizeof *g);
    if (!g) return -1;
    s->v = g;
    s->cap = cap;
  }
  s->v[s->n++] = id;
  return 0;
}

/* The whole of a regular file, NUL-terminated. */
static int slurp(const char *path, const char *what, char **text, size_t *len, char *err,
                 size_t errlen) {
  uint64_t size = 0;
  if (h5guard_regular_file(path, what, &size, err, errlen) < 0) return -1;
  FILE *f = fopen(path, "rb");
  if (!f) {
    h5util_set_err(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  char *buf = size < SIZE_MAX ? malloc((size_t)size + 1) : NULL;
  size_t n = buf ? fread(buf, 1, (size_t)size, f) : 0;
  int bad = ferror(f) || (buf && n != size);
  fclose(f);
  if (!buf || bad) {
    free(buf);
    h5util_set_err(err, errlen, bad ? "cannot read '%s'" : "out of memory reading '%s'", path);
    return -1;
  }
  buf[n] = '\0';
  *text = buf;
  *len = n;
  return 0;
}

/* Decodes one UTF-8 character of s[0..len) into *cp; returns its length,
 * or 0 for a malformed sequence (overlong forms and surrogates included). */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp) {
  unsigned c = s[0];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || n > len) return 0;
  uint32_t v = n == 1 ? c : c & (0x7Fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3Fu);
  }
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return n;
}

static int cmp_entry(const void *a, const void *b) {
  const vocab_entry *x = a, *y = b;
  return x->cp < y->cp ? -1 : x->cp > y->cp;
}

/* One line of a vocabulary file: its code point (UNK_CP for <unk>), or -1. */
static int vocab_line(char *line, uint32_t *cp) {
  size_t len = strlen(line);
  if (len && line[len - 1] == '\r') line[--len] = '\0';
  if (strcmp(line, "<unk>") == 0) return *cp = UNK_CP, 0;
  static const char esc[][2] = {{'n', '\n'}, {'t', '\t'}, {'r', '\r'}, {'s', ' '}, {'\\', '\\'}};
  if (len == 2 && line[0] == '\\')
    for (size_t i = 0; i < sizeof esc / sizeof esc[0]; i++)
      if (line[1] == esc[i][0]) return *cp = (unsigned char)esc[i][1], 0;
  return len && utf8_next((const unsigned char *)line, len, cp) == len ? 0 : -1;
}

/* Reads a vocabulary file (convert.h): one character per line. */
static int vocab_load(vocab *v, const char *path, char *err, size_t errlen) {
  char *text = NULL;
  size_t len = 0;
  if (slurp(path, "a vocabulary file", &text, &len, err, errlen) < 0) return -1;
  int rc = 0;
  long line_no = 0;
  v->unk = -1;
  for (char *line = text, *next; rc == 0 && line < text + len; line = next) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    next = nl ? nl + 1 : text + len;
    if (nl) *nl = '\0';
    line_no++;
    if (!*line || (line[0] == '\r' && !line[1])) continue; /* blank lines separate nothing */
    uint32_t cp;
    if (vocab_line(line, &cp) < 0) {
      h5util_set_err(err, errlen,
                     "line %ld of the vocabulary '%s' is not one character (write a newline as "
                     "\\n, a tab as \\t, a space as \\s, a backslash as \\\\; <unk> for unknown "
                     "characters)",
                     line_no, path);
      rc = -1;
      break;
    }
    uint32_t *g = realloc(v->cps, ((size_t)v->size + 1) * sizeof *g);
    vocab_entry *t = realloc(v->table, (v->n + 1) * sizeof *t);
    if (g) v->cps = g;
    if (t) v->table = t;
    if (!g || !t) {
      h5util_set_err(err, errlen, "out of memory reading '%s'", path);
      rc = -1;
      break;
    }
    if (cp == UNK_CP && v->unk < 0) {
      v->unk = v->size;
    } else if (cp == UNK_CP) {
      h5util_set_err(err, errlen, "line %ld of the vocabulary '%s' repeats <unk>", line_no, path);
      rc = -1;
      break;
    } else {
      v->table[v->n++] = (vocab_entry){cp, v->size};
    }
    v->cps[v->size++] = cp;
  }
  if (rc == 0 && v->size == 0) {
    h5util_set_err(err, errlen, "the vocabulary '%s' has no entries", path);
    rc = -1;
  }
  if (rc == 0) {
    qsort(v->table, v->n, sizeof *v->table, cmp_entry);
    for (size_t i = 1; i < v->n; i++)
      if (v->table[i].cp == v->table[i - 1].cp) {
        h5util_set_err(err, errlen, "the vocabulary '%s' lists U+%04" PRIX32 " twice", path,
                       v->table[i].cp);
        rc = -1;
        break;
      }
  }
  free(text);
  return rc;
}

/* Tokenises text[0..len) (of `path`, starting at line *line) onto out. */
static int tokenise(const vocab *v, const char *path, const char *text, size_t len, long *line,
                    ids *out, char *err, size_t errlen) {
  const unsigned char *s = (const unsigned char *)text;
  for (size_t at = 0; at < len;) {
    uint32_t cp = s[at];
    size_t n = 1;
    int32_t id = (int32_t)cp;
    if (!v->bytes) {
      n = utf8_next(s + at, len - at, &cp);
      if (n == 0) {
        h5util_set_err(err, errlen,
                       "'%s' line %ld: byte 0x%02X at offset %zu is not valid UTF-8 (a "
                       "vocabulary of characters needs UTF-8 text; --vocab bytes takes any)",
                       path, *line, s[at], at);
        return -1;
      }
      vocab_entry key = {cp, 0};
      const vocab_entry *e = bsearch(&key, v->table, v->n, sizeof key, cmp_entry);
      id = e ? e->id : v->unk;
      if (id < 0) {
        h5util_set_err(err, errlen,
                       "'%s' line %ld: character U+%04" PRIX32 " ('%.*s') is not in the "
                       "vocabulary (add it, or a line <unk>)",
                       path, *line, cp, (int)n, text + at);
        return -1;
      }
    }
    if (push_id(out, id) < 0) {
      h5util_set_err(err, errlen, "out of memory tokenising '%s'", path);
      return -1;
    }
    if (cp == '\n') (*line)++;
    at += n;
  }
  return 0;
}

/* Where the held-out end of a file of len bytes starts: fraction f of it,
 * moved forward to the start of the next line (or to the next character
 * when the tail has no line break). */
static size_t split_at(const char *text, size_t len, double f) {
  if (f <= 0) return len;
  size_t b = len - (size_t)llround(f * (double)len);
  if (b == 0 || b >= len) return b;
  const char *nl = memchr(text + b - 1, '\n', len - b + 1);
  if (nl) return (size_t)(nl - text) + 1;
  while (b < len && ((unsigned char)text[b] & 0xC0) == 0x80) b++;
  return b;
}

/* The stored type of ids below `size`: uint8, uint16 or int32. */
static hid_t id_type(int32_t size) {
  return size <= 256 ? H5T_STD_U8LE : size <= 65536 ? H5T_STD_U16LE : H5T_STD_I32LE;
}

static int put_attr_i64(hid_t loc, const char *name, int64_t value) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = sp >= 0 ? H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
  int rc = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0 ? 0 : -1;
  if (a >= 0) H5Aclose(a);
  if (sp >= 0) H5Sclose(sp);
  return rc;
}

static int put_attr_str(hid_t loc, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  hid_t sp = H5Screate(H5S_SCALAR);
  int rc = -1;
  if (t >= 0 && sp >= 0 && H5Tset_size(t, strlen(value) + 1) >= 0) {
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && H5Awrite(a, t, value) >= 0) rc = 0;
    if (a >= 0) H5Aclose(a);
  }
  if (sp >= 0) H5Sclose(sp);
  if (t >= 0) H5Tclose(t);
  return rc;
}

/* Group `group` of file: "tokens" (s's ids) with the vocabulary's
 * attributes, and for a vocabulary of characters "vocab" (the code point
 * of each id, -1 for <unk>), staged and committed (convert_internal.h). */
static int write_split(hid_t file, const char *group, const ids *s, const vocab *v) {
  char tmp[1024] = "";
  hid_t g = convert_stage_group(file, group, tmp, sizeof tmp);
  hsize_t d[1] = {(hsize_t)s->n};
  hid_t set = g >= 0 ? convert_create_chunked(g, "tokens", id_type(v->size), 1, d,
                                              H5Tget_size(id_type(v->size)), CONVERT_GZIP)
                     : H5I_INVALID_HID;
  int rc = set >= 0 && convert_write_rows(set, 1, d, 0, s->n, H5T_NATIVE_INT32, s->v) == 0 &&
                   put_attr_i64(set, "vocab_size", v->size) == 0 &&
                   put_attr_str(set, "tokenizer", v->bytes ? "bytes" : "chars") == 0
               ? 0
               : -1;
  if (rc == 0 && !v->bytes) {
    int32_t *cp = malloc((size_t)v->size * sizeof *cp);
    hsize_t vd[1] = {(hsize_t)v->size};
    hid_t vs = cp ? convert_create_chunked(g, "vocab", H5T_STD_I32LE, 1, vd, 4, CONVERT_GZIP)
                  : H5I_INVALID_HID;
    for (int32_t i = 0; cp && i < v->size; i++)
      cp[i] = v->cps[i] == UNK_CP ? -1 : (int32_t)v->cps[i];
    if (vs < 0 || convert_write_rows(vs, 1, vd, 0, (uint64_t)v->size, H5T_NATIVE_INT32, cp) < 0)
      rc = -1;
    if (vs >= 0) H5Dclose(vs);
    free(cp);
  }
  if (set >= 0) H5Dclose(set);
  if (g >= 0) H5Gclose(g);
  if (rc == 0 && g >= 0) rc = convert_commit_group(file, group, tmp);
  if (rc < 0 || g < 0) {
    convert_drop_group(file, tmp);
    rc = -1;
  }
  return rc;
}

int convert_text(const char *const *files, size_t n_files, const char *out_path,
                 const convert_text_opts *o, convert_text_stats *stats, char *err,
                 size_t errlen) {
  vocab v = {0};
  ids split[2] = {{0}, {0}}; /* train, test */
  char *text = NULL;
  hid_t file = H5I_INVALID_HID;
  int rc = -1;
  h5util_guard q;
  h5util_enter(&q);

  if (!(o->test_fraction >= 0 && o->test_fraction < 1)) {
    h5util_set_err(err, errlen, "the test fraction %g is outside [0, 1)", o->test_fraction);
    goto done;
  }
  if (!o->vocab || strcmp(o->vocab, "bytes") == 0) {
    v.bytes = 1;
    v.size = 256;
    v.unk = -1;
  } else if (vocab_load(&v, o->vocab, err, errlen) < 0) {
    goto done;
  }
  for (size_t i = 0; i < n_files; i++) {
    size_t len = 0;
    long line = 1;
    if (slurp(files[i], "a text file", &text, &len, err, errlen) < 0) goto done;
    size_t b = split_at(text, len, o->test_fraction);
    if (tokenise(&v, files[i], text, b, &line, &split[0], err, errlen) < 0 ||
        tokenise(&v, files[i], text + b, len - b, &line, &split[1], err, errlen) < 0)
      goto done;
    free(text);
    text = NULL;
  }
  if (split[0].n < 2 || (o->test_fraction > 0 && split[1].n < 2)) {
    h5util_set_err(err, errlen,
                   "the text gives %zu training and %zu test tokens; each split needs at least 2 "
                   "(one window of seq_len 1)",
                   split[0].n, split[1].n);
    goto done;
  }
  file = convert_open_output(out_path, err, errlen);
  if (file < 0) goto done;
  for (int s = 0; s < (o->test_fraction > 0 ? 2 : 1); s++)
    if (write_split(file, s ? "test" : "train", &split[s], &v) < 0) {
      h5util_set_err(err, errlen, "cannot write group '%s' of '%s'", s ? "test" : "train",
                     out_path);
      goto done;
    }
  if (stats) *stats = (convert_text_stats){split[0].n, split[1].n, (uint64_t)v.size};
  rc = 0;
done:
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
    h5util_set_err(err, errlen, "cannot close '%s' (disk full?)", out_path);
    rc = -1;
  }
  free(text);
  free(split[0].v);
  free(split[1].v);
  free(v.table);
  free(v.cps);
  h5util_leave(&q);
  return rc;
}
