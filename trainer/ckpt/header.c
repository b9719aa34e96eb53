/* ckpt/header — see header.h. */
#include "header.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "ms_error.h"
#include "section.h"
#include "version.h"

/* ---- building ----------------------------------------------------------- */

int ckpt_hdr_check_meta(const char *what, const ckpt_meta *meta) {
  if (!meta) return ms_error_set(MS_ECKPT, "%s: no metadata", what);
  int rc = ckpt_file_check_step(what, meta->step);
  if (rc) return rc;
  if (meta->epoch < 0 || meta->step_in_epoch < 0 || meta->world_size < 1)
    return ms_error_set(MS_ECKPT,
                        "%s: invalid cursor (epoch %" PRId64 ", step_in_epoch %" PRId64
                        ", world_size %d)",
                        what, meta->epoch, meta->step_in_epoch, meta->world_size);
  return 0;
}

/* Adds __metadata__ to root. @return 0, 1 (out of memory), or MS_ECKPT. */
static int add_meta(json_t *root, const ckpt_meta *meta, uint64_t data_hash, const char *what) {
  char num[32];
  json_t *md = json_object();
  if (!md || json_object_set_new(root, "__metadata__", md)) return 1;
#define PUT(key, value)                                             \
  do {                                                              \
    if (json_object_set_new(md, key, json_string(value))) return 1; \
  } while (0)
#define PUTF(key, fmt, value)              \
  do {                                     \
    snprintf(num, sizeof num, fmt, value); \
    PUT(key, num);                         \
  } while (0)
  PUT("format", CKPT_FORMAT_NAME);
  PUTF("format_version", "%d", CKPT_FORMAT_VERSION);
  PUT("midscale_version", MS_VERSION_STRING);
  PUTF("step", "%" PRId64, meta->step);
  PUTF("epoch", "%" PRId64, meta->epoch);
  PUTF("step_in_epoch", "%" PRId64, meta->step_in_epoch);
  PUTF("world_size", "%d", meta->world_size);
  PUTF("seed", "%" PRIu64, meta->seed);
  PUTF("rng_state", "%" PRIu64, meta->rng_state);
  PUTF("layout_hash", "%016" PRIx64, meta->layout_hash);
  PUTF("data_hash", "%016" PRIx64, data_hash);
  if (meta->byte_shuffle) PUT("byte_shuffle", "4");
  if (meta->train_state[0]) {
    json_t *ts = json_string(meta->train_state);
    if (!ts) return ms_error_set(MS_ECKPT, "%s: the train state is not valid UTF-8", what);
    if (json_object_set_new(md, "train_state", ts)) return 1;
  }
#undef PUTF
#undef PUT
  json_t *cfg = json_string(meta->config ? meta->config : "");
  if (!cfg) return ms_error_set(MS_ECKPT, "%s: the config text is not valid UTF-8", what);
  return json_object_set_new(md, "config", cfg) ? 1 : 0;
}

/* Adds one tensor entry at data offset off. @return 0, 1 (out of memory),
 * or MS_ECKPT. */
static int add_entry(json_t *root, const ckpt_tensor *t, int64_t off, const char *what) {
  int64_t end = off + ckpt_sec_tensor_bytes(t->ndim, t->shape);
  json_t *name = json_string(t->name);
  if (!name)
    return ms_error_set(MS_ECKPT, "%s: tensor name '%s' is not valid UTF-8", what, t->name);
  json_decref(name);
  if (json_object_get(root, t->name))
    return ms_error_set(MS_ECKPT, "%s: tensor name '%s' is given twice", what, t->name);
  json_t *shape = json_array();
  for (int d = 0; shape && d < t->ndim; d++)
    if (json_array_append_new(shape, json_integer(t->shape[d]))) {
      json_decref(shape);
      shape = NULL;
    }
  /* json_pack steals the "o" reference, also when it fails. */
  json_t *e = shape ? json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)end)
                    : NULL;
  return !e || json_object_set_new(root, t->name, e) ? 1 : 0;
}

