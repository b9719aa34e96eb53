/* test_ckpt — checkpoint files: format, verification, atomic writes, and the
 * directory scans (find_latest, prune). Each test gets its own temp dir. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader, ZSTD_findDecompressedSize */
#include <zstd.h>
#include <xxhash.h>

#include "ckpt.h"
#include "hash.h"
#include "ms_error.h"

#define CHECKER MS_PYTHON " " MS_SOURCE_DIR "/tests/tools/safetensors_check.py"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
  char dir[64];
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/ms-ckpt-XXXXXX");
  if (!mkdtemp(fx->dir)) {
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

static void rm_rf(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      char sub[512];
      snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
      rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static int teardown(void **state) {
  fixture *fx = *state;
  rm_rf(fx->dir);
  free(fx);
  return 0;
}

/* A small model: one layer's weight and bias, and the weight's momentum. */
typedef struct {
  float w[16 * 8], b[16], m[16 * 8];
  ckpt_tensor t[3];
} model;

static void model_init(model *md, unsigned seed) {
  uint32_t x = seed * 2654435761u + 1;
  float *arrays[3] = {md->w, md->b, md->m};
  size_t sizes[3] = {16 * 8, 16, 16 * 8};
  for (int a = 0; a < 3; a++)
    for (size_t i = 0; i < sizes[a]; i++) {
      x = x * 1664525u + 1013904223u;
      arrays[a][i] = (float)((int32_t)x) / 2147483648.0f;
    }
  md->t[0] = (ckpt_tensor){"layers.0.weight", md->w, 2, {16, 8}};
  md->t[1] = (ckpt_tensor){"layers.0.bias", md->b, 1, {16}};
  md->t[2] = (ckpt_tensor){"optim/momentum/layers.0.weight", md->m, 2, {16, 8}};
}

static ckpt_meta test_meta(int64_t step) {
  ckpt_meta m = {.step = step,
                 .epoch = 2,
                 .step_in_epoch = 7,
                 .world_size = 4,
                 .seed = 1234567890123ULL,
                 .rng_state = 0xfedcba9876543210ULL,
                 .layout_hash = 0x0123456789abcdefULL,
                 .config = "run:\n  seed: 1\n"};
  return m;
}

/* Writes a checkpoint of model seed `seed` at `step`; returns its path. */
static char *write_step(const char *dir, int64_t step, unsigned seed) {
  model md;
  model_init(&md, seed);
  ckpt_meta m = test_meta(step);
  char *path = NULL;
  int rc = ckpt_write(dir, md.t, 3, &m, 3, &path);
  if (rc) fail_msg("ckpt_write: %s", ms_error_msg());
  return path;
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)size + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  *n = (size_t)size;
  return buf;
}

static void spit(const char *path, const void *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static unsigned char *decompress_file(const char *path, size_t *n) {
  size_t csize;
  unsigned char *c = slurp(path, &csize);
  unsigned long long size = ZSTD_findDecompressedSize(c, csize); /* all frames */
  assert_true(size != ZSTD_CONTENTSIZE_ERROR && size != ZSTD_CONTENTSIZE_UNKNOWN);
  unsigned char *out = malloc(size);
  assert_non_null(out);
  size_t got = ZSTD_decompress(out, size, c, csize);
  assert_false(ZSTD_isError(got));
  assert_int_equal(got, size);
  free(c);
  *n = got;
  return out;
}

/* Compresses a payload the way a well-behaved writer would (checksum on). */
static void compress_to(const char *path, const void *payload, size_t n) {
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  assert_non_null(cc);
  assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)));
  size_t cap = ZSTD_compressBound(n);
  void *out = malloc(cap);
  assert_non_null(out);
  size_t got = ZSTD_compress2(cc, out, cap, payload, n);
  assert_false(ZSTD_isError(got));
  spit(path, out, got);
  free(out);
  ZSTD_freeCCtx(cc);
}

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* data_hash of format version 2, computed here from its definition in
 * ckpt.h: XXH3-64 over the XXH3-64 hashes of the 1 MiB chunks. */
static uint64_t data_hash_v2(const unsigned char *data, size_t n) {
  size_t chunk = 1 << 20, count = (n + chunk - 1) / chunk;
  uint64_t *hs = malloc(sizeof *hs * (count ? count : 1));
  assert_non_null(hs);
  for (size_t c = 0; c < count; c++)
    hs[c] = XXH3_64bits(data + c * chunk, n - c * chunk < chunk ? n - c * chunk : chunk);
  uint64_t h = XXH3_64bits(hs, count * sizeof *hs);
  free(hs);
  return h;
}

/* Writes header JSON root and dlen data bytes as a checkpoint at path, in
 * one valid zstd frame; flip >= 0 flips one bit of that data byte. */
static void recompress(const char *path, json_t *root, const unsigned char *data, size_t dlen,
                       long flip) {
  char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_non_null(s);
  size_t slen = strlen(s), pad = (8 - slen % 8) % 8;
  size_t total = 8 + slen + pad + dlen;
  unsigned char *q = malloc(total);
  assert_non_null(q);
  for (int i = 0; i < 8; i++) q[i] = (unsigned char)((slen + pad) >> (8 * i));
  memcpy(q + 8, s, slen);
  memset(q + 8 + slen, ' ', pad);
  memcpy(q + 8 + slen + pad, data, dlen);
  if (flip >= 0) q[8 + slen + pad + (size_t)flip] ^= 0x01;
  compress_to(path, q, total);
  free(q);
  free(s);
}

/* Rebuilds the checkpoint at path with a valid zstd frame: edit() may change
 * the header JSON, and flip >= 0 flips one bit of that data-section byte. */
static void rewrite(const char *path, void (*edit)(json_t *root), long flip) {
  size_t n;
  unsigned char *p = decompress_file(path, &n);
  uint64_t hlen = le64(p);
  json_error_t err;
  json_t *root = json_loadb((const char *)p + 8, hlen, 0, &err);
  assert_non_null(root);
  if (edit) edit(root);
  recompress(path, root, p + 8 + hlen, n - 8 - hlen, flip);
  json_decref(root);
  free(p);
}

/* Turns the checkpoint at path into a format-version-1 file, as midscale
 * 0.1 wrote them: one frame, data_hash the FNV-1a of the tensor bytes (xor
 * `spoil`). */
static void make_version1(const char *path, uint64_t spoil) {
  size_t n;
  unsigned char *p = decompress_file(path, &n);
  uint64_t hlen = le64(p);
  json_error_t err;
  json_t *root = json_loadb((const char *)p + 8, hlen, 0, &err);
  assert_non_null(root);
  json_t *md = json_object_get(root, "__metadata__");
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64,
           hash_fnv1a(HASH_FNV_OFFSET, p + 8 + hlen, n - 8 - hlen) ^ spoil);
  json_object_set_new(md, "format_version", json_string("1"));
  json_object_set_new(md, "data_hash", json_string(hex));
  recompress(path, root, p + 8 + hlen, n - 8 - hlen, -1);
  json_decref(root);
  free(p);
}

