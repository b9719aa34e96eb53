#include "costmodel.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync_opts.h"

/* "2.5gbit" -> bits/s; "20us" -> s. Returns -1 on anything else. */
static int parse_unit(const char *s, size_t len, const char *const *units, const double *scale,
                      int n_units, double *out) {
  char buf[48], *end = NULL;
  if (len == 0 || len >= sizeof buf) return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  double v = strtod(buf, &end);
  if (end == buf || !(v >= 0)) return -1;
  while (*end == ' ') end++;
  for (int i = 0; i < n_units; i++) {
    if (strlen(end) != strlen(units[i])) continue;
    int same = 1;
    for (size_t k = 0; end[k]; k++) same &= tolower((unsigned char)end[k]) == units[i][k];
    if (same) {
      *out = v * scale[i];
      return 0;
    }
  }
  return -1;
}

int costmodel_parse_link(const char *s, costmodel_link *l) {
  static const char *const rate_u[] = {"kbit", "mbit", "gbit"};
  static const double rate_s[] = {1e3, 1e6, 1e9};
  static const char *const lat_u[] = {"us", "ms", "s"};
  static const double lat_s[] = {1e-6, 1e-3, 1.0};
  if (!s) return -1;
  const char *comma = strchr(s, ',');
  double rate = 0, lat = 50e-6; /* a switched Ethernet hop, for the named rates */
  if (comma) {
    if (parse_unit(comma + 1, strlen(comma + 1), lat_u, lat_s, 3, &lat)) return -1;
  } else if (strcmp(s, "1gbit") && strcmp(s, "10gbit") && strcmp(s, "100gbit")) {
    return -1;
  }
  if (parse_unit(s, comma ? (size_t)(comma - s) : strlen(s), rate_u, rate_s, 3, &rate) ||
      rate <= 0)
    return -1;
  l->alpha = lat;
  l->beta = 8.0 / rate;
  return 0;
}

void costmodel_from_model(costmodel_in *in, const ms_model *m) {
  in->n_layers = m->n_layers;
  in->n_params = m->n_params;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    in->layer_flops[i] = model_layer_flops(m, i);
    int p = l->w >= 0 ? l->w : l->b;
    in->layer_lo[i] = p >= 0 ? m->p[p].off : (size_t)-1;
  }
}

static costmodel_path path_of(const costmodel_in *in) {
  const int P = in->world, N = in->nodes;
  if (P <= 1) return COSTMODEL_NONE;
  const int L = P / N;
  /* The one-node window holds fp32 sums only (reducer.h). */
  if (N == 1) return in->shared_memory && in->wire == WIRE_F32 ? COSTMODEL_NODE_SHM : COSTMODEL_FLAT;
  return in->shared_memory || L == 1 ? COSTMODEL_HIER : COSTMODEL_FLAT;
}

static hier_algorithm algorithm_of(const costmodel_in *in, size_t floats) {
  const int L = in->world / in->nodes;
  hier_algorithm a = hier_resolve(in->algorithm, in->nodes, sizeof(float) * floats / (size_t)L);
  /* MPI sums floats only: a 16-bit wire takes the ring (reducer.h). */
  return a == HIER_MPI && in->wire != WIRE_F32 ? HIER_RING : a;
}

static int log2i(int n) {
  int k = 0;
  while ((1 << (k + 1)) <= n) k++;
  return k;
}

double costmodel_sync_s(const costmodel_in *in, size_t floats, double *link_bytes) {
  const int P = in->world, N = in->nodes > 0 ? in->nodes : 1, L = P / N;
  const double w = in->wire == WIRE_F32 ? 4.0 : 2.0, n = (double)floats;
  const double mem = in->mem_bw > 0 ? 1.0 / in->mem_bw : 0.0;
  const double a = in->link.alpha, b = in->link.beta;
  double t = 0.0, bytes = 0.0;
  switch (path_of(in)) {
    case COSTMODEL_NONE: break;
    case COSTMODEL_NODE_SHM: t = 2.0 * n * 4.0 * mem; break;
    case COSTMODEL_HIER: {
      if (L > 1) t += 2.0 * n * 4.0 * mem;
      const double slice = n / L;
      if (algorithm_of(in, floats) == HIER_HALVING_DOUBLING) {
        int steps = log2i(N);
        for (int s = 1; s <= steps; s++) { /* halving, then doubling: same sizes */
          double msg = slice / (double)(1 << s) * w;
          t += 2.0 * (a + L * msg * b);
          bytes += 2.0 * L * msg;
        }
      } else { /* ring (and MPI's allreduce with N = 2: one exchange each way) */
        double msg = slice / N * w;
        t += 2.0 * (N - 1) * (a + L * msg * b);
        bytes = 2.0 * (N - 1) * L * msg;
      }
      break;
    }
    case COSTMODEL_FLAT: {
      /* 2 (P - 1) messages of n / P per rank; those for the P - L ranks of
       * other nodes cross the link, shared by the node's L ranks. */
      double msg = n / P * w;
      bytes = 2.0 * (P - L) * L * msg;
      t = 2.0 * (P - 1) * (N > 1 ? a : 0.0) + (N > 1 ? bytes * b : 2.0 * (P - 1) * msg * mem);
      break;
    }
  }
  if (link_bytes) *link_bytes = bytes;
  return t;
}

