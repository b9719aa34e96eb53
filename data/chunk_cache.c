#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE, madvise */
/* chunk_cache — see chunk_cache.h. */
#include "chunk_cache.h"

#include "h5guard.h"
#include "h5util.h"

#include <assert.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* Rows of a contiguous set are cached in blocks of about this many bytes. */
#define BLOCK_BYTES ((size_t)1 << 20)

/* chunk_big_alloc aligns to this (the x86-64 and arm64 huge page). */
#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* The states of a chunk in shared memory. */
enum { CHUNK_EMPTY = 0, CHUNK_BUSY = 1, CHUNK_READY = 2 };

/* How chunks are decoded when they are read directly. */
typedef struct {
  int on;                     /* direct reads apply */
  int shuffle_at, deflate_at; /* index in the pipeline, or -1 */
  size_t shuffle_size;        /* bytes per element of the shuffle filter */
  unsigned char *zbuf;        /* the stored bytes of one chunk */
  size_t zbuf_cap;
  unsigned char *unshuf; /* scratch: a decompressed, still shuffled chunk */
  struct libdeflate_decompressor *inflater;
} direct_reader;

struct chunk_cache {
  chunk_src src;
  uint64_t rows; /* samples per chunk */
  uint64_t n_chunks;
  size_t chunk_bytes;   /* rows * row_bytes */
  int slots;            /* 0: a reader without slots */
  int32_t *chunk_slot;  /* (n_chunks) the slot holding each chunk, or -1 */
  unsigned char *arena; /* the slots' memory (chunk_big_alloc) */
  size_t arena_bytes;
  unsigned char **slot_buf; /* (slots) slot k: arena + k chunks */
  uint64_t *slot_chunk;     /* (slots) the chunk in each slot, or UINT64_MAX */
  uint64_t *slot_used;      /* (slots) the tick of its last use */
  uint64_t tick;
  uint64_t chunks_read;
  /* Shared (chunk_cache_share): the state of chunk c (CHUNK_*) and the
   * published chunks, memory the cache does not own; NULL when not shared. */
  _Atomic uint32_t *state;
  unsigned char *shared_chunks;
  direct_reader direct;
};

void *chunk_big_alloc(size_t bytes) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t keep = (bytes ? bytes : 1) + page - 1;
  keep -= keep % page;
  if (keep > SIZE_MAX - HUGE_PAGE_BYTES) return NULL;
  size_t len = keep + HUGE_PAGE_BYTES;
  unsigned char *m =
      mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return NULL;
  size_t head = (HUGE_PAGE_BYTES - (uintptr_t)m % HUGE_PAGE_BYTES) % HUGE_PAGE_BYTES;
  if (head) munmap(m, head);
  if (len - head > keep) munmap(m + head + keep, len - head - keep);
#ifdef MADV_HUGEPAGE
  madvise(m + head, keep, MADV_HUGEPAGE); /* advice: without it, 4 KiB pages */
#endif
  return m + head;
}

void chunk_big_free(void *p, size_t bytes) {
  if (p) munmap(p, bytes ? bytes : 1);
}

int chunk_src_read_rows(const chunk_src *src, uint64_t start, uint64_t len, unsigned char *dst,
                        char *err, size_t errlen) {
  hsize_t off[H5S_MAX_RANK] = {0}, cnt[H5S_MAX_RANK];
  off[0] = start;
  cnt[0] = len;
  for (int i = 1; i < src->rank; i++) cnt[i] = src->dims[i];
  h5util_guard q;
  h5util_enter(&q);
  /* The memory space has the shape of the file selection: HDF5 then copies
   * straight through instead of iterating element by element. */
  hid_t mem_space = H5Screate_simple(src->rank, cnt, NULL);
  int rc = -1;
  if (mem_space >= 0 &&
      H5Sselect_hyperslab(src->space, H5S_SELECT_SET, off, NULL, cnt, NULL) >= 0 &&
      H5Dread(src->set, src->mem_type, mem_space, src->space, H5P_DEFAULT, dst) >= 0)
    rc = 0;
  if (rc < 0) {
    char why[160];
    h5util_set_err(err, errlen,
                   "cannot read samples %" PRIu64 "..%" PRIu64
                   " of '%s' in '%s' (truncated or damaged?): %s",
                   start, start + len - 1, src->name, src->path, h5util_reason(why));
  }
  if (mem_space >= 0) H5Sclose(mem_space);
  h5util_leave(&q);
  return rc;
}

