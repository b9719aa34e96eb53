/* ckpt_fixture — see ckpt_fixture.h. */
#include "ckpt_fixture.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_findDecompressedSize */
#include <zstd.h>
#include <xxhash.h>

#include "hash.h"
#include "ms_error.h"
#include "testutil.h"

int ckf_setup(void **state) {
  ckf_fixture *fx = calloc(1, sizeof *fx);
  if (!fx) return -1;
  if (tu_make_tmpdir(fx->dir, sizeof fx->dir, "ckpt") != 0) {
    free(fx);
    return -1;
  }
  *state = fx;
  return 0;
}

int ckf_teardown(void **state) {
  ckf_fixture *fx = *state;
  tu_remove_tree(fx->dir);
  free(fx);
  return 0;
}

void ckf_model_init(ckf_model *md, unsigned seed) {
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

ckpt_meta ckf_test_meta(int64_t step) {
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
char *ckf_write_step(const char *dir, int64_t step, unsigned seed) {
  ckf_model md;
  ckf_model_init(&md, seed);
  ckpt_meta m = ckf_test_meta(step);
  char *path = NULL;
  int rc = ckpt_write(dir, md.t, 3, &m, 3, &path);
  if (rc) fail_msg("ckpt_write: %s", ms_error_msg());
  return path;
}

unsigned char *ckf_slurp(const char *path, size_t *n) {
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

void ckf_spit(const char *path, const void *buf, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

unsigned char *ckf_decompress_file(const char *path, size_t *n) {
  size_t csize;
  unsigned char *c = ckf_slurp(path, &csize);
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
void ckf_compress_to(const char *path, const void *payload, size_t n) {
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  assert_non_null(cc);
  assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1)));
  size_t cap = ZSTD_compressBound(n);
  void *out = malloc(cap);
  assert_non_null(out);
  size_t got = ZSTD_compress2(cc, out, cap, payload, n);
  assert_false(ZSTD_isError(got));
  ckf_spit(path, out, got);
  free(out);
  ZSTD_freeCCtx(cc);
}

uint64_t ckf_le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* data_hash of format version 2, computed here from its definition in
 * ckpt.h: XXH3-64 over the XXH3-64 hashes of the 1 MiB chunks. */
uint64_t ckf_data_hash_v2(const unsigned char *data, size_t n) {
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
void ckf_recompress(const char *path, json_t *root, const unsigned char *data, size_t dlen,
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
  ckf_compress_to(path, q, total);
  free(q);
  free(s);
}

/* Rebuilds the checkpoint at path with a valid zstd frame: edit() may change
 * the header JSON, and flip >= 0 flips one bit of that data-section byte. */
void ckf_rewrite(const char *path, void (*edit)(json_t *root), long flip) {
  size_t n;
  unsigned char *p = ckf_decompress_file(path, &n);
  uint64_t hlen = ckf_le64(p);
  json_error_t err;
  json_t *root = json_loadb((const char *)p + 8, hlen, 0, &err);
  assert_non_null(root);
  if (edit) edit(root);
  ckf_recompress(path, root, p + 8 + hlen, n - 8 - hlen, flip);
  json_decref(root);
  free(p);
}

/* Turns the checkpoint at path into a format-version-1 file, as midscale
 * 0.1 wrote them: one frame, data_hash the FNV-1a of the tensor bytes (xor
 * `spoil`). */
void ckf_make_version1(const char *path, uint64_t spoil) {
  size_t n;
  unsigned char *p = ckf_decompress_file(path, &n);
  uint64_t hlen = ckf_le64(p);
  json_error_t err;
  json_t *root = json_loadb((const char *)p + 8, hlen, 0, &err);
  assert_non_null(root);
  json_t *md = json_object_get(root, "__metadata__");
  char hex[17];
  snprintf(hex, sizeof hex, "%016" PRIx64,
           hash_fnv1a(HASH_FNV_OFFSET, p + 8 + hlen, n - 8 - hlen) ^ spoil);
  json_object_set_new(md, "format_version", json_string("1"));
  json_object_set_new(md, "data_hash", json_string(hex));
  ckf_recompress(path, root, p + 8 + hlen, n - 8 - hlen, -1);
  json_decref(root);
  free(p);
}

/* The start offsets of the zstd frames of a file: their count. */
size_t ckf_frame_starts(const unsigned char *c, size_t n, size_t *starts, size_t max) {
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

void ckf_assert_msg_has(const char *path, const char *needle) {
  const char *msg = ms_error_msg();
  if (strncmp(msg, path, strlen(path)) != 0)
    fail_msg("message does not begin with the path: %s", msg);
  if (!strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
}

/* Asserts that ckpt_read refuses path with MS_ECKPT and a message holding
 * needle (NULL: any message). */
void ckf_assert_refused(const char *path, const char *needle) {
  ckf_model md;
  ckf_model_init(&md, 99);
  ckpt_meta m;
  ms_error_clear();
  int rc = ckpt_read(path, md.t, 3, 0, &m);
  if (rc != MS_ECKPT) fail_msg("ckpt_read returned %d (%s) for %s", rc, ms_error_msg(), path);
  assert_null(m.config);
  ckf_assert_msg_has(path, needle ? needle : "");
  assert_int_equal(ckpt_read_meta(path, &m), MS_ECKPT);
  assert_null(m.config);
}

int ckf_count_entries(const char *dir, const char *containing) {
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

int ckf_run_checker(const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, CHECKER " %s", args);
  int st = system(cmd);
  assert_true(st != -1 && WIFEXITED(st));
  return WEXITSTATUS(st);
}

void ckf_big_init(ckf_big_model *bm, unsigned seed) {
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

void ckf_big_free(ckf_big_model *bm) {
  free(bm->w);
  free(bm->b);
  free(bm->m);
}

/* Writes the big model at step in `slices` frames; returns the path. */
char *ckf_write_big(const char *dir, int64_t step, int slices, int shuffle) {
  ckf_big_model bm;
  ckf_big_init(&bm, 5);
  ckpt_meta m = ckf_test_meta(step);
  m.byte_shuffle = shuffle;
  char *path = NULL;
  if (ckpt_write_mt(dir, bm.t, 3, &m, 3, 0, slices, &path)) fail_msg("%s", ms_error_msg());
  ckf_big_free(&bm);
  return path;
}