/* The start offsets of the zstd frames of a file: their count. */
static size_t frame_starts(const unsigned char *c, size_t n, size_t *starts, size_t max) {
  size_t k = 0, at = 0;
  while (at < n && k < max) {
    size_t f = ZSTD_findFrameCompressedSize(c + at, n - at);
    assert_false(ZSTD_isError(f));
    starts[k++] = at;
    at += f;
  }
  assert_int_equal(at, n);
  return k;
}

static void assert_msg_has(const char *path, const char *needle) {
  const char *msg = ms_error_msg();
  if (strncmp(msg, path, strlen(path)) != 0) fail_msg("message does not begin with the path: %s", msg);
  if (!strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
}

/* Asserts that ckpt_read refuses path with MS_ECKPT and a message holding
 * needle (NULL: any message). */
static void assert_refused(const char *path, const char *needle) {
  model md;
  model_init(&md, 99);
  ckpt_meta m;
  ms_error_clear();
  int rc = ckpt_read(path, md.t, 3, 0, &m);
  if (rc != MS_ECKPT) fail_msg("ckpt_read returned %d (%s) for %s", rc, ms_error_msg(), path);
  assert_null(m.config);
  assert_msg_has(path, needle ? needle : "");
  assert_int_equal(ckpt_read_meta(path, &m), MS_ECKPT);
  assert_null(m.config);
}

static int count_entries(const char *dir, const char *containing) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")))
      n += !containing || strstr(de->d_name, containing) != NULL;
  closedir(d);
  return n;
}

static int run_checker(const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, CHECKER " %s", args);
  int st = system(cmd);
  assert_true(st != -1 && WIFEXITED(st));
  return WEXITSTATUS(st);
}

/* ---- format ---------------------------------------------------------------- */

static void test_ckpt_roundtrip_three_tensors(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 42, 1);
  model src, dst;
  model_init(&src, 1);
  model_init(&dst, 2);
  /* Request in another order than written: the match is by name. */
  ckpt_tensor req[3] = {dst.t[2], dst.t[0], dst.t[1]};
  ckpt_meta m;
  int rc = ckpt_read(path, req, 3, 0x0123456789abcdefULL, &m);
  if (rc) fail_msg("%s", ms_error_msg());
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  assert_memory_equal(dst.b, src.b, sizeof src.b);
  assert_memory_equal(dst.m, src.m, sizeof src.m);
  assert_int_equal(m.step, 42);
  assert_int_equal(m.epoch, 2);
  assert_int_equal(m.step_in_epoch, 7);
  assert_int_equal(m.world_size, 4);
  assert_true(m.seed == 1234567890123ULL);
  assert_true(m.rng_state == 0xfedcba9876543210ULL);
  assert_true(m.layout_hash == 0x0123456789abcdefULL);
  assert_string_equal(m.config, "run:\n  seed: 1\n");
  ckpt_meta_free(&m);
  assert_null(m.config);
  ckpt_meta_free(NULL);
  free(path);
}

static void test_ckpt_read_meta_only(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 7, 1);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  assert_int_equal(m.step, 7);
  assert_int_equal(m.world_size, 4);
  assert_string_equal(m.config, "run:\n  seed: 1\n");
  ckpt_meta_free(&m);
  free(path);
}

static void test_ckpt_empty_and_scalar_tensors(void **state) {
  fixture *fx = *state;
  float scalar = 3.5f, got = 0;
  ckpt_tensor t[2] = {{"scalar", &scalar, 0, {0}}, {"empty", NULL, 2, {0, 5}}};
  ckpt_meta m = test_meta(1);
  m.config = NULL;
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, t, 2, &m, 1, &path), 0);
  ckpt_tensor r[2] = {{"empty", NULL, 2, {0, 5}}, {"scalar", &got, 0, {0}}};
  ckpt_meta rm;
  assert_int_equal(ckpt_read(path, r, 2, 0, &rm), 0);
  assert_true(got == 3.5f);
  assert_string_equal(rm.config, "");
  ckpt_meta_free(&rm);
  free(path);
}

static void test_ckpt_file_name(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 42, 1);
  char want[128];
  snprintf(want, sizeof want, "%s/step-00000042.safetensors.zst", fx->dir);
  assert_string_equal(path, want);
  struct stat st;
  assert_int_equal(stat(want, &st), 0);
  assert_int_equal(count_entries(fx->dir, NULL), 1);
  free(path);
}

static void test_ckpt_creates_nested_dir(void **state) {
  fixture *fx = *state;
  char dir[128];
  snprintf(dir, sizeof dir, "%s/a/b/c", fx->dir);
  char *path = write_step(dir, 3, 1);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  free(path);
}

static void test_ckpt_payload_is_safetensors(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 42, 1);
  size_t n;
  unsigned char *p = decompress_file(path, &n);
  uint64_t hlen = le64(p);
  assert_int_equal((8 + hlen) % 8, 0);
  assert_true(8 + hlen <= n);
  assert_int_equal(p[8], '{');
  json_error_t err;
  json_t *root = json_loadb((const char *)p + 8, hlen, JSON_REJECT_DUPLICATES, &err);
  assert_non_null(root);

  /* __metadata__ first, then the tensors in the order given. */
  model md;
  model_init(&md, 1);
  const char *order[4] = {"__metadata__", md.t[0].name, md.t[1].name, md.t[2].name};
  void *it = json_object_iter(root);
  for (int i = 0; i < 4; i++, it = json_object_iter_next(root, it)) {
    assert_non_null(it);
    assert_string_equal(json_object_iter_key(it), order[i]);
  }
  assert_null(it);

  json_t *meta = json_object_get(root, "__metadata__"), *v;
  const char *key;
  json_object_foreach(meta, key, v) assert_true(json_is_string(v));
  assert_string_equal(json_string_value(json_object_get(meta, "format")), "midscale-ckpt");
  assert_string_equal(json_string_value(json_object_get(meta, "format_version")), "2");
  assert_non_null(json_object_get(meta, "midscale_version"));
  assert_string_equal(json_string_value(json_object_get(meta, "step")), "42");
  assert_string_equal(json_string_value(json_object_get(meta, "seed")), "1234567890123");
  assert_string_equal(json_string_value(json_object_get(meta, "layout_hash")), "0123456789abcdef");

  /* Consecutive offsets, exact bytes, and the data hash over them. */
  const unsigned char *data = p + 8 + hlen;
  uint64_t off = 0;
  for (int i = 0; i < 3; i++) {
    json_t *e = json_object_get(root, md.t[i].name);
    assert_string_equal(json_string_value(json_object_get(e, "dtype")), "F32");
    json_t *offs = json_object_get(e, "data_offsets");
    uint64_t b = (uint64_t)json_integer_value(json_array_get(offs, 0));
    uint64_t en = (uint64_t)json_integer_value(json_array_get(offs, 1));
    json_t *shape = json_object_get(e, "shape");
    assert_int_equal(json_array_size(shape), (size_t)md.t[i].ndim);
    size_t count = 1;
    for (int d = 0; d < md.t[i].ndim; d++) {
      assert_int_equal(json_integer_value(json_array_get(shape, d)), md.t[i].shape[d]);
      count *= (size_t)md.t[i].shape[d];
    }
    assert_int_equal(b, off);
    assert_int_equal(en - b, count * sizeof(float));
    assert_memory_equal(data + b, md.t[i].data, en - b);
    off = en;
  }
  assert_int_equal(8 + hlen + off, n);
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64, data_hash_v2(data, off));
  assert_string_equal(json_string_value(json_object_get(meta, "data_hash")), hex);
  json_decref(root);
  free(p);
  free(path);
}