/* ---- direct chunk reads ------------------------------------------------- */

/* Sets d->on when the chunks of src can be read as stored and decoded
 * here: chunks of whole samples, the stored type identical to the memory
 * type (native order), and a pipeline of at most the shuffle filter then
 * deflate. -1 when out of memory. */
static int direct_init(direct_reader *d, const chunk_src *src) {
  d->shuffle_at = d->deflate_at = -1;
  hid_t dcpl = H5Dget_create_plist(src->set), ftype = H5Dget_type(src->set);
  hsize_t cdims[H5S_MAX_RANK];
  int ok = dcpl >= 0 && ftype >= 0 && H5Tequal(ftype, src->mem_type) > 0 &&
           H5Pget_chunk(dcpl, H5S_MAX_RANK, cdims) == src->rank;
  for (int i = 1; ok && i < src->rank; i++) ok = cdims[i] == src->dims[i];
  int n = ok ? H5Pget_nfilters(dcpl) : -1;
  ok = ok && n >= 0 && n <= 2;
  for (int i = 0; ok && i < n; i++) {
    unsigned flags, cd[8];
    size_t ncd = 8;
    H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, 0, NULL, NULL);
    if (id == H5Z_FILTER_SHUFFLE && i == 0 && ncd >= 1 && cd[0] >= 1) {
      d->shuffle_at = i;
      d->shuffle_size = cd[0];
    } else if (id == H5Z_FILTER_DEFLATE && i == n - 1)
      d->deflate_at = i;
    else
      ok = 0;
  }
  if (ftype >= 0) H5Tclose(ftype);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (!ok) return 0;
  if (d->deflate_at >= 0 && !(d->inflater = libdeflate_alloc_decompressor())) return -1;
  d->on = 1;
  return 0;
}

static void direct_free(direct_reader *d) {
  free(d->zbuf);
  free(d->unshuf);
  if (d->inflater) libdeflate_free_decompressor(d->inflater);
}

/* HDF5's shuffle filter undone: the first bytes of every element, then
 * the second bytes, ... back to whole elements; a tail shorter than an
 * element is stored as is. */
static void unshuffle(const unsigned char *src, size_t bytes, size_t size, unsigned char *dst) {
  size_t n = bytes / size;
  for (size_t b = 0; b < size; b++)
    for (size_t i = 0; i < n; i++) dst[i * size + b] = src[b * n + i];
  memcpy(dst + n * size, src + n * size, bytes - n * size);
}

static int grow(unsigned char **buf, size_t *cap, size_t want) {
  if (*cap >= want) return 0;
  unsigned char *b = realloc(*buf, want);
  if (!b) return -1;
  *buf = b;
  *cap = want;
  return 0;
}

/* Reads chunk c's stored bytes into d->zbuf. 1: read (*stored bytes, *mask
 * the filters skipped); 0: the chunk is not allocated; -1: why says why. */
static int fetch_stored(chunk_cache *cc, hsize_t *off, hsize_t *stored, uint32_t *mask,
                        char why[160]) {
  direct_reader *d = &cc->direct;
  int rc = -1;
  h5util_guard q;
  h5util_enter(&q);
  if (H5Dget_chunk_storage_size(cc->src.set, off, stored) < 0)
    h5util_reason(why);
  else if (*stored == 0)
    rc = 0;
  else if (grow(&d->zbuf, &d->zbuf_cap, (size_t)*stored) < 0)
    snprintf(why, 160, "out of memory");
  else if (H5Dread_chunk(cc->src.set, H5P_DEFAULT, off, mask, d->zbuf) < 0)
    h5util_reason(why);
  else
    rc = 1;
  h5util_leave(&q);
  return rc;
}

