#include "train.h"

#include <errno.h>
#include <math.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blas.h"
#include "check.h"
#include "ckpt.h"
#include "config.h"
#include "dataset.h"
#include "identity.h"
#include "kernels.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "ms_error.h"
#include "optim.h"
#include "reducer.h"
#include "sampler.h"
#include "timing.h"
#include "saver.h"
#include "trace.h"
#include "version.h"
#include "watchdog.h"

#define ERRLEN 1024

/* Checkpoint tensors: every parameter tensor, and its view in each of the
 * optimizer's state arenas (at most two: Adam's moments). */
#define MAX_TENSORS (2 * MS_MAX_LAYERS * 3)

typedef enum { LOSS_XENT = 0, LOSS_BCE, LOSS_MSE, LOSS_MAE } loss_kind;

typedef struct {
  comm_world *w;
  ms_config cfg;
  char *cfg_text;
  size_t cfg_len;
  char ckpt_dir[MS_PATH_MAX + 32];
  data_set *train, *test;
  /* The training set's chunk cache in node memory, or NULL. */
  comm_node_mem *shared_cache;
  data_norm norm; /* data.scale/mean/std, views into cfg; set by open_data */
  ms_model *model;
  ms_optim *opt;
  ms_metrics *metrics; /* rank 0 only */
  loss_kind loss;
  int classifier;               /* the loss takes class labels (y), else float targets (t) */
  ckpt_tensor tensors[MAX_TENSORS];
  char tensor_names[MAX_TENSORS][80];
  int n_tensors;
  uint64_t layout_hash;
  int64_t global_batch, local_batch, eval_chunk;
  int64_t steps_per_epoch, total_steps;
  int64_t step, epoch, step_in_epoch; /* the cursor: steps done */
  int64_t last_ckpt_step;
  double t_last_ckpt;
  ms_saver *saver;              /* this rank's share of checkpoint writing */
  int save_background;          /* together: compress in the background */
  int saver_rc;                 /* a save failed outside a save ... */
  char saver_msg[ERRLEN];       /* ... with this message */
  double save_t0, save_stall_s; /* the save in flight: start, stall so far */
  double save_compress_s, save_gather_s;
  int64_t save_step;            /* the save in flight */
  int save_parts;               /* ranks of one node write their own frames */
  int parts_in_flight;          /* ... and are writing them */
  uint64_t parts_total;         /* the file's length */
  char last_ckpt_path[1100];    /* rank 0: the newest checkpoint written */
  const volatile sig_atomic_t *stop_signal; /* set by main's signal handler */
  int stop_signo;               /* agreed: the signal that stops the run */
  int time_ckpt_due;            /* agreed: checkpoint.every_minutes elapsed */
  data_loader *loader;          /* this rank's training batches (data.prefetch ahead) */
  uint64_t *idx;
  float *x, *dlogits, *t;
  int32_t *y;
  double last_eval_acc, last_eval_loss;
  int64_t last_eval_step;
  /* seconds spent per part of the step, on this rank */
  double t_data, t_compute, t_comm, t_ckpt, t_eval;
  int accumulate;               /* train.accumulate: micro-batches per step */
  int64_t micro_batch;          /* local_batch / accumulate */
  float *acc;                   /* (n_params) gradients of the earlier micro-batches, K > 1 */
  reducer *red;                 /* the gradient sync; NULL with comm.sync false */
  double t_hook;                /* seconds inside the backward hook's comm calls */
  double grad_norm;             /* the last step's, before clipping (optim.clip_norm > 0) */
  double peak;                  /* rank 0: single-core sgemm FLOP/s, measured at start */
  double mean_t[T_PARTS];       /* the parts' seconds so far, mean over ranks (as of the
                                 * last step agreement) */
  double log_t[T_PARTS];        /* mean_t at the last log line */
  watchdog *wd;                 /* during the step loop; NULL before and after */
  int stall_rank;               /* MIDSCALE_DEBUG_STALL=RANK:STEP:SECONDS, rank -1 = off */
  int64_t stall_step;
  double stall_s;
} run;

/* A wait on the other ranks that the hang watchdog times (no-op outside
 * the step loop). */
static void wd_enter(run *r, const char *op, const char *where) {
  watchdog_enter(r->wd, op, where, r->step);
}

/* The agreement every branch goes through: returns the code of the lowest
 * failing rank (0 if none) and leaves its message in ms_error_msg() on
 * every rank. */
static int agree_at(run *r, int rc, const char *where) {
  char msg[ERRLEN];
  if (rc < 0) {
    if (r->w->size > 1 && r->w->rank != 0)
      snprintf(msg, sizeof msg, "rank %d: %s", r->w->rank, ms_error_msg());
    else
      snprintf(msg, sizeof msg, "%s", ms_error_msg());
  } else {
    msg[0] = '\0';
  }
  r->w->err[0] = '\0';
  wd_enter(r, "agreement", where);
  int code = comm_agree_msg(r->w, rc, msg, sizeof msg);
  watchdog_leave(r->wd);
  if (code == 0) return 0;
  if (code == COMM_EMPI && r->w->err[0]) return ms_error_set(MS_ECOMM, "%s", r->w->err);
  return ms_error_set(code, "%s", msg);
}
/* Callers name themselves to the watchdog. */
#define agree(r, rc) agree_at((r), (rc), __func__)

static int comm_rc(run *r, int rc) {
  return rc < 0 ? ms_error_set(MS_ECOMM, "%s", comm_errmsg(r->w)) : 0;
}

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
 * Each rank applies its own overrides. */
static int load_config(run *r, const train_args *a) {
  int rc = 0;
  if (r->w->rank == 0) rc = config_read_file(a->config_path, &r->cfg_text, &r->cfg_len);
  if ((rc = agree(r, rc))) return rc;
  if ((rc = comm_rc(r, comm_bcast_bytes(r->w, &r->cfg_text, &r->cfg_len, 0)))) return rc;
  char *own = NULL;
  size_t own_len = 0;
  if (r->w->rank != 0 && config_read_file(a->config_path, &own, &own_len) == 0) {
    free(r->cfg_text);
    r->cfg_text = own, r->cfg_len = own_len;
  }
  ms_error_clear();
  config_defaults(&r->cfg);
  rc = config_parse(&r->cfg, r->cfg_text, r->cfg_len, a->config_path);
  for (int i = 0; rc == 0 && i < a->n_overrides; i++)
    rc = config_override(&r->cfg, a->overrides[i]);
  if (rc == 0) rc = config_validate(&r->cfg, r->w->size);
  return agree(r, rc);
}

static int data_rc(int rc, int code, const char *err) {
  return rc < 0 ? ms_error_set(code, "%s", err) : 0;
}

/* A streamed training set whose chunk cache holds it whole is shared by
 * the ranks of each node (comm.shared_memory): each chunk is then read and
 * decoded once per node instead of once per rank. On 2 ranks of 2 cores
 * the first batch of Fashion-MNIST, for which every rank decoded nearly
 * the whole file, waited 0.21-0.26 s against 0.10 s for one rank alone;
 * shared, the run's data time fell from 0.208 to 0.192 s (medians of 5
 * paired 8-epoch runs). Not the test set: evaluation gives each rank its
 * own slice, so ranks seldom need the same chunk. Collective, after
 * verify_identity (ranks with different configs must reach its message,
 * not a mismatched collective); every rank decides the same. */
static int share_chunk_cache(run *r) {
  if (r->w->size < 2 || !r->cfg.comm.shared_memory) return 0;
  double most = r->w->local_size; /* the most ranks on one node */
  int rc = comm_allreduce_max_f64(r->w, &most, 1);
  uint64_t bytes = data_shared_cache_bytes(r->train);
  int same = rc == 0 && most > 1 ? comm_all_equal_u64(r->w, bytes) : 0;
  if (same < 0) rc = same;
  void *base = NULL;
  if (rc == 0 && same && bytes > 0)
    rc = comm_node_mem_alloc(r->w, (size_t)bytes, data_shared_cache_zeroed(r->train),
                             &r->shared_cache, &base);
  if (rc == 0 && base) data_share_cache(r->train, base);
  return rc < 0 ? ms_error_set(MS_ECOMM, "%s", r->w->err) : 0;
}

