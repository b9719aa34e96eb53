/* dnn_util — the oneDNN plumbing shared by dnn.c (dense) and dnn_conv.c
 * (conv2d): the process's engine and stream, primitives with their memory
 * objects, and operands converted from the caller's f32 arrays. Internal to
 * the dnn module: nothing outside trainer/dnn*.c includes it (the build
 * gives only ms_trainer oneDNN's include directory).
 *
 * Not thread-safe: one thread (the trainer's compute thread) drives oneDNN.
 * Functions returning dnnl_status_t leave the message to the caller.
 */
#ifndef MS_DNN_UTIL_H
#define MS_DNN_UTIL_H

#include <oneapi/dnnl/dnnl.h>

/* Creates the CPU engine and stream once. @return 0 or MS_EINTERNAL. */
int dnn_start(void);
dnnl_engine_t dnn_engine(void);
dnnl_stream_t dnn_stream(void);

enum { DNN_MAX_ARGS = 4 };

/* A primitive and the memory objects of its arguments, whose data handles
 * are set before each execution. */
typedef struct {
  dnnl_primitive_t prim;
  int nargs;
  dnnl_exec_arg_t args[DNN_MAX_ARGS];
} dnn_op;

/* Creates the primitive of pd (which it destroys, also on failure) and one
 * memory object per argument arg[i], described by mds[i]. */
dnnl_status_t dnn_op_make(dnn_op *o, dnnl_primitive_desc_t pd, int nargs, const int *arg,
                          const dnnl_memory_desc_t *const *mds);

/* Runs o on the data handles h (in argument order) and waits. */
dnnl_status_t dnn_op_run(const dnn_op *o, void *const *h);

/* Releases o and zeroes it; a zeroed op is fine. */
void dnn_op_free(dnn_op *o);

/* A reorder from memory described by s to memory described by d: a layout
 * change, a data type conversion (f32 -> bf16 rounds to nearest even), or
 * both at once. */
dnnl_status_t dnn_reorder_make(dnn_op *o, const dnnl_memory_desc_t *s, const dnnl_memory_desc_t *d);

/* An operand made from the caller's f32 array: converted straight into the
 * layout and data type the primitive wants (bf16 weights into oneDNN's
 * packed layout, so that the primitive does not repack them on every call).
 * Emulated bf16: the array rounded to bf16, then widened back to f32 in the
 * caller's layout, for an f32 primitive. */
typedef struct {
  dnn_op cvt; /* caller's f32 -> the operand's layout and type */
  dnn_op wid; /* emulated: bf16 -> f32 (the caller's layout) */
  void *buf;  /* the operand (owned) */
  float *f32; /* emulated only: the widened operand (owned) */
} dnn_prep;

/* user: the caller's f32 layout; target: the operand's. */
dnnl_status_t dnn_prep_make(dnn_prep *p, const dnnl_memory_desc_t *user,
                            const dnnl_memory_desc_t *target, int emulated);

/* @return the operand made from src (owned by p), or NULL on a failure. */
void *dnn_prep_run(dnn_prep *p, const float *src);

void dnn_prep_free(dnn_prep *p);

#endif
