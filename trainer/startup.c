#include "startup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "identity.h"
#include "ms_error.h"
#include "sampler.h"
#include "sync_opts.h"
#include "version.h"

#define agree(rk, rc) ranks_agree_at((rk), (rc), __func__)

static int mkdir_p(const char *path) {
  char buf[MS_PATH_MAX];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return ms_error_set(MS_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
      if (c == '\0') break;
      *p = c;
    }
  }
  return 0;
}

/* Rank 0 reads the file and broadcasts its bytes. Every other rank parses
 * its own copy of the file it was given where it can read one (an MPMD
 * launch may give ranks different files: verify_identity then names the
 * keys that differ), else rank 0's bytes (a file only rank 0's node has).
 * Each rank applies its own overrides (check_load_config, the pipeline
 * `midscale check` uses). */
static int load_config(train_setup *s, const ranks *rk, const train_args *a) {
  int rc = 0;
  if (rk->w->rank == 0) rc = config_read_file(a->config_path, &s->cfg_text, &s->cfg_len);
  if ((rc = agree(rk, rc))) return rc;
  rc = ms_from_comm(comm_bcast_bytes(rk->w, &s->cfg_text, &s->cfg_len, 0), comm_errmsg(rk->w));
  if (rc) return rc;
  char *own = NULL;
  size_t own_len = 0;
  if (rk->w->rank != 0 && config_read_file(a->config_path, &own, &own_len) == 0) {
    free(s->cfg_text);
    s->cfg_text = own, s->cfg_len = own_len;
  }
  ms_error_clear();
  rc = check_load_config(&s->cfg, s->cfg_text, s->cfg_len, a->config_path, a->overrides,
                         a->n_overrides, rk->w->size);
  return agree(rk, rc);
}

/* Rank 0: the run directory, the resolved config and the metrics sink. */
static int make_run_dir(train_setup *s) {
  const ms_config *c = &s->cfg;
  char path[MS_PATH_MAX + 64];
  int rc = mkdir_p(c->run.dir);
  if (rc == 0) rc = check_ckpt_dir(s->ckpt_dir);
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/config.resolved.yaml", c->run.dir);
    char *text = config_emit(c);
    FILE *f = text ? fopen(path, "w") : NULL;
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
      rc = ms_error_set(MS_EIO, "cannot write '%s': %s", path, strerror(errno));
    free(text);
  }
  if (rc == 0) {
    snprintf(path, sizeof path, "%s/metrics.jsonl", c->run.dir);
    rc = metrics_open(&s->metrics, path, stdout, c->log.progress);
  }
  return rc;
}

/* A streamed training set whose chunk cache holds it whole is shared by
 * the ranks of each node (comm.shared_memory): each chunk is then read and
 * decoded once per node instead of once per rank, and the first batch,
 * for which every rank would decode nearly the whole file, no longer
 * waits on every rank's decoding (scripts/bench/results/loader.md). Not
 * the test set: evaluation gives each rank its own slice, so ranks seldom
 * need the same chunk. Collective, after verify_identity (ranks with
 * different configs must reach its message, not a mismatched collective);
 * every rank decides the same. */
static int share_chunk_cache(train_setup *s, const ranks *rk) {
  comm_world *w = rk->w;
  if (w->size < 2 || !s->cfg.comm.shared_memory) return 0;
  double most = w->local_size; /* the most ranks on one node */
  int rc = comm_allreduce_max_f64(w, &most, 1);
  uint64_t bytes = data_shared_cache_bytes(s->train);
  int same = rc == 0 && most > 1 ? comm_all_equal_u64(w, bytes) : 0;
  if (same < 0) rc = same;
  void *base = NULL;
  if (rc == 0 && same && bytes > 0)
    rc = comm_node_mem_alloc(w, (size_t)bytes, data_shared_cache_zeroed(s->train),
                             &s->shared_cache, &base);
  if (rc == 0 && base) data_share_cache(s->train, base);
  return ms_from_comm(rc, comm_errmsg(w));
}

/* Opens the datasets and checks what needs no model: the test set against
 * the training set, the normalisation, one global batch of samples, and
 * (data.check_finite) the values, each rank a 1/world share of them. */
