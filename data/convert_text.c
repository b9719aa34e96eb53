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
#include "tokenizer.h"

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable id stream. */
typedef struct {
  int32_t *v;
  size_t n, cap;
} ids;

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
static int write_split(hid_t file, const char *group, const ids *s, const data_tokenizer *v) {
  char tmp[1024] = "";
  hid_t g = convert_stage_group(file, group, tmp, sizeof tmp);
  hsize_t d[1] = {(hsize_t)s->n};
  int32_t size = data_tokenizer_size(v);
  int bytes = data_tokenizer_is_bytes(v);
  hid_t set = g >= 0 ? convert_create_chunked(g, "tokens", id_type(size), 1, d,
                                              H5Tget_size(id_type(size)), CONVERT_GZIP)
                     : H5I_INVALID_HID;
  int rc = set >= 0 && convert_write_rows(set, 1, d, 0, s->n, H5T_NATIVE_INT32, s->v) == 0 &&
                   put_attr_i64(set, "vocab_size", size) == 0 &&
                   put_attr_str(set, "tokenizer", bytes ? "bytes" : "chars") == 0
               ? 0
               : -1;
  if (rc == 0 && !bytes) {
    int32_t *cp = malloc((size_t)size * sizeof *cp);
    hsize_t vd[1] = {(hsize_t)size};
    hid_t vs = cp ? convert_create_chunked(g, "vocab", H5T_STD_I32LE, 1, vd, 4, CONVERT_GZIP)
                  : H5I_INVALID_HID;
    for (int32_t i = 0; cp && i < size; i++) {
      uint32_t c = data_tokenizer_codepoint(v, i);
      cp[i] = c == UINT32_MAX ? -1 : (int32_t)c;
    }
    if (vs < 0 || convert_write_rows(vs, 1, vd, 0, (uint64_t)size, H5T_NATIVE_INT32, cp) < 0)
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
                 const convert_text_opts *o, convert_text_stats *stats, char *err, size_t errlen) {
  data_tokenizer *v = NULL;
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
    if (data_tokenizer_bytes(&v, err, errlen) < 0) goto done;
  } else {
    size_t len = 0;
    if (slurp(o->vocab, "a vocabulary file", &text, &len, err, errlen) < 0) goto done;
    if (data_tokenizer_parse(&v, text, len, o->vocab, err, errlen) < 0) goto done;
    free(text);
    text = NULL;
  }
  for (size_t i = 0; i < n_files; i++) {
    size_t len = 0;
    long line = 1;
    if (slurp(files[i], "a text file", &text, &len, err, errlen) < 0) goto done;
    size_t b = split_at(text, len, o->test_fraction);
    for (int k = 0; k < 2; k++)
      if (data_tokenizer_encode(v, k ? text + b : text, k ? len - b : b, files[i], &line,
                                &split[k].v, &split[k].n, &split[k].cap, err, errlen) < 0)
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
    if (write_split(file, s ? "test" : "train", &split[s], v) < 0) {
      h5util_set_err(err, errlen, "cannot write group '%s' of '%s'", s ? "test" : "train",
                     out_path);
      goto done;
    }
  if (stats)
    *stats = (convert_text_stats){split[0].n, split[1].n, (uint64_t)data_tokenizer_size(v)};
  rc = 0;
done:
  if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
    h5util_set_err(err, errlen, "cannot close '%s' (disk full?)", out_path);
    rc = -1;
  }
  free(text);
  free(split[0].v);
  free(split[1].v);
  data_tokenizer_free(v);
  h5util_leave(&q);
  return rc;
}
