#include "sync_opts.h"

static hier_algorithm algorithm_of(ms_comm_algorithm a) {
  switch (a) {
    case MS_ALGO_RING: return HIER_RING;
    case MS_ALGO_HALVING_DOUBLING: return HIER_HALVING_DOUBLING;
    case MS_ALGO_MPI: return HIER_MPI;
    case MS_ALGO_AUTO: break;
  }
  return HIER_AUTO;
}

static wire_format wire_of(ms_wire w) {
  switch (w) {
    case MS_WIRE_FP16: return WIRE_FP16;
    case MS_WIRE_BF16: return WIRE_BF16;
    case MS_WIRE_NONE: break;
  }
  return WIRE_F32;
}

reducer_opts sync_opts_of(const ms_config *c) {
  reducer_opts o = {.first_bucket_bytes = (size_t)(c->comm.first_bucket_mb * 1048576.0),
                    .bucket_bytes = (size_t)(c->comm.bucket_mb * 1048576.0),
                    .overlap = c->comm.overlap,
                    .shared_memory = c->comm.shared_memory,
                    .algorithm = algorithm_of(c->comm.algorithm),
                    .wire = wire_of(c->comm.compress)};
  return o;
}