static void test_ckpt_frame_has_checksum_and_size(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  size_t csize, n;
  unsigned char *c = slurp(path, &csize);
  unsigned char *p = decompress_file(path, &n);
  ZSTD_frameHeader zfh;
  assert_int_equal(ZSTD_getFrameHeader(&zfh, c, csize), 0);
  assert_int_equal(zfh.frameType, ZSTD_frame);
  assert_int_equal(zfh.checksumFlag, 1);
  assert_int_equal(zfh.frameContentSize, n);
  assert_int_equal(ZSTD_findFrameCompressedSize(c, csize), csize);
  free(c);
  free(p);
  free(path);
}

/* ---- refusals ---------------------------------------------------------------- */

static void test_ckpt_missing_file_refused(void **state) {
  fixture *fx = *state;
  char path[128];
  snprintf(path, sizeof path, "%s/step-00000001.safetensors.zst", fx->dir);
  assert_refused(path, "cannot open");
}

static void test_ckpt_not_zstd_refused(void **state) {
  fixture *fx = *state;
  char path[128];
  snprintf(path, sizeof path, "%s/step-00000001.safetensors.zst", fx->dir);
  spit(path, "hello, this is not a checkpoint", 31);
  assert_refused(path, "zstd");
}

static void test_ckpt_truncated_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  size_t n;
  unsigned char *c = slurp(path, &n);
  size_t fhs = ZSTD_frameHeaderSize(c, n);
  assert_false(ZSTD_isError(fhs));
  size_t lens[] = {0, 1, 4, fhs, fhs + 3, n / 3, n / 2, n - 5, n - 4, n - 1};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    spit(path, c, lens[i]);
    assert_refused(path, NULL);
  }
  free(c);
  free(path);
}

static void test_ckpt_flipped_byte_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  size_t n;
  unsigned char *c = slurp(path, &n);
  size_t fhs = ZSTD_frameHeaderSize(c, n);
  assert_true(n > fhs + 400);
  /* The first block header, inside the first block (the JSON header's
   * bytes), through the tensor data, and the checksum at the end. */
  size_t pos[] = {0, fhs, fhs + 4, fhs + 40, fhs + 200, n / 2, 2 * n / 3, n - 40, n - 5, n - 1};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    c[pos[i]] ^= 0x01;
    spit(path, c, n);
    assert_refused(path, NULL);
    c[pos[i]] ^= 0x01;
  }
  spit(path, c, n);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  free(c);
  free(path);
}

static void test_ckpt_trailing_garbage_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  size_t n;
  unsigned char *c = slurp(path, &n);
  unsigned char *big = malloc(2 * n);
  assert_non_null(big);
  memcpy(big, c, n);
  big[n] = 0;
  spit(path, big, n + 1);
  assert_refused(path, "after the zstd frame");
  memcpy(big + n, "garbage", 7);
  spit(path, big, n + 7);
  assert_refused(path, "after the zstd frame");
  memcpy(big + n, c, n); /* a second, valid frame */
  spit(path, big, 2 * n);
  assert_refused(path, "after the zstd frame");
  free(big);
  free(c);
  free(path);
}

static void test_ckpt_data_hash_mismatch_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  rewrite(path, NULL, -1); /* the rewrite alone keeps the file valid */
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  rewrite(path, NULL, 100);
  assert_refused(path, "data hash");
  free(path);
}

static void set_future_version(json_t *root) {
  json_object_set_new(json_object_get(root, "__metadata__"), "format_version", json_string("3"));
}

static void test_ckpt_future_format_version_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  rewrite(path, set_future_version, -1);
  assert_refused(path, "made by a newer midscale (format version 3; this build reads 2)");
  free(path);
}

static void set_wrong_format(json_t *root) {
  json_object_set_new(json_object_get(root, "__metadata__"), "format", json_string("other"));
}

static void test_ckpt_wrong_format_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  rewrite(path, set_wrong_format, -1);
  assert_refused(path, "not a midscale checkpoint");
  free(path);
}

static void set_overlapping_offsets(json_t *root) {
  json_t *offs = json_object_get(json_object_get(root, "layers.0.bias"), "data_offsets");
  int64_t b = json_integer_value(json_array_get(offs, 0));
  json_array_set_new(offs, 0, json_integer(b - 4));
  json_array_set_new(offs, 1, json_integer(b - 4 + 16 * 4));
}

static void test_ckpt_bad_offsets_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  rewrite(path, set_overlapping_offsets, -1);
  assert_refused(path, "layers.0.bias");
  free(path);
}

static void test_ckpt_wrong_shape_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  model md;
  model_init(&md, 2);
  md.t[0].shape[0] = 8;
  md.t[0].shape[1] = 16;
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 3, 0, &m), MS_ECKPT);
  assert_msg_has(path, "tensor 'layers.0.weight' has shape [16, 8] in the file but the model "
                       "expects [8, 16]: this checkpoint was made for another model");
  free(path);
}

static void test_ckpt_missing_tensor_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  model md;
  model_init(&md, 2);
  ckpt_tensor req[4] = {md.t[0], md.t[1], md.t[2], {"layers.1.bias", md.b, 1, {16}}};
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, req, 4, 0, &m), MS_ECKPT);
  assert_msg_has(path, "'layers.1.bias' is missing");
  free(path);
}

static void test_ckpt_extra_tensor_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  model md;
  model_init(&md, 2);
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 2, 0, &m), MS_ECKPT);
  assert_msg_has(path, "'optim/momentum/layers.0.weight' that the model does not have");
  free(path);
}

static void test_ckpt_layout_hash_mismatch_refused(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  model md;
  model_init(&md, 2);
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 3, 0x1111111111111111ULL, &m), MS_ECKPT);
  assert_msg_has(path, "layout hash 0123456789abcdef");
  /* 0 means "do not check". */
  assert_int_equal(ckpt_read(path, md.t, 3, 0, &m), 0);
  ckpt_meta_free(&m);
  free(path);
}