/* Opens the datasets and checks what needs no model: the test set against
 * the training set, the normalisation, one global batch of samples, and
 * (data.check_finite) the values, each rank a 1/world share of them. */
static int open_data(run *r) {
  const ms_config *c = &r->cfg;
  char err[ERRLEN] = "";
  r->norm = check_data_norm(c);
  data_cache cache = DATA_CACHE_AUTO;
  (void)data_cache_parse(c->data.cache, &cache); /* the schema allows only the three names */
  const size_t budget = (size_t)c->data.memory_mb << 20; /* per set, per rank */
  data_allow_links(c->data.allow_links);
  int rc = data_rc(data_open_cached(&r->train, c->data.path, c->data.train_x, c->data.train_y,
                                    budget, cache, err, sizeof err),
                   MS_EDATA, err);
  if (rc == 0 && c->data.test_x[0])
    rc = data_rc(data_open_cached(&r->test, c->data.path, c->data.test_x, c->data.test_y, budget,
                                  cache, err, sizeof err),
                 MS_EDATA, err);
  if (rc == 0) rc = check_data_sets(c, r->train, r->test, &r->norm);
  for (int i = 0; rc == 0 && c->data.check_finite && i < 2; i++) {
    data_set *ds = i ? r->test : r->train;
    uint64_t begin, count;
    if (!ds) continue;
    sampler_eval_range(data_count(ds), r->w->size, r->w->rank, &begin, &count);
    rc = data_rc(data_check_finite(ds, begin, count, &r->norm, err, sizeof err), MS_EDATA, err);
  }
  return agree(r, rc);
}

/* Every rank checks the labels against the model's outputs. */
static int check_data_labels(run *r) {
  int rc = check_labels(&r->cfg, r->model->n_out, r->train);
  if (rc == 0 && r->test) rc = check_labels(&r->cfg, r->model->n_out, r->test);
  return agree(r, rc);
}

static loss_kind loss_parse(const char *name) {
  if (!strcmp(name, "bce_with_logits")) return LOSS_BCE;
  if (!strcmp(name, "mse")) return LOSS_MSE;
  if (!strcmp(name, "mae")) return LOSS_MAE;
  return LOSS_XENT;
}

/* The configured loss of n rows of outputs out (n, n_out) against rows
 * row0.. of r->y or r->t, summed over the rows (each row's loss a mean over its outputs for
 * the float losses). grad (may be NULL) receives scale * d(sum)/d(out).
 * *correct counts top-1 hits of a classifier. */
static double compute_loss(run *r, float *grad, const float *out, size_t row0, int n,
                           float scale, long *correct) {
  int K = (int)r->model->n_out;
  const int32_t *y = r->y + row0;
  const float *t = r->t + row0 * (size_t)K;
  switch (r->loss) {
    case LOSS_BCE: return bce_logits_loss(grad, out, t, n, K, scale);
    case LOSS_MSE: return mse_loss(grad, out, t, n, K, scale);
    case LOSS_MAE: return mae_loss(grad, out, t, n, K, scale);
    case LOSS_XENT: break;
  }
  float eps = (float)r->cfg.model.label_smoothing;
  if (eps > 0) return softmax_xent_smooth(grad, out, y, n, K, eps, scale, correct);
  return softmax_xent(grad, out, y, n, K, scale, correct);
}

/* Reads samples idx[0..n) of ds into r->x and r->y (classifiers) or r->t. */
static int read_batch(run *r, data_set *ds, const uint64_t *idx, int n) {
  char err[ERRLEN] = "";
  return data_rc(data_read(ds, idx, (size_t)n, &r->norm, r->x, r->classifier ? r->y : NULL,
                           r->classifier ? NULL : r->t, err, sizeof err),
                 MS_EDATA, err);
}

static int blas_threads(const comm_world *w, int configured) {
  if (configured > 0) return configured;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int per_rank = (int)(online > 0 ? online : 1) / (w->local_size > 0 ? w->local_size : 1);
  return per_rank > 0 ? per_rank : 1;
}

/* Checkpoint tensors: views of every parameter tensor in the parameter
 * arena and in each optimizer state arena ("optim/<state>/<name>"). */
static void list_tensors(run *r) {
  float *arenas[3] = {r->model->params};
  const char *names[3] = {""};
  int n_arenas = 1 + optim_state(r->opt, arenas + 1, names + 1, 2);
  r->n_tensors = 0;
  for (int a = 0; a < n_arenas; a++)
    for (int i = 0; i < r->model->n_p; i++) {
      const ms_param *p = &r->model->p[i];
      int j = r->n_tensors++;
      snprintf(r->tensor_names[j], sizeof r->tensor_names[j], "%s%s%s%s", a ? "optim/" : "",
               names[a], a ? "/" : "", p->name);
      ckpt_tensor *ct = &r->tensors[j];
      ct->name = r->tensor_names[j];
      ct->data = arenas[a] + p->off;
      ct->ndim = p->ndim;
      for (int d = 0; d < p->ndim; d++) ct->shape[d] = p->shape[d];
    }
}

/* One collective at start-up: every rank's program, config, layout and
 * initial parameters (identity.h). The first rank that differs from rank 0
 * is named with the first key that differs: the program (version or
 * binary), then the config (with the keys and both values), then the
 * layout: each an exit-2 error on every rank. Initial parameters that
 * differ when all of those agree come from a different libm or CPU (the
 * init draws normals through log/cos); rank 0's are broadcast, with a
 * note naming the rank. Collective. */
static int verify_identity(run *r) {
  const int P = r->w->size;
  ms_identity me, *all = calloc((size_t)P, sizeof *all);
  memset(&me, 0, sizeof me);
  snprintf(me.version, sizeof me.version, "%s", MS_VERSION_STRING);
  me.binary = identity_binary_hash();
  char *text = config_emit(&r->cfg);
  if (text) me.config = identity_hash(text, strlen(text), IDENTITY_HASH_INIT);
  me.layout = model_layout_hash(r->model);
  me.params = model_params_hash(r->model);
  int rc = !all || !text ? ms_error_set(MS_ENOMEM, "out of memory checking the ranks agree") : 0;
  if ((rc = agree(r, rc))) goto done;
  if ((rc = comm_rc(r, comm_allgather_bytes(r->w, &me, sizeof me, all)))) goto done;
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
    /* Both texts to every rank (this path only), so each can name the keys. */
    char *t0 = r->w->rank == 0 ? text : NULL, *tk = r->w->rank == k ? text : NULL;
    size_t l0 = strlen(text), lk = l0;
    rc = comm_rc(r, comm_bcast_bytes(r->w, &t0, &l0, 0));
    if (rc == 0) rc = comm_rc(r, comm_bcast_bytes(r->w, &tk, &lk, k));
    if (rc == 0) {
      char diff[700];
      int n = identity_config_diff(t0, tk, diff, sizeof diff);
      rc = ms_error_set(MS_ECONFIG,
                        "ranks were given different configs: rank %d differs from rank 0 in %d "
                        "key%s (rank 0's value → rank %d's): %s",
                        k, n, n == 1 ? "" : "s", k, diff);
    }
    if (t0 != text) free(t0);
    if (tk != text) free(tk);
  } else if (what == 3) {
    rc = ms_error_set(MS_ECONFIG,
                      "rank %d built another parameter layout than rank 0 from the same config: "
                      "its data ('%s' as that rank sees it) has other sample shapes",
                      k, r->cfg.data.path);
  } else if (what == 4) {
    metrics_say(r->metrics,
                "note: rank %d's initial parameters differ from rank 0's (same program and "
                "config: another libm or CPU); using rank 0's",
                k);
    rc = comm_rc(r, comm_bcast_f32(r->w, r->model->params, r->model->n_params, 0));
  }
done:
  free(text);
  free(all);
  return rc;
}