/* Compute into o and done_at (backward time from its start to the end of
 * each layer, last layer first): from the measured table, or from FLOPs. */
static void compute_part(const costmodel_in *in, costmodel_out *o, double *done_at) {
  double t = 0.0;
  if (in->layers.valid) {
    const costmodel_layers *c = &in->layers;
    const int K = in->accumulate > 1 ? in->accumulate : 1;
    for (int i = in->n_layers - 1; i >= 0; i--) {
      t += c->layer_backward_s[i];
      done_at[i] = t;
    }
    o->forward_s = K * (c->forward_s + c->loss_s) + (K - 1) * t;
    o->optim_s = c->optim_s / (in->optim_shards > 1 ? in->optim_shards : 1);
  } else {
    for (int i = in->n_layers - 1; i >= 0; i--) {
      double fwd = in->layer_flops[i] * in->batch / in->rate;
      o->forward_s += fwd;
      t += 2.0 * fwd;
      done_at[i] = t;
    }
  }
  o->backward_s = t;
  o->compute_s = o->forward_s + o->backward_s + o->optim_s;
}

int costmodel_predict(const costmodel_in *in, costmodel_out *o) {
  memset(o, 0, sizeof *o);
  if (in->world < 1 || in->nodes < 1 || in->world % in->nodes || in->nodes > in->world ||
      in->n_layers < 0 || in->n_layers > MS_MAX_LAYERS || !(in->layers.valid || in->rate > 0))
    return -1;
  o->path = path_of(in);
  o->algorithm = o->path == COSTMODEL_HIER ? algorithm_of(in, in->n_params) : HIER_AUTO;
  double done_at[MS_MAX_LAYERS];
  compute_part(in, o, done_at);
  if (o->path == COSTMODEL_NONE || in->n_params == 0) {
    o->step_s = o->compute_s;
    o->efficiency = 1.0;
    return 0;
  }
  /* The buckets, cut as the reducer cuts them: on the layers' first
   * parameters, from the end of the arena. */
  size_t starts[MS_MAX_LAYERS], bounds[COSTMODEL_MAX_BUCKETS + 1];
  int ns = 0;
  for (int i = 0; i < in->n_layers; i++)
    if (in->layer_lo[i] != (size_t)-1 && in->layer_lo[i] > 0) starts[ns++] = in->layer_lo[i];
  size_t first = in->first_bucket_bytes / sizeof(float), cap = in->bucket_bytes / sizeof(float);
  /* The hierarchical path overlaps only where it can, with its own cap on
   * the first bucket (hier.h). */
  int overlap = in->overlap;
  if (o->path == COSTMODEL_HIER) {
    overlap = overlap && hier_can_overlap(in->wire != WIRE_F32, in->nodes);
    first = hier_first_bucket(in->n_params, first);
  }
  if (!overlap) first = cap = in->n_params;
  o->overlap = overlap;
  int nb = wire_plan_buckets(in->n_params, overlap ? starts : NULL, overlap ? ns : 0,
                             first ? first : 1, cap ? cap : 1, bounds, COSTMODEL_MAX_BUCKETS);
  if (nb < 1) return -1;
  o->n_buckets = nb;
  double link_free = 0.0;
  for (int b = 0; b < nb; b++) {
    /* Ready when backward has produced its lowest float: the end of the
     * layer whose parameters begin there (no overlap: after backward). */
    double ready = o->backward_s;
    for (int i = 0; overlap && i < in->n_layers; i++)
      if (in->layer_lo[i] != (size_t)-1 && in->layer_lo[i] <= bounds[b + 1]) ready = done_at[i];
    double bytes = 0.0;
    o->bucket_ready_s[b] = ready;
    o->bucket_sync_s[b] = costmodel_sync_s(in, bounds[b] - bounds[b + 1], &bytes);
    o->sync_s += o->bucket_sync_s[b];
    o->link_bytes += bytes;
    link_free = (ready > link_free ? ready : link_free) + o->bucket_sync_s[b];
  }
  o->exposed_s = link_free > o->backward_s ? link_free - o->backward_s : 0.0;
  o->step_s = o->compute_s + o->exposed_s;
  o->efficiency = o->step_s > 0 ? o->compute_s / o->step_s : 1.0;
  return 0;
}