int chunk_decode(struct libdeflate_decompressor *inflater, const unsigned char *stored,
                 size_t stored_bytes, int deflated, size_t shuffle_size, unsigned char *scratch,
                 unsigned char *dst, size_t chunk_bytes, char why[160]) {
  int shuffled = shuffle_size > 1;
  unsigned char *out = shuffled ? scratch : dst;
  size_t got = stored_bytes;
  if (deflated) {
    enum libdeflate_result r =
        libdeflate_zlib_decompress(inflater, stored, stored_bytes, out, chunk_bytes, &got);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
      got = chunk_bytes + 1;
    else if (r != LIBDEFLATE_SUCCESS)
      got = SIZE_MAX;
  } else if (got == chunk_bytes)
    memcpy(out, stored, got);
  if (got == SIZE_MAX)
    snprintf(why, 160, "its chunk does not inflate (the deflate stream is damaged)");
  else if (got != chunk_bytes)
    snprintf(why, 160, "its chunk holds %s %zu bytes",
             got < chunk_bytes ? "fewer than" : "more than", chunk_bytes);
  else if (shuffled)
    unshuffle(out, chunk_bytes, shuffle_size, dst);
  return got == chunk_bytes ? 0 : -1;
}

/* Chunk c read as stored and decoded into dst. 1: done; 0: the chunk is
 * not allocated or was stored with a filter skipped other than the two
 * handled here, read it with H5Dread; -1: error. */
static int read_direct(chunk_cache *cc, uint64_t c, uint64_t len, unsigned char *dst, char *err,
                       size_t errlen) {
  direct_reader *d = &cc->direct;
  size_t chunk_bytes = cc->chunk_bytes;
  hsize_t off[H5S_MAX_RANK] = {0}, stored = 0;
  off[0] = c * cc->rows;
  uint32_t mask = 0;
  char why[160] = "";
  int rc = fetch_stored(cc, off, &stored, &mask, why);
  if (rc == 0) return 0;

  uint32_t known = (d->deflate_at >= 0 ? 1u << d->deflate_at : 0) |
                   (d->shuffle_at >= 0 ? 1u << d->shuffle_at : 0);
  if (rc > 0 && (mask & ~known)) return 0;
  int deflated = d->deflate_at >= 0 && !(mask & (1u << d->deflate_at));
  int shuffled = d->shuffle_at >= 0 && !(mask & (1u << d->shuffle_at)) && d->shuffle_size > 1;
  if (rc > 0 && shuffled && !d->unshuf && !(d->unshuf = malloc(chunk_bytes))) {
    snprintf(why, sizeof why, "out of memory");
    rc = -1;
  }
  if (rc > 0 && chunk_decode(d->inflater, d->zbuf, (size_t)stored, deflated,
                             shuffled ? d->shuffle_size : 1, d->unshuf, dst, chunk_bytes, why) < 0)
    rc = -1;
  if (rc < 0)
    h5util_set_err(err, errlen,
                   "cannot read samples %" PRIu64 "..%" PRIu64
                   " of '%s' in '%s' (truncated or damaged?): %s",
                   (uint64_t)off[0], (uint64_t)off[0] + len - 1, cc->src.name, cc->src.path, why);
  return rc;
}

int chunk_cache_read(chunk_cache *cc, uint64_t c, unsigned char *dst, char *err, size_t errlen) {
  uint64_t start = c * cc->rows;
  uint64_t len = cc->src.n - start < cc->rows ? cc->src.n - start : cc->rows;
  int done = cc->direct.on ? read_direct(cc, c, len, dst, err, errlen) : 0;
  /* Through H5Dread, a deflated chunk is checked first (h5guard.h). */
  if (!done && cc->src.chunk_rows &&
      h5guard_inflate(cc->src.set, start, start + len, cc->src.path, cc->src.name,
                      cc->src.file_size, err, errlen) < 0)
    return -1;
  return done < 0 || (!done && chunk_src_read_rows(&cc->src, start, len, dst, err, errlen) < 0) ? -1
                                                                                                : 0;
}