static int build_model(run *r) {
  const ms_config *c = &r->cfg;
  r->global_batch = c->train.batch_size;
  r->local_batch = r->global_batch / r->w->size;
  r->accumulate = c->train.accumulate > 1 ? c->train.accumulate : 1;
  r->micro_batch = r->local_batch / r->accumulate;
  r->eval_chunk = c->train.eval_batch_size / r->w->size;
  if (r->eval_chunk < 1) r->eval_chunk = 1;
  r->loss = loss_parse(c->model.loss);
  r->classifier = check_is_classifier(c);
  int64_t max_batch = r->micro_batch > r->eval_chunk ? r->micro_batch : r->eval_chunk;
  size_t in = data_sample_elems(r->train);
  int64_t shape[MS_MAX_DIMS];
  int nd = check_input_shape(c, r->train, shape);
  int rc = model_create(&r->model, c, shape, nd, (int)max_batch);
  if (rc == 0) rc = optim_create(&r->opt, c, r->model->n_params);
  if (rc == 0 && !c->optim.decay_all) {
    uint8_t *mask = malloc(r->model->n_params ? r->model->n_params : 1);
    if (!mask) rc = ms_error_set(MS_ENOMEM, "out of memory for the weight-decay mask");
    if (mask) model_decay_mask(r->model, mask);
    if (rc == 0) rc = optim_set_decay_mask(r->opt, mask);
    free(mask);
  }
  if (rc == 0) {
    size_t outs = (size_t)max_batch * (size_t)r->model->n_out;
    r->idx = malloc(sizeof(uint64_t) * (size_t)max_batch);
    r->x = malloc(sizeof(float) * (size_t)max_batch * in);
    r->y = malloc(sizeof(int32_t) * (size_t)max_batch);
    r->t = malloc(sizeof(float) * outs);
    r->dlogits = malloc(sizeof(float) * outs);
    if (r->accumulate > 1) r->acc = malloc(sizeof(float) * (r->model->n_params + 1));
    if (!r->idx || !r->x || !r->y || !r->t || !r->dlogits || (r->accumulate > 1 && !r->acc))
      rc = ms_error_set(MS_ENOMEM, "out of memory for batch buffers");
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = check_data_labels(r))) return rc;

  model_init(r->model, c->run.seed);
  if ((rc = verify_identity(r))) return rc;
  r->layout_hash = model_layout_hash(r->model);
  list_tensors(r);
  return 0;
}

/* A save's failure found outside a save (rank 0's background write, or a
 * gather that every rank saw fail), kept until the ranks agree on it at the
 * next step. @return 0, or its code with its message set again. */
static int saver_failure(run *r) {
  return r->saver_rc < 0 ? ms_error_set(r->saver_rc, "%s", r->saver_msg) : 0;
}

static int keep_failure(run *r, int rc) {
  if (rc < 0 && r->saver_rc == 0) {
    r->saver_rc = rc;
    snprintf(r->saver_msg, sizeof r->saver_msg, "%s", ms_error_msg());
  }
  return rc;
}

/* Where a save with other ranks compresses. With every core training (the
 * ranks and their BLAS threads fill the node), compressing in the
 * background saves nothing: the ranks step in lockstep, so the CPU time the
 * compressing threads take comes back as stall, and at the lowest priority
 * they take 13-30 s for a 185 MB slice instead of 1 s (2 ranks on 2 cores,
 * scripts/bench/results/ckpt.md: 11-27 steps of stall against 12-19 on the
 * spot), so the save also lands much later. So then each rank compresses
 * its slice on the spot, in parallel. With a core to spare on the node,
 * the background threads use it and the stall is the snapshot copy. Alone,
 * a rank always saves in the background (saver_start): there is no slice
 * to share, and a synchronous write would stall for the whole file.
 * MIDSCALE_CKPT_COMPRESS=sync|background overrides (for the benchmark and
 * the tests). */
/* 1 when this node has more cores than ranks of this run. */
static int rank_cores_spare(const comm_world *w) {
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > (long)(w->local_size > 0 ? w->local_size : 1);
}

static int compress_in_background(const run *r) {
  const char *force = getenv("MIDSCALE_CKPT_COMPRESS");
  if (force && strcmp(force, "background") == 0) return 1;
  if (force && strcmp(force, "sync") == 0) return 0;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int local = r->w->local_size > 0 ? r->w->local_size : 1;
  return online > (long)local * blas_threads(r->w, r->cfg.run.threads);
}

/* Together, one node: every rank's part is written (block: wait for them)
 * or not yet (return 0 and try at a later step); rank 0 then renames the
 * file into place in the background (block: now). Collective. */
static int finish_parts(run *r, int block) {
  double t0 = comm_wtime();
  int all = comm_agree(r->w, block || saver_part_ready(r->saver) ? 0 : -1);
  if (all == -1) return 0;
  if (all == COMM_EMPI) return comm_rc(r, all);
  r->parts_in_flight = 0;
  int rc = agree(r, saver_part_wait(r->saver));
  if (rc == 0 && r->w->rank == 0) rc = saver_commit(r->saver, r->parts_total, block);
  if (rc == 0) rc = agree(r, rc);
  if (rc) saver_part_discard(r->saver);
  r->save_stall_s += comm_wtime() - t0;
  return rc;
}

/* Together, one node: rank 0 creates the file, and each rank writes its
 * frame (len bytes) at its offset in the background (sync: now, and the
 * file is in place on return). Collective. */
static int write_parts(run *r, size_t len, int sync) {
  uint64_t *lens = malloc(sizeof *lens * (size_t)r->w->size), mine = len;
  int rc = lens ? 0 : ms_error_set(MS_ENOMEM, "out of memory for %d frame lengths", r->w->size);
  if ((rc = agree(r, rc))) {
    free(lens);
    return rc;
  }
  rc = comm_rc(r, comm_allgather_bytes(r->w, &mine, sizeof mine, lens));
  uint64_t offset = 0, total = 0;
  for (int q = 0; rc == 0 && q < r->w->size; q++) {
    if (q < r->w->rank) offset += lens[q];
    total += lens[q];
  }
  free(lens);
  if (rc) return rc;
  char *tmp = NULL;
  size_t tmp_len = 0;
  if (r->w->rank == 0) {
    rc = ckpt_part_create(r->ckpt_dir, r->save_step, &tmp);
    if (tmp) tmp_len = strlen(tmp) + 1;
  }
  if ((rc = agree(r, rc))) return rc;
  rc = comm_rc(r, comm_bcast_bytes(r->w, &tmp, &tmp_len, 0));
  if (rc == 0) rc = saver_write_part(r->saver, r->save_step, tmp, offset, sync);
  free(tmp);
  if ((rc = agree(r, rc))) {
    if (r->w->rank == 0) saver_part_discard(r->saver);
    return rc;
  }
  r->parts_total = total;
  r->parts_in_flight = 1;
  return sync ? finish_parts(r, 1) : 0;
}

/* Together: every rank's frame is ready. Ranks of one node write their own
 * frames into the file (write_parts); otherwise rank 0 gathers them and
 * starts writing the file in the background. sync: the file is in place on
 * return. Collective. */
static int gather_frames(run *r, int sync) {
  double t0 = comm_wtime();
  const void *frame = NULL;
  size_t len = 0;
  double compress_s = 0;
  int rc = agree(r, saver_frame(r->saver, &frame, &len, &compress_s));
  if (rc) return rc;
  r->save_compress_s = compress_s;
  if (r->save_parts) {
    rc = write_parts(r, len, sync);
    r->save_gather_s = comm_wtime() - t0;
    return rc;
  }
  char *all = NULL;
  size_t all_len = 0;
  rc = comm_rc(r, comm_gatherv_bytes(r->w, frame, len, 0, &all, &all_len, NULL));
  saver_frame_done(r->saver);
  if (rc) return rc;
  if (r->w->rank == 0) rc = saver_write(r->saver, all, all_len, sync);
  r->save_gather_s = comm_wtime() - t0;
  return agree(r, rc);
}

/* Completes what a save left in flight, on every rank: frames compressed in
 * the background are gathered once every rank's is ready (block: wait for
 * them); rank 0 reports a finished write (block: waits for it). A failure
 * is kept for the next step's agreement. @return saver_failure(r). */
