/* loader — see loader.h.
 *
 * The ring: slots[head .. head + count) (mod nslots) are filled, in cursor
 * order; while the caller holds a batch (held), it is slots[head]. The
 * thread fills slots[(head + count) % nslots] whenever count < nslots, so
 * it never writes a slot the caller holds or has not yet taken. A restart
 * empties the ring and bumps `gen`; a read that was in progress under an
 * older generation is thrown away when it completes. Everything shared is
 * under `mu`; a slot's buffers are written by the thread outside the lock
 * only while that slot is outside [head, head + count).
 */
#define _GNU_SOURCE /* SCHED_BATCH */
#include "loader.h"

#include "h5util.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Without chunks, block shuffle cuts about this many bytes of stored
 * samples per block. */
#define UNCHUNKED_BLOCK_BYTES ((size_t)1 << 20)

typedef struct {
  uint64_t epoch, step;
  int rc;
  char err[DATA_ERRLEN];
  uint64_t *idx; /* (local) */
  float *x;      /* (local, elems) */
  int32_t *y;    /* (local, lelems) or NULL */
  float *t;      /* (local, lelems) or NULL */
} slot;

struct data_loader {
  loader_opts o;
  uint64_t n, spe; /* samples, steps per epoch */
  size_t local, elems, lelems;
  /* The epoch order: the thread's own (the caller's when prefetch is 0). */
  uint64_t *perm;
  uint64_t perm_epoch;
  int perm_valid;
  slot *slots;
  int nslots;
  /* Shared with the thread, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t want;  /* the thread waits: room in the ring, a cursor, stop */
  pthread_cond_t ready; /* the caller waits: a filled slot */
  int head, count, held;
  uint64_t gen;
  uint64_t next_epoch, next_step; /* the thread's next cursor */
  int active;                     /* the thread has a cursor to read from */
  int stop;
  int thread_started, locks_ready;
  pthread_t thread;
};

/* Reads the batch of (epoch, step) into s (on whichever thread owns perm). */
static void fill(data_loader *l, slot *s, uint64_t epoch, uint64_t step) {
  s->epoch = epoch;
  s->step = step;
  s->rc = 0;
  s->err[0] = '\0';
  if (!l->perm_valid || l->perm_epoch != epoch) {
    l->perm_valid = 0;
    char why[128];
    if (sampler_epoch_order(&l->o.order, l->o.seed, epoch, l->n, l->perm, why, sizeof why) < 0) {
      s->rc = -1;
      h5util_set_err(s->err, sizeof s->err, "%s (for '%s' in '%s')", why, data_x_name(l->o.ds),
                     data_path(l->o.ds));
      return;
    }
    l->perm_epoch = epoch;
    l->perm_valid = 1;
  }
  uint64_t count;
  const uint64_t *src =
      sampler_rank_batch(l->perm, l->o.global_batch, l->o.world, l->o.rank, step, &count);
  memcpy(s->idx, src, (size_t)count * sizeof *src);
  s->rc = data_read(l->o.ds, s->idx, (size_t)count, &l->o.norm, s->x, s->y, s->t, s->err,
                    sizeof s->err);
}

static uint64_t global_step(const data_loader *l, uint64_t epoch, uint64_t step) {
  return epoch * l->spe + step;
}

static int past_end(const data_loader *l, uint64_t epoch, uint64_t step) {
  return l->o.end_step > 0 && global_step(l, epoch, step) >= l->o.end_step;
}

