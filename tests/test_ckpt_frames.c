/* test_ckpt_frames — several zstd frames per file (slices, the pieces of a
 * distributed write, damage in one frame) and the independent Python
 * reader (tests/tools/safetensors_check.py). Each test gets its own temp
 * dir (ckpt_fixture). */
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
#include "ckpt_fixture.h"

/* ---- the independent Python reader ------------------------------------------------ */

static void test_ckpt_python_checker_accepts(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_step(fx->dir, 42, 1);
  size_t n;
  unsigned char *p = ckf_decompress_file(path, &n);
  char x[128], out[128], args[512];
  snprintf(x, sizeof x, "%s/x.safetensors", fx->dir);
  snprintf(out, sizeof out, "%s/out.json", fx->dir);
  ckf_spit(x, p, n);
  snprintf(args, sizeof args, "'%s' > '%s'", x, out);
  assert_int_equal(ckf_run_checker(args), 0);

  json_error_t err;
  json_t *sum = json_load_file(out, 0, &err);
  assert_non_null(sum);
  json_t *meta = json_object_get(sum, "metadata");
  assert_string_equal(json_string_value(json_object_get(meta, "format")), "midscale-ckpt");
  assert_string_equal(json_string_value(json_object_get(meta, "step")), "42");
  ckf_model md;
  ckf_model_init(&md, 1);
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
  ckf_spit(path, q, total);
  free(q);
}

static void test_ckpt_python_checker_rejects_bad_offsets(void **state) {
  ckf_fixture *fx = *state;
  char x[128], args[256];
  snprintf(x, sizeof x, "%s/bad.safetensors", fx->dir);
  snprintf(args, sizeof args, "'%s' > /dev/null 2>&1", x);
  const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
  write_raw_safetensors(x, ok, 12);
  assert_int_equal(ckf_run_checker(args), 0);
  const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
  write_raw_safetensors(x, overlap, 12);
  assert_int_equal(ckf_run_checker(args), 1);
  write_raw_safetensors(x, ok, 16); /* a hole after the last tensor */
  assert_int_equal(ckf_run_checker(args), 1);
  write_raw_safetensors(x, ok, 8); /* b runs past the end */
  assert_int_equal(ckf_run_checker(args), 1);
  const char *size = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
  write_raw_safetensors(x, size, 8);
  assert_int_equal(ckf_run_checker(args), 1);
  const char *meta = "{\"__metadata__\":{\"step\":3},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  write_raw_safetensors(x, meta, 8);
  assert_int_equal(ckf_run_checker(args), 1);
}

static void test_ckpt_python_checker_compares(void **state) {
  ckf_fixture *fx = *state;
  char *pa = ckf_write_step(fx->dir, 1, 1), *pb = ckf_write_step(fx->dir, 2, 1);
  char a[128], b[128], args[512];
  snprintf(a, sizeof a, "%s/a.safetensors", fx->dir);
  snprintf(b, sizeof b, "%s/b.safetensors", fx->dir);
  size_t n;
  unsigned char *p = ckf_decompress_file(pa, &n);
  ckf_spit(a, p, n);
  free(p);
  p = ckf_decompress_file(pb, &n);
  ckf_spit(b, p, n);
  free(p);
  snprintf(args, sizeof args, "--compare '%s' '%s' > /dev/null", a, b);
  assert_int_equal(ckf_run_checker(args), 0); /* metadata differs, tensors do not */

  /* Change only the momentum: the parameters still compare equal. */
  ckf_model md;
  ckf_model_init(&md, 1);
  md.m[5] += 1.0f;
  ckpt_meta m = ckf_test_meta(2);
  char *pc = NULL;
  assert_int_equal(ckpt_write(fx->dir, md.t, 3, &m, 3, &pc), 0);
  p = ckf_decompress_file(pc, &n);
  ckf_spit(b, p, n);
  free(p);
  assert_int_equal(ckf_run_checker(args), 1);
  snprintf(args, sizeof args, "--compare --prefix layers. '%s' '%s' > /dev/null", a, b);
  assert_int_equal(ckf_run_checker(args), 0);
  free(pa);
  free(pb);
  free(pc);
}