static int collect_save(run *r, int block) {
  if (!r->saver) return saver_failure(r);
  if (saver_compressing(r->saver)) { /* the same on every rank */
    double t0 = comm_wtime();
    int ready = block || saver_frame_ready(r->saver);
    int all = comm_agree(r->w, ready ? 0 : -1);
    int rc = all == COMM_EMPI ? comm_rc(r, all) : all == 0 ? gather_frames(r, 0) : 0;
    if (all != -1) r->save_stall_s += comm_wtime() - t0;
    if (keep_failure(r, rc)) return rc;
  }
  if (r->parts_in_flight) {
    int rc = finish_parts(r, block);
    if (keep_failure(r, rc)) return rc;
  }
  if (r->w->rank != 0 || !saver_pending(r->saver) || (!block && !saver_finished(r->saver)))
    return saver_failure(r);
  saver_result res;
  int rc = saver_wait(r->saver, &res);
  if (rc < 0) return keep_failure(r, rc);
  snprintf(r->last_ckpt_path, sizeof r->last_ckpt_path, "%s", res.path);
  double mb = (double)res.file_bytes / 1e6, total = comm_wtime() - r->save_t0;
  metrics_say(r->metrics,
              "checkpoint %s (%.2f MB, ratio %.3f; in place after %.2f s, step stalled %.3f s)",
              res.path, mb, mb > 0 ? (double)res.raw_bytes / 1e6 / mb : 0.0, total,
              r->save_stall_s);
  char json[1400];
  snprintf(json, sizeof json,
           "{\"kind\":\"checkpoint\",\"step\":%lld,\"path\":\"%s\",\"bytes\":%lld,"
           "\"raw_bytes\":%lld,\"world\":%d,\"background_compress\":%d,\"ranks_write\":%d,"
           "\"write_s\":%.4f,"
           "\"stall_s\":%.5f,\"compress_s\":%.4f,\"gather_s\":%.4f,\"file_s\":%.4f}",
           (long long)res.step, res.path, res.file_bytes, res.raw_bytes, r->w->size,
           r->w->size == 1 || r->save_background, r->save_parts, total, r->save_stall_s, r->save_compress_s,
           r->save_gather_s, res.write_seconds);
  metrics_json(r->metrics, json);
  return 0;
}

/* Together: hash the slices, rank 0 makes the header from the gathered
 * hashes, every rank compresses its slice (now, or in the background to be
 * gathered by a later collect_save). sync: everything now, the file in
 * place on return. Collective. */
static int save_together(run *r, const ckpt_meta *meta, int sync) {
  const uint64_t *hashes = NULL;
  size_t n_hashes = 0;
  int bg = r->save_background && !sync;
  int rc = agree(r, saver_hash(r->saver, r->cfg.checkpoint.shuffle, bg, &hashes, &n_hashes));
  if (rc) return rc;
  char *all = NULL;
  size_t all_len = 0;
  rc = comm_rc(r, comm_gatherv_bytes(r->w, hashes, n_hashes * sizeof *hashes, 0, &all, &all_len,
                                     NULL));
  if (rc) return rc;
  rc = saver_compress(r->saver, r->w->rank == 0 ? meta : NULL, (const uint64_t *)all,
                      all_len / sizeof(uint64_t));
  free(all);
  if ((rc = agree(r, rc))) return rc;
  return bg ? 0 : gather_frames(r, sync);
}

/* Saves the arenas at the current step. Alone, rank 0 snapshots them and a
 * background thread compresses and writes; together, every rank hashes and
 * compresses its slice and rank 0 gathers and writes in the background
 * (saver.h). sync (the end of a run, a stop signal): the file is in place
 * on return, all of the work done on the training threads, at their
 * priority, since they would only wait. */
static int save_checkpoint(run *r, int sync) {
  double t0 = comm_wtime();
  int rc = agree(r, collect_save(r, 1)); /* one save at a time */
  ckpt_meta meta = {0};
  if (rc == 0 && r->w->rank == 0) {
    const ms_config *c = &r->cfg;
    meta = (ckpt_meta){.step = r->step,
                       .epoch = r->epoch,
                       .step_in_epoch = r->step_in_epoch,
                       .world_size = r->w->size,
                       .seed = c->run.seed,
                       .rng_state = sampler_mix64(c->run.seed),
                       .layout_hash = r->layout_hash,
                       .config = config_emit(c),
                       .byte_shuffle = c->checkpoint.shuffle};
    if (!meta.config) rc = ms_error_set(MS_ENOMEM, "out of memory emitting the config");
  }
  if (rc == 0) {
    r->save_t0 = t0;
    r->save_step = r->step;
    r->save_compress_s = r->save_gather_s = 0;
    if (r->w->size == 1)
      rc = saver_start(r->saver, &meta, sync);
    else if ((rc = agree(r, rc)) == 0)
      rc = save_together(r, &meta, sync);
    r->save_stall_s = comm_wtime() - t0;
  }
  free(meta.config);
  if (rc == 0 && sync) rc = collect_save(r, 1);
  rc = agree(r, rc);
  r->t_ckpt += comm_wtime() - t0;
  if (rc == 0) r->last_ckpt_step = r->step, r->t_last_ckpt = comm_wtime();
  return rc;
}