/* The JSON header, space-padded so that 8 + its length is a multiple of 8:
 * *out gets a malloc'ed string of *len bytes. */
static int build_json(const ckpt_tensor *t, int n, const ckpt_meta *meta, uint64_t data_hash,
                      const char *what, char **out, size_t *len) {
  json_t *root = json_object();
  int rc = root ? add_meta(root, meta, data_hash, what) : 1;
  int64_t off = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    rc = add_entry(root, &t[i], off, what);
    off += ckpt_sec_tensor_bytes(t[i].ndim, t[i].shape);
  }
  char *s = rc == 0 ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(root);
  if (rc < 0) return rc;
  size_t slen = s ? strlen(s) : 0, pad = (8 - slen % 8) % 8;
  char *padded = s ? realloc(s, slen + pad + 1) : NULL;
  if (!padded) {
    free(s);
    return ms_error_set(MS_ENOMEM, "%s: out of memory building the header", what);
  }
  memset(padded + slen, ' ', pad);
  padded[slen + pad] = '\0';
  *out = padded;
  *len = slen + pad;
  return 0;
}

int ckpt_header(const char *what, const ckpt_tensor *tensors, int n_tensors, const ckpt_meta *meta,
                uint64_t data_hash, void **out, size_t *len) {
  *out = NULL;
  *len = 0;
  uint64_t d;
  int rc = ckpt_hdr_check_meta(what, meta);
  if (rc == 0) rc = ckpt_data_size(what, tensors, n_tensors, &d);
  if (rc) return rc;
  char *json = NULL;
  size_t jlen = 0;
  if ((rc = build_json(tensors, n_tensors, meta, data_hash, what, &json, &jlen)) != 0) return rc;
  if (jlen > CKPT_MAX_HEADER) {
    free(json);
    return ms_error_set(MS_ECKPT, "%s: the header would be %zu bytes (at most %llu)", what, jlen,
                        CKPT_MAX_HEADER);
  }
  unsigned char *p = malloc(8 + jlen);
  if (!p) {
    free(json);
    return ms_error_set(MS_ENOMEM, "%s: out of memory", what);
  }
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
  memcpy(p + 8, json, jlen);
  free(json);
  *out = p;
  *len = 8 + jlen;
  return 0;
}

/* ---- parsing ------------------------------------------------------------ */

int ckpt_hdr_length(const char *path, const unsigned char len8[8], uint64_t payload_size,
                    uint64_t *len) {
  uint64_t h = 0;
  for (int i = 7; i >= 0; i--) h = (h << 8) | len8[i];
  if (h < 2 || h > CKPT_MAX_HEADER || h > payload_size - 8)
    return ms_error_set(MS_ECKPT, "%s: invalid safetensors header length %" PRIu64, path, h);
  *len = h;
  return 0;
}

