#include "timeline.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "ms_error.h"

#define NAME_MAX_BYTES 48
#define MAX_DEPTH 16
#define MAX_THREADS 64

typedef struct {
  char name[NAME_MAX_BYTES];
  int tid;
  int64_t b_ns, e_ns; /* from the rank's zero */
  int64_t step;
} tl_event;

struct timeline {
  int rank;
  int64_t from, to, step;
  int on;
  double t0;
  tl_event *ev;
  size_t n, cap;
  long dropped;
  struct {
    char name[NAME_MAX_BYTES];
    int64_t b_ns;
  } open[MAX_DEPTH];
  int depth;
  int64_t mark_ns;
  char thread_names[MAX_THREADS][NAME_MAX_BYTES];
};

int timeline_create(timeline **out, const ms_config *cfg, int rank) {
  *out = NULL;
  const ms_dims *t = &cfg->log.trace_steps;
  if (t->ndim != 2) return 0;
  timeline *tl = calloc(1, sizeof *tl);
  if (!tl) return ms_error_set(MS_ENOMEM, "out of memory for the timeline");
  tl->rank = rank;
  tl->from = t->dims[0];
  tl->to = t->dims[1];
  snprintf(tl->thread_names[TIMELINE_TID_TRAIN], NAME_MAX_BYTES, "training thread");
  *out = tl;
  return 0;
}

void timeline_free(timeline *tl) {
  if (!tl) return;
  free(tl->ev);
  free(tl);
}

void timeline_start_clock(timeline *tl, double t0) {
  if (tl) tl->t0 = t0;
}

void timeline_step(timeline *tl, int64_t step) {
  if (!tl) return;
  tl->step = step;
  tl->on = step >= tl->from && step <= tl->to;
}

int timeline_on(const timeline *tl) { return tl && tl->on; }

static int64_t now_ns(const timeline *tl) { return (int64_t)((comm_wtime() - tl->t0) * 1e9 + 0.5); }

static void add(timeline *tl, int tid, const char *name, int64_t b, int64_t e) {
  if (tl->n == tl->cap) {
    size_t cap = tl->cap ? 2 * tl->cap : 1024;
    tl_event *p = realloc(tl->ev, cap * sizeof *p);
    if (!p) {
      tl->dropped++;
      return;
    }
    tl->ev = p, tl->cap = cap;
  }
  tl_event *ev = &tl->ev[tl->n++];
  snprintf(ev->name, sizeof ev->name, "%s", name);
  ev->tid = tid;
  ev->b_ns = b;
  ev->e_ns = e < b ? b : e;
  ev->step = tl->step;
}

void timeline_begin(timeline *tl, const char *name) {
  if (!tl || !tl->on) return;
  if (tl->depth == MAX_DEPTH) {
    tl->dropped++;
    tl->depth++; /* so that the matching end pops nothing */
    return;
  }
  if (tl->depth > MAX_DEPTH) {
    tl->depth++;
    return;
  }
  snprintf(tl->open[tl->depth].name, NAME_MAX_BYTES, "%s", name);
  tl->open[tl->depth++].b_ns = now_ns(tl);
}

void timeline_end(timeline *tl) {
  if (!tl || !tl->on || tl->depth == 0) return;
  if (--tl->depth >= MAX_DEPTH) return;
  add(tl, TIMELINE_TID_TRAIN, tl->open[tl->depth].name, tl->open[tl->depth].b_ns, now_ns(tl));
}

void timeline_span(timeline *tl, int tid, const char *name, double t0, double t1) {
  if (!tl || !tl->on) return;
  add(tl, tid, name, (int64_t)((t0 - tl->t0) * 1e9 + 0.5), (int64_t)((t1 - tl->t0) * 1e9 + 0.5));
}

void timeline_mark(timeline *tl) {
  if (tl && tl->on) tl->mark_ns = now_ns(tl);
}

void timeline_layer_done(timeline *tl, const char *name) {
  if (!tl || !tl->on) return;
  char span[NAME_MAX_BYTES];
  /* "layers.2.weight" -> "backward layers.2" */
  const char *dot = strrchr(name, '.');
  int len = dot ? (int)(dot - name) : (int)strlen(name);
  snprintf(span, sizeof span, "backward %.*s", len, name);
  int64_t t = now_ns(tl);
  add(tl, TIMELINE_TID_TRAIN, span, tl->mark_ns, t);
  tl->mark_ns = t;
}

void timeline_thread_name(timeline *tl, int tid, const char *name) {
  if (tl && tid >= 0 && tid < MAX_THREADS)
    snprintf(tl->thread_names[tid], NAME_MAX_BYTES, "%s", name);
}