static void *run_thread(void *arg) {
  data_loader *l = arg;
#ifdef SCHED_BATCH
  /* Throughput work: without wake-up preemption, the loader woken by the
   * step's loader_next does not push the step off its CPU to read a batch
   * the step does not need yet (when every core trains, the step would
   * otherwise wait for a batch read at every step;
   * scripts/bench/results/loader.md). It still gets its fair share of CPU
   * time. */
  struct sched_param sp = {0};
  (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
#endif
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop &&
           (!l->active || l->count == l->nslots || past_end(l, l->next_epoch, l->next_step)))
      pthread_cond_wait(&l->want, &l->mu);
    if (l->stop) break;
    int k = (l->head + l->count) % l->nslots;
    uint64_t epoch = l->next_epoch, step = l->next_step, gen = l->gen;
    pthread_mutex_unlock(&l->mu);
    fill(l, &l->slots[k], epoch, step);
    pthread_mutex_lock(&l->mu);
    if (gen != l->gen) continue; /* restarted meanwhile: the ring was emptied */
    l->count++;
    if (l->slots[k].rc < 0) {
      l->active = 0; /* nothing after a failed read until asked again */
    } else if (++l->next_step == l->spe) {
      l->next_step = 0;
      l->next_epoch++;
    }
    pthread_cond_signal(&l->ready);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static void batch_of(const data_loader *l, const slot *s, loader_batch *b) {
  b->epoch = s->epoch;
  b->step = s->step;
  b->n = l->local;
  b->idx = s->idx;
  b->x = s->x;
  b->y = s->y;
  b->t = s->t;
}

int loader_next(data_loader *l, uint64_t epoch, uint64_t step, loader_batch *b, char *err,
                size_t errlen) {
  if (step >= l->spe || past_end(l, epoch, step)) {
    h5util_set_err(err, errlen,
            "loader: cursor (epoch %llu, step %llu) is outside the run (%llu steps per epoch, "
            "%llu steps)",
            (unsigned long long)epoch, (unsigned long long)step, (unsigned long long)l->spe,
            (unsigned long long)l->o.end_step);
    return -1;
  }
  slot *s;
  if (l->o.prefetch == 0) {
    s = &l->slots[0];
    fill(l, s, epoch, step);
  } else {
    pthread_mutex_lock(&l->mu);
    if (l->held) {
      l->head = (l->head + 1) % l->nslots;
      l->count--;
      l->held = 0;
      pthread_cond_signal(&l->want);
    }
    const slot *h = &l->slots[l->head];
    int have = l->count > 0 ? h->epoch == epoch && h->step == step
                            : l->active && l->next_epoch == epoch && l->next_step == step;
    if (!have) {
      l->gen++;
      l->head = l->count = 0;
      l->next_epoch = epoch;
      l->next_step = step;
      l->active = 1;
      pthread_cond_signal(&l->want);
    }
    while (l->count == 0) pthread_cond_wait(&l->ready, &l->mu);
    l->held = 1;
    s = &l->slots[l->head];
    pthread_mutex_unlock(&l->mu);
  }
  if (s->rc < 0) {
    h5util_set_err(err, errlen, "%s", s->err);
    return -1;
  }
  batch_of(l, s, b);
  return 0;
}

uint64_t loader_block_size(const data_loader *l) {
  return l->o.order.shuffle == SAMPLER_BLOCK ? l->o.order.block_size : 0;
}

static int check_opts(const loader_opts *o, char *err, size_t errlen) {
  uint64_t n = data_count(o->ds);
  if (o->world < 1 || o->rank < 0 || o->rank >= o->world || o->global_batch == 0 ||
      o->global_batch % (uint64_t)o->world != 0) {
    h5util_set_err(err, errlen, "loader: a global batch of %llu does not split over %d ranks",
            (unsigned long long)o->global_batch, o->world);
    return -1;
  }
  if (o->global_batch > n) {
    h5util_set_err(err, errlen, "loader: a global batch of %llu is larger than the %llu samples of '%s'",
            (unsigned long long)o->global_batch, (unsigned long long)n, data_x_name(o->ds));
    return -1;
  }
  if (o->prefetch < 0 || o->prefetch > LOADER_MAX_PREFETCH) {
    h5util_set_err(err, errlen, "loader: prefetch %d is outside [0, %d]", o->prefetch,
            LOADER_MAX_PREFETCH);
    return -1;
  }
  if (o->order.shuffle == SAMPLER_BLOCK && o->order.window == 0) {
    h5util_set_err(err, errlen, "loader: the block shuffle window must be at least 1 block");
    return -1;
  }
  return 0;
}

int loader_create(data_loader **out, const loader_opts *o, char *err, size_t errlen) {
  *out = NULL;
  if (check_opts(o, err, errlen) < 0) return -1;
  data_loader *l = calloc(1, sizeof *l);
  if (!l) goto oom;
  l->o = *o;
  l->n = data_count(o->ds);
  l->spe = sampler_steps_per_epoch(l->n, o->global_batch);
  l->local = (size_t)(o->global_batch / (uint64_t)o->world);
  l->elems = data_sample_elems(o->ds);
  l->lelems = data_label_elems(o->ds);
  if (l->o.order.shuffle == SAMPLER_BLOCK && l->o.order.block_size == 0) {
    uint64_t rows = data_chunk_samples(o->ds);
    if (rows == 0) {
      size_t row_bytes = l->elems * data_dtype_size(data_input_dtype(o->ds));
      rows = UNCHUNKED_BLOCK_BYTES / (row_bytes ? row_bytes : 1);
    }
    l->o.order.block_size = rows ? rows : 1;
  }
  l->nslots = o->prefetch + 1;
  l->perm = malloc((size_t)l->n * sizeof *l->perm);
  l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
  if (!l->perm || !l->slots) goto oom;
  for (int i = 0; i < l->nslots; i++) {
    slot *s = &l->slots[i];
    s->idx = malloc(l->local * sizeof *s->idx);
    s->x = malloc(l->local * l->elems * sizeof *s->x);
    if (o->class_labels)
      s->y = malloc(l->local * l->lelems * sizeof *s->y);
    else
      s->t = malloc(l->local * l->lelems * sizeof *s->t);
    if (!s->idx || !s->x || (!s->y && !s->t)) goto oom;
  }
  if (pthread_mutex_init(&l->mu, NULL) != 0) goto no_thread;
  if (pthread_cond_init(&l->want, NULL) != 0) {
    pthread_mutex_destroy(&l->mu);
    goto no_thread;
  }
  if (pthread_cond_init(&l->ready, NULL) != 0) {
    pthread_cond_destroy(&l->want);
    pthread_mutex_destroy(&l->mu);
    goto no_thread;
  }
  l->locks_ready = 1;
  if (o->prefetch > 0) {
    /* Signals go to the caller's threads, never to the loader: block all of
     * them for the new thread (it inherits this thread's mask). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&l->thread, NULL, run_thread, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) goto no_thread;
    l->thread_started = 1;
  }
  *out = l;
  return 0;
no_thread:
  h5util_set_err(err, errlen, "loader: cannot start the data loader thread");
  loader_free(l);
  return -1;
oom:
  h5util_set_err(err, errlen, "loader: out of memory for %d batch buffers of %zu samples", o->prefetch + 1,
          (size_t)(o->global_batch / (uint64_t)(o->world > 0 ? o->world : 1)));
  loader_free(l);
  return -1;
}

void loader_free(data_loader *l) {
  if (!l) return;
  if (l->thread_started) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->want);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
  }
  if (l->locks_ready) {
    pthread_cond_destroy(&l->ready);
    pthread_cond_destroy(&l->want);
    pthread_mutex_destroy(&l->mu);
  }
  for (int i = 0; l->slots && i < l->nslots; i++) {
    free(l->slots[i].idx);
    free(l->slots[i].x);
    free(l->slots[i].y);
    free(l->slots[i].t);
  }
  free(l->slots);
  free(l->perm);
  free(l);
}