static int open_data(train_setup *s, const ranks *rk) {
  const ms_config *c = &s->cfg;
  char err[MS_MSG_MAX] = "";
  s->norm = check_data_norm(c);
  data_cache cache = c->data.cache == MS_CACHE_MEMORY   ? DATA_CACHE_MEMORY
                     : c->data.cache == MS_CACHE_STREAM ? DATA_CACHE_STREAM
                                                        : DATA_CACHE_AUTO;
  const size_t budget = (size_t)c->data.memory_mb << 20; /* per set, per rank */
  data_allow_links(c->data.allow_links);
  int rc = check_open_data(c, 0, budget, cache, &s->train);
  if (rc == 0 && c->data.test_x[0]) rc = check_open_data(c, 1, budget, cache, &s->test);
  if (rc == 0) rc = check_data_sets(c, s->train, s->test, &s->norm);
  for (int i = 0; rc == 0 && c->data.check_finite && i < 2; i++) {
    data_set *ds = i ? s->test : s->train;
    uint64_t begin, count;
    if (!ds) continue;
    sampler_eval_range(data_count(ds), rk->w->size, rk->w->rank, &begin, &count);
    rc = ms_from_data(data_check_finite(ds, begin, count, &s->norm, err, sizeof err), err);
  }
  return agree(rk, rc);
}

/* run.threads, or the CPUs this rank may run on (its affinity mask, which
 * Slurm, cgroups and mpirun --bind-to set) shared among the ranks of its
 * node that have the same mask: never the machine's whole core count,
 * which oversubscribes a rank bound to fewer cores. Collective (every rank
 * calls it, whatever its run.threads, so the ranks' collectives match). */
static int blas_threads(train_setup *s, const ranks *rk, int configured) {
  int cpus = comm_cpus_per_rank(rk->w);
  if (cpus < 0) return ms_from_comm(cpus, comm_errmsg(rk->w));
  s->cpus_per_rank = cpus;
  s->blas_threads = configured > 0 ? configured : cpus;
  return 0;
}

/* config_diff of every key between two resolved configs as config_emit
 * wrote them (rank 0's and another rank's): "key A → B" for each key in
 * out (cap bytes). @return the number of keys, or MS_ENOMEM / MS_ECONFIG
 * when a text does not read back. */
static int diff_resolved(const char *a, const char *b, char *out, size_t cap) {
  ms_config *c = malloc(2 * sizeof *c);
  if (!c) return ms_error_set(MS_ENOMEM, "out of memory comparing the ranks' configs");
  config_defaults(&c[0]);
  config_defaults(&c[1]);
  int rc = config_parse(&c[0], a, strlen(a), "(rank 0's resolved config)");
  if (rc == 0) rc = config_parse(&c[1], b, strlen(b), "(another rank's resolved config)");
  if (rc == 0) rc = config_diff(&c[0], &c[1], CONFIG_DIFF_ALL, out, cap);
  free(c);
  return rc;
}

/* The config differs between rank 0 and rank k: both texts to every rank
 * (this path only), so each can name the keys. Collective. */
static int config_mismatch(const ranks *rk, char *text, int k) {
  char *t0 = rk->w->rank == 0 ? text : NULL, *tk = rk->w->rank == k ? text : NULL;
  size_t l0 = strlen(text), lk = l0;
  int rc = ms_from_comm(comm_bcast_bytes(rk->w, &t0, &l0, 0), comm_errmsg(rk->w));
  if (rc == 0) rc = ms_from_comm(comm_bcast_bytes(rk->w, &tk, &lk, k), comm_errmsg(rk->w));
  char diff[MS_MSG_MAX / 2]; /* the rest of the message names the ranks */
  int n = rc ? rc : diff_resolved(t0, tk, diff, sizeof diff);
  if (n >= 0)
    rc = ms_error_set(MS_ECONFIG,
                      "ranks were given different configs: rank %d differs from rank 0 in %d "
                      "key%s (rank 0's value → rank %d's): %s",
                      k, n, n == 1 ? "" : "s", k, diff);
  else
    rc = n;
  if (t0 != text) free(t0);
  if (tk != text) free(tk);
  return rc;
}