void costmodel_path_desc(const costmodel_out *o, int nodes, int world, char *buf, size_t n) {
  switch (o->path) {
    case COSTMODEL_NONE: snprintf(buf, n, "none (one rank)"); break;
    case COSTMODEL_NODE_SHM: snprintf(buf, n, "node shared memory (%d ranks)", world); break;
    case COSTMODEL_HIER:
      snprintf(buf, n, "hierarchical: %d rank%s per node, %s across %d nodes", world / nodes,
               world / nodes == 1 ? "" : "s", hier_algorithm_name(o->algorithm), nodes);
      break;
    case COSTMODEL_FLAT:
      snprintf(buf, n, "flat: %d ranks on %d node%s", world, nodes, nodes == 1 ? "" : "s");
      break;
  }
}

void costmodel_from_config(costmodel_in *in, const ms_config *c) {
  const reducer_opts o = sync_opts_of(c);
  in->shared_memory = o.shared_memory;
  in->overlap = o.overlap;
  in->algorithm = o.algorithm;
  in->wire = o.wire;
  in->first_bucket_bytes = o.first_bucket_bytes;
  in->bucket_bytes = o.bucket_bytes;
}

void costmodel_print(FILE *out, const costmodel_in *in, const costmodel_out *o,
                     const char *rate_what) {
  char path[160];
  costmodel_path_desc(o, in->nodes, in->world, path, sizeof path);
  double flops = 0.0;
  for (int i = 0; i < in->n_layers; i++) flops += in->layer_flops[i];
  if (in->layers.valid)
    fprintf(out,
            "  compute: %.3f ms/step = forward + loss %.3f + backward %.3f + optimizer %.3f "
            "(%s, %d rows per micro-batch x %d)\n",
            1e3 * o->compute_s, 1e3 * o->forward_s, 1e3 * o->backward_s, 1e3 * o->optim_s,
            rate_what, in->layers.batch, in->accumulate > 1 ? in->accumulate : 1);
  else
    fprintf(out,
            "  compute: %.3f ms/step (forward %.3f + backward %.3f: %.3g MFLOP/sample forward x "
            "%g samples per rank, backward 2x, at %.3g GFLOP/s = %s)\n",
            1e3 * o->compute_s, 1e3 * o->forward_s, 1e3 * o->backward_s, flops / 1e6, in->batch,
            in->rate / 1e9, rate_what);
  if (o->path == COSTMODEL_NONE) {
    fprintf(out, "  sync: none (one rank)\n  step: %.3f ms predicted\n", 1e3 * o->step_s);
    return;
  }
  fprintf(out,
          "  sync: %s, %s wire, %d bucket%s, %.3f ms per step back to back, %.3g MB per node "
          "on the inter-node link\n",
          path, in->wire == WIRE_F32 ? "fp32" : in->wire == WIRE_FP16 ? "fp16" : "bf16",
          o->n_buckets, o->n_buckets == 1 ? "" : "s", 1e3 * o->sync_s, o->link_bytes / 1e6);
  fprintf(out, "  exposed comm: %.3f ms/step (%s)\n", 1e3 * o->exposed_s,
          o->overlap    ? "ideal overlap schedule: each bucket sent when backward has produced "
                          "it, one at a time on the link"
          : in->overlap ? "overlap on, but this path reduces after backward (hier.h)"
                        : "overlap off: one reduction after backward");
  fprintf(out,
          "  step: %.3f ms predicted, %.0f samples/s over %d ranks; weak-scaling efficiency "
          "%.0f%% vs one rank alone\n",
          1e3 * o->step_s, o->step_s > 0 ? in->batch * in->world / o->step_s : 0.0, in->world,
          100 * o->efficiency);
  costmodel_in other = *in;
  costmodel_out oo;
  other.overlap = !in->overlap;
  if (costmodel_predict(&other, &oo) == 0)
    fprintf(out, "  with comm.overlap %s: exposed comm %.3f ms, step %.3f ms, efficiency %.0f%%\n",
            other.overlap ? "true (ideal schedule)" : "false", 1e3 * oo.exposed_s, 1e3 * oo.step_s,
            100 * oo.efficiency);
}