static size_t tensor_elems(const ckpt_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

/* Asks whether a checkpoint's saved config allows resuming this run. */
static int resume_accept(void *ctx, const char *path, const ckpt_meta *meta) {
  return check_resume_meta(path, meta, ctx);
}

/* --resume: rank 0 finds, reads and verifies the checkpoint, decompressing
 * it once, then broadcasts the arenas and the cursor. The file is read into
 * scratch first: `--resume auto` may read a damaged newer file before a
 * good one, and if none is good the run starts from the initial arenas. */
static int resume(run *r, const char *what) {
  int rc = 0;
  char *path = NULL, *skipped = NULL;
  ckpt_meta meta = {0};
  int64_t cursor[4] = {0, 0, 0, 0}; /* found, step, epoch, step_in_epoch */
  ckpt_tensor *scratch = NULL;
  float *arena = NULL;
  if (r->w->rank == 0) {
    size_t n_floats = 0, off = 0;
    for (int i = 0; i < r->n_tensors; i++) n_floats += tensor_elems(&r->tensors[i]);
    scratch = malloc(sizeof *scratch * (r->n_tensors > 0 ? (size_t)r->n_tensors : 1));
    arena = malloc(sizeof(float) * (n_floats ? n_floats : 1));
    if (!scratch || !arena) rc = ms_error_set(MS_ENOMEM, "out of memory for resuming");
    for (int i = 0; rc == 0 && i < r->n_tensors; i++) {
      scratch[i] = r->tensors[i];
      scratch[i].data = arena + off;
      off += tensor_elems(&r->tensors[i]);
    }
    int is_auto = strcmp(what, "auto") == 0;
    /* The config is compared first (resume_accept), so that a changed model
     * is named by its keys rather than by the tensor shapes. */
    if (rc == 0)
      rc = ckpt_restore(is_auto ? r->ckpt_dir : NULL, is_auto ? NULL : what, scratch,
                        r->n_tensors, r->layout_hash, resume_accept, &r->cfg, &meta, &path,
                        &skipped);
    if (rc == 1) rc = 0; /* nothing to resume: a fresh start */
    else if (rc == 0) {
      for (int i = 0; i < r->n_tensors; i++)
        memcpy(r->tensors[i].data, scratch[i].data, tensor_elems(&r->tensors[i]) * sizeof(float));
      cursor[0] = 1, cursor[1] = meta.step, cursor[2] = meta.epoch, cursor[3] = meta.step_in_epoch;
    }
    free(arena);
    free(scratch);
  }
  if ((rc = agree(r, rc))) goto done;
  if (skipped) metrics_say(r->metrics, "resume: skipped damaged checkpoints:\n%s", skipped);
  char *buf = (char *)cursor;
  size_t len = sizeof cursor;
  if ((rc = comm_rc(r, comm_bcast_bytes(r->w, &buf, &len, 0)))) goto done;
  if (r->w->rank != 0) {
    memcpy(cursor, buf, sizeof cursor);
    free(buf);
  }
  if (!cursor[0]) {
    metrics_say(r->metrics, "resume: no checkpoint in %s, starting from step 0", r->ckpt_dir);
    goto done;
  }
  if ((rc = comm_rc(r, comm_bcast_f32(r->w, r->model->params, r->model->n_params, 0)))) goto done;
  float *state[2];
  const char *names[2];
  for (int a = 0, n = optim_state(r->opt, state, names, 2); a < n; a++)
    if ((rc = comm_rc(r, comm_bcast_f32(r->w, state[a], r->opt->n, 0)))) goto done;
  r->step = cursor[1], r->epoch = cursor[2], r->step_in_epoch = cursor[3];
  r->opt->t = r->step; /* one optimizer step per training step (Adam's bias correction) */
  r->last_ckpt_step = r->step;
  metrics_say(r->metrics, "resumed from %s at step %lld (epoch %lld, step %lld of the epoch)",
              path ? path : "checkpoint", (long long)r->step, (long long)r->epoch,
              (long long)r->step_in_epoch);
done:
  ckpt_meta_free(&meta);
  free(path);
  free(skipped);
  return rc;
}

/* Evaluates every test sample exactly once across ranks. */
static int evaluate(run *r) {
  double t0 = comm_wtime();
  uint64_t begin, count;
  sampler_eval_range(data_count(r->test), r->w->size, r->w->rank, &begin, &count);
  int K = (int)r->model->n_out, k = r->cfg.train.eval_top_k;
  if (!r->classifier || k >= K) k = 0;
  /* failed, loss sum, correct, samples, top-k correct, squared and absolute error sums */
  double s[7] = {0, 0, 0, 0, 0, 0, 0};
  int rc = 0;
  for (uint64_t off = 0; off < count && rc == 0; off += (uint64_t)r->eval_chunk) {
    int n = (int)(count - off < (uint64_t)r->eval_chunk ? count - off : (uint64_t)r->eval_chunk);
    for (int i = 0; i < n; i++) r->idx[i] = begin + off + (uint64_t)i;
    if ((rc = read_batch(r, r->test, r->idx, n))) break;
    const float *out = model_forward(r->model, r->x, n, NULL);
    long correct = 0;
    s[1] += compute_loss(r, NULL, out, 0, n, 1.0f, &correct);
    s[2] += (double)correct;
    s[3] += n;
    if (k > 0) s[4] += (double)topk_correct(out, r->y, n, K, k);
    if (r->loss == LOSS_BCE) {
      long hits = 0;
      for (long j = 0; j < (long)n * K; j++) hits += (out[j] > 0.0f) == (r->t[j] > 0.5f);
      s[2] += (double)hits / K;
    } else if (!r->classifier) {
      s[5] += mse_loss(NULL, out, r->t, n, K, 1.0f);
      s[6] += mae_loss(NULL, out, r->t, n, K, 1.0f);
    }
  }
  if ((rc = agree(r, rc))) return rc;
  wd_enter(r, "evaluation sums", __func__);
  rc = comm_rc(r, comm_allreduce_sum_f64(r->w, s + 1, 6));
  watchdog_leave(r->wd);
  if (rc) return rc;
  ms_eval e = {.loss = s[1] / s[3],
               .classifier = r->classifier,
               .binary = r->loss == LOSS_BCE,
               .acc = s[2] / s[3],
               .top_k = k,
               .topk_acc = s[4] / s[3],
               .mse = s[5] / s[3],
               .mae = s[6] / s[3],
               .n_samples = (long)s[3]};
  r->last_eval_loss = e.loss;
  r->last_eval_acc = r->classifier || e.binary ? e.acc : -1.0;
  r->last_eval_step = r->step;
  r->t_eval += comm_wtime() - t0;
  metrics_eval(r->metrics, r->step, r->epoch, &e);
  return 0;
}

/* The batch of the current cursor from the loader; its labels are copied
 * into r->y (classifiers) or r->t, where compute_loss reads them. */
static int next_batch(run *r, loader_batch *b) {
  char err[ERRLEN] = "";
  if (loader_next(r->loader, (uint64_t)r->epoch, (uint64_t)r->step_in_epoch, b, err,
                  sizeof err) < 0)
    return ms_error_set(MS_EDATA, "step %lld (epoch %lld, step %lld of the epoch): %s",
                        (long long)r->step, (long long)r->epoch, (long long)r->step_in_epoch, err);
  if (b->y) memcpy(r->y, b->y, b->n * sizeof *r->y);
  if (b->t) memcpy(r->t, b->t, b->n * data_label_elems(r->train) * sizeof *r->t);
  return 0;
}

/* MIDSCALE_DEBUG_STALL: this rank sleeps before a collective, as a rank
 * stuck on a dead file system would (for the watchdog's test). */
static void stall(double seconds) {
  struct timespec t = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

static void parse_stall(run *r) {
  const char *v = getenv("MIDSCALE_DEBUG_STALL");
  long long step = 0;
  r->stall_rank = -1;
  if (v && sscanf(v, "%d:%lld:%lf", &r->stall_rank, &step, &r->stall_s) != 3) r->stall_rank = -1;
  r->stall_step = step;
}

/* model_backward's hook on a step's last micro-batch: a range of gradients
 * is final; add the earlier micro-batches' and hand it to the reducer,
 * which starts the buckets it completes. */
static void on_grad_ready(void *ctx, size_t off, size_t len) {
  run *r = ctx;
  if (r->acc) {
    float *g = r->model->grads + off;
    const float *a = r->acc + off;
    for (size_t i = 0; i < len; i++) g[i] += a[i];
  }
  if (!r->red) return;
  double t = comm_wtime();
  reducer_ready(r->red, off, len);
  r->t_hook += comm_wtime() - t;
}

/* The gradient sync: its buckets follow the layers (each layer's weight and
 * bias are one unit, so a bucket ends where a layer begins). Collective. */
static int create_reducer(run *r) {
  const ms_config *c = &r->cfg;
  const ms_model *m = r->model;
  if (!c->comm.sync) return 0;
  size_t starts[MS_MAX_LAYERS];
  int ns = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    if (l->w >= 0 && m->p[l->w].off > 0) starts[ns++] = m->p[l->w].off;
  }
  reducer_opts o = {.first_bucket_bytes = (size_t)(c->comm.first_bucket_mb * 1048576.0),
                    .bucket_bytes = (size_t)(c->comm.bucket_mb * 1048576.0),
                    .overlap = c->comm.overlap,
                    .shared_memory = c->comm.shared_memory,
                    .wire = !strcmp(c->comm.compress, "fp16")   ? WIRE_FP16
                            : !strcmp(c->comm.compress, "bf16") ? WIRE_BF16
                                                                : WIRE_F32};
  int rc = reducer_create(&r->red, r->w, m->grads, m->n_params, starts, ns, &o);
  if (rc < 0) rc = ms_error_set(rc == COMM_ENOMEM ? MS_ENOMEM : MS_ECOMM, "%s", r->w->err);
  /* On the shared-memory path backward computes straight into the window. */
  if (rc == 0) model_use_grads(r->model, reducer_arena(r->red));
  return agree(r, rc);
}

/* One optimizer step on this rank's slice of the next global batch, in
 * train.accumulate micro-batches whose gradients add up (the loss is scaled
 * by 1 / global batch on each, so the sum is the global-batch mean: K only
 * trades memory for time). stats: loss sum, correct and samples of the
 * global batch are added.
 *
 * Order of the collectives. The gradient buckets start during the last
 * micro-batch's backward, so they come before the step scalars; every rank
 * issues exactly the same collectives in the same order whatever happened
 * locally: a rank whose read failed contributes zero gradients (its buckets
 * all start in reducer_finish), and the scalars, reduced right after the
 * gradients and before the optimizer, make every rank abandon the step
 * together. Sending the scalars first instead would put a blocking
 * collective (and a wait for the slowest rank's data) in front of every
 * step's compute. */
static int train_step(run *r, double stats[3]) {
  const int K = r->accumulate, n = (int)r->micro_batch;
  /* Step scalars: read failed, loss sum, correct, stop signal, checkpoint
   * time due (rank 0's clock), background save failed; then this rank's
   * seconds so far per part (timing.h), summed for the log's breakdown. */
  double s[6 + T_PARTS] = {0};
  s[3] = r->stop_signal && *r->stop_signal ? 1 : 0;
  s[4] = r->w->rank == 0 && r->cfg.checkpoint.every_minutes > 0 &&
         comm_wtime() - r->t_last_ckpt >= 60.0 * r->cfg.checkpoint.every_minutes;
  s[5] = r->saver_rc < 0;
  /* The loader thread has usually read this step's slice already: the
   * wait, or the read itself with data.prefetch 0, is the step's data time;
   * micro-batches (train.accumulate) are consecutive parts of the slice. */
  loader_batch b = {0};
  double t0 = comm_wtime();
  int rc = next_batch(r, &b);
  if (rc == 0)
    trace_samples(r->w->rank, r->step, r->epoch, b.idx, b.n, b.x, data_sample_elems(r->train));
  r->t_data += comm_wtime() - t0;
  r->t_hook = 0;
  if (r->red) reducer_begin(r->red);
  const size_t elems = data_sample_elems(r->train);
  for (int k = 0; k < K && rc == 0; k++) {
    const uint64_t *mi = b.idx + (size_t)k * (size_t)n;
    double t1 = comm_wtime();
    /* Dropout masks follow the samples' dataset indices: world-size invariant. */
    ms_pass pass = {.seed = r->cfg.run.seed, .step = (uint64_t)r->step, .rows = mi};
    const float *out = model_forward(r->model, b.x + (size_t)k * (size_t)n * elems, n, &pass);
    long correct = 0;
    s[1] += compute_loss(r, r->dlogits, out, (size_t)k * (size_t)n, n,
                         1.0f / (float)r->global_batch, &correct);
    s[2] += (double)correct;
    int last = k == K - 1;
    model_backward(r->model, r->dlogits, &pass, last && (r->red || r->acc) ? on_grad_ready : NULL,
                   r);
    if (!last) {
      float *g = r->model->grads, *a = r->acc;
      if (k == 0)
        memcpy(a, g, sizeof(float) * r->model->n_params);
      else
        for (size_t i = 0; i < r->model->n_params; i++) a[i] += g[i];
    }
    r->t_compute += comm_wtime() - t1;
  }
  if (rc) {
    s[0] = 1;
    memset(r->model->grads, 0, sizeof(float) * r->model->n_params);
  }
  r->t_compute -= r->t_hook;
  if (r->w->rank == r->stall_rank && r->step == r->stall_step) stall(r->stall_s);
  double t2 = comm_wtime();
  wd_enter(r, "gradient allreduce", __func__);
  int crc = r->red ? reducer_finish(r->red) : 0;
  watchdog_leave(r->wd);
  if (crc) return comm_rc(r, crc);
  /* (This step's sync is counted from the next step's agreement on.) */
  double parts[T_PARTS] = {r->t_compute, r->t_comm, r->t_data, r->t_ckpt, r->t_eval};
  memcpy(s + 6, parts, sizeof parts);
  wd_enter(r, "step agreement", __func__);
  crc = comm_allreduce_sum_f64(r->w, s, 6 + T_PARTS);
  watchdog_leave(r->wd);
  for (int i = 0; i < T_PARTS; i++) r->mean_t[i] = s[6 + i] / r->w->size;
  if (crc == 0 && (s[0] > 0 || s[5] > 0)) {
    if (rc == 0) rc = saver_failure(r);
    return agree(r, rc);
  }
  if (crc == 0 && s[3] > 0) {
    /* Which signal: the largest number any rank got (one more collective,
     * on this path only). */
    double sig = r->stop_signal ? (double)*r->stop_signal : 0.0;
    wd_enter(r, "stop-signal agreement", __func__);
    crc = comm_allreduce_max_f64(r->w, &sig, 1);
    watchdog_leave(r->wd);
    r->stop_signo = (int)sig;
  }
  r->time_ckpt_due = s[4] > 0;
  if (crc) return comm_rc(r, crc);
  /* The reduced loss is the same number on every rank: no agreement needed. */
  if (!isfinite(s[1]))
    return ms_error_set(MS_EDATA,
                        "the training loss is not finite (%g) at step %lld (epoch %lld, step %lld "
                        "of the epoch): the inputs may hold NaN or Inf (data.check_finite: true "
                        "finds the sample) or training diverged (lower optim.lr or set "
                        "optim.clip_norm); parameters were not updated",
                        s[1], (long long)r->step + 1, (long long)r->epoch + 1,
                        (long long)r->step_in_epoch + 1);
  double t3 = comm_wtime();
  r->t_comm += t3 - t2 + r->t_hook;
  /* Clipping sees the synced gradients: the same norm on every rank. */
  if (r->cfg.optim.clip_norm > 0)
    r->grad_norm = optim_clip_grad_norm(r->model->grads, r->model->n_params, r->cfg.optim.clip_norm);
  optim_step(r->opt, r->model->params, r->model->grads,
             schedule_lr(&r->cfg, r->step, r->total_steps));
  r->t_compute += comm_wtime() - t3;
  stats[0] += s[1], stats[1] += s[2], stats[2] += (double)r->global_batch;
  r->step++;
  if (++r->step_in_epoch == r->steps_per_epoch) r->step_in_epoch = 0, r->epoch++;
  return 0;
}

static void say_start(run *r) {
  const ms_model *m = r->model;
  char shape[1024], part[128];
  model_shape_desc(m->in_c, m->in_h, m->in_w, shape, sizeof shape);
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    char desc[64], out[48];
    model_layer_desc(l, desc, sizeof desc);
    model_shape_desc(l->out_c, l->out_h, l->out_w, out, sizeof out);
    snprintf(part, sizeof part, " -> %s %s", desc, out);
    if (strlen(shape) + strlen(part) < sizeof shape) strcat(shape, part);
  }
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  metrics_say(r->metrics,
              "midscale %s | world %d (%s) | BLAS OpenBLAS %s, %d thread(s)/rank | HDF5 %u.%u.%u",
              MS_VERSION_STRING, r->w->size, r->w->launcher, blas_corename(),
              blas_threads(r->w, r->cfg.run.threads), maj, min, rel);
  metrics_say(r->metrics, "data %s: %llu train%s, %llu test samples, %zu features",
              r->cfg.data.path, (unsigned long long)data_count(r->train),
              data_in_memory(r->train) ? " (in memory)" : " (streamed)",
              r->test ? (unsigned long long)data_count(r->test) : 0ULL,
              data_sample_elems(r->train));
  metrics_say(r->metrics, "model %s: %zu parameters, %.2f MFLOP/sample forward, loss %s, %s",
              shape, m->n_params, model_flops_per_sample(m) / 1e6, r->cfg.model.loss,
              r->cfg.optim.name);
  char per_rank[96];
  if (r->accumulate > 1)
    snprintf(per_rank, sizeof per_rank, "%lld per rank in %d micro-batches of %lld",
             (long long)r->local_batch, r->accumulate, (long long)r->micro_batch);
  else
    snprintf(per_rank, sizeof per_rank, "%lld per rank", (long long)r->local_batch);
  metrics_say(r->metrics, "train: %d epochs x %lld steps, global batch %lld (%s), run dir %s",
              r->cfg.train.epochs, (long long)r->steps_per_epoch, (long long)r->global_batch,
              per_rank, r->cfg.run.dir);
  if (r->red && reducer_shared(r->red)) {
    metrics_say(r->metrics,
                "comm: node shared memory (every rank on this node): each rank sums its part of "
                "the %.3g MB of gradients from all ranks' segments after backward (no overlap), "
                "%.3g MB of other ranks' memory read and written per rank per step",
                (double)r->model->n_params * sizeof(float) / 1e6, reducer_wire_bytes(r->red) / 1e6);
  } else if (r->red) {
    char sizes[160] = "";
    size_t lo = 0, hi = 0;
    int nb = reducer_buckets(r->red, -1, &lo, &hi);
    for (int b = 0; b < nb && b < 6; b++) {
      reducer_buckets(r->red, b, &lo, &hi);
      snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), "%s%.3g", b ? " + " : "",
               (double)(hi - lo) * sizeof(float) / 1e6);
    }
    if (nb > 6) snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), " + ...");
    metrics_say(r->metrics,
                "comm: %s, %d bucket%s (%s MB), overlap %s, %s on the wire%s, %.3g MB sent per "
                "rank per step",
                reducer_method(r->red), nb, nb == 1 ? "" : "s", sizes,
                r->cfg.comm.overlap ? "on" : "off",
                strcmp(r->cfg.comm.compress, "none") ? r->cfg.comm.compress : "fp32",
                strcmp(r->cfg.comm.compress, "none") ? " with error feedback" : "",
                reducer_wire_bytes(r->red) / 1e6);
  } else {
    metrics_say(r->metrics,
                "comm: NO gradient sync (comm.sync false, a benchmark setting: every rank trains "
                "its own model)");
  }
}