/* ---- writing ------------------------------------------------------------------ */

static void test_ckpt_step_out_of_range_refused(void **state) {
  fixture *fx = *state;
  model md;
  model_init(&md, 1);
  ckpt_meta m = test_meta(100000000);
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &path), MS_ECKPT);
  assert_null(path);
  m.step = -1;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &path), MS_ECKPT);
  m.step = 99999999;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &path), 0);
  assert_non_null(strstr(path, "step-99999999.safetensors.zst"));
  free(path);
}

static void test_ckpt_invalid_cursor_refused(void **state) {
  fixture *fx = *state;
  model md;
  model_init(&md, 1);
  ckpt_meta m = test_meta(1);
  m.world_size = 0;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  m = test_meta(1);
  m.epoch = -1;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  m = test_meta(1);
  m.step_in_epoch = -1;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  assert_int_equal(count_entries(fx->dir, NULL), 0);
}

static void test_ckpt_duplicate_name_refused(void **state) {
  fixture *fx = *state;
  model md;
  model_init(&md, 1);
  md.t[2].name = md.t[0].name;
  ckpt_meta m = test_meta(1);
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, NULL), MS_ECKPT);
  assert_non_null(strstr(ms_error_msg(), "given twice"));
  assert_int_equal(count_entries(fx->dir, NULL), 0);
}

static void test_ckpt_write_into_file_fails_cleanly(void **state) {
  fixture *fx = *state;
  char file[128], below[160];
  snprintf(file, sizeof file, "%s/plain", fx->dir);
  snprintf(below, sizeof below, "%s/sub", file);
  spit(file, "x", 1);
  model md;
  model_init(&md, 1);
  ckpt_meta m = test_meta(1);
  char *path = NULL;
  assert_int_equal(ckpt_write(file, md.t, 3, &m, 3, &path), MS_EIO);
  assert_null(path);
  assert_non_null(strstr(ms_error_msg(), "not a directory"));
  assert_int_equal(ckpt_write(below, md.t, 3, &m, 3, &path), MS_EIO);
  assert_null(path);
  assert_int_equal(count_entries(fx->dir, NULL), 1);
}

/* A file that cannot grow (as on a full disk) fails the write, removes the
 * temporary file and leaves the existing checkpoint as it was. */
static void test_ckpt_write_fails_when_file_cannot_grow(void **state) {
  fixture *fx = *state;
  char *old = write_step(fx->dir, 1, 1);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = 256;
    setrlimit(RLIMIT_FSIZE, &rl);
    model md;
    model_init(&md, 2);
    ckpt_meta m = test_meta(2);
    int rc = ckpt_write(fx->dir, md.t, 3, &m, 3, NULL);
    _exit(rc == MS_EIO && strstr(ms_error_msg(), "write failed") ? 0 : 1);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(count_entries(fx->dir, NULL), 1);
  assert_int_equal(count_entries(fx->dir, ".tmp"), 0);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(old, &m), 0);
  assert_int_equal(m.step, 1);
  ckpt_meta_free(&m);
  free(old);
}

static void test_ckpt_write_same_step_replaces(void **state) {
  fixture *fx = *state;
  char *a = write_step(fx->dir, 5, 1);
  char *b = write_step(fx->dir, 5, 2);
  assert_string_equal(a, b);
  assert_int_equal(count_entries(fx->dir, NULL), 1);
  model src, dst;
  model_init(&src, 2);
  model_init(&dst, 3);
  ckpt_meta m;
  assert_int_equal(ckpt_read(b, dst.t, 3, 0, &m), 0);
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  ckpt_meta_free(&m);
  free(a);
  free(b);
}

/* ---- directory scans ------------------------------------------------------------ */

static void test_ckpt_find_latest_returns_newest(void **state) {
  fixture *fx = *state;
  char *p[3] = {write_step(fx->dir, 20, 1), write_step(fx->dir, 30, 1), write_step(fx->dir, 10, 1)};
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 0);
  assert_string_equal(found, p[1]);
  assert_null(skipped);
  free(found);
  for (int i = 0; i < 3; i++) free(p[i]);
}

static void test_ckpt_find_latest_skips_corrupted(void **state) {
  fixture *fx = *state;
  char *p20 = write_step(fx->dir, 20, 1), *p30 = write_step(fx->dir, 30, 1);
  size_t n;
  unsigned char *c = slurp(p30, &n);
  spit(p30, c, n / 2);
  free(c);
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 0);
  assert_string_equal(found, p20);
  assert_non_null(skipped);
  assert_int_equal(strncmp(skipped, p30, strlen(p30)), 0);
  assert_non_null(strstr(skipped, "truncated"));
  free(found);
  free(skipped);
  free(p20);
  free(p30);
}

static void test_ckpt_find_latest_ignores_other_names(void **state) {
  fixture *fx = *state;
  char *p = write_step(fx->dir, 20, 1);
  size_t n;
  unsigned char *c = slurp(p, &n);
  const char *others[] = {".step-00000099.safetensors.zst.tmp.123", "step-00000099.safetensors.zst.tmp",
                          "step-123.safetensors.zst", "step-000000099.safetensors.zst",
                          "step-0000009x.safetensors.zst", "notes.txt"};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", fx->dir, others[i]);
    spit(path, c, n);
  }
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 0);
  assert_string_equal(found, p);
  assert_null(skipped);
  free(found);
  free(c);
  free(p);
}

static void test_ckpt_find_latest_none(void **state) {
  fixture *fx = *state;
  char *found = (char *)"x", *skipped = (char *)"x", missing[128];
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 1);
  assert_null(found);
  assert_null(skipped);
  snprintf(missing, sizeof missing, "%s/does-not-exist", fx->dir);
  assert_int_equal(ckpt_find_latest(missing, &found, NULL), 1);
  assert_null(found);
}

static void test_ckpt_find_latest_all_damaged(void **state) {
  fixture *fx = *state;
  char *p = write_step(fx->dir, 20, 1);
  spit(p, "junk", 4);
  char *found = NULL, *skipped = NULL;
  assert_int_equal(ckpt_find_latest(fx->dir, &found, &skipped), 1);
  assert_null(found);
  assert_non_null(skipped);
  assert_non_null(strstr(skipped, p));
  free(skipped);
  free(p);
}