/* One collective at start-up: every rank's program, config, layout and
 * initial parameters (identity.h). The first rank that differs from rank 0
 * is named with the first key that differs: the program (version or
 * binary), then the config (with the keys and both values), then the
 * layout: each an exit-2 error on every rank. Initial parameters that
 * differ when all of those agree come from a different libm or CPU (the
 * init draws normals through log/cos); rank 0's are broadcast, with a
 * note naming the rank. Collective. */
static int verify_identity(train_setup *s, const ranks *rk) {
  const int P = rk->w->size;
  ms_identity me, *all = calloc((size_t)P, sizeof *all);
  memset(&me, 0, sizeof me);
  snprintf(me.version, sizeof me.version, "%s", MS_VERSION_STRING);
  me.binary = identity_binary_hash();
  char *text = config_emit(&s->cfg);
  if (text) me.config = identity_hash(text, strlen(text), IDENTITY_HASH_INIT);
  me.layout = model_layout_hash(s->model);
  me.params = model_params_hash(s->model);
  int rc = !all || !text ? ms_error_set(MS_ENOMEM, "out of memory checking the ranks agree") : 0;
  if ((rc = agree(rk, rc))) goto done;
  if ((rc = ms_from_comm(comm_allgather_bytes(rk->w, &me, sizeof me, all), comm_errmsg(rk->w))))
    goto done;
  const ms_identity *z = &all[0];
  int k, what = 0; /* 1 program, 2 config, 3 layout, 4 params */
  for (int key = 1; key <= 4 && !what; key++)
    for (k = 1; k < P && !what; k++) {
      const ms_identity *x = &all[k];
      if (key == 1 && (strcmp(x->version, z->version) ||
                       (x->binary && z->binary && x->binary != z->binary)))
        what = key;
      else if ((key == 2 && x->config != z->config) || (key == 3 && x->layout != z->layout) ||
               (key == 4 && x->params != z->params))
        what = key;
    }
  k--; /* the loop stepped past the rank that differs */
  if (what == 1) {
    rc = ms_error_set(MS_EUSAGE,
                      "ranks run different programs: rank %d runs midscale %s (binary checksum "
                      "%016llx), rank 0 midscale %s (%016llx); launch one build on every rank",
                      k, all[k].version, (unsigned long long)all[k].binary, z->version,
                      (unsigned long long)z->binary);
  } else if (what == 2) {
    rc = config_mismatch(rk, text, k);
  } else if (what == 3) {
    rc = ms_error_set(MS_ECONFIG,
                      "rank %d built another parameter layout than rank 0 from the same config: "
                      "its data ('%s' as that rank sees it) has other sample shapes",
                      k, s->cfg.data.path);
  } else if (what == 4) {
    metrics_say(s->metrics,
                "note: rank %d's initial parameters differ from rank 0's (same program and "
                "config: another libm or CPU); using rank 0's",
                k);
    rc = ms_from_comm(comm_bcast_f32(rk->w, s->model->params, s->model->n_params, 0),
                      comm_errmsg(rk->w));
  }
done:
  free(text);
  free(all);
  return rc;
}

/* The model (sized for the larger of a micro-batch and an evaluation
 * chunk), the optimizer with its weight-decay mask, the labels checked
 * against the outputs, the initial parameters verified across ranks. */
static int build_model(train_setup *s, const ranks *rk) {
  const ms_config *c = &s->cfg;
  s->global_batch = c->train.batch_size;
  s->local_batch = s->global_batch / rk->w->size;
  s->accumulate = c->train.accumulate > 1 ? c->train.accumulate : 1;
  s->micro_batch = s->local_batch / s->accumulate;
  s->eval_chunk = c->train.eval_batch_size / rk->w->size;
  if (s->eval_chunk < 1) s->eval_chunk = 1;
  int64_t max_batch = s->micro_batch > s->eval_chunk ? s->micro_batch : s->eval_chunk;
  int64_t shape[MS_MAX_DIMS];
  int nd = check_input_shape(c, s->train, shape);
  int rc = model_create(&s->model, c, shape, nd, (int)max_batch);
  if (rc == 0) rc = optim_create(&s->opt, c, s->model->n_params);
  if (rc == 0 && !c->optim.decay_all) {
    uint8_t *mask = malloc(s->model->n_params ? s->model->n_params : 1);
    if (!mask) rc = ms_error_set(MS_ENOMEM, "out of memory for the weight-decay mask");
    if (mask) model_decay_mask(s->model, mask);
    if (rc == 0) rc = optim_set_decay_mask(s->opt, mask);
    free(mask);
  }
  if ((rc = agree(rk, rc))) return rc;
  rc = check_model_labels(c, s->model, s->train);
  if (rc == 0 && s->test) rc = check_model_labels(c, s->model, s->test);
  if ((rc = agree(rk, rc))) return rc;
  model_init(s->model, c->run.seed);
  return verify_identity(s, rk);
}

