/* tokenizer — see tokenizer.h. */
#include "tokenizer.h"

#include "dataset_internal.h"
#include "h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define UNK_CP UINT32_MAX
/* As for token sets (tokens.c): ids reach a model as floats. */
#define MAX_CHARS ((int32_t)1 << 24)

typedef struct {
  uint32_t cp;
  int32_t id;
} vocab_entry;

struct data_tokenizer {
  int bytes;          /* id = byte, 256 ids */
  vocab_entry *table; /* chars: sorted by code point, <unk> left out */
  size_t n;
  uint32_t *cps;     /* chars: (size) the code point of each id, UNK_CP for <unk> */
  int32_t size, unk; /* unk: -1 = none */
  size_t cap;        /* chars: entries allocated in table and in cps */
};

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

int data_tokenizer_bytes(data_tokenizer **out, char *err, size_t errlen) {
  *out = calloc(1, sizeof **out);
  if (!*out) {
    h5util_set_err(err, errlen, "out of memory for a tokenizer");
    return -1;
  }
  (*out)->bytes = 1;
  (*out)->size = 256;
  (*out)->unk = -1;
  return 0;
}

/* Adds id t->size for code point cp (UNK_CP: <unk>); -1 on a second <unk>
 * (*why "repeats <unk>") or out of memory (*why "out of memory"). */
static int add_char(data_tokenizer *t, uint32_t cp, const char **why) {
  if (cp == UNK_CP && t->unk >= 0) return *why = "repeats <unk>", -1;
  if (t->size >= MAX_CHARS) return *why = "has more than 2^24 entries", -1;
  if ((size_t)t->size == t->cap) { /* doubling: n adds copy O(n) entries, not O(n^2) */
    size_t c = t->cap ? 2 * t->cap : 64;
    uint32_t *g = realloc(t->cps, c * sizeof *g);
    if (g) t->cps = g;
    vocab_entry *e = g ? realloc(t->table, c * sizeof *e) : NULL;
    if (e) t->table = e;
    if (!g || !e) return *why = "out of memory", -1;
    t->cap = c;
  }
  if (cp == UNK_CP)
    t->unk = t->size;
  else
    t->table[t->n++] = (vocab_entry){cp, t->size};
  t->cps[t->size++] = cp;
  return 0;
}

/* Sorts the table and refuses an empty list or a repeated character. */
static int finish(data_tokenizer *t, const char *path, char *err, size_t errlen) {
  if (t->size == 0) {
    h5util_set_err(err, errlen, "the vocabulary '%s' has no entries", path);
    return -1;
  }
  qsort(t->table, t->n, sizeof *t->table, cmp_entry);
  for (size_t i = 1; i < t->n; i++)
    if (t->table[i].cp == t->table[i - 1].cp) {
      h5util_set_err(err, errlen, "the vocabulary '%s' lists U+%04" PRIX32 " twice", path,
                     t->table[i].cp);
      return -1;
    }
  return 0;
}

/* One line of a vocabulary file: its code point (UNK_CP for <unk>), or -1. */
static int vocab_line(const char *line, size_t len, uint32_t *cp) {
  if (len && line[len - 1] == '\r') len--;
  if (len == 5 && memcmp(line, "<unk>", 5) == 0) return *cp = UNK_CP, 0;
  static const char esc[][2] = {{'n', '\n'}, {'t', '\t'}, {'r', '\r'}, {'s', ' '}, {'\\', '\\'}};
  if (len == 2 && line[0] == '\\')
    for (size_t i = 0; i < sizeof esc / sizeof esc[0]; i++)
      if (line[1] == esc[i][0]) return *cp = (unsigned char)esc[i][1], 0;
  return len && utf8_next((const unsigned char *)line, len, cp) == len ? 0 : -1;
}