static void test_ckpt_prune_keeps_newest(void **state) {
  fixture *fx = *state;
  for (int s = 1; s <= 5; s++) free(write_step(fx->dir, s * 10, 1));
  char other[128];
  snprintf(other, sizeof other, "%s/notes.txt", fx->dir);
  spit(other, "keep me", 7);
  assert_int_equal(ckpt_prune(fx->dir, 2), 0);
  assert_int_equal(count_entries(fx->dir, NULL), 3);
  assert_int_equal(count_entries(fx->dir, "step-00000050"), 1);
  assert_int_equal(count_entries(fx->dir, "step-00000040"), 1);
  assert_int_equal(count_entries(fx->dir, "notes.txt"), 1);
  /* Never the newest, whatever keep says. */
  assert_int_equal(ckpt_prune(fx->dir, 0), 0);
  assert_int_equal(count_entries(fx->dir, "step-"), 1);
  assert_int_equal(count_entries(fx->dir, "step-00000050"), 1);
  char missing[128];
  snprintf(missing, sizeof missing, "%s/nope", fx->dir);
  assert_int_equal(ckpt_prune(missing, 2), 0);
}

/* ---- the independent Python reader ------------------------------------------------ */

static void test_ckpt_python_checker_accepts(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 42, 1);
  size_t n;
  unsigned char *p = decompress_file(path, &n);
  char x[128], out[128], args[512];
  snprintf(x, sizeof x, "%s/x.safetensors", fx->dir);
  snprintf(out, sizeof out, "%s/out.json", fx->dir);
  spit(x, p, n);
  snprintf(args, sizeof args, "'%s' > '%s'", x, out);
  assert_int_equal(run_checker(args), 0);

  json_error_t err;
  json_t *sum = json_load_file(out, 0, &err);
  assert_non_null(sum);
  json_t *meta = json_object_get(sum, "metadata");
  assert_string_equal(json_string_value(json_object_get(meta, "format")), "midscale-ckpt");
  assert_string_equal(json_string_value(json_object_get(meta, "step")), "42");
  model md;
  model_init(&md, 1);
  double want = 0;
  for (int i = 0; i < 16; i++) want += md.b[i];
  json_t *bias = json_object_get(json_object_get(sum, "tensors"), "layers.0.bias");
  assert_string_equal(json_string_value(json_object_get(bias, "dtype")), "F32");
  assert_int_equal(json_integer_value(json_array_get(json_object_get(bias, "shape"), 0)), 16);
  assert_true(fabs(json_real_value(json_object_get(bias, "sum")) - want) < 1e-9);
  json_decref(sum);
  free(p);
  free(path);
}

/* Writes a hand-made safetensors file: header JSON and `data` bytes of zeros. */
static void write_raw_safetensors(const char *path, const char *header, size_t data) {
  size_t h = strlen(header), total = 8 + h + data;
  unsigned char *q = calloc(1, total);
  assert_non_null(q);
  for (int i = 0; i < 8; i++) q[i] = (unsigned char)((uint64_t)h >> (8 * i));
  memcpy(q + 8, header, h);
  spit(path, q, total);
  free(q);
}

static void test_ckpt_python_checker_rejects_bad_offsets(void **state) {
  fixture *fx = *state;
  char x[128], args[256];
  snprintf(x, sizeof x, "%s/bad.safetensors", fx->dir);
  snprintf(args, sizeof args, "'%s' > /dev/null 2>&1", x);
  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
  write_raw_safetensors(x, ok, 12);
  assert_int_equal(run_checker(args), 0);
  const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
  write_raw_safetensors(x, overlap, 12);
  assert_int_equal(run_checker(args), 1);
  write_raw_safetensors(x, ok, 16); /* a hole after the last tensor */
  assert_int_equal(run_checker(args), 1);
  write_raw_safetensors(x, ok, 8); /* b runs past the end */
  assert_int_equal(run_checker(args), 1);
  const char *size = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
  write_raw_safetensors(x, size, 8);
  assert_int_equal(run_checker(args), 1);
  const char *meta = "{\"__metadata__\":{\"step\":3},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  write_raw_safetensors(x, meta, 8);
  assert_int_equal(run_checker(args), 1);
}

static void test_ckpt_python_checker_compares(void **state) {
  fixture *fx = *state;
  char *pa = write_step(fx->dir, 1, 1), *pb = write_step(fx->dir, 2, 1);
  char a[128], b[128], args[512];
  snprintf(a, sizeof a, "%s/a.safetensors", fx->dir);
  snprintf(b, sizeof b, "%s/b.safetensors", fx->dir);
  size_t n;
  unsigned char *p = decompress_file(pa, &n);
  spit(a, p, n);
  free(p);
  p = decompress_file(pb, &n);
  spit(b, p, n);
  free(p);
  snprintf(args, sizeof args, "--compare '%s' '%s' > /dev/null", a, b);
  assert_int_equal(run_checker(args), 0); /* metadata differs, tensors do not */

  /* Change only the momentum: the parameters still compare equal. */
  model md;
  model_init(&md, 1);
  md.m[5] += 1.0f;
  ckpt_meta m = test_meta(2);
  char *pc = NULL;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &pc), 0);
  p = decompress_file(pc, &n);
  spit(b, p, n);
  free(p);
  assert_int_equal(run_checker(args), 1);
  snprintf(args, sizeof args, "--compare --prefix layers. '%s' '%s' > /dev/null", a, b);
  assert_int_equal(run_checker(args), 0);
  free(pa);
  free(pb);
  free(pc);
}

/* ---- byte shuffle (checkpoint.shuffle) ------------------------------------- */

static void test_ckpt_shuffle_roundtrip(void **state) {
  fixture *fx = *state;
  model a, b;
  model_init(&a, 21);
  memset(&b, 0, sizeof b);
  model_init(&b, 99); /* same shapes, other values */
  ckpt_meta m = test_meta(5), back;
  m.byte_shuffle = 1;
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, a.t, 3, &m, 3, &path), 0);
  assert_int_equal(ckpt_read(path, b.t, 3, m.layout_hash, &back), 0);
  assert_memory_equal(a.w, b.w, sizeof a.w);
  assert_memory_equal(a.b, b.b, sizeof a.b);
  assert_memory_equal(a.m, b.m, sizeof a.m);
  assert_int_equal(back.byte_shuffle, 1);
  ckpt_meta_free(&back);
  /* read_meta verifies the data hash through the unshuffle path too */
  assert_int_equal(ckpt_read_meta(path, &back), 0);
  assert_int_equal(back.byte_shuffle, 1);
  ckpt_meta_free(&back);
  free(path);
}