/* The gradient sync: its buckets follow the layers (each layer's weight and
 * bias are one unit, so a bucket ends where a layer begins). Collective. */
static int create_reducer(train_setup *s, const ranks *rk) {
  const ms_config *c = &s->cfg;
  const ms_model *m = s->model;
  if (!c->comm.sync) return 0;
  size_t starts[MS_MAX_LAYERS];
  int ns = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    if (l->w >= 0 && m->p[l->w].off > 0) starts[ns++] = m->p[l->w].off;
  }
  reducer_opts o = sync_opts_of(c);
  int rc = reducer_create(&s->red, rk->w, m->grads, m->n_params, starts, ns, &o);
  rc = ms_from_comm(rc, comm_errmsg(rk->w));
  /* On the shared-memory path backward computes straight into the window. */
  if (rc == 0) model_use_grads(s->model, reducer_arena(s->red));
  return agree(rk, rc);
}

/* Floats between the arenas of the node-shared block: whole 64-byte lines,
 * so that the ranges of two ranks (on 64-byte lines, reducer_shard) never
 * share a line in any arena. */
static size_t arena_stride(size_t n) { return (n + 15) & ~(size_t)15; }

/* comm.shared_params: the parameters and the optimizer state move into one
 * node-shared block (one copy per node); each rank copies in its own range
 * of the parameters (identical on every rank: verify_identity) and zeroes
 * its range of the state (optim_create's start), so that the pages of a
 * range are first touched, and on a NUMA node placed, by the rank that
 * updates them. Only where the reducer sums in node shared memory (one
 * node, or the hierarchical path with more than one rank a node, whose
 * slices each rank also reduces across nodes before its update): the
 * sharded update is built on its ranges. With one rank per node there is
 * nothing to share (a copy per node is a copy per rank). Every rank
 * decides the same; params_desc says what was chosen and why. Collective. */
static int share_params(train_setup *s, const ranks *rk) {
  const ms_config *c = &s->cfg;
  comm_world *w = rk->w;
  const int hier = s->red && reducer_hierarchical(s->red);
  size_t lo = 0, hi = 0;
  const int L = s->red ? reducer_shard(s->red, 0, &lo, &hi, NULL) : 0;
  const char *why = !c->comm.shared_params ? "comm.shared_params false"
                    : w->size < 2          ? "one rank"
                    : !s->red              ? "comm.sync false: every rank updates its own model"
                    : hier && L == 1
                        ? "one rank per node: a node holds one copy either way, and its rank "
                          "updates all of it"
                    : !c->comm.shared_memory ? "comm.shared_memory false"
                    : hier && L != w->local_size
                        ? "the reducer's nodes are not the machine's (emulated)"
                    : !hier && !reducer_shared(s->red)
                        ? "the gradients are not summed in node shared memory (16-bit wire, or "
                          "uneven nodes)"
                        : NULL;
  float *state[2];
  int n_state = optim_state(s->opt, state, NULL, 2);
  size_t stride = arena_stride(s->model->n_params);
  /* bf16 layers: their bf16 weights once per node too, after the state
   * (model_use_bf16; each rank rounds its range after its update). */
  const int w16 = model_bf16_wanted(s->model);
  size_t bytes = sizeof(float) * stride * (size_t)(1 + n_state) +
                 (w16 ? sizeof(uint16_t) * stride : 0);
  void *base = NULL;
  int rc = 0;
  if (!why) rc = comm_node_mem_alloc(w, bytes, 0, &s->shared_params, &base);
  if (rc == 0 && !why && !base) why = "a node could not allocate the shared window (/dev/shm)";
  /* The same answer on every rank: the layout decided it. */
  if (rc == 0 && !why && hier && reducer_set_sharded(s->red) != 0) {
    why = "the hierarchical path has no node-shared segments";
    comm_node_mem_free(s->shared_params);
    s->shared_params = NULL;
  }
  if (rc || why) {
    snprintf(s->params_desc, sizeof s->params_desc, "off (%s)", why ? why : "failed");
    return agree(rk, ms_from_comm(rc, comm_errmsg(w)));
  }
  float *p = base;
  reducer_shard(s->red, reducer_shard_self(s->red), &lo, &hi, NULL);
  memcpy(p + lo, s->model->params + lo, sizeof(float) * (hi - lo));
  model_use_params(s->model, p, 0);
  for (int a = 0; a < n_state; a++) {
    state[a] = p + stride * (size_t)(a + 1);
    memset(state[a] + lo, 0, sizeof(float) * (hi - lo));
  }
  optim_use_state(s->opt, state, 0);
  if (w16) {
    model_use_bf16(s->model, (uint16_t *)(p + stride * (size_t)(1 + n_state)));
    rc = model_bf16_update(s->model, lo, hi);
  }
  int brc = ms_from_comm(comm_node_mem_barrier(s->shared_params), comm_errmsg(w));
  if (!rc) rc = brc;
  const char *what = w16 ? "the parameters, the optimizer state and a bf16 copy of the parameters"
                         : "the parameters and the optimizer state";
  if (hier)
    snprintf(s->params_desc, sizeof s->params_desc,
             "shared: %s once per node (%.3g MB), each of a node's %d ranks updates its 1/%d "
             "of them after its slice's sum across nodes",
             what, (double)bytes / 1e6, L, L);
  else
    snprintf(s->params_desc, sizeof s->params_desc,
             "shared: %s once per node (%.3g MB), each of the %d ranks updates its 1/%d of "
             "them",
             what, (double)bytes / 1e6, w->size, w->size);
  return agree(rk, rc);
}