static int entry_cmp(const void *a, const void *b) {
  const ckpt_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

/* A metadata number: decimal without leading zeros, or exactly 16 lower-case
 * hex digits; at most max. */
static int parse_u64(const char *s, int hex, uint64_t max, uint64_t *out) {
  size_t n = strlen(s);
  if (n == 0 || (hex && n != 16) || (!hex && n > 20)) return -1;
  if (!hex && n > 1 && s[0] == '0') return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    int d;
    if (s[i] >= '0' && s[i] <= '9')
      d = s[i] - '0';
    else if (hex && s[i] >= 'a' && s[i] <= 'f')
      d = s[i] - 'a' + 10;
    else
      return -1;
    if (!hex && v > (UINT64_MAX - (uint64_t)d) / 10) return -1;
    v = v * (hex ? 16 : 10) + (uint64_t)d;
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

static int meta_field(const char *path, json_t *md, const char *key, int hex, uint64_t max,
                      uint64_t *out) {
  json_t *v = json_object_get(md, key);
  if (!v) return ms_error_set(MS_ECKPT, "%s: metadata key '%s' is missing", path, key);
  char q[128];
  if (parse_u64(json_string_value(v), hex, max, out))
    return ms_error_set(MS_ECKPT, "%s: metadata '%s' = '%s' is not a valid %s", path, key,
                        ms_escape(json_string_value(v), 0, q, sizeof q),
                        hex ? "16-digit hex hash" : "number");
  return 0;
}

/* Checks the format name and version of __metadata__ md. */
static int parse_format(const char *path, json_t *md, int *version) {
  json_t *v = json_object_get(md, "format");
  char q[128];
  if (!v || strcmp(json_string_value(v), CKPT_FORMAT_NAME) != 0)
    return ms_error_set(
        MS_ECKPT, "%s: not a midscale checkpoint (metadata 'format' is %s%s%s, expected '%s')",
        path, v ? "'" : "", v ? ms_escape(json_string_value(v), 0, q, sizeof q) : "missing",
        v ? "'" : "", CKPT_FORMAT_NAME);
  uint64_t fv;
  int rc = meta_field(path, md, "format_version", 0, INT32_MAX, &fv);
  if (rc) return rc;
  if (fv > CKPT_FORMAT_VERSION)
    return ms_error_set(
        MS_ECKPT, "%s: made by a newer midscale (format version %" PRIu64 "; this build reads %d)",
        path, fv, CKPT_FORMAT_VERSION);
  if (fv < 1) return ms_error_set(MS_ECKPT, "%s: unknown format version %" PRIu64, path, fv);
  *version = (int)fv;
  return 0;
}

/* Checks __metadata__ and fills h's meta, version, data_hash and config. */
static int parse_meta(const char *path, json_t *root, ckpt_hdr *h) {
  char q[256];
  json_t *md = json_object_get(root, "__metadata__"), *v;
  const char *key;
  if (!json_is_object(md))
    return ms_error_set(MS_ECKPT,
                        "%s: the header has no __metadata__ map: not a midscale checkpoint", path);
  json_object_foreach(md, key, v) {
    if (!json_is_string(v))
      return ms_error_set(MS_ECKPT,
                          "%s: metadata '%s' is not a string (safetensors requires string values)",
                          path, ms_escape(key, 0, q, sizeof q));
  }
  int rc = parse_format(path, md, &h->version);
  if (rc) return rc;
  static const char *keys[] = {"step", "epoch",     "step_in_epoch", "world_size",
                               "seed", "rng_state", "layout_hash",   "data_hash"};
  const uint64_t maxes[] = {CKPT_MAX_STEP, INT64_MAX,  INT64_MAX,  INT32_MAX,
                            UINT64_MAX,    UINT64_MAX, UINT64_MAX, UINT64_MAX};
  uint64_t u[8];
  for (int i = 0; i < 8; i++)
    if ((rc = meta_field(path, md, keys[i], i >= 6, maxes[i], &u[i])) != 0) return rc;
  if (u[3] < 1) return ms_error_set(MS_ECKPT, "%s: metadata 'world_size' is 0", path);
  v = json_object_get(md, "config");
  if (!v) return ms_error_set(MS_ECKPT, "%s: metadata key 'config' is missing", path);
  if (json_string_length(v) > CKPT_MAX_CONFIG)
    return ms_error_set(MS_ECKPT, "%s: damaged: the saved config has %zu bytes (at most %u)", path,
                        json_string_length(v), CKPT_MAX_CONFIG);
  if (strlen(json_string_value(v)) != json_string_length(v))
    return ms_error_set(MS_ECKPT, "%s: damaged: the saved config holds a NUL character", path);
  ckpt_meta *m = &h->meta;
  m->step = (int64_t)u[0];
  m->epoch = (int64_t)u[1];
  m->step_in_epoch = (int64_t)u[2];
  m->world_size = (int)u[3];
  m->seed = u[4];
  m->rng_state = u[5];
  m->layout_hash = u[6];
  h->data_hash = u[7];
  h->config = json_string_value(v);
  v = json_object_get(md, "train_state");
  m->train_state[0] = '\0';
  if (v && (json_string_length(v) >= sizeof m->train_state ||
            strlen(json_string_value(v)) != json_string_length(v)))
    return ms_error_set(MS_ECKPT,
                        "%s: damaged: metadata 'train_state' holds %zu bytes (at most %zu, no NUL)",
                        path, json_string_length(v), sizeof m->train_state - 1);
  if (v) memcpy(m->train_state, json_string_value(v), json_string_length(v) + 1);
  v = json_object_get(md, "byte_shuffle");
  m->byte_shuffle = 0;
  if (v && strcmp(json_string_value(v), "4") == 0)
    m->byte_shuffle = 1;
  else if (v)
    return ms_error_set(MS_ECKPT, "%s: unknown byte_shuffle '%s' (this build reads 4)", path,
                        ms_escape(json_string_value(v), 0, q, sizeof q));
  return 0;
}

/* Parses one tensor entry of the header into e. */
static int parse_entry(const char *path, const char *name, json_t *v, ckpt_entry *e) {
  json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
  json_t *offs = json_object_get(v, "data_offsets");
  char qn[256], qd[64];
  const char *q = ms_escape(name, 0, qn, sizeof qn);
  e->name = name;
  e->req = -1;
  if (!json_is_object(v) || !json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs))
    return ms_error_set(MS_ECKPT, "%s: tensor '%s' lacks dtype, shape or data_offsets", path, q);
  if (strcmp(json_string_value(dtype), "F32") != 0)
    return ms_error_set(MS_ECKPT,
                        "%s: tensor '%s' has dtype %s; midscale checkpoints hold F32 only", path,
                        q, ms_escape(json_string_value(dtype), 0, qd, sizeof qd));
  size_t nd = json_array_size(shape);
  if (nd > CKPT_MAX_DIMS)
    return ms_error_set(MS_ECKPT, "%s: tensor '%s' has %zu dimensions (at most %d)", path, q, nd,
                        CKPT_MAX_DIMS);
  e->ndim = (int)nd;
  for (size_t d = 0; d < nd; d++) {
    json_t *x = json_array_get(shape, d);
    if (!json_is_integer(x) || json_integer_value(x) < 0)
      return ms_error_set(MS_ECKPT, "%s: tensor '%s' has an invalid shape", path, q);
    e->shape[d] = json_integer_value(x);
  }
  json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
  if (json_array_size(offs) != 2 || !json_is_integer(b) || !json_is_integer(en) ||
      json_integer_value(b) < 0 || json_integer_value(en) < json_integer_value(b))
    return ms_error_set(MS_ECKPT, "%s: tensor '%s' has invalid data_offsets", path, q);
  e->begin = (uint64_t)json_integer_value(b);
  e->end = (uint64_t)json_integer_value(en);
  int64_t bytes = ckpt_sec_tensor_bytes(e->ndim, e->shape);
  if (bytes < 0 || e->end - e->begin != (uint64_t)bytes)
    return ms_error_set(MS_ECKPT,
                        "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                        "] that do not match its shape",
                        path, q, e->begin, e->end);
  return 0;
}