/* ---- the cache ---------------------------------------------------------- */

/* The slots: as many chunks as the budget holds, at least 2, at most all
 * of them, in one mapping whose pages are committed as chunks are first
 * read. */
static int slots_init(chunk_cache *cc, size_t budget) {
  uint64_t slots = budget / (cc->chunk_bytes ? cc->chunk_bytes : 1);
  if (slots < 2) slots = 2;
  if (slots > cc->n_chunks) slots = cc->n_chunks;
  if (slots > INT32_MAX) slots = INT32_MAX;
  cc->slots = (int)slots;
  cc->chunk_slot = malloc(sizeof *cc->chunk_slot * (size_t)cc->n_chunks);
  cc->slot_buf = calloc(slots, sizeof *cc->slot_buf);
  cc->slot_chunk = malloc(sizeof *cc->slot_chunk * (size_t)slots);
  cc->slot_used = calloc(slots, sizeof *cc->slot_used);
  if (cc->chunk_bytes && slots <= SIZE_MAX / cc->chunk_bytes) {
    cc->arena_bytes = (size_t)slots * cc->chunk_bytes;
    cc->arena = chunk_big_alloc(cc->arena_bytes);
  }
  if (!cc->chunk_slot || !cc->slot_buf || !cc->slot_chunk || !cc->slot_used || !cc->arena)
    return -1;
  for (uint64_t c = 0; c < cc->n_chunks; c++) cc->chunk_slot[c] = -1;
  for (uint64_t k = 0; k < slots; k++) {
    cc->slot_chunk[k] = UINT64_MAX;
    cc->slot_buf[k] = cc->arena + k * cc->chunk_bytes;
  }
  return 0;
}

uint64_t chunk_cache_block_rows(const chunk_src *src) {
  uint64_t rows = BLOCK_BYTES / src->row_bytes;
  if (rows < 1) rows = 1;
  if (rows > src->n) rows = src->n;
  return rows;
}

int chunk_cache_create(chunk_cache **out, const chunk_src *src, uint64_t rows, size_t budget,
                       int slots) {
  *out = NULL;
  chunk_cache *cc = calloc(1, sizeof *cc);
  if (!cc) return -1;
  cc->src = *src;
  cc->rows = rows;
  cc->n_chunks = (src->n + rows - 1) / rows;
  cc->chunk_bytes = (size_t)rows * src->row_bytes;
  int rc = slots ? slots_init(cc, budget) : 0;
  if (rc == 0 && src->chunk_rows && rows == src->chunk_rows) rc = direct_init(&cc->direct, src);
  if (rc < 0) {
    chunk_cache_free(cc);
    return -1;
  }
  *out = cc;
  return 0;
}

void chunk_cache_free(chunk_cache *cc) {
  if (!cc) return;
  chunk_big_free(cc->arena, cc->arena_bytes);
  free(cc->slot_buf);
  free(cc->slot_chunk);
  free(cc->slot_used);
  free(cc->chunk_slot);
  direct_free(&cc->direct);
  free(cc);
}

uint64_t chunk_cache_rows(const chunk_cache *cc) { return cc->rows; }
int chunk_cache_direct(const chunk_cache *cc) { return cc->direct.on; }
uint64_t chunk_cache_chunks_read(const chunk_cache *cc) { return cc->chunks_read; }

/* Chunk c through the shared memory: read here and published if no
 * process has it, copied if one has, waited for while one reads it. A
 * failed read leaves it empty, so a waiting process tries it too and
 * reports the same error. */