/* The loader over the training set: from here on only it reads r->train.
 * It stops at the run's last step (or --stop-at). A streamed set is read
 * ahead by data.prefetch batches (a thread hides reads and decompression).
 * A set held in memory is read ahead too when the node has more cores than
 * ranks (BLAS helper threads leave gaps; Fashion-MNIST MLP, 1 rank on 2
 * cores: data 0.3% of step time against 2.7% in the step); with a rank on
 * every core its batch, a copy and a conversion, is cheaper on the training
 * thread than a hand-over per step (2 ranks on 2 cores: 2.5% in the step,
 * 3.1% with the thread; with several ranks per core, a tiny MLP's run was
 * 45% slower with it, the wake-ups also starving other processes). */
static int start_loader(run *r, const train_args *a) {
  const ms_config *c = &r->cfg;
  char err[ERRLEN] = "";
  loader_opts o = {.ds = r->train,
                   .norm = r->norm,
                   .order = {.shuffle = SAMPLER_GLOBAL,
                             .block_size = (uint64_t)c->data.block_size,
                             .window = (uint64_t)c->data.shuffle_window},
                   .seed = c->run.seed,
                   .global_batch = (uint64_t)r->global_batch,
                   .world = r->w->size,
                   .rank = r->w->rank,
                   .prefetch = data_in_memory(r->train) && !rank_cores_spare(r->w)
                                   ? 0
                                   : c->data.prefetch,
                   .class_labels = r->classifier,
                   .end_step = (uint64_t)r->total_steps};
  (void)sampler_shuffle_parse(c->data.shuffle, &o.order.shuffle); /* checked by the schema */
  if (a->stop_at > 0 && a->stop_at < r->total_steps) o.end_step = (uint64_t)a->stop_at;
  int rc = data_rc(loader_create(&r->loader, &o, err, sizeof err), MS_EDATA, err);
  if ((rc = agree(r, rc))) return rc;
  char order[96] = "";
  if (o.order.shuffle == SAMPLER_BLOCK)
    snprintf(order, sizeof order, " (blocks of %llu samples, %llu per window)",
             (unsigned long long)loader_block_size(r->loader),
             (unsigned long long)o.order.window);
  char shared[48] = "";
  if (r->shared_cache)
    snprintf(shared, sizeof shared, ", chunk cache shared by the node's ranks");
  char ahead[64] = "in memory: each batch assembled in the step";
  if (o.prefetch > 0)
    snprintf(ahead, sizeof ahead, "%s: %d batch%s read ahead",
             data_in_memory(r->train) ? "in memory" : "streamed", o.prefetch,
             o.prefetch == 1 ? "" : "es");
  else if (!data_in_memory(r->train))
    snprintf(ahead, sizeof ahead, "streamed: read in the step");
  metrics_say(r->metrics, "loader: shuffle %s%s, %s%s (data.cache %s)", c->data.shuffle, order,
              ahead, shared, c->data.cache);
  /* A global shuffle of a chunked set over the budget (so streamed, through
   * a chunk cache of the budget's size) draws each sample of a batch from a
   * different chunk, and HDF5 reads (and decompresses) a whole chunk per
   * sample: about 1000x slower than block shuffle, which reads each chunk
   * once per epoch (loader.md). */
  uint64_t chunk = data_chunk_samples(r->train);
  if (!data_fits_budget(r->train) && o.order.shuffle == SAMPLER_GLOBAL && chunk > 1)
    metrics_say(r->metrics,
                "loader: warning: a global shuffle of '%s' (chunks of %llu samples, larger "
                "than the memory budget) reads a whole HDF5 chunk for each sample; "
                "data.shuffle: block reads each chunk once per epoch",
                data_x_name(r->train), (unsigned long long)chunk);
  return 0;
}