/* Across nodes, a short alpha-beta probe of the link for the cost model
 * (report.c prints its prediction next to the measured step); it never
 * changes the sync. Collective. */
static int probe_link(train_setup *s, const ranks *rk) {
  s->link.nodes = 1;
  if (!s->cfg.comm.sync || rk->w->size < 2) return 0;
  ranks_enter(rk, "link probe", __func__);
  int rc = comm_probe_link(rk->w, &s->link);
  ranks_leave(rk);
  return agree(rk, ms_from_comm(rc, comm_errmsg(rk->w)));
}

/* 1 when this rank may run on more than one CPU (its share of its affinity
 * mask, as blas_threads counts it), so a loader thread has a core. */
static int rank_cores_spare(const train_setup *s) { return s->cpus_per_rank > 1; }

/* The banner's loader line(s) for the loader start_loader made. */
static void describe_loader(train_setup *s, const loader_opts *o) {
  const ms_config *c = &s->cfg;
  char order[96] = "";
  if (o->order.shuffle == SAMPLER_BLOCK)
    snprintf(order, sizeof order, " (blocks of %llu samples, %llu per window)",
             (unsigned long long)loader_block_size(s->loader),
             (unsigned long long)o->order.window);
  char ahead[160] = "in memory: each batch assembled in the step";
  if (o->prefetch > 0)
    snprintf(ahead, sizeof ahead, "%s: %d batch%s read ahead",
             data_in_memory(s->train) ? "in memory" : "streamed", o->prefetch,
             o->prefetch == 1 ? "" : "es");
  else if (!data_in_memory(s->train))
    snprintf(ahead, sizeof ahead, "streamed: read in the step");
  else if (c->data.prefetch > 0)
    snprintf(ahead, sizeof ahead,
             "in memory: each batch assembled in the step (data.prefetch %d not used: no core "
             "to spare for a loader thread)",
             c->data.prefetch);
  int n =
      snprintf(s->loader_desc, sizeof s->loader_desc, "loader: shuffle %s%s, %s%s (data.cache %s)",
               config_enum_name("data.shuffle", (int)c->data.shuffle), order, ahead,
               s->shared_cache ? ", chunk cache shared by the node's ranks" : "",
               config_enum_name("data.cache", (int)c->data.cache));
  /* A global shuffle of a chunked set over the budget (so streamed, through
   * a chunk cache of the budget's size) draws each sample of a batch from a
   * different chunk, and HDF5 reads (and decompresses) a whole chunk per
   * sample, where block shuffle reads each chunk once per epoch
   * (loader.md). */
  uint64_t chunk = data_chunk_samples(s->train);
  if (n > 0 && (size_t)n < sizeof s->loader_desc && !data_fits_budget(s->train) &&
      o->order.shuffle == SAMPLER_GLOBAL && chunk > 1)
    snprintf(s->loader_desc + n, sizeof s->loader_desc - (size_t)n,
             "\nloader: warning: a global shuffle of '%s' (chunks of %llu samples, larger "
             "than the memory budget) reads a whole HDF5 chunk for each sample; "
             "data.shuffle: block reads each chunk once per epoch",
             data_x_name(s->train), (unsigned long long)chunk);
}