/* ---- frames ---------------------------------------------------------------- */

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
  ckf_fixture *fx = *state;
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    char d1[128], d3[128];
    snprintf(d1, sizeof d1, "%s/one%d", fx->dir, shuffle);
    snprintf(d3, sizeof d3, "%s/three%d", fx->dir, shuffle);
    char *one = ckf_write_big(d1, 4, 1, shuffle), *three = ckf_write_big(d3, 4, 3, shuffle);
    size_t cn, starts[8];
    unsigned char *c = ckf_slurp(three, &cn);
    assert_int_equal(ckf_frame_starts(c, cn, starts, 8), 3);
    for (int f = 0; f < 3; f++) {
      ZSTD_frameHeader zfh;
      assert_int_equal(ZSTD_getFrameHeader(&zfh, c + starts[f], cn - starts[f]), 0);
      assert_int_equal(zfh.checksumFlag, 1);
      assert_true(zfh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN);
    }
    free(c);
    /* The same payload however many frames: `zstd -d` gives one file. */
    size_t n1, n3;
    unsigned char *p1 = ckf_decompress_file(one, &n1), *p3 = ckf_decompress_file(three, &n3);
    assert_int_equal(n1, n3);
    assert_memory_equal(p1, p3, n1);
    free(p1);
    free(p3);
    ckf_big_model src, dst;
    ckf_big_init(&src, 5);
    ckf_big_init(&dst, 6);
    ckpt_meta m;
    if (ckpt_read(three, dst.t, 3, 0, &m)) fail_msg("%s", ms_error_msg());
    assert_memory_equal(dst.w, src.w, 700 * 1000 * sizeof(float));
    assert_memory_equal(dst.b, src.b, 700 * sizeof(float));
    assert_memory_equal(dst.m, src.m, 700 * 1000 * sizeof(float));
    assert_int_equal(m.byte_shuffle, shuffle);
    ckpt_meta_free(&m);
    ckf_big_free(&src);
    ckf_big_free(&dst);
    free(one);
    free(three);
  }
}

/* What the ranks of a distributed save do, by hand: the file is the one a
 * single writer makes of the same slices, and a frame compressed from a
 * snapshot of the slice is the frame compressed from the tensors. */
static void test_ckpt_distributed_pieces_make_the_same_file(void **state) {
  ckf_fixture *fx = *state;
  enum { W = 3 };
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    ckf_big_model bm;
    ckf_big_init(&bm, 5);
    ckpt_meta meta = ckf_test_meta(4);
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
    char *ref = ckf_write_big(fx->dir, 4, W, shuffle);
    size_t rn, pn;
    unsigned char *rb = ckf_slurp(ref, &rn), *pb = ckf_slurp(path, &pn);
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
    ckf_big_free(&bm);
  }
}

static void test_ckpt_missing_frame_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_big(fx->dir, 4, 3, 0);
  size_t n, starts[8];
  unsigned char *c = ckf_slurp(path, &n);
  assert_int_equal(ckf_frame_starts(c, n, starts, 8), 3);
  ckf_spit(path, c, starts[2]); /* the last frame is gone */
  ckf_assert_refused(path, "the zstd stream ends after frame 2");
  ckf_spit(path, c, starts[1]); /* two frames gone */
  ckf_assert_refused(path, "the zstd stream ends after frame 1");
  ckf_spit(path, c, starts[1] + (starts[2] - starts[1]) / 2); /* cut inside frame 2 */
  ckf_assert_refused(path, "truncated");
  ckf_spit(path, c, n);
  ckpt_meta m;
  assert_int_equal(ckpt_read_meta(path, &m), 0);
  ckpt_meta_free(&m);
  free(c);
  free(path);
}

static void test_ckpt_flipped_byte_in_second_frame_refused(void **state) {
  ckf_fixture *fx = *state;
  char *path = ckf_write_big(fx->dir, 4, 3, 0);
  size_t n, starts[8];
  unsigned char *c = ckf_slurp(path, &n);
  assert_int_equal(ckf_frame_starts(c, n, starts, 8), 3);
  size_t len2 = starts[2] - starts[1];
  /* Its magic number, its first block, its middle, its checksum. */
  size_t pos[] = {starts[1], starts[1] + 12, starts[1] + len2 / 2, starts[2] - 1};
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    c[pos[i]] ^= 0x10;
    ckf_spit(path, c, n);
    ckf_assert_refused(path, "frame 2");
    c[pos[i]] ^= 0x10;
  }
  free(c);
  free(path);
}


int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, ckf_setup, ckf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_ckpt_python_checker_accepts),
      T(test_ckpt_python_checker_rejects_bad_offsets),
      T(test_ckpt_python_checker_compares),
      T(test_ckpt_slices_cover_the_data_once),
      T(test_ckpt_frames_roundtrip),
      T(test_ckpt_distributed_pieces_make_the_same_file),
      T(test_ckpt_missing_frame_refused),
      T(test_ckpt_flipped_byte_in_second_frame_refused),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