static int setup(run *r, const train_args *a) {
  parse_stall(r);
  int rc = load_config(r, a);
  if (rc) return rc;
  const ms_config *c = &r->cfg;
  blas_set_threads(blas_threads(r->w, c->run.threads));
  if (c->checkpoint.dir[0])
    snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s", c->checkpoint.dir);
  else
    snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s/checkpoints", c->run.dir);
  if (r->w->rank == 0) {
    char path[MS_PATH_MAX + 64];
    rc = mkdir_p(c->run.dir);
    if (rc == 0) rc = check_ckpt_dir(r->ckpt_dir);
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
      rc = metrics_open(&r->metrics, path, stdout, c->log.progress);
    }
  }
  if ((rc = agree(r, rc))) return rc;
  if ((rc = agree(r, check_accumulate(c, r->w->size)))) return rc;
  if ((rc = open_data(r))) return rc;
  if ((rc = agree(r, check_model_input(c, r->train)))) return rc;
  if ((rc = build_model(r))) return rc;
  if ((rc = create_reducer(r))) return rc;
  if ((rc = share_chunk_cache(r))) return rc;
  /* The checkpoint writer and its snapshot exist from the start, so the
   * first checkpoint pays no allocation in the middle of training. */
  r->save_background = compress_in_background(r);
  /* Ranks of one node see one file system: each writes its own frame into
   * the file, which spares rank 0 receiving the others' (at ~0.4 GB/s over
   * Open MPI's shared memory here, 2 s of a 370 MB checkpoint's stall).
   * MIDSCALE_CKPT_GATHER=1 gathers them anyway (for the tests). */
  const char *gather = getenv("MIDSCALE_CKPT_GATHER");
  r->save_parts = r->w->size > 1 && r->w->local_size == r->w->size &&
                  !(gather && strcmp(gather, "1") == 0);
  rc = saver_create(&r->saver, r->tensors, r->n_tensors, r->ckpt_dir, c->checkpoint.level,
                    c->checkpoint.workers, c->checkpoint.keep, r->w->rank, r->w->size,
                    r->save_background);
  if ((rc = agree(r, rc))) return rc;
  r->steps_per_epoch =
      (int64_t)sampler_steps_per_epoch(data_count(r->train), (uint64_t)r->global_batch);
  if (r->steps_per_epoch == 0)
    return ms_error_set(MS_ECONFIG, "train.batch_size %lld is larger than the %llu samples of '%s'",
                        (long long)r->global_batch, (unsigned long long)data_count(r->train),
                        c->data.train_x);
  r->total_steps = (int64_t)c->train.epochs * r->steps_per_epoch;
  if (c->train.max_steps > 0 && c->train.max_steps < r->total_steps)
    r->total_steps = c->train.max_steps;
  if ((rc = agree(r, config_check_steps(c, r->total_steps)))) return rc;
  r->last_ckpt_step = -1;
  r->last_eval_step = -1;
  say_start(r);
  if ((rc = start_loader(r, a))) return rc;
  if (a->resume && (rc = resume(r, a->resume))) return rc;
  return 0;
}

static void teardown(run *r) {
  watchdog_free(r->wd);
  loader_free(r->loader); /* joins the thread before its data set closes */
  saver_free(r->saver);
  metrics_close(r->metrics);
  optim_free(r->opt);
  reducer_free(r->red);
  model_free(r->model);
  data_close(r->train);
  data_close(r->test);
  comm_node_mem_free(r->shared_cache);
  free(r->cfg_text);
  free(r->idx);
  free(r->x);
  free(r->y);
  free(r->t);
  free(r->dlogits);
  free(r->acc);
}

/* The breakdown of an interval: its wall time, the mean seconds per part
 * over ranks, the samples trained. */