static void test_ckpt_shuffle_stores_bytes_grouped(void **state) {
  fixture *fx = *state;
  model a;
  model_init(&a, 22);
  ckpt_contents plain;
  ckpt_meta m = test_meta(6);
  m.byte_shuffle = 1;
  char *path = NULL;
  assert_int_equal(ckpt_write(fx->dir, a.t, 3, &m, 3, &path), 0);
  /* export with the optimizer writes the same tensors plain, unshuffled */
  char out[256];
  snprintf(out, sizeof out, "%s/plain.safetensors", fx->dir);
  assert_int_equal(ckpt_export(path, out, NULL), 0);
  size_t n = 0;
  unsigned char *file = slurp(out, &n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | file[i];
  /* the first tensor in the data section is layers.0.weight, plain */
  assert_memory_equal(file + 8 + hlen, a.w, sizeof a.w);
  assert_null(strstr((const char *)file + 8, "byte_shuffle"));
  free(file);
  assert_int_equal(ckpt_load(path, &plain), 0);
  assert_memory_equal(plain.tensors[0].data, a.w, sizeof a.w);
  ckpt_contents_free(&plain);
  free(path);
}

static void test_ckpt_shuffle_compresses_better(void **state) {
  fixture *fx = *state;
  enum { N = 1 << 16 };
  float *w = malloc(N * sizeof *w);
  assert_non_null(w);
  uint32_t x = 7;
  for (int i = 0; i < N; i++) { /* roughly normal: a sum of 4 uniforms, scaled */
    float v = 0;
    for (int k = 0; k < 4; k++) {
      x = x * 1664525u + 1013904223u;
      v += (float)(x >> 8) / 16777216.0f - 0.5f;
    }
    w[i] = 0.05f * v;
  }
  ckpt_tensor t = {"layers.0.weight", w, 2, {256, 256}};
  ckpt_meta m = test_meta(1);
  char *plain = NULL, *shuf = NULL;
  char d1[256], d2[256];
  snprintf(d1, sizeof d1, "%s/plain", fx->dir);
  snprintf(d2, sizeof d2, "%s/shuf", fx->dir);
  assert_int_equal(ckpt_write(d1, &t, 1, &m, 3, &plain), 0);
  m.byte_shuffle = 1;
  assert_int_equal(ckpt_write(d2, &t, 1, &m, 3, &shuf), 0);
  size_t np = 0, ns = 0;
  free(slurp(plain, &np));
  free(slurp(shuf, &ns));
  /* The sign/exponent bytes, grouped, compress: the file must shrink. */
  assert_true(ns < np);
  free(plain);
  free(shuf);
  free(w);
}

/* ---- format version 1 ------------------------------------------------------- */

static void test_ckpt_version1_still_verifies(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 9, 1);
  make_version1(path, 0);
  model src, dst;
  model_init(&src, 1);
  model_init(&dst, 2);
  ckpt_meta m;
  if (ckpt_read(path, dst.t, 3, 0x0123456789abcdefULL, &m)) fail_msg("%s", ms_error_msg());
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  assert_memory_equal(dst.m, src.m, sizeof src.m);
  assert_int_equal(m.step, 9);
  ckpt_meta_free(&m);
  /* Version 1's hash is checked as version 1's. */
  make_version1(path, 1);
  assert_refused(path, "data hash");
  free(path);
}

/* ---- frames ---------------------------------------------------------------- */

/* A model over 1 MiB, so that its data section has several hash chunks:
 * a 700 x 1000 weight, its bias and its momentum. */
typedef struct {
  float *w, *b, *m;
  ckpt_tensor t[3];
} big_model;

static void big_init(big_model *bm, unsigned seed) {
  bm->w = malloc(700 * 1000 * sizeof(float));
  bm->b = malloc(700 * sizeof(float));
  bm->m = malloc(700 * 1000 * sizeof(float));
  assert_true(bm->w && bm->b && bm->m);
  uint32_t x = seed * 2654435761u + 1;
  for (int i = 0; i < 700 * 1000; i++) {
    x = x * 1664525u + 1013904223u;
    bm->w[i] = (float)((int32_t)x) / 2147483648.0f * 0.05f;
    bm->m[i] = bm->w[i] * 0.01f;
  }
  for (int i = 0; i < 700; i++) bm->b[i] = (float)i;
  bm->t[0] = (ckpt_tensor){"layers.0.weight", bm->w, 2, {700, 1000}};
  bm->t[1] = (ckpt_tensor){"layers.0.bias", bm->b, 1, {700}};
  bm->t[2] = (ckpt_tensor){"optim/momentum/layers.0.weight", bm->m, 2, {700, 1000}};
}

static void big_free(big_model *bm) {
  free(bm->w);
  free(bm->b);
  free(bm->m);
}

/* Writes the big model at step in `slices` frames; returns the path. */
static char *write_big(const char *dir, int64_t step, int slices, int shuffle) {
  big_model bm;
  big_init(&bm, 5);
  ckpt_meta m = test_meta(step);
  m.byte_shuffle = shuffle;
  char *path = NULL;
  if (ckpt_write_mt(dir, bm.t, 3, &m, 3, 0, slices, &path)) fail_msg("%s", ms_error_msg());
  big_free(&bm);
  return path;
}

static void test_ckpt_slices_cover_the_data_once(void **state) {
  (void)state;
  const uint64_t sizes[] = {0, 4, 12, 4 * 1000003ULL, 3 * CKPT_HASH_CHUNK + 8, 5 * CKPT_HASH_CHUNK};
  const int worlds[] = {1, 2, 3, 7, 64};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (size_t k = 0; k < sizeof worlds / sizeof worlds[0]; k++) {
      uint64_t at = 0, next_chunk = 0, lo = UINT64_MAX, hi = 0;
      for (int r = 0; r < worlds[k]; r++) {
        uint64_t b, e, c0, nc;
        ckpt_slice(sizes[i], worlds[k], r, &b, &e, &c0, &nc);
        assert_int_equal(b, at);
        assert_true(e >= b && b % 4 == 0 && e % 4 == 0);
        assert_int_equal(c0, next_chunk);
        lo = e - b < lo ? e - b : lo;
        hi = e - b > hi ? e - b : hi;
        at = e, next_chunk += nc;
      }
      assert_int_equal(at, sizes[i]);
      assert_int_equal(next_chunk, (sizes[i] + CKPT_HASH_CHUNK - 1) / CKPT_HASH_CHUNK);
      assert_true(hi - lo <= 4);
    }
}

