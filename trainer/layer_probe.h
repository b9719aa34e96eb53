/* layer_probe — this model's own kernels timed on this machine, for the
 * cost model's compute part (costmodel.h, costmodel_layers): a second,
 * private copy of the model and its optimizer runs a synthetic batch of the
 * per-rank micro-batch a few times (forward, loss, backward with the
 * gradient-ready hook timing each layer, the optimizer step over the
 * arena) and keeps the median of each part.
 *
 * It only feeds predictions and prints: the copy shares nothing with the
 * training model (own arenas, own optimizer state, synthetic inputs), so
 * what training computes does not depend on it. It does use the BLAS
 * threads as set (blas_set_threads) and oneDNN's primitive cache.
 *
 * Cost: a warm-up pass and 3 to 7 timed passes (more while under 0.25 s);
 * one micro-batch's step each, plus a model's memory once more.
 *
 * Threads: the calling thread; no MPI. Errors: int codes (ms_error.h).
 */
#ifndef MS_LAYER_PROBE_H
#define MS_LAYER_PROBE_H

#include <stdint.h>

#include "config.h"
#include "costmodel.h"

/* Times cfg's model for inputs of shape `in` (ndim, as model_create) at
 * `batch` rows into *out (out->valid 1 on success).
 * @return 0, or the error of model_create / optim_create (MS_ENOMEM, ...);
 * *out is then zeroed (valid 0). */
int layer_probe_run(const ms_config *cfg, const int64_t *in, int ndim, int batch,
                    costmodel_layers *out);

/* Bytes/s of a large memcpy, read + write counted (the node's shared-memory
 * sum reads and writes at about this rate); 0 when out of memory. */
double layer_probe_memory_bandwidth(void);

#endif