/* The loader over the training set: from here on only it reads s->train.
 * It stops at the run's last step (or --stop-at). A streamed set is read
 * ahead by data.prefetch batches (a thread hides reads and decompression).
 * A set held in memory is read ahead too when the node has more cores than
 * ranks (the BLAS helper threads leave gaps the loader thread fills); with
 * a rank on every core its batch, a copy and a conversion, is cheaper on
 * the training thread than a hand-over per step, and with several ranks
 * per core the thread's wake-ups also starve other processes
 * (scripts/bench/results/loader.md). The banner says when data.prefetch
 * is not used for this reason. */
static int start_loader(train_setup *s, const ranks *rk, const train_args *a) {
  const ms_config *c = &s->cfg;
  char err[MS_MSG_MAX] = "";
  loader_opts o = {
      .ds = s->train,
      .norm = s->norm,
      .order = {.shuffle = c->data.shuffle == MS_SHUFFLE_BLOCK  ? SAMPLER_BLOCK
                           : c->data.shuffle == MS_SHUFFLE_NONE ? SAMPLER_NONE
                                                                : SAMPLER_GLOBAL,
                .block_size = (uint64_t)c->data.block_size,
                .window = (uint64_t)c->data.shuffle_window},
      .seed = c->run.seed,
      .global_batch = (uint64_t)s->global_batch,
      .world = rk->w->size,
      .rank = rk->w->rank,
      .prefetch = data_in_memory(s->train) && !rank_cores_spare(s) ? 0 : c->data.prefetch,
      .class_labels = check_is_classifier(c),
      .end_step = (uint64_t)s->len.total_steps};
  if (a->stop_at > 0 && a->stop_at < s->len.total_steps) o.end_step = (uint64_t)a->stop_at;
  int rc = ms_from_data(loader_create(&s->loader, &o, err, sizeof err), err);
  if ((rc = agree(rk, rc))) return rc;
  describe_loader(s, &o);
  return 0;
}

int startup_open(train_setup *s, const ranks *rk, const train_args *a) {
  int rc = load_config(s, rk, a);
  if (rc) return rc;
  const ms_config *c = &s->cfg;
  if ((rc = agree(rk, blas_threads(s, rk, c->run.threads)))) return rc;
  blas_set_threads(s->blas_threads);
  check_ckpt_dir_of(c, s->ckpt_dir, sizeof s->ckpt_dir);
  if ((rc = agree(rk, rk->w->rank == 0 ? make_run_dir(s) : 0))) return rc;
  if ((rc = open_data(s, rk))) return rc;
  if ((rc = agree(rk, check_model_input(c, s->train)))) return rc;
  if ((rc = build_model(s, rk))) return rc;
  if ((rc = create_reducer(s, rk))) return rc;
  if ((rc = share_params(s, rk))) return rc;
  if ((rc = probe_link(s, rk))) return rc;
  if ((rc = share_chunk_cache(s, rk))) return rc;
  if ((rc = agree(rk, check_run_length(c, data_count(s->train), &s->len)))) return rc;
  return start_loader(s, rk, a);
}

void startup_close(train_setup *s) {
  loader_free(s->loader); /* joins the thread before its data set closes */
  metrics_close(s->metrics);
  optim_free(s->opt);
  reducer_free(s->red);
  model_free(s->model);
  data_close(s->train);
  data_close(s->test);
  comm_node_mem_free(s->shared_cache);
  comm_node_mem_free(s->shared_params); /* after the model and optimizer that borrowed it */
  free(s->cfg_text);
}