static void test_ckpt_frames_roundtrip(void **state) {
  fixture *fx = *state;
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    char d1[128], d3[128];
    snprintf(d1, sizeof d1, "%s/one%d", fx->dir, shuffle);
    snprintf(d3, sizeof d3, "%s/three%d", fx->dir, shuffle);
    char *one = write_big(d1, 4, 1, shuffle), *three = write_big(d3, 4, 3, shuffle);
    size_t cn, starts[8];
    unsigned char *c = slurp(three, &cn);
    assert_int_equal(frame_starts(c, cn, starts, 8), 3);
    for (int f = 0; f < 3; f++) {
      ZSTD_frameHeader zfh;
      assert_int_equal(ZSTD_getFrameHeader(&zfh, c + starts[f], cn - starts[f]), 0);
      assert_int_equal(zfh.checksumFlag, 1);
      assert_true(zfh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN);
    }
    free(c);
    /* The same payload however many frames: `zstd -d` gives one file. */
    size_t n1, n3;
    unsigned char *p1 = decompress_file(one, &n1), *p3 = decompress_file(three, &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(p1, p3, n1);
    free(p1);
    free(p3);
    big_model src, dst;
    big_init(&src, 5);
    big_init(&dst, 6);
    ckpt_meta m;
    if (ckpt_read(three, dst.t, 3, 0, &m)) fail_msg("%s", ms_error_msg());
    assert_memory_equal(dst.w, src.w, 700 * 1000 * sizeof(float));
    assert_memory_equal(dst.b, src.b, 700 * sizeof(float));
    assert_memory_equal(dst.m, src.m, 700 * 1000 * sizeof(float));
    assert_int_equal(m.byte_shuffle, shuffle);
    ckpt_meta_free(&m);
    big_free(&src);
    big_free(&dst);
    free(one);
    free(three);
  }
}

/* What the ranks of a distributed save do, by hand: the file is the one a
 * single writer makes of the same slices, and a frame compressed from a
 * snapshot of the slice is the frame compressed from the tensors. */
static void test_ckpt_distributed_pieces_make_the_same_file(void **state) {
  fixture *fx = *state;
  enum { W = 3 };
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    big_model bm;
    big_init(&bm, 5);
    ckpt_meta meta = test_meta(4);
    meta.byte_shuffle = shuffle;
    uint64_t d, total;
    assert_int_equal(ckpt_data_size("test", bm.t, 3, &d), 0);
    ckpt_slice(d, 1, 0, NULL, NULL, NULL, &total);
    assert_true(total >= W);
    uint64_t *hashes = malloc(sizeof *hashes * total);
    for (int r = 0; r < W; r++) {
      uint64_t c0, nc;
      ckpt_slice(d, W, r, NULL, NULL, &c0, &nc);
      ckpt_hash_chunks(bm.t, 3, c0, nc, hashes + c0);
    }
    void *hdr;
    size_t hlen;
    assert_int_equal(ckpt_header("test", bm.t, 3, &meta, ckpt_data_hash(hashes, total), &hdr, &hlen), 0);
    unsigned char *file = NULL;
    size_t flen = 0;
    for (int r = 0; r < W; r++) {
      uint64_t b, e;
      ckpt_slice(d, W, r, &b, &e, NULL, NULL);
      void *f, *g;
      size_t fl, gl;
      assert_int_equal(ckpt_compress(bm.t, 3, shuffle, r ? NULL : hdr, r ? 0 : hlen, b, e, 3, 0, &f, &fl), 0);
      float *snap = malloc((size_t)(e - b));
      ckpt_copy_stored(bm.t, 3, shuffle, b, e, snap);
      ckpt_tensor st = {"slice", snap, 1, {(int64_t)((e - b) / 4)}};
      assert_int_equal(ckpt_compress(&st, 1, 0, r ? NULL : hdr, r ? 0 : hlen, 0, e - b, 3, 0, &g, &gl), 0);
      assert_int_equal(fl, gl);
      assert_memory_equal(f, g, fl);
      file = realloc(file, flen + fl);
      memcpy(file + flen, f, fl);
      flen += fl;
      free(f);
      free(g);
      free(snap);
    }
    char dir[128], *path = NULL;
    snprintf(dir, sizeof dir, "%s/dist%d", fx->dir, shuffle);
    assert_int_equal(ckpt_write_bytes(dir, 4, file, flen, &path), 0);
    char *ref = write_big(fx->dir, 4, W, shuffle);
    size_t rn, pn;
    unsigned char *rb = slurp(ref, &rn), *pb = slurp(path, &pn);
    assert_int_equal(rn, pn);
    assert_memory_equal(rb, pb, rn);
    ckpt_meta m;
    assert_int_equal(ckpt_read_meta(path, &m), 0);
    ckpt_meta_free(&m);
    free(rb);
    free(pb);
    free(ref);
    free(path);
    free(file);
    free(hdr);
    free(hashes);
    big_free(&bm);
  }
}

static void test_ckpt_missing_frame_refused(void **state) {
  fixture *fx = *state;
  char *path = write_big(fx->dir, 4, 3, 0);
  size_t n, starts[8];
  unsigned char *c = slurp(path, &n);
  assert_int_equal(frame_starts(c, n, starts, 8), 3);
  spit(path, c, starts[2]); /* the last frame is gone */
  assert_refused(path, "the zstd stream ends after frame 2");
  spit(path, c, starts[1]); /* two frames gone */
  assert_refused(path, "the zstd stream ends after frame 1");
  spit(path, c, starts[1] + (starts[2] - starts[1]) / 2); /* cut inside frame 2 */
  assert_refused(path, "truncated");
  spit(path, c, n);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  free(c);
  free(path);
}

static void test_ckpt_flipped_byte_in_second_frame_refused(void **state) {
  fixture *fx = *state;
  char *path = write_big(fx->dir, 4, 3, 0);
  size_t n, starts[8];
  unsigned char *c = slurp(path, &n);
  assert_int_equal(frame_starts(c, n, starts, 8), 3);
  size_t len2 = starts[2] - starts[1];
  /* Its magic number, its first block, its middle, its checksum. */
  size_t pos[] = {starts[1], starts[1] + 12, starts[1] + len2 / 2, starts[2] - 1};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    c[pos[i]] ^= 0x10;
    spit(path, c, n);
    assert_refused(path, "frame 2");
    c[pos[i]] ^= 0x10;
  }
  free(c);
  free(path);
}

/* ---- restore (--resume) ------------------------------------------------------ */

typedef struct {
  int64_t refuse_step; /* refuse the file of this step */
  int calls;
  char config[64];
} accept_ctx;

static int accept_step(void *ctx, const char *path, const ckpt_meta *meta) {
  accept_ctx *a = ctx;
  a->calls++;
  snprintf(a->config, sizeof a->config, "%s", meta->config ? meta->config : "(none)");
  if (meta->step == a->refuse_step)
    return ms_error_set(MS_ECKPT, "%s: made with a different config", path);
  return 0;
}

static void test_ckpt_restore_reads_newest_good_file(void **state) {
  fixture *fx = *state;
  char *p10 = write_step(fx->dir, 10, 1), *p20 = write_step(fx->dir, 20, 2);
  model src, dst;
  model_init(&src, 2);
  model_init(&dst, 3);
  accept_ctx a = {-1, 0, ""};
  ckpt_meta m;
  char *got = NULL, *skipped = NULL;
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0x0123456789abcdefULL, accept_step, &a,
                                &m, &got, &skipped), 0);
  assert_string_equal(got, p20);
  assert_null(skipped);
  assert_int_equal(m.step, 20);
  assert_int_equal(a.calls, 1);
  assert_string_equal(a.config, "run:\n  seed: 1\n");
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  ckpt_meta_free(&m);
  free(got);
  /* By path, the same file. */
  assert_int_equal(ckpt_restore(NULL, p10, dst.t, 3, 0, NULL, NULL, &m, &got, NULL), 0);
  assert_string_equal(got, p10);
  assert_int_equal(m.step, 10);
  ckpt_meta_free(&m);
  free(got);
  free(p10);
  free(p20);
}