/* Appends to a growing string; on failure keeps the flag and stops. */
typedef struct {
  char *s;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      b->oom = 1;
      return;
    }
    if (b->s && b->len + (size_t)k < b->cap) {
      b->len += (size_t)k;
      return;
    }
    size_t cap = b->cap ? 2 * b->cap : 4096;
    while (cap < b->len + (size_t)k + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p, b->cap = cap;
  }
}

/* A name as a JSON string's contents: names are ours (layer names, fixed
 * words), but a quote or backslash would still break the file. */
static void json_name(char *out, size_t cap, const char *in) {
  size_t j = 0;
  for (size_t i = 0; in[i] && j + 3 < cap; i++) {
    unsigned char ch = (unsigned char)in[i];
    if (ch == '"' || ch == '\\') out[j++] = '\\';
    out[j++] = ch < 0x20 ? '?' : (char)ch;
  }
  out[j] = '\0';
}

/* Nanoseconds as microseconds with 3 exact decimals. */
static void ns_us(sbuf *b, int64_t ns) {
  uint64_t a = ns < 0 ? (uint64_t)(-(ns + 1)) + 1 : (uint64_t)ns;
  sb_printf(b, "%s%" PRIu64 ".%03u", ns < 0 ? "-" : "", a / 1000, (unsigned)(a % 1000));
}

/* This rank's events as JSON objects, each followed by ",\n". */
static void serialise(const timeline *tl, sbuf *b) {
  char nm[2 * NAME_MAX_BYTES];
  sb_printf(b,
            "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d\"}},"
            "\n{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"sort_index\":"
            "%d}},\n",
            tl->rank, tl->rank, tl->rank, tl->rank);
  for (int t = 0; t < MAX_THREADS; t++) {
    if (!tl->thread_names[t][0]) continue;
    json_name(nm, sizeof nm, tl->thread_names[t]);
    sb_printf(b,
              "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":"
              "\"%s\"}},\n",
              tl->rank, t, nm);
  }
  for (size_t i = 0; i < tl->n; i++) {
    const tl_event *e = &tl->ev[i];
    json_name(nm, sizeof nm, e->name);
    sb_printf(b, "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":", nm,
              e->tid == TIMELINE_TID_TRAIN ? "train" : "comm");
    ns_us(b, e->b_ns);
    sb_printf(b, ",\"dur\":");
    ns_us(b, e->e_ns - e->b_ns);
    sb_printf(b, ",\"pid\":%d,\"tid\":%d,\"args\":{\"step\":%" PRId64 "}},\n", tl->rank, e->tid,
              e->step);
  }
}

/* Rank 0: the file, from every rank's objects (all, all_len bytes). */
static int write_file(const timeline *tl, const char *path, const char *all, size_t all_len,
                      int world, long dropped) {
  char tmp[MS_PATH_MAX + 64];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return ms_error_set(MS_EIO, "cannot write the trace %s", tmp);
  /* The last object's ",\n" is replaced by the closing bracket. */
  size_t body = all_len >= 2 ? all_len - 2 : 0;
  fprintf(f, "{\"traceEvents\":[\n");
  fwrite(all, 1, body, f);
  fprintf(f,
          "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"producer\":\"midscale\","
          "\"trace_steps\":[%" PRId64 ",%" PRId64 "],\"world\":%d,\"dropped_spans\":%ld}}\n",
          tl->from, tl->to, world, dropped);
  int bad = ferror(f);
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    remove(tmp);
    return ms_error_set(MS_EIO, "cannot write the trace %s", path);
  }
  return 0;
}

int timeline_write(timeline *tl, const ranks *rk, const char *path) {
  sbuf b = {0};
  serialise(tl, &b);
  int rc = b.oom ? ms_error_set(MS_ENOMEM, "out of memory writing the trace") : 0;
  if ((rc = ranks_agree(rk, rc))) {
    free(b.s);
    return rc;
  }
  double dropped = (double)tl->dropped;
  char *all = NULL;
  size_t all_len = 0;
  rc = ms_from_comm(comm_allreduce_sum_f64(rk->w, &dropped, 1), comm_errmsg(rk->w));
  if (rc == 0)
    rc = ms_from_comm(comm_gatherv_bytes(rk->w, b.s, b.len, 0, &all, &all_len, NULL),
                      comm_errmsg(rk->w));
  free(b.s);
  if (rc == 0 && rk->w->rank == 0)
    rc = write_file(tl, path, all, all_len, rk->w->size, (long)dropped);
  free(all);
  return ranks_agree(rk, rc);
}
