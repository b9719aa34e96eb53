#define _GNU_SOURCE /* syscall(SYS_gettid) */
#include "saver.h"

#include <pthread.h>
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

struct ms_saver {
  ckpt_tensor *live;      /* the caller's tensors */
  ckpt_tensor *snap;      /* the same names and shapes, data in `arena` */
  int n;
  float *arena;
  size_t n_floats;
  char *dir;
  int level, workers, keep;

  pthread_t thread;
  int pending;            /* started and not yet collected */
  atomic_int done;        /* set by the writer thread as its last act */
  ckpt_meta meta;         /* the save in flight (config owned) */
  int rc;                 /* the writer's result ... */
  char msg[2048];         /* ... and its message */
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
                 int level, int workers, int keep) {
  *out = NULL;
  ms_saver *s = calloc(1, sizeof *s);
  if (!s) goto oom;
  s->n = n_tensors;
  s->level = level, s->workers = workers, s->keep = keep;
  s->live = malloc(sizeof *s->live * (size_t)n_tensors);
  s->snap = malloc(sizeof *s->snap * (size_t)n_tensors);
  s->dir = strdup(dir);
  if (!s->live || !s->snap || !s->dir) goto oom;
  for (int i = 0; i < n_tensors; i++) s->n_floats += elems(&tensors[i]);
  s->arena = malloc(sizeof(float) * (s->n_floats ? s->n_floats : 1));
  if (!s->arena) goto oom;
  /* Touch the snapshot now, so that the page faults of a first copy do not
   * land in the middle of training. */
  memset(s->arena, 0, sizeof(float) * s->n_floats);
  size_t off = 0;
  for (int i = 0; i < n_tensors; i++) {
    s->live[i] = tensors[i];
    s->snap[i] = tensors[i];
    s->snap[i].data = s->arena + off;
    off += elems(&tensors[i]);
  }
  *out = s;
  return 0;
oom:
  saver_free(s);
  return ms_error_set(MS_ENOMEM, "out of memory for the checkpoint snapshot");
}

static void *writer(void *arg) {
  ms_saver *s = arg;
  /* The lowest priority for this thread only (Linux: nice is per thread):
   * where the ranks use every core, compression takes the time they leave
   * idle instead of slowing the steps. Best effort. */
  (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
  double t0 = now_s();
  char *path = NULL;
  ms_error_clear();
  s->rc = ckpt_write_mt(s->dir, s->snap, s->n, &s->meta, s->level, s->workers, 1, &path);
  if (s->rc == 0) s->rc = ckpt_prune(s->dir, s->keep);
  if (s->rc == 0) {
    struct stat st;
    snprintf(s->res.path, sizeof s->res.path, "%s", path);
    s->res.file_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
  } else {
    snprintf(s->msg, sizeof s->msg, "%s", ms_error_msg());
  }
  free(path);
  s->res.write_seconds = now_s() - t0;
  atomic_store(&s->done, 1);
  return NULL;
}

int saver_wait(ms_saver *s, saver_result *res) {
  if (!s || !s->pending) return 1;
  pthread_join(s->thread, NULL);
  s->pending = 0;
  free(s->meta.config);
  s->meta.config = NULL;
  if (s->rc) return ms_error_set(s->rc, "%s", s->msg);
  if (res) *res = s->res;
  return 0;
}

int saver_start(ms_saver *s, const ckpt_meta *meta) {
  int rc = saver_wait(s, NULL);
  if (rc < 0) return rc;
  double t0 = now_s();
  for (int i = 0; i < s->n; i++)
    memcpy(s->snap[i].data, s->live[i].data, sizeof(float) * elems(&s->live[i]));
  s->meta = *meta;
  s->meta.config = meta->config ? strdup(meta->config) : NULL;
  if (meta->config && !s->meta.config)
    return ms_error_set(MS_ENOMEM, "out of memory copying the checkpoint metadata");
  memset(&s->res, 0, sizeof s->res);
  s->res.step = meta->step;
  s->res.raw_bytes = (long long)(sizeof(float) * s->n_floats);
  s->res.stall_seconds = now_s() - t0;
  s->rc = 0;
  s->msg[0] = '\0';
  atomic_store(&s->done, 0);
  if (pthread_create(&s->thread, NULL, writer, s) != 0) {
    free(s->meta.config);
    s->meta.config = NULL;
    return ms_error_set(MS_EINTERNAL, "cannot start the checkpoint writer thread");
  }
  s->pending = 1;
  return 0;
}

int saver_finished(const ms_saver *s) { return s && s->pending && atomic_load(&s->done); }

int saver_pending(const ms_saver *s) { return s && s->pending; }

void saver_free(ms_saver *s) {
  if (!s) return;
  (void)saver_wait(s, NULL);
  free(s->live);
  free(s->snap);
  free(s->arena);
  free(s->dir);
  free(s);
}