static void test_ckpt_restore_skips_damaged_files(void **state) {
  fixture *fx = *state;
  char *p10 = write_step(fx->dir, 10, 1), *p20 = write_step(fx->dir, 20, 2);
  char *p30 = write_step(fx->dir, 30, 3);
  size_t n;
  unsigned char *c = slurp(p30, &n);
  spit(p30, c, n / 2);
  free(c);
  /* Step 20 is damaged and would not fit either: damage is what counts. */
  rewrite(p20, NULL, 100);
  model src, dst;
  model_init(&src, 1);
  model_init(&dst, 3);
  accept_ctx a = {20, 0, ""};
  ckpt_meta m;
  char *got = NULL, *skipped = NULL;
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, accept_step, &a, &m, &got, &skipped), 0);
  assert_string_equal(got, p10);
  assert_memory_equal(dst.w, src.w, sizeof src.w);
  assert_non_null(skipped);
  assert_non_null(strstr(skipped, "step-00000030.safetensors.zst: "));
  assert_non_null(strstr(skipped, "step-00000020.safetensors.zst: corrupted (data hash"));
  ckpt_meta_free(&m);
  free(got);
  free(skipped);
  /* By path, a damaged file is an error. */
  ms_error_clear();
  assert_int_equal(ckpt_restore(NULL, p30, dst.t, 3, 0, NULL, NULL, &m, &got, NULL), MS_ECKPT);
  assert_null(got);
  assert_msg_has(p30, "");
  free(p10);
  free(p20);
  free(p30);
}

static void test_ckpt_restore_refuses_a_good_file_that_does_not_fit(void **state) {
  fixture *fx = *state;
  char *p10 = write_step(fx->dir, 10, 1), *p20 = write_step(fx->dir, 20, 2);
  model dst;
  model_init(&dst, 3);
  accept_ctx a = {20, 0, ""};
  ckpt_meta m;
  char *got = NULL, *skipped = NULL;
  /* Not a skip to step 10: the newest good file belongs to another run. */
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, accept_step, &a, &m, &got, &skipped),
                   MS_ECKPT);
  assert_msg_has(p20, "made with a different config");
  assert_null(got);
  assert_null(skipped);
  assert_null(m.config);
  /* Another model's shapes, likewise. */
  dst.t[0].shape[0] = 8, dst.t[0].shape[1] = 16;
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, NULL, NULL, &m, &got, &skipped),
                   MS_ECKPT);
  assert_msg_has(p20, "this checkpoint was made for another model");
  free(p10);
  free(p20);
}

static void test_ckpt_restore_nothing(void **state) {
  fixture *fx = *state;
  model dst;
  model_init(&dst, 3);
  ckpt_meta m;
  char *got = (char *)"x", *skipped = (char *)"x";
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, NULL, NULL, &m, &got, &skipped), 1);
  assert_null(got);
  assert_null(skipped);
  char *p = write_step(fx->dir, 20, 1);
  spit(p, "junk", 4);
  assert_int_equal(ckpt_restore(fx->dir, NULL, dst.t, 3, 0, NULL, NULL, &m, &got, &skipped), 1);
  assert_non_null(skipped);
  free(skipped);
  free(p);
}

/* A damaged file of another model is reported as damaged. */
static void test_ckpt_damage_reported_before_shape(void **state) {
  fixture *fx = *state;
  char *path = write_step(fx->dir, 1, 1);
  rewrite(path, NULL, 100);
  model md;
  model_init(&md, 2);
  md.t[0].shape[0] = 8, md.t[0].shape[1] = 16;
  ckpt_meta m;
  assert_int_equal(ckpt_read(path, md.t, 3, 0, &m), MS_ECKPT);
  assert_msg_has(path, "data hash");
  free(path);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_ckpt_roundtrip_three_tensors),
      T(test_ckpt_read_meta_only),
      T(test_ckpt_empty_and_scalar_tensors),
      T(test_ckpt_file_name),
      T(test_ckpt_creates_nested_dir),
      T(test_ckpt_payload_is_safetensors),
      T(test_ckpt_frame_has_checksum_and_size),
      T(test_ckpt_missing_file_refused),
      T(test_ckpt_not_zstd_refused),
      T(test_ckpt_truncated_refused),
      T(test_ckpt_flipped_byte_refused),
      T(test_ckpt_trailing_garbage_refused),
      T(test_ckpt_data_hash_mismatch_refused),
      T(test_ckpt_future_format_version_refused),
      T(test_ckpt_wrong_format_refused),
      T(test_ckpt_bad_offsets_refused),
      T(test_ckpt_wrong_shape_refused),
      T(test_ckpt_missing_tensor_refused),
      T(test_ckpt_extra_tensor_refused),
      T(test_ckpt_layout_hash_mismatch_refused),
      T(test_ckpt_step_out_of_range_refused),
      T(test_ckpt_invalid_cursor_refused),
      T(test_ckpt_duplicate_name_refused),
      T(test_ckpt_write_into_file_fails_cleanly),
      T(test_ckpt_write_fails_when_file_cannot_grow),
      T(test_ckpt_write_same_step_replaces),
      T(test_ckpt_find_latest_returns_newest),
      T(test_ckpt_find_latest_skips_corrupted),
      T(test_ckpt_find_latest_ignores_other_names),
      T(test_ckpt_find_latest_none),
      T(test_ckpt_find_latest_all_damaged),
      T(test_ckpt_prune_keeps_newest),
      T(test_ckpt_python_checker_accepts),
      T(test_ckpt_python_checker_rejects_bad_offsets),
      T(test_ckpt_python_checker_compares),
      T(test_ckpt_shuffle_roundtrip),
      T(test_ckpt_shuffle_stores_bytes_grouped),
      T(test_ckpt_shuffle_compresses_better),
      T(test_ckpt_version1_still_verifies),
      T(test_ckpt_slices_cover_the_data_once),
      T(test_ckpt_frames_roundtrip),
      T(test_ckpt_distributed_pieces_make_the_same_file),
      T(test_ckpt_missing_frame_refused),
      T(test_ckpt_flipped_byte_in_second_frame_refused),
      T(test_ckpt_restore_reads_newest_good_file),
      T(test_ckpt_restore_skips_damaged_files),
      T(test_ckpt_restore_refuses_a_good_file_that_does_not_fit),
      T(test_ckpt_restore_nothing),
      T(test_ckpt_damage_reported_before_shape),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
