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
 * one micro-batch's step each, plus a model's memory once more. A model
 * whose parameters, gradients and optimizer state would take more than
 * LAYER_PROBE_MAX_BYTES is not timed (out->valid 0): start-up then needs no
 * more memory than the run, and the prediction uses FLOPs at the peak.
 *
 * Threads: the calling thread; no MPI. Errors: int codes (ms_error.h).
 */
#ifndef MS_LAYER_PROBE_H
#define MS_LAYER_PROBE_H

#include <stdint.h>

#include "config.h"
#include "costmodel.h"

#define LAYER_PROBE_MAX_BYTES (256.0 * 1024 * 1024)

/* Times cfg's model for inputs of shape `in` (ndim, as model_create) at
 * `batch` rows into *out (out->valid 1 on success).
 * @return 0 (out->valid 0 for a model over LAYER_PROBE_MAX_BYTES), or the
 * error of model_plan / model_create / optim_create (MS_ECONFIG, MS_ENOMEM,
 * ...); *out is then zeroed (valid 0). */
int layer_probe_run(const ms_config *cfg, const int64_t *in, int ndim, int batch,
                    costmodel_layers *out);

/* Bytes/s of a large memcpy, read + write counted (the node's shared-memory
 * sum reads and writes at about this rate); 0 when out of memory. */
double layer_probe_memory_bandwidth(void);

#endif