static void breakdown(const run *r, double wall, const double *t, double samples,
                      ms_breakdown *b) {
  ms_interval iv = {.wall = wall,
                    .samples = samples,
                    .flops_per_sample = model_flops_per_sample(r->model),
                    .world = r->w->size,
                    .threads = blas_threads(r->w, r->cfg.run.threads),
                    .peak = r->peak};
  memcpy(iv.t, t, sizeof iv.t);
  timing_breakdown(&iv, b);
}

/* Rank 0, at a log line: where the interval's time went. */
static void say_interval(run *r, double wall, double samples) {
  if (!r->metrics) return;
  double t[T_PARTS];
  for (int i = 0; i < T_PARTS; i++) t[i] = r->mean_t[i] - r->log_t[i];
  memcpy(r->log_t, r->mean_t, sizeof r->log_t);
  ms_breakdown b;
  breakdown(r, wall, t, samples, &b);
  char text[256], json[512], line[700];
  timing_format(&b, text, sizeof text, json, sizeof json);
  metrics_say(r->metrics, "        time: %s | %.3g GFLOP/s per rank, %.0f%% of sgemm peak", text,
              b.flops_per_rank / 1e9, 100 * b.peak_frac);
  snprintf(line, sizeof line, "{\"kind\":\"time\",\"step\":%lld,%s}", (long long)r->step, json);
  metrics_json(r->metrics, line);
}

static void say_summary(run *r, double wall, int64_t steps_run) {
  double t[T_PARTS] = {r->t_compute, r->t_comm, r->t_data, r->t_ckpt, r->t_eval}, mean[T_PARTS];
  memcpy(mean, t, sizeof mean);
  /* The slowest rank's times are the ones the job waited for; the mean
   * gives the fractions. */
  wd_enter(r, "summary", __func__);
  int crc = comm_allreduce_max_f64(r->w, t, T_PARTS);
  if (crc == 0) crc = comm_allreduce_sum_f64(r->w, mean, T_PARTS);
  watchdog_leave(r->wd);
  if (crc != 0) return;
  for (int i = 0; i < T_PARTS; i++) mean[i] /= r->w->size;
  double sps = wall > 0 ? (double)steps_run * (double)r->global_batch / wall : 0.0;
  if (r->last_eval_step >= 0 && r->classifier)
    metrics_say(r->metrics, "final test accuracy %.4f (loss %.4f)", r->last_eval_acc,
                r->last_eval_loss);
  else if (r->last_eval_step >= 0)
    metrics_say(r->metrics, "final test loss %.6g (%s)", r->last_eval_loss, r->cfg.model.loss);
  metrics_say(r->metrics,
              "done: %lld steps in %.2f s, %.0f samples/s; time per part (max over ranks): "
              "compute %.2f s, comm %.2f s, data %.2f s, checkpoint %.2f s, eval %.2f s",
              (long long)steps_run, wall, sps, t[0], t[1], t[2], t[3], t[4]);
  ms_breakdown b;
  breakdown(r, wall, mean, (double)steps_run * (double)r->global_batch, &b);
  char text[256], bjson[512];
  timing_format(&b, text, sizeof text, bjson, sizeof bjson);
  metrics_say(r->metrics, "time (mean over ranks): %s", text);
  metrics_say(r->metrics,
              "speed: %.0f samples/s; model %.3g GFLOP/s per rank (3x the %.3g MFLOP/sample "
              "forward), %.1f%% of %d x %.3g GFLOP/s (single-core sgemm peak measured at "
              "start-up, %d BLAS thread%s per rank)",
              b.samples_per_s, b.flops_per_rank / 1e9, model_flops_per_sample(r->model) / 1e6,
              100 * b.peak_frac, blas_threads(r->w, r->cfg.run.threads), r->peak / 1e9,
              blas_threads(r->w, r->cfg.run.threads),
              blas_threads(r->w, r->cfg.run.threads) == 1 ? "" : "s");
  char json[1200];
  snprintf(json, sizeof json,
           "{\"kind\":\"summary\",\"steps\":%lld,\"seconds\":%.3f,\"samples_per_s\":%.1f,"
           "\"test_acc\":%.6f,\"compute_s\":%.3f,\"comm_s\":%.3f,\"data_s\":%.3f,"
           "\"checkpoint_s\":%.3f,\"eval_s\":%.3f,\"world\":%d,\"sgemm_peak_gflops\":%.2f,"
           "\"fractions\":{%s}}",
           (long long)r->step, wall, sps, r->last_eval_step >= 0 ? r->last_eval_acc : -1.0, t[0],
           t[1], t[2], t[3], t[4], r->w->size, r->peak / 1e9, bjson);
  metrics_json(r->metrics, json);
}

int train_run(comm_world *w, const train_args *a) {
  run r;
  memset(&r, 0, sizeof r);
  r.w = w;
  r.stop_signal = a->stop_signal;
  ms_error_clear();
  int rc = setup(&r, a);
  if (rc) goto out;
  /* The watchdog times the step loop's collectives only: at start-up a rank
   * may rightly spend minutes loading data while the others wait. */
  if (a->on_hang) {
    rc = watchdog_create(&r.wd, r.w, r.cfg.comm.timeout_s, a->on_hang, NULL);
    if (rc < 0) rc = ms_error_set(rc == COMM_ENOMEM ? MS_ENOMEM : MS_ECOMM, "%s", r.w->err);
    if ((rc = agree(&r, rc))) goto out;
  }

  /* About 2 ms on rank 0 only, while the others wait in the first step. */
  if (r.w->rank == 0) r.peak = blas_sgemm_peak();
  const ms_config *c = &r.cfg;
  double t_start = comm_wtime(), t_log = t_start, t_bar = 0;
  r.t_last_ckpt = t_start; /* checkpoint.every_minutes counts from here */
  int64_t first_step = r.step, log_from = r.step;
  double stats[3] = {0, 0, 0}; /* loss sum, correct, samples since the last log */
  while (r.step < r.total_steps && !(a->stop_at > 0 && r.step >= a->stop_at)) {
    int64_t epoch_before = r.epoch;
    if ((rc = train_step(&r, stats))) goto out;
    int last = r.step == r.total_steps;
    if (r.step % c->log.every_steps == 0 || last) {
      double now = comm_wtime();
      metrics_train(r.metrics, r.step, r.total_steps, epoch_before + 1, stats[0] / stats[2],
                    r.classifier ? stats[1] / stats[2] : -1.0, schedule_lr(c, r.step - 1, r.total_steps),
                    (double)(r.step - log_from) * (double)r.global_batch / (now - t_log));
      say_interval(&r, now - t_log, (double)(r.step - log_from) * (double)r.global_batch);
      t_log = now, log_from = r.step;
      stats[0] = stats[1] = stats[2] = 0;
    } else if (r.metrics && comm_wtime() - t_bar > 0.1) {
      metrics_progress(r.metrics, r.step, r.total_steps, stats[0] / stats[2]);
      t_bar = comm_wtime();
    }
    if (r.test && (r.epoch != epoch_before || last) && (rc = evaluate(&r))) goto out;
    if (r.stop_signo) break;
    (void)collect_save(&r, 0); /* a failure stops the next step */
    if (((c->checkpoint.every_steps > 0 && r.step % c->checkpoint.every_steps == 0) ||
         r.time_ckpt_due) &&
        !last && (rc = save_checkpoint(&r, 0)))
      goto out;
  }
  if (r.last_ckpt_step != r.step && (rc = save_checkpoint(&r, 1))) goto out;
  /* A save still in flight must be in place before the run reports. */
  if ((rc = agree(&r, collect_save(&r, 1)))) goto out;
  say_summary(&r, comm_wtime() - t_start, r.step - first_step);
  if (r.stop_signo) {
    rc = ms_error_set(MS_ESTOP,
                      "signal %d (%s) at step %lld of %lld; wrote %s; "
                      "continue with --resume auto",
                      r.stop_signo, strsignal(r.stop_signo), (long long)r.step,
                      (long long)r.total_steps, r.last_ckpt_path);
    goto out;
  }
  if (r.step < r.total_steps)
    metrics_say(r.metrics, "stopped at step %lld of %lld (--stop-at); continue with --resume auto",
                (long long)r.step, (long long)r.total_steps);
out:
  teardown(&r);
  return rc;
}