int data_tokenizer_parse(data_tokenizer **out, const char *text, size_t len, const char *path,
                         char *err, size_t errlen) {
  data_tokenizer *t = calloc(1, sizeof *t);
  *out = NULL;
  if (!t) {
    h5util_set_err(err, errlen, "out of memory reading '%s'", path);
    return -1;
  }
  t->unk = -1;
  long line_no = 0;
  int rc = 0;
  for (const char *line = text, *next; rc == 0 && line < text + len; line = next) {
    const char *nl = memchr(line, '\n', (size_t)(text + len - line));
    size_t ll = (size_t)((nl ? nl : text + len) - line);
    next = nl ? nl + 1 : text + len;
    line_no++;
    if (ll == 0 || (ll == 1 && line[0] == '\r')) continue; /* blank lines separate nothing */
    uint32_t cp;
    const char *why = NULL;
    if (vocab_line(line, ll, &cp) < 0) {
      h5util_set_err(err, errlen,
                     "line %ld of the vocabulary '%s' is not one character (write a newline as "
                     "\\n, a tab as \\t, a space as \\s, a backslash as \\\\; <unk> for unknown "
                     "characters)",
                     line_no, path);
      rc = -1;
    } else if (add_char(t, cp, &why) < 0) {
      h5util_set_err(err, errlen, "line %ld of the vocabulary '%s' %s", line_no, path, why);
      rc = -1;
    }
  }
  if (rc == 0) rc = finish(t, path, err, errlen);
  if (rc < 0) {
    data_tokenizer_free(t);
    return -1;
  }
  *out = t;
  return 0;
}

/* The "tokenizer" string attribute of set into buf; -1 when absent or not a
 * short string. */
static int read_kind(hid_t set, char *buf, size_t len) {
  if (H5Aexists(set, "tokenizer") <= 0) return -1;
  hid_t a = H5Aopen(set, "tokenizer", H5P_DEFAULT);
  hid_t ft = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
  hid_t mt = H5Tcopy(H5T_C_S1);
  int ok = ft >= 0 && mt >= 0 && H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft) &&
           H5Tget_size(ft) < len && H5Tset_size(mt, len) >= 0;
  memset(buf, 0, len);
  if (ok) ok = H5Aread(a, mt, buf) >= 0;
  if (mt >= 0) H5Tclose(mt);
  if (ft >= 0) H5Tclose(ft);
  if (a >= 0) H5Aclose(a);
  buf[len - 1] = '\0';
  return ok ? 0 : -1;
}

/* The "vocab" dataset beside `tokens` into t (chars). */
static int read_chars(data_tokenizer *t, hid_t file, const char *path, const char *tokens,
                      uint64_t file_size, char *err, size_t errlen) {
  /* Sized to the name: HDF5 names have no length limit a buffer could keep. */
  const char *slash = strrchr(tokens, '/');
  size_t dir = slash ? (size_t)(slash - tokens + 1) : 0;
  char *name = malloc(dir + sizeof "vocab");
  if (!name) {
    h5util_set_err(err, errlen, "out of memory for the name of the vocabulary of '%s' in '%s'",
                   tokens, path);
    return -1;
  }
  memcpy(name, tokens, dir);
  memcpy(name + dir, "vocab", sizeof "vocab");
  hid_t set = data_open_dataset(file, path, name, file_size, err, errlen);
  if (set < 0) {
    free(name);
    return -1;
  }
  hid_t type = H5Dget_type(set), space = H5Dget_space(set);
  hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  int rc = type >= 0 && H5Tget_class(type) == H5T_INTEGER && n > 0 && n <= MAX_CHARS ? 0 : -1;
  int64_t *cp = rc == 0 ? malloc((size_t)n * sizeof *cp) : NULL;
  if (rc < 0 || !cp || H5Dread(set, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, cp) < 0) {
    h5util_set_err(err, errlen, "'%s' in '%s' is not a list of at most 2^24 code points", name,
                   path);
    rc = -1;
  }
  for (hssize_t i = 0; rc == 0 && i < n; i++) {
    const char *why = "is not a code point";
    if (cp[i] < -1 || cp[i] > 0x10FFFF ||
        add_char(t, cp[i] < 0 ? UNK_CP : (uint32_t)cp[i], &why) < 0) {
      h5util_set_err(err, errlen, "entry %lld (%lld) of '%s' in '%s' %s", (long long)i,
                     (long long)cp[i], name, path, why);
      rc = -1;
    }
  }
  if (rc == 0) rc = finish(t, path, err, errlen);
  free(cp);
  free(name);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  H5Dclose(set);
  return rc;
}

