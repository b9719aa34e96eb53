#define _GNU_SOURCE /* syscall(SYS_gettid), CPU_SET */
#include "saver.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ms_error.h"

enum { JOB_SAVE = 1, JOB_COMPRESS, JOB_WRITE, JOB_PART, JOB_COMMIT };

struct ms_saver {
  ckpt_tensor *live;      /* the caller's tensors */
  int n;
  char *dir;
  int level, workers, keep, rank, world, can_background;
  uint64_t data_bytes;
  uint64_t begin, end;    /* this rank's slice of the data section ... */
  uint64_t first_chunk, n_chunks; /* ... and the hash chunks it owns */

  ckpt_tensor *snap;      /* alone: the same names and shapes, data in `arena` */
  float *arena;
  unsigned char *slice;   /* together, background: the slice as stored */
  uint64_t *hashes;       /* together: this rank's chunk hashes */
  int shuffle;
  int background;         /* this save compresses in the background */
  void *header;           /* together, rank 0: the payload's start */
  size_t header_len;
  void *frame;            /* together: this rank's compressed frame */
  size_t frame_len;
  double compress_seconds;
  int compressing;        /* a frame is being made or waits to be taken */
  void *bytes;            /* rank 0: the file being written (the thread frees it) */
  size_t bytes_len;
  char *part_tmp;         /* one node: the temporary file each rank writes into */
  int64_t part_step;      /* the checkpoint's step */
  uint64_t part_off, part_total; /* this rank's offset; the file's length */
  int part;               /* a part write started and not yet collected */
  double part_seconds;