/* Parses the tensor entries, sorts them by offset and checks that they
 * tile the data section. */
static int parse_entries(const char *path, json_t *root, ckpt_hdr *h) {
  char qn[256];
  h->ne = json_object_size(root) - 1;
  h->es = calloc(h->ne ? h->ne : 1, sizeof *h->es);
  if (!h->es) return ms_error_set(MS_ENOMEM, "%s: out of memory", path);
  const char *key;
  json_t *v;
  size_t k = 0;
  int rc;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "__metadata__") == 0) continue;
    if ((rc = parse_entry(path, key, v, &h->es[k++])) != 0) return rc;
  }
  qsort(h->es, h->ne, sizeof *h->es, entry_cmp);
  uint64_t pos = 0;
  for (size_t j = 0; j < h->ne; j++) {
    if (h->es[j].begin != pos)
      return ms_error_set(MS_ECKPT,
                          "%s: tensor '%s' data_offsets leave a gap or overlap at byte %" PRIu64,
                          path, ms_escape(h->es[j].name, 0, qn, sizeof qn), pos);
    pos = h->es[j].end;
    if (pos > CKPT_MAX_PAYLOAD)
      return ms_error_set(MS_ECKPT, "%s: the tensors cover more than %llu bytes", path,
                          CKPT_MAX_PAYLOAD);
  }
  h->data_size = pos;
  return 0;
}