static const unsigned char *shared_get(chunk_cache *cc, uint64_t c, char *err, size_t errlen) {
  _Atomic uint32_t *st = &cc->state[c];
  unsigned char *mine = cc->slot_buf[c], *shared = cc->shared_chunks + c * cc->chunk_bytes;
  for (unsigned waits = 0;; waits++) {
    uint32_t s = atomic_load_explicit(st, memory_order_acquire);
    if (s == CHUNK_READY) {
      memcpy(mine, shared, cc->chunk_bytes);
      break;
    }
    if (s == CHUNK_EMPTY) {
      if (!atomic_compare_exchange_strong_explicit(st, &s, CHUNK_BUSY, memory_order_acquire,
                                                   memory_order_acquire))
        continue;
      int rc = chunk_cache_read(cc, c, mine, err, errlen);
      if (rc == 0) memcpy(shared, mine, cc->chunk_bytes);
      atomic_store_explicit(st, rc < 0 ? CHUNK_EMPTY : CHUNK_READY, memory_order_release);
      if (rc < 0) return NULL;
      cc->chunks_read++;
      break;
    }
    /* Another process is decoding it: a chunk's decode takes far longer
     * than a yield, so after a few yields sleep instead of spinning. */
    if (waits < 16) {
      sched_yield();
    } else {
      struct timespec t = {0, 50000};
      nanosleep(&t, NULL);
    }
  }
  cc->chunk_slot[c] = (int32_t)c;
  cc->slot_used[c] = ++cc->tick;
  return mine;
}

const unsigned char *chunk_cache_get(chunk_cache *cc, uint64_t c, char *err, size_t errlen) {
  int k = cc->chunk_slot[c];
  if (k < 0 && cc->state) return shared_get(cc, c, err, errlen);
  if (k < 0) {
    k = 0;
    for (int j = 1; j < cc->slots; j++)
      if (cc->slot_used[j] < cc->slot_used[k]) k = j;
    if (cc->slot_chunk[k] != UINT64_MAX) cc->chunk_slot[cc->slot_chunk[k]] = -1;
    cc->slot_chunk[k] = UINT64_MAX;
    if (chunk_cache_read(cc, c, cc->slot_buf[k], err, errlen) < 0) return NULL;
    cc->chunks_read++;
    cc->slot_chunk[k] = c;
    cc->chunk_slot[c] = k;
  }
  cc->slot_used[k] = ++cc->tick;
  return cc->slot_buf[k];
}

const unsigned char *chunk_cache_row(const chunk_cache *cc, uint64_t i) {
  uint64_t c = i / cc->rows;
  int k = cc->chunk_slot[c];
  return k < 0 ? NULL : cc->slot_buf[k] + (size_t)(i - c * cc->rows) * cc->src.row_bytes;
}

int chunk_cache_has_all(chunk_cache *cc, const uint64_t *idx, size_t n) {
  uint64_t tick = ++cc->tick;
  for (size_t i = 0; i < n; i++) {
    int k = cc->chunk_slot[idx[i] / cc->rows];
    if (k < 0) return 0;
    cc->slot_used[k] = tick;
  }
  return 1;
}

/* ---- sharing among the processes of a node ------------------------------ */

/* The state words, padded to a page; the chunks follow. */
static size_t shared_states_bytes(const chunk_cache *cc) {
  size_t b = (size_t)cc->n_chunks * sizeof(uint32_t);
  return (b + 4095) / 4096 * 4096;
}

size_t chunk_cache_shared_bytes(const chunk_cache *cc) {
  if (!cc->slots || cc->state || (uint64_t)cc->slots != cc->n_chunks || cc->n_chunks == 0) return 0;
  return shared_states_bytes(cc) + cc->arena_bytes;
}

size_t chunk_cache_shared_zeroed(const chunk_cache *cc) { return shared_states_bytes(cc); }

/* Processes share the state words: their atomics must not hide a lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

void chunk_cache_share(chunk_cache *cc, void *mem) {
  assert((uint64_t)cc->slots == cc->n_chunks); /* chunk_cache_shared_bytes > 0 */
  cc->state = mem;
  cc->shared_chunks = (unsigned char *)mem + shared_states_bytes(cc);
  /* Slot c (already arena + c chunks, slots_init) holds chunk c; a chunk
   * read before (data_check_finite) is fetched again through the shared
   * states. */
  for (uint64_t c = 0; c < cc->n_chunks; c++) {
    cc->slot_chunk[c] = c;
    cc->chunk_slot[c] = -1; /* until this process has it */
  }
}
