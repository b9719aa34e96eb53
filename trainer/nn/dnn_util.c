#include "dnn_util.h"

#include <stdlib.h>
#include <string.h>

#include "ms_error.h"

/* One engine and one stream for the process: oneDNN's CPU engine is a
 * process-wide resource, and every layer runs on the compute thread. */
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;

int dnn_start(void) {
  if (g_stream) return 0;
  dnnl_status_t st = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
  if (st == dnnl_success) st = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags);
  if (st != dnnl_success)
    return ms_error_set(MS_EINTERNAL, "oneDNN: cannot create the CPU engine (status %d)", st);
  return 0;
}

dnnl_engine_t dnn_engine(void) { return g_engine; }
dnnl_stream_t dnn_stream(void) { return g_stream; }

/* ---- primitives with their memory objects -------------------------------------- */

void dnn_op_free(dnn_op *o) {
  for (int i = 0; i < o->nargs; i++) dnnl_memory_destroy(o->args[i].memory);
  if (o->prim) dnnl_primitive_destroy(o->prim);
  memset(o, 0, sizeof *o);
}

dnnl_status_t dnn_op_make(dnn_op *o, dnnl_primitive_desc_t pd, int nargs, const int *arg,
                          const dnnl_memory_desc_t *const *mds) {
  memset(o, 0, sizeof *o);
  dnnl_status_t st = dnnl_primitive_create(&o->prim, pd);
  for (int i = 0; i < nargs && st == dnnl_success; i++) {
    o->args[i].arg = arg[i];
    st = dnnl_memory_create(&o->args[i].memory, mds[i], dnn_engine(), DNNL_MEMORY_NONE);
    if (st == dnnl_success) o->nargs = i + 1;
  }
  dnnl_primitive_desc_destroy(pd);
  if (st != dnnl_success) dnn_op_free(o);
  return st;
}

dnnl_status_t dnn_op_run(const dnn_op *o, void *const *h) {
  dnnl_status_t st = dnnl_success;
  for (int i = 0; i < o->nargs && st == dnnl_success; i++)
    st = dnnl_memory_set_data_handle(o->args[i].memory, h[i]);
  if (st == dnnl_success) st = dnnl_primitive_execute(o->prim, dnn_stream(), o->nargs, o->args);
  if (st == dnnl_success) st = dnnl_stream_wait(dnn_stream());
  return st;
}

dnnl_status_t dnn_reorder_make(dnn_op *o, const dnnl_memory_desc_t *s,
                               const dnnl_memory_desc_t *d) {
  dnnl_primitive_desc_t pd;
  dnnl_status_t st =
      dnnl_reorder_primitive_desc_create(&pd, s, dnn_engine(), d, dnn_engine(), NULL);
  if (st != dnnl_success) return st;
  const int arg[] = {DNNL_ARG_FROM, DNNL_ARG_TO};
  const dnnl_memory_desc_t *mds[] = {s, d};
  return dnn_op_make(o, pd, 2, arg, mds);
}

void dnn_prep_free(dnn_prep *p) {
  dnn_op_free(&p->cvt), dnn_op_free(&p->wid);
  free(p->buf), free(p->f32);
  memset(p, 0, sizeof *p);
}

dnnl_status_t dnn_prep_make(dnn_prep *p, const dnnl_memory_desc_t *user,
                            const dnnl_memory_desc_t *target, int emulated) {
  memset(p, 0, sizeof *p);
  p->buf = malloc(dnnl_memory_desc_get_size(target));
  if (emulated) p->f32 = malloc(dnnl_memory_desc_get_size(user));
  if (!p->buf || (emulated && !p->f32)) return dnnl_out_of_memory;
  dnnl_status_t st = dnn_reorder_make(&p->cvt, user, target);
  if (st == dnnl_success && emulated) st = dnn_reorder_make(&p->wid, target, user);
  return st;
}

void *dnn_prep_run(dnn_prep *p, const float *src) {
  void *h[] = {(void *)src, p->buf};
  if (dnn_op_run(&p->cvt, h) != dnnl_success) return NULL;
  if (!p->f32) return p->buf;
  void *hw[] = {p->buf, p->f32};
  return dnn_op_run(&p->wid, hw) == dnnl_success ? p->f32 : NULL;
}