/* JSON values a header may hold per tensor entry ("name": {"dtype": "F32",
 * "shape": [4 dims], "data_offsets": [b, e]} counts 14 separators and
 * openings), and for the metadata map. */
#define HDR_VALUES_PER_TENSOR 16
#define HDR_VALUES_META 64

/* Counts the header's structure without parsing it: openings and
 * separators outside strings (about one per JSON value), tensor entries
 * (objects opened at depth 1, less __metadata__), the depth. Refuses a
 * header that no count of tensors within the limit can justify, before
 * jansson spends ~50 bytes of memory per value. */
static int hdr_prescan(const char *path, const char *text, size_t len) {
  uint64_t values = 0, objects = 0;
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (in_str) {
      if (ch == '\\')
        i++;
      else if (ch == '"')
        in_str = 0;
      continue;
    }
    if (ch == '"') {
      in_str = 1;
    } else if (ch == '{' || ch == '[') {
      values++;
      if (ch == '{' && depth == 1) objects++;
      if (++depth > 3)
        return ms_error_set(MS_ECKPT, "%s: damaged header: JSON nested deeper than 3 levels", path);
    } else if (ch == '}' || ch == ']') {
      depth--;
    } else if (ch == ',' || ch == ':') {
      values++;
    }
  }
  uint64_t tensors = objects ? objects - 1 : 0;
  if (tensors > CKPT_MAX_TENSORS)
    return ms_error_set(MS_ECKPT, "%s: damaged header: %" PRIu64 " tensor entries (at most %d)",
                        path, tensors, CKPT_MAX_TENSORS);
  if (values > HDR_VALUES_PER_TENSOR * tensors + HDR_VALUES_META)
    return ms_error_set(MS_ECKPT,
                        "%s: damaged header: %" PRIu64 " JSON values for %" PRIu64
                        " tensor entries (at most %" PRIu64 ")",
                        path, values, tensors, HDR_VALUES_PER_TENSOR * tensors + HDR_VALUES_META);
  return 0;
}

int ckpt_hdr_parse(const char *path, const char *text, size_t len, ckpt_hdr *h) {
  memset(h, 0, sizeof *h);
  int prc = hdr_prescan(path, text, len);
  if (prc) return prc;
  json_error_t jerr;
  json_t *root =
      len && text[0] == '{' ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
  if (!len || text[0] != '{') snprintf(jerr.text, sizeof jerr.text, "it does not start with '{'");
  h->json = root;
  if (!json_is_object(root))
    return ms_error_set(MS_ECKPT, "%s: the safetensors header is not a JSON object (%s)", path,
                        root ? "other JSON value" : jerr.text);
  int rc = parse_meta(path, root, h);
  if (rc == 0) rc = parse_entries(path, root, h);
  return rc;
}

void ckpt_hdr_free(ckpt_hdr *h) {
  if (!h) return;
  free(h->es);
  json_decref(h->json);
  h->es = NULL;
  h->json = NULL;
}
