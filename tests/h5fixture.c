#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5fixture.h"

#include "testutil.h"

static char g_dir[256];

int h5f_make_dir(void **state) {
  (void)state;
  return tu_make_tmpdir(g_dir, sizeof g_dir, "h5");
}

int h5f_remove_dir(void **state) {
  (void)state;
  return tu_remove_tree(g_dir);
}

const char *h5f_tmp(const char *name) {
  static char bufs[8][512];
  static unsigned next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
  return b;
}

hid_t h5f_create(const char *path) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  return f;
}

static void put(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank,
                const hsize_t *dims, const void *data, hsize_t chunk_rows, int filters) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk_rows) {
    hsize_t chunk[H5S_MAX_RANK];
    chunk[0] = chunk_rows;
    for (int i = 1; i < rank; i++) chunk[i] = dims[i];
    assert_true(H5Pset_chunk(dcpl, rank, chunk) >= 0);
    if (filters & FX_SHUFFLE) assert_true(H5Pset_shuffle(dcpl) >= 0);
    if (filters & FX_DEFLATE) assert_true(H5Pset_deflate(dcpl, 1) >= 0);
    if (filters & FX_FLETCHER32) assert_true(H5Pset_fletcher32(dcpl) >= 0);
  }
  hid_t space = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t set = H5Dcreate2(file, name, ftype, space, lcpl, dcpl, H5P_DEFAULT);
  assert_true(set >= 0);
  assert_true(H5Dwrite(set, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  H5Dclose(set);
  H5Sclose(space);
  H5Pclose(dcpl);
  H5Pclose(lcpl);
}

void h5f_put(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
             const void *data, hsize_t chunk_rows) {
  put(file, name, ftype, mtype, rank, dims, data, chunk_rows, FX_DEFLATE);
}

void h5f_put_filtered(hid_t file, const char *name, hid_t ftype, hid_t mtype, int rank,
                      const hsize_t *dims, const void *data, hsize_t chunk_rows, int filters) {
  assert_true(chunk_rows > 0);
  put(file, name, ftype, mtype, rank, dims, data, chunk_rows, filters);
}

hid_t h5f_half_type(int big_endian) {
  /* What h5py does for numpy.float16. */
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  assert_true(t >= 0);
  assert_true(H5Tset_fields(t, 15, 10, 5, 0, 10) >= 0);
  assert_true(H5Tset_size(t, 2) >= 0);
  assert_true(H5Tset_ebias(t, 15) >= 0);
  if (big_endian) assert_true(H5Tset_order(t, H5T_ORDER_BE) >= 0);
  return t;
}

void h5f_write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}