int data_tokenizer_load(data_tokenizer **out, const char *path, const char *tokens, char *err,
                        size_t errlen) {
  h5util_guard q;
  char why[160], kind[16];
  uint64_t file_size = 0;
  hid_t file = H5I_INVALID_HID, set = H5I_INVALID_HID;
  data_tokenizer *t = calloc(1, sizeof *t);
  int rc = -1;
  *out = NULL;
  h5util_enter(&q);
  if (!t) {
    h5util_set_err(err, errlen, "out of memory for a tokenizer");
    goto done;
  }
  t->unk = -1;
  if (h5util_probe_file(path, &file_size, err, errlen) < 0) goto done;
  file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) {
    h5util_set_err(err, errlen, "cannot open '%s' as HDF5 (truncated or damaged?): %s", path,
                   h5util_reason(why));
    goto done;
  }
  set = data_open_dataset(file, path, tokens, file_size, err, errlen);
  if (set < 0) goto done;
  if (read_kind(set, kind, sizeof kind) < 0) {
    h5util_set_err(err, errlen,
                   "'%s' in '%s' has no tokenizer attribute (\"bytes\" or \"chars\"; midscale "
                   "prepare text writes it)",
                   tokens, path);
    goto done;
  }
  if (strcmp(kind, "bytes") == 0) {
    t->bytes = 1;
    t->size = 256;
    rc = 0;
  } else if (strcmp(kind, "chars") == 0) {
    rc = read_chars(t, file, path, tokens, file_size, err, errlen);
  } else {
    h5util_set_err(err, errlen, "'%s' in '%s' has tokenizer \"%s\"; expected bytes or chars",
                   tokens, path, kind);
  }
done:
  if (set >= 0) H5Dclose(set);
  if (file >= 0) H5Fclose(file);
  h5util_leave(&q);
  if (rc == 0)
    *out = t;
  else
    data_tokenizer_free(t);
  return rc;
}

int32_t data_tokenizer_size(const data_tokenizer *t) { return t->size; }
int data_tokenizer_is_bytes(const data_tokenizer *t) { return t->bytes; }

uint32_t data_tokenizer_codepoint(const data_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->size) return UNK_CP;
  return t->bytes ? (uint32_t)id : t->cps[id];
}

static int push_id(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
  if (*n == *cap) {
    size_t c = *cap ? 2 * *cap : 1 << 16;
    int32_t *g = realloc(*ids, c * sizeof *g);
    if (!g) return -1;
    *ids = g;
    *cap = c;
  }
  (*ids)[(*n)++] = id;
  return 0;
}

size_t data_tokenizer_next(const data_tokenizer *t, const char *text, size_t len, int32_t *id,
                           uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)text;
  *cp = s[0];
  *id = (int32_t)s[0];
  if (t->bytes) return 1;
  size_t k = utf8_next(s, len, cp);
  if (k == 0) return 0;
  vocab_entry key = {*cp, 0};
  const vocab_entry *e = bsearch(&key, t->table, t->n, sizeof key, cmp_entry);
  *id = e ? e->id : t->unk;
  return k;
}

int data_tokenizer_encode(const data_tokenizer *t, const char *text, size_t len, const char *what,
                          long *line, int32_t **ids, size_t *n, size_t *cap, char *err,
                          size_t errlen) {
  for (size_t at = 0; at < len;) {
    uint32_t cp;
    int32_t id;
    size_t k = data_tokenizer_next(t, text + at, len - at, &id, &cp);
    if (k == 0) {
      h5util_set_err(err, errlen,
                     "'%s' line %ld: byte 0x%02X at offset %zu is not valid UTF-8 (a "
                     "vocabulary of characters needs UTF-8 text; --vocab bytes takes any)",
                     what, *line, (unsigned char)text[at], at);
      return -1;
    }
    if (id < 0) {
      h5util_set_err(err, errlen,
                     "'%s' line %ld: character U+%04" PRIX32
                     " ('%.*s') is not in the vocabulary (add it, or a line <unk>)",
                     what, *line, cp, (int)k, text + at);
      return -1;
    }
    if (push_id(ids, n, cap, id) < 0) {
      h5util_set_err(err, errlen, "out of memory tokenising '%s'", what);
      return -1;
    }
    if (cp == '\n') (*line)++;
    at += k;
  }
  return 0;
}

size_t data_tokenizer_decode(const data_tokenizer *t, int32_t id, char out[4]) {
  uint32_t c = data_tokenizer_codepoint(t, id);
  if (c == UNK_CP) return 0;
  if (t->bytes || c < 0x80) return out[0] = (char)c, 1;
  if (c < 0x800) {
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
  }
  if (c < 0x10000) {
    out[0] = (char)(0xE0 | (c >> 12));
    out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[2] = (char)(0x80 | (c & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (c >> 18));
  out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
  out[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

void data_tokenizer_free(data_tokenizer *t) {
  if (!t) return;
  free(t->table);
  free(t->cps);
  free(t);
}