  pthread_t thread;
  int running;            /* started and not yet joined */
  int job;
  atomic_int done;        /* set by the thread as its last act */
  atomic_int tid;         /* the thread's id, for boost() */
  ckpt_meta meta;         /* alone: the save in flight (config owned) */
  int pending;            /* a write started and not yet collected */
  int rc;                 /* the thread's result ... */
  char msg[MS_MSG_MAX];   /* ... and its message */
  saver_result res;
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t elems(const ckpt_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

int saver_create(ms_saver **out, const ckpt_tensor *tensors, int n_tensors, const char *dir,
                 int level, int workers, int keep, int rank, int world, int background) {
  *out = NULL;
  ms_saver *s = calloc(1, sizeof *s);
  if (!s) goto oom;
  s->n = n_tensors;
  s->level = level, s->workers = workers, s->keep = keep;
  s->rank = rank, s->world = world < 1 ? 1 : world, s->can_background = world > 1 && background;
  s->live = malloc(sizeof *s->live * (size_t)(n_tensors ? n_tensors : 1));
  s->dir = strdup(dir);
  if (!s->live || !s->dir) goto oom;
  if (n_tensors) memcpy(s->live, tensors, sizeof *s->live * (size_t)n_tensors);
  int rc = ckpt_data_size(dir, tensors, n_tensors, &s->data_bytes);
  if (rc) {
    saver_free(s);
    return rc;
  }
  ckpt_slice(s->data_bytes, s->world, rank, &s->begin, &s->end, &s->first_chunk, &s->n_chunks);
  s->hashes = malloc(sizeof *s->hashes * (size_t)(s->n_chunks ? s->n_chunks : 1));
  if (!s->hashes) goto oom;
  /* Snapshots are touched now, so that the page faults of a first copy do
   * not land in the middle of training. */
  if (s->world == 1) {
    size_t n_floats = (size_t)(s->data_bytes / sizeof(float)), off = 0;
    s->snap = malloc(sizeof *s->snap * (size_t)(n_tensors ? n_tensors : 1));
    s->arena = malloc(sizeof(float) * (n_floats ? n_floats : 1));
    if (!s->snap || !s->arena) goto oom;
    memset(s->arena, 0, sizeof(float) * n_floats);
    for (int i = 0; i < n_tensors; i++) {
      s->snap[i] = tensors[i];
      s->snap[i].data = s->arena + off;
      off += elems(&tensors[i]);
    }
  } else if (s->can_background) {
    size_t len = (size_t)(s->end - s->begin);
    if (!(s->slice = malloc(len ? len : 1))) goto oom;
    memset(s->slice, 0, len);
  }
  *out = s;
  return 0;
oom:
  saver_free(s);
  return ms_error_set(MS_ENOMEM, "out of memory for the checkpoint snapshot");
}

/* The background thread runs at a low priority (Linux: nice is per thread),
 * so that where the ranks use every core it takes mostly the time they
 * leave: the lowest (19) to compress; 10 to only write the file, which
 * needs little CPU (copying into the page cache) but should reach the disk
 * soon, for a busy machine could starve it for minutes at 19. It may run
 * on any core the process may use, because launchers bind each rank to one
 * core (Open MPI does for 2 ranks or fewer), which would keep it off an
 * idle core; the kernel keeps the mask within the job's cpuset. Best
 * effort: a failure changes only the speed. */
static void background_setup(int nice) {
  (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
  long ncpu = sysconf(_SC_NPROCESSORS_CONF);
  cpu_set_t set;
  CPU_ZERO(&set);
  for (long c = 0; c < ncpu && c < CPU_SETSIZE; c++) CPU_SET((int)c, &set);
  (void)sched_setaffinity(0, sizeof set, &set);
}

/* The job, on the background thread or (sync) on the caller's. */
static void do_job(ms_saver *s) {
  double t0 = now_s();
  char *path = NULL;
  ms_error_clear();
  switch (s->job) {
  case JOB_SAVE:
    s->rc = ckpt_write_mt(s->dir, s->snap, s->n, &s->meta, s->level, s->workers, 1, &path);
    break;
  case JOB_WRITE:
    s->rc = ckpt_write_bytes(s->dir, s->res.step, s->bytes, s->bytes_len, &path);
    free(s->bytes);
    s->bytes = NULL;
    break;
  case JOB_PART:
    s->rc = ckpt_part_write(s->dir, s->part_step, s->part_tmp, s->part_off, s->frame, s->frame_len);
    s->part_seconds = now_s() - t0;
    break;
  case JOB_COMMIT:
    s->rc = ckpt_part_commit(s->dir, s->res.step, s->part_tmp, s->part_total, &path);
    break;
  case JOB_COMPRESS: {
    ckpt_tensor t = {"slice", (float *)s->slice, 1, {(int64_t)((s->end - s->begin) / sizeof(float))}};
    s->rc = ckpt_compress(&t, 1, 0, s->header, s->header_len, 0, s->end - s->begin, s->level,
                          s->workers, &s->frame, &s->frame_len);
    s->compress_seconds = now_s() - t0;
    break;
  }
  }
  if (s->rc == 0 && path) s->rc = ckpt_prune(s->dir, s->keep);
  if (s->rc == 0 && path) {
    struct stat st;
    snprintf(s->res.path, sizeof s->res.path, "%s", path);
    s->res.file_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
  } else if (s->rc) {
    snprintf(s->msg, sizeof s->msg, "%s", ms_error_msg());
  }
  free(path);
  s->res.write_seconds = now_s() - t0 + (s->job == JOB_COMMIT ? s->part_seconds : 0);
  atomic_store(&s->done, 1);
}

static void *run_job(void *arg) {
  ms_saver *s = arg;
  atomic_store(&s->tid, (int)syscall(SYS_gettid));
  background_setup(s->job == JOB_SAVE || s->job == JOB_COMPRESS ? 19 : 10);
  do_job(s);
  return NULL;
}

/* Starts the job on the background thread, or with sync runs it now. */
static int start_job(ms_saver *s, int job, int sync) {
  s->job = job;
  s->rc = 0;
  s->msg[0] = '\0';
  atomic_store(&s->done, 0);
  atomic_store(&s->tid, 0);
  if (sync) {
    do_job(s);
    return 0;
  }
  if (pthread_create(&s->thread, NULL, run_job, s) != 0)
    return ms_error_set(MS_EINTERNAL, "cannot start the checkpoint thread");
  s->running = 1;
  return 0;
}

/* The caller is about to wait for the background thread: it gets the
 * caller's priority, since training waits anyway (a starved writer on a
 * busy machine would otherwise hold up a stop signal's checkpoint). Best
 * effort: an unprivileged process may not raise a thread's priority. */
static void boost(ms_saver *s) {
  int tid = atomic_load(&s->tid);
  if (!s->running || atomic_load(&s->done) || tid <= 0) return;
  errno = 0;
  int me = getpriority(PRIO_PROCESS, 0);
  if (me == -1 && errno) return;
  (void)setpriority(PRIO_PROCESS, (id_t)tid, me);
}

static void join(ms_saver *s) {
  if (!s->running) return;
  pthread_join(s->thread, NULL);
  s->running = 0;
}

int saver_wait(ms_saver *s, saver_result *res) {
  if (!s || !s->pending) return 1;
  boost(s);
  join(s);
  s->pending = 0;
  free(s->meta.config);
  s->meta.config = NULL;
  if (s->rc) return ms_error_set(s->rc, "%s", s->msg);
  if (res) *res = s->res;
  return 0;
}

int saver_start(ms_saver *s, const ckpt_meta *meta, int sync) {
  int rc = saver_wait(s, NULL);
  if (rc < 0) return rc;
  if (s->world != 1) return ms_error_set(MS_EINTERNAL, "saver_start: the saver is for %d ranks", s->world);
  for (int i = 0; i < s->n; i++)
    memcpy(s->snap[i].data, s->live[i].data, sizeof(float) * elems(&s->live[i]));
  s->meta = *meta;
  s->meta.config = meta->config ? strdup(meta->config) : NULL;
  if (meta->config && !s->meta.config)
    return ms_error_set(MS_ENOMEM, "out of memory copying the checkpoint metadata");
  memset(&s->res, 0, sizeof s->res);
  s->res.step = meta->step;
  s->res.raw_bytes = (long long)s->data_bytes;
  if ((rc = start_job(s, JOB_SAVE, sync)) != 0) {
    free(s->meta.config);
    s->meta.config = NULL;
    return rc;
  }
  s->pending = 1;
  return 0;
}

int saver_hash(ms_saver *s, int shuffle, int background, const uint64_t **hashes,
               size_t *n_hashes) {
  if (s->world == 1 || s->compressing)
    return ms_error_set(MS_EINTERNAL, "saver_hash: %s", s->compressing
                                                           ? "the last frame was not collected"
                                                           : "the saver is for one rank");
  int rc = saver_wait(s, NULL);
  if (rc < 0) return rc;
  free(s->frame);
  free(s->header);
  s->frame = s->header = NULL;
  s->frame_len = s->header_len = 0;
  s->shuffle = shuffle;
  s->background = background && s->can_background;
  if (s->background) ckpt_copy_stored(s->live, s->n, shuffle, s->begin, s->end, s->slice);
  ckpt_hash_chunks(s->live, s->n, s->first_chunk, s->n_chunks, s->hashes);
  *hashes = s->hashes;
  *n_hashes = (size_t)s->n_chunks;
  return 0;
}

int saver_compress(ms_saver *s, const ckpt_meta *meta, const uint64_t *all_hashes, size_t n_all) {
  if (s->world == 1 || s->compressing)
    return ms_error_set(MS_EINTERNAL, "saver_compress: called out of turn");
  memset(&s->res, 0, sizeof s->res);
  s->res.raw_bytes = (long long)s->data_bytes;
  s->compress_seconds = 0;
  if (s->rank == 0) {
    uint64_t total;
    ckpt_slice(s->data_bytes, 1, 0, NULL, NULL, NULL, &total);
    if (!meta || n_all != total)
      return ms_error_set(MS_EINTERNAL, "saver_compress: %zu chunk hashes for %llu chunks", n_all,
                          (unsigned long long)total);
    s->res.step = meta->step;
    int rc = ckpt_header(s->dir, s->live, s->n, meta, ckpt_data_hash(all_hashes, total),
                         &s->header, &s->header_len);
    if (rc) return rc;
  }
  s->rc = 0;
  if (s->rank > 0 && s->end == s->begin) {
    s->compressing = 1; /* an empty frame, ready now */
    return 0;
  }
  if (s->background) {
    int rc = start_job(s, JOB_COMPRESS, 0);
    if (rc == 0) s->compressing = 1;
    return rc;
  }
  double t0 = now_s();
  int rc = ckpt_compress(s->live, s->n, s->shuffle, s->header, s->header_len, s->begin, s->end,
                         s->level, s->workers, &s->frame, &s->frame_len);
  s->compress_seconds = now_s() - t0;
  if (rc == 0) s->compressing = 1;
  return rc;
}

int saver_compressing(const ms_saver *s) { return s && s->compressing; }

int saver_frame_ready(const ms_saver *s) {
  return s && s->compressing && (!s->running || atomic_load(&s->done));
}

int saver_frame(ms_saver *s, const void **frame, size_t *len, double *seconds) {
  if (!s->compressing) return ms_error_set(MS_EINTERNAL, "saver_frame: no frame in the making");
  if (s->job == JOB_COMPRESS) {
    boost(s);
    join(s);
  }
  s->compressing = 0;
  s->job = 0;
  free(s->header);
  s->header = NULL;
  if (s->rc) return ms_error_set(s->rc, "%s", s->msg);
  *frame = s->frame;
  *len = s->frame_len;
  if (seconds) *seconds = s->compress_seconds;
  return 0;
}

void saver_frame_done(ms_saver *s) {
  free(s->frame);
  s->frame = NULL;
  s->frame_len = 0;
}

int saver_write(ms_saver *s, void *bytes, size_t len, int sync) {
  int rc = saver_wait(s, NULL);
  if (rc >= 0 && (s->rank != 0 || s->world == 1 || s->running))
    rc = ms_error_set(MS_EINTERNAL, "saver_write: called out of turn");
  if (rc < 0) {
    free(bytes);
    return rc;
  }
  s->bytes = bytes;
  s->bytes_len = len;
  if ((rc = start_job(s, JOB_WRITE, sync)) != 0) {
    free(s->bytes);
    s->bytes = NULL;
    return rc;
  }
  s->pending = 1;
  return 0;
}

int saver_write_part(ms_saver *s, int64_t step, const char *tmp_path, uint64_t offset,
                     int sync) {
  if (s->world == 1 || s->running || s->part || s->compressing)
    return ms_error_set(MS_EINTERNAL, "saver_write_part: called out of turn");
  free(s->part_tmp);
  if (!(s->part_tmp = strdup(tmp_path)))
    return ms_error_set(MS_ENOMEM, "out of memory for the checkpoint file name");
  s->part_step = step;
  s->part_off = offset;
  s->part_seconds = 0;
  int rc = start_job(s, JOB_PART, sync);
  if (rc == 0) s->part = 1;
  return rc;
}

int saver_part_ready(const ms_saver *s) {
  return s && s->part && (!s->running || atomic_load(&s->done));
}

int saver_part_wait(ms_saver *s) {
  if (!s->part) return ms_error_set(MS_EINTERNAL, "saver_part_wait: no part being written");
  boost(s);
  join(s);
  s->part = 0;
  s->job = 0;
  saver_frame_done(s);
  if (s->rc) return ms_error_set(s->rc, "%s", s->msg);
  return 0;
}

void saver_part_discard(ms_saver *s) {
  if (s->rank == 0) ckpt_part_abort(s->part_tmp);
  free(s->part_tmp);
  s->part_tmp = NULL;
}

int saver_commit(ms_saver *s, uint64_t total, int sync) {
  if (s->rank != 0 || s->running || s->part || !s->part_tmp)
    return ms_error_set(MS_EINTERNAL, "saver_commit: called out of turn");
  s->part_total = total;
  int rc = start_job(s, JOB_COMMIT, sync);
  if (rc == 0) s->pending = 1;
  return rc;
}

int saver_finished(const ms_saver *s) { return s && s->pending && atomic_load(&s->done); }

int saver_pending(const ms_saver *s) { return s && s->pending; }

void saver_free(ms_saver *s) {
  if (!s) return;
  join(s);
  (void)saver_wait(s, NULL);
  free(s->live);
  free(s->snap);
  free(s->arena);
  free(s->slice);
  free(s->hashes);
  free(s->header);
  free(s->frame);
  free(s->bytes);
  free(s->part_tmp);
  free(s->meta.config);
  free(s->dir);
  free(s);
}
