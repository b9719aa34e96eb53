#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "ckpt.h"
#include "costmodel.h"
#include "model.h"
#include "layer_probe.h"
#include "ms_error.h"
#include "sampler.h"

#define MAX_OVERRIDES 256

/* The trainer's buffers for data/'s messages are MS_MSG_MAX bytes: never
 * smaller than what data/ writes, so no message of it is cut. */
_Static_assert(MS_MSG_MAX >= DATA_ERRLEN, "a data/ message fits the trainer's buffers");

/* ---- cross-checks -------------------------------------------------------------- */

int check_model_input(const ms_config *cfg, const data_set *train) {
  uint64_t shape[MS_MAX_DIMS + 8];
  char source[MS_PATH_MAX + MS_NAME_MAX + 8];
  int ndim = data_sample_shape(train, shape, (int)(sizeof shape / sizeof shape[0]));
  if (ndim > (int)(sizeof shape / sizeof shape[0])) ndim = (int)(sizeof shape / sizeof shape[0]);
  snprintf(source, sizeof source, "'%s' %s", cfg->data.path, cfg->data.train_x);
  return config_check_input(cfg, shape, ndim, source);
}

int check_open_data(const ms_config *cfg, int test, size_t budget, data_cache cache,
                    data_set **out) {
  char err[MS_MSG_MAX] = "";
  const char *x = test ? cfg->data.test_x : cfg->data.train_x;
  const char *y = test ? cfg->data.test_y : cfg->data.train_y;
  if (cfg->data.tokens) {
    /* Every id is read even for `midscale check` (budget 0): they are the
     * labels too. So the budget always applies: a file cannot make check
     * hold more than train would. */
    data_token_opts o = {.seq_len = (uint64_t)cfg->data.seq_len,
                         .stride = (uint64_t)cfg->data.stride};
    size_t tok_budget = (size_t)cfg->data.memory_mb << 20;
    return ms_from_data(data_open_tokens(out, cfg->data.path, x, &o, tok_budget, err, sizeof err),
                        err);
  }
  return ms_from_data(data_open_cached(out, cfg->data.path, x, y, budget, cache, err, sizeof err),
                      err);
}

data_norm check_data_norm(const ms_config *cfg) {
  data_norm n = data_norm_identity();
  n.scale = (float)cfg->data.scale;
  n.n_mean = (size_t)cfg->data.mean.n;
  n.mean = cfg->data.mean.n ? cfg->data.mean.v : NULL;
  n.n_std = (size_t)cfg->data.std.n;
  n.std = cfg->data.std.n ? cfg->data.std.v : NULL;
  n.check_finite = cfg->data.check_finite;
  return n;
}

int check_data_sets(const ms_config *cfg, const data_set *train, const data_set *test,
                    const data_norm *norm) {
  char err[MS_MSG_MAX] = "";
  if (test && data_sample_elems(test) != data_sample_elems(train))
    return ms_error_set(MS_EDATA,
                        "'%s': test samples (%s) have %zu features but training samples (%s) "
                        "have %zu",
                        cfg->data.path, data_x_name(test), data_sample_elems(test),
                        data_x_name(train), data_sample_elems(train));
  int rc = ms_from_data(data_norm_check(train, norm, err, sizeof err), err);
  if (rc) return rc;
  if (data_count(train) < (uint64_t)cfg->train.batch_size)
    return ms_error_set(MS_EDATA,
                        "'%s' in '%s' has %llu %s, fewer than one global batch "
                        "(train.batch_size %d)",
                        data_x_name(train), data_path(train),
                        (unsigned long long)data_count(train),
                        data_is_tokens(train) ? "windows (data.seq_len, data.stride)" : "samples",
                        cfg->train.batch_size);
  return 0;
}

int check_input_shape(const ms_config *cfg, const data_set *train, int64_t *in) {
  const ms_dims *d = &cfg->model.input;
  if (d->ndim > 0) {
    for (int i = 0; i < d->ndim; i++) in[i] = d->dims[i];
    return d->ndim;
  }
  uint64_t dims[MS_MAX_DIMS];
  int nd = data_sample_shape(train, dims, MS_MAX_DIMS);
  if (nd < 2 || nd > 3) {
    in[0] = (int64_t)data_sample_elems(train);
    return 1;
  }
  for (int i = 0; i < nd; i++) in[i] = (int64_t)dims[i];
  return nd;
}

int check_accumulate(const ms_config *cfg, int world) {
  int k = cfg->train.accumulate, b = cfg->train.batch_size;
  if (k > 1 && world > 0 && b % world == 0 && (b / world) % k)
    return ms_error_set(MS_ECONFIG,
                        "train.accumulate %d does not divide the %d samples per rank of "
                        "train.batch_size %d on %d rank%s: each rank runs its share as %d "
                        "micro-batches",
                        k, b / world, b, world, world == 1 ? "" : "s", k);
  return 0;
}

int check_is_classifier(const ms_config *cfg) { return cfg->model.loss == MS_LOSS_XENT; }

int check_labels(const ms_config *cfg, long n_out, data_set *ds) {
  char err[MS_MSG_MAX] = "";
  int rc = ms_from_data(check_is_classifier(cfg)
                            ? data_check_labels(ds, (int)n_out, err, sizeof err)
                            : data_check_targets(ds, (size_t)n_out, err, sizeof err),
                        err);
  if (rc) ms_error_prefix("the model has %ld output unit%s", n_out, n_out == 1 ? "" : "s");
  return rc;
}

int check_model_labels(const ms_config *cfg, const ms_model *m, data_set *ds) {
  /* The sequence loss reads seq_T labels a sample (evaluate.h): a set of
   * one label per sample would have it read past the batch's labels. */
  if (m->seq_T > 0 && check_is_classifier(cfg) && data_label_elems(ds) != (size_t)m->seq_T)
    return ms_error_set(MS_EDATA,
                        "labels '%s' in '%s' have %zu per sample, but the model outputs a "
                        "sequence of %d positions and takes one label per position (a token "
                        "set: data.tokens)",
                        data_y_name(ds) ? data_y_name(ds) : "(none)", data_path(ds),
                        data_label_elems(ds), m->seq_T);
  /* Only a classifier picks from the vocabulary; other losses read n_out
   * targets a sample. */
  return check_labels(cfg, check_is_classifier(cfg) ? model_classes(m) : m->n_out, ds);
}

void check_ckpt_dir_of(const ms_config *cfg, char *out, size_t n) {
  if (cfg->checkpoint.dir[0])
    snprintf(out, n, "%s", cfg->checkpoint.dir);
  else
    snprintf(out, n, "%s/checkpoints", cfg->run.dir);
}

int check_load_config(ms_config *cfg, const char *text, size_t len, const char *path,
                      const char *const *overrides, int n_overrides, int world) {
  config_defaults(cfg);
  int rc = config_parse(cfg, text, len, path);
  for (int i = 0; rc == 0 && i < n_overrides; i++) rc = config_override(cfg, overrides[i]);
  if (rc == 0) rc = config_validate(cfg, world);
  if (rc == 0) rc = check_accumulate(cfg, world);
  return rc;
}

int check_run_length(const ms_config *cfg, uint64_t n_samples, check_length *len) {
  len->steps_per_epoch =
      (int64_t)sampler_steps_per_epoch(n_samples, (uint64_t)cfg->train.batch_size);
  if (len->steps_per_epoch == 0)
    return ms_error_set(MS_ECONFIG, "train.batch_size %d is larger than the %llu samples of '%s'",
                        cfg->train.batch_size, (unsigned long long)n_samples,
                        cfg->data.train_x);
  /* train.max_steps, when set, is the run's length whatever train.epochs
   * says, as in Hugging Face's Trainer: training goes on into further
   * epochs, whose sample order is a function of (run.seed, epoch) alone. */
  if (cfg->train.max_steps > 0)
    len->total_steps = cfg->train.max_steps;
  else
    len->total_steps = (int64_t)cfg->train.epochs * len->steps_per_epoch;
  len->epochs = (len->total_steps + len->steps_per_epoch - 1) / len->steps_per_epoch;
  return config_check_steps(cfg, len->total_steps);
}

void check_length_desc(const ms_config *cfg, const check_length *len, char *out, size_t n) {
  const int64_t e = len->epochs, spe = len->steps_per_epoch;
  const int partial = len->total_steps % spe != 0;
  if (cfg->train.max_steps > 0)
    snprintf(out, n, "%lld steps (train.max_steps, overrides train.epochs %d): %lld epoch%s of %lld steps%s",
             (long long)len->total_steps, cfg->train.epochs, (long long)e, e == 1 ? "" : "s",
             (long long)spe, partial ? ", the last partial" : "");
  else
    snprintf(out, n, "%lld steps (train.epochs): %lld epoch%s of %lld steps",
             (long long)len->total_steps, (long long)e, e == 1 ? "" : "s", (long long)spe);
}

int check_ckpt_dir(const char *dir) {
  char at[MS_PATH_MAX + 32];
  struct stat st;
  snprintf(at, sizeof at, "%s", dir);
  /* Walk up to the nearest path that exists: the directory, or the ancestor
   * it would be created in. */
  for (;;) {
    if (stat(at, &st) == 0) break;
    if (errno != ENOENT && errno != ENOTDIR)
      return ms_error_set(MS_ECONFIG, "checkpoint directory '%s' cannot be created: '%s': %s", dir,
                          at, strerror(errno));
    char *slash = strrchr(at, '/');
    while (slash && slash > at && slash[1] == '\0') { /* trailing slashes */
      *slash = '\0';
      slash = strrchr(at, '/');
    }
    if (!slash)
      snprintf(at, sizeof at, ".");
    else if (slash == at)
      at[1] = '\0'; /* "/" */
    else
      *slash = '\0';
  }
  const char *what = strcmp(at, dir) ? "cannot be created" : "cannot be written";
  if (!S_ISDIR(st.st_mode))
    return ms_error_set(MS_ECONFIG, "checkpoint directory '%s' %s: '%s' is not a directory", dir,
                        what, at);
  if (access(at, W_OK | X_OK) != 0)
    return ms_error_set(MS_ECONFIG, "checkpoint directory '%s' %s: '%s' is not writable (%s)", dir,
                        what, at, strerror(errno));
  return 0;
}

int check_resume_meta(const char *path, const ckpt_meta *meta, const ms_config *now) {
  ms_config *saved = NULL;
  char diff[MS_MSG_MAX / 2]; /* the rest of the message names the checkpoint */
  int rc = 0;
  if (!(saved = malloc(sizeof *saved)))
    return ms_error_set(MS_ENOMEM, "out of memory reading the config of %s", path);
  config_defaults(saved);
  if (!meta->config) {
    rc = ms_error_set(MS_ECKPT, "%s: the checkpoint holds no config", path);
  } else if (config_parse(saved, meta->config, strlen(meta->config), "(saved config)") != 0) {
    ms_error_prefix("%s: damaged: the config saved in this checkpoint does not parse", path);
    rc = CKPT_DAMAGED;
  } else if (config_diff(saved, now, CONFIG_DIFF_PINNED, diff, sizeof diff) != 0) {
    rc = ms_error_set(MS_ECKPT, "%s: this checkpoint was made with a different config: %s", path,
                      diff);
  }
  free(saved);
  return rc;
}

int check_resume_cursor(const char *path, const ckpt_meta *meta, const ms_config *cfg,
                        int64_t spe) {
  if (meta->world_size < 1 || cfg->train.batch_size % meta->world_size != 0)
    return ms_error_set(CKPT_DAMAGED,
                        "%s: damaged cursor: world_size %d does not divide train.batch_size %d",
                        path, meta->world_size, cfg->train.batch_size);
  if (spe <= 0) return 0;
  if (meta->step_in_epoch >= spe || meta->epoch > meta->step / spe ||
      meta->epoch * spe + meta->step_in_epoch != meta->step)
    return ms_error_set(CKPT_DAMAGED,
                        "%s: damaged cursor: step %" PRId64 ", epoch %" PRId64
                        ", step_in_epoch %" PRId64 " cannot be a position in this run of %" PRId64
                        " steps per epoch",
                        path, meta->step, meta->epoch, meta->step_in_epoch, spe);
  return 0;
}

int check_resume_config(const char *path, const ms_config *now) {
  ckpt_meta meta = {0};
  int rc = ckpt_read_meta(path, &meta);
  if (rc == 0) rc = check_resume_meta(path, &meta, now);
  if (rc == CKPT_DAMAGED) rc = MS_ECKPT;
  ckpt_meta_free(&meta);
  return rc;
}

/* ---- the model summary ----------------------------------------------------------- */

/* "1,234,567" */
static const char *group(char *buf, size_t n, uint64_t v) {
  char digits[32];
  int len = snprintf(digits, sizeof digits, "%" PRIu64, v), k = 0;
  for (int i = 0; i < len && (size_t)k + 2 < n; i++) {
    if (i > 0 && (len - i) % 3 == 0) buf[k++] = ',';
    buf[k++] = digits[i];
  }
  buf[k] = '\0';
  return buf;
}

static const char *mib(char *buf, size_t n, double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024)
    snprintf(buf, n, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    snprintf(buf, n, "%.2f MiB", bytes / (1024.0 * 1024));
  else
    snprintf(buf, n, "%.1f KiB", bytes / 1024.0);
  return buf;
}

/* The layer table and totals of the planned model m (model_plan). */
static void print_summary(FILE *out, const ms_config *c, const ms_model *m, int world) {
  char a[40], b[40], d[40], e[40], shape[48], desc[64];
  int64_t batch = c->train.batch_size / world / (c->train.accumulate > 1 ? c->train.accumulate : 1);
  fprintf(out, "\nmodel summary\n");
  fprintf(out, "  %-10s %-26s %-16s %15s\n", "layer", "type", "output", "parameters");
  model_shape_desc(m->in_c, m->in_h, m->in_w, shape, sizeof shape);
  fprintf(out, "  %-10s %-26s %-16s %15s\n", "input", "-", shape, "0");
  for (int i = 0; i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    uint64_t p = 0;
    size_t off, len;
    if (model_layer_params(m, l, &off, &len)) p = len;
    char name[32];
    snprintf(name, sizeof name, "layers.%d", i);
    model_layer_desc(l, desc, sizeof desc);
    model_shape_desc(l->out_c, l->out_h, l->out_w, shape, sizeof shape);
    fprintf(out, "  %-10s %-26s %-16s %15s\n", name, desc, shape, group(a, sizeof a, p));
  }
  int states = c->optim.name == MS_OPTIM_SGD ? 1 : 2; /* momentum; or both moments of Adam */
  double f = sizeof(float), arena = (double)m->n_params * f, flops = model_flops_per_sample(m);
  double acts = (double)batch * ((double)m->in_features + model_row_floats(m)) * f;
  fprintf(out, "  parameters: %s\n", group(a, sizeof a, m->n_params));
  fprintf(out, "  forward FLOPs per sample: %s (%.3g MFLOP)\n", group(b, sizeof b, (uint64_t)flops),
          flops / 1e6);
  fprintf(out,
          "  memory per rank: %s = parameters %s + gradients %s + optimizer state (%s: %d "
          "arena%s) %s + activations %s (batch %lld per rank: input, layer outputs, backward "
          "buffers)\n",
          mib(a, sizeof a, (2 + states) * arena + acts), mib(b, sizeof b, arena),
          mib(b, sizeof b, arena), config_enum_name("optim.name", (int)c->optim.name), states,
          states > 1 ? "s" : "", mib(d, sizeof d, states * arena), mib(e, sizeof e, acts),
          (long long)batch);
}

/* Bytes of the bf16 weights of the layers that read plain bf16 weights
 * (dnn.h: native bf16 dense layers, one (OC, C) array each), 0 in fp32.
 * m may be a plan, whose precision is not resolved yet: then the config's
 * as dnn_resolve_precision resolves it. */
static double bf16_weight_bytes(const ms_config *c, const ms_model *m) {
  dnn_precision prec = DNN_FP32;
  char why[160];
  if (dnn_resolve_precision(c->model.precision, &prec, why, sizeof why)) ms_error_clear();
  int bf16 = m->precision == DNN_BF16 || prec == DNN_BF16;
  double w = 0.0;
  for (int i = 0; bf16 && dnn_bf16_native() && i < m->n_layers; i++) {
    const ms_layer *l = &m->layers[i];
    if (l->type == MS_LAYER_DENSE && !l->seq && l->w >= 0) w += (double)m->p[l->w].len;
  }
  return w * sizeof(uint16_t);
}

void check_memory_desc(const ms_config *c, const ms_model *m, int world, int nodes, int shared,
                       char *buf, size_t n) {
  char a[40], b[40], d[40], e[40], f[40];
  const int L = world / (nodes > 0 ? nodes : 1);
  int64_t batch = c->train.batch_size / world / (c->train.accumulate > 1 ? c->train.accumulate : 1);
  int states = c->optim.name == MS_OPTIM_SGD ? 1 : 2;
  double arena = (double)m->n_params * sizeof(float);
  double acts = (double)batch * ((double)m->in_features + model_row_floats(m)) * sizeof(float);
  /* bf16: each rank's own bf16 weights, or their copy once per node, which
   * spans the whole arena (same offsets as the parameters; startup.c). */
  double w16 = bf16_weight_bytes(c, m), mirror = w16 > 0 ? arena / 2 : 0.0;
  double once = (1.0 + states) * arena + mirror; /* parameters + optimizer state */
  double own_off = 2.0 * arena + states * arena + acts + w16, own_on = arena + acts;
  double rank_on = own_on + once / L, node_on = L * own_on + once, node_off = L * own_off;
  if (shared)
    snprintf(buf, n,
             "memory: parameters and optimizer state shared (%s once per node): %s per rank "
             "(PSS), %s per node of %d rank%s; without comm.shared_params %s per rank, %s per "
             "node",
             mib(a, sizeof a, once), mib(b, sizeof b, rank_on), mib(d, sizeof d, node_on), L,
             L == 1 ? "" : "s", mib(e, sizeof e, own_off), mib(f, sizeof f, node_off));
  else
    snprintf(buf, n,
             "memory: a copy per rank: %s per rank, %s per node of %d rank%s; shared "
             "(comm.shared_params) they would be %s per rank (PSS), %s per node",
             mib(a, sizeof a, own_off), mib(b, sizeof b, node_off), L, L == 1 ? "" : "s",
             mib(d, sizeof d, rank_on), mib(e, sizeof e, node_on));
  size_t k = strlen(buf);
  if (w16 > 0 && k < n)
    snprintf(buf + k, n - k, "; bf16 weights: %s once per node shared, %s per rank unshared",
             mib(a, sizeof a, mirror), mib(b, sizeof b, w16));
  /* Across nodes every node holds its own copy (the hierarchical path). */
  k = strlen(buf);
  if (nodes > 1 && k < n)
    snprintf(buf + k, n - k, "; %d nodes: %s in all (%s %s)", nodes,
             mib(a, sizeof a, nodes * (shared ? node_on : node_off)), shared ? "without" : "with",
             mib(b, sizeof b, nodes * (shared ? node_off : node_on)));
}

/* "(28x28)" */
static void shape_text(char *out, size_t n, const uint64_t *dims, int nd) {
  size_t k = 0;
  out[0] = '\0';
  for (int i = 0; i < nd && k + 24 < n; i++)
    k += (size_t)snprintf(out + k, n - k, "%s%" PRIu64, i ? "x" : "(", dims[i]);
  snprintf(out + k, n - k, ")");
}

/* ---- midscale check --------------------------------------------------------------- */

typedef struct {
  const char *config_path;
  const char *overrides[MAX_OVERRIDES];
  int n_overrides;
  int world;
  int nodes;        /* --nodes, 0 = not given */
  const char *link; /* --link, NULL = not given */
} check_args;

/* Option `name` at argv[*i], as "--name VALUE" or "--name=VALUE": 1 with
 * *value set (NULL when the value is missing; *i then points past what
 * was used), 0 when argv[*i] is another argument. */
static int option(int argc, char **argv, int *i, const char *name, const char **value) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0 || (argv[*i][n] != '\0' && argv[*i][n] != '='))
    return 0;
  *value = argv[*i][n] == '=' ? argv[*i] + n + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
  return 1;
}

/* A count in [1, 2^20] for --world and --nodes. @return 0, or -1. */
static int parse_count(const char *v, int *out) {
  char *end = NULL;
  long n = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || n < 1 || n > 1 << 20) return -1;
  *out = (int)n;
  return 0;
}

static int parse_args(int argc, char **argv, check_args *a) {
  for (int i = 0; i < argc; i++) {
    const char *v = NULL;
    if (option(argc, argv, &i, "--set", &v)) {
      if (!v) return ms_error_set(MS_EUSAGE, "check: --set needs section.key=value");
      if (a->n_overrides == MAX_OVERRIDES)
        return ms_error_set(MS_EUSAGE, "check: too many --set options");
      a->overrides[a->n_overrides++] = v;
    } else if (option(argc, argv, &i, "--world", &v)) {
      if (parse_count(v, &a->world))
        return ms_error_set(MS_EUSAGE, "check: --world needs a number of ranks in [1, 1048576]");
    } else if (option(argc, argv, &i, "--nodes", &v)) {
      if (parse_count(v, &a->nodes))
        return ms_error_set(MS_EUSAGE, "check: --nodes needs a number of nodes in [1, 1048576]");
    } else if (option(argc, argv, &i, "--link", &v)) {
      costmodel_link l;
      if (!v || costmodel_parse_link(v, &l))
        return ms_error_set(MS_EUSAGE,
                            "check: --link needs 1gbit, 10gbit, 100gbit or RATE,LATENCY "
                            "(e.g. 2.5gbit,20us)");
      a->link = v;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return ms_error_set(MS_EUSAGE, "check: unknown option '%s' (see 'midscale help check')",
                          argv[i]);
    } else if (!a->config_path) {
      a->config_path = argv[i];
    } else {
      return ms_error_set(MS_EUSAGE, "check: unexpected argument '%s'", argv[i]);
    }
  }
  if (!a->config_path)
    return ms_error_set(MS_EUSAGE, "check needs a CONFIG file (see 'midscale help check')");
  if (a->nodes > 0 && (a->nodes > a->world || a->world % a->nodes))
    return ms_error_set(MS_EUSAGE, "check: --nodes %d does not divide --world %d into equal nodes",
                        a->nodes, a->world);
  return 0;
}

/* The cost model's prediction (costmodel.h) for --world ranks on --nodes
 * nodes over --link: compute from this model's own kernels timed here at
 * the per-rank micro-batch (layer_probe.h), communication from the link's
 * alpha-beta. The FLOP form at the sgemm peak is printed for comparison. */
static void print_prediction(FILE *out, const ms_config *c, const ms_model *m, const check_args *a,
                             const int64_t *shape, int nd) {
  const int nodes = a->nodes > 0 ? a->nodes : 1, L = a->world / nodes;
  const char *link = a->link ? a->link : "10gbit";
  const int K = c->train.accumulate > 1 ? c->train.accumulate : 1;
  costmodel_in in;
  costmodel_out o, at_peak;
  memset(&in, 0, sizeof in);
  costmodel_from_model(&in, m);
  costmodel_from_config(&in, c);
  costmodel_parse_link(link, &in.link);
  /* As the run counts them (startup.c, comm_cpus_per_rank): the CPUs this
   * process may run on, shared by the node's L ranks. */
  cpu_set_t mask;
  long cores = sched_getaffinity(0, sizeof mask, &mask) == 0 ? CPU_COUNT(&mask)
                                                             : sysconf(_SC_NPROCESSORS_ONLN);
  int threads = c->run.threads > 0 ? c->run.threads : (int)(cores / L > 1 ? cores / L : 1);
  int shared = c->comm.shared_params && c->comm.shared_memory && c->comm.sync && a->world > 1 &&
               nodes == 1 && c->comm.compress == MS_WIRE_NONE;
  double peak = blas_sgemm_peak();
  in.world = a->world, in.nodes = nodes;
  in.batch = (double)c->train.batch_size / a->world;
  in.accumulate = K;
  in.optim_shards = shared ? L : 1;
  in.mem_bw = L > 1 ? layer_probe_memory_bandwidth() : 0.0;
  blas_set_threads(threads);
  int micro = (int)(in.batch / K > 1 ? in.batch / K : 1);
  if (layer_probe_run(c, shape, nd, micro, &in.layers)) ms_error_clear();
  if (nodes == 1)
    fprintf(out, "\nprediction for %d rank%s on one node (no inter-node link; --nodes K for "
            "more):\n", a->world, a->world == 1 ? "" : "s");
  else
    fprintf(out, "\nprediction for %d ranks on %d nodes (%d per node), link %s: alpha %.3g us, "
            "%.3g Gbit/s%s:\n", a->world, nodes, L, link, 1e6 * in.link.alpha,
            8e-9 / in.link.beta,
            a->link ? "" : " (no --link given: the default; pass --link for yours)");
  if (!in.layers.valid || costmodel_predict(&in, &o)) {
    fprintf(out, "  (no prediction: the layers could not be timed here or the layout is "
                 "invalid)\n");
    return;
  }
  char what[160];
  snprintf(what, sizeof what, "this model's layers measured here, %d BLAS thread%s%s", threads,
           threads == 1 ? "" : "s",
           c->run.threads > 0 ? "" : " (this machine's cores / ranks per node)");
  costmodel_print(out, &in, &o, what);
  in.layers.valid = 0;
  in.rate = peak * threads;
  if (peak > 0 && costmodel_predict(&in, &at_peak) == 0)
    fprintf(out, "  for comparison, FLOPs at the %.3g GFLOP/s single-core sgemm peak x %d: "
            "compute %.3f ms, step %.3f ms (the layers run at %.0f%% of that rate)\n",
            peak / 1e9, threads, 1e3 * at_peak.compute_s, 1e3 * at_peak.step_s,
            o.compute_s > 0 ? 100 * at_peak.compute_s / o.compute_s : 0.0);
}

/* The dataset cross-checks against the planned model m; *len gets the
 * run's length. */
static int check_data(const ms_config *c, const ms_model *m, data_set *train, data_set *test,
                      check_length *len) {
  char err[MS_MSG_MAX] = "";
  int rc;
  data_norm norm = check_data_norm(c);
  if ((rc = check_data_sets(c, train, test, &norm))) return rc;
  for (int i = 0; c->data.check_finite && i < 2; i++) {
    data_set *ds = i ? test : train;
    if (ds &&
        (rc = ms_from_data(data_check_finite(ds, 0, data_count(ds), &norm, err, sizeof err), err)))
      return rc;
  }
  if ((rc = check_model_labels(c, m, train))) return rc;
  if (test && (rc = check_model_labels(c, m, test))) return rc;
  return check_run_length(c, data_count(train), len);
}

/* A data file that is simply not there yet skips the data checks (a config
 * can be checked before the data is copied to the cluster). Anything else
 * that stat refuses - a symbolic link whose target is gone, a link loop, a
 * directory we may not search - is a data error now, as `train` would report
 * it, not a silent pass. */
static int check_data_path(const char *path) {
  struct stat st, lst;
  if (stat(path, &st) == 0) return 0;
  int e = errno;
  if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode))
    return ms_error_set(MS_EDATA, "data.path %s is a symbolic link that does not resolve (%s)",
                        path, strerror(e));
  if (e == ENOENT || e == ENOTDIR) return 0;
  return ms_error_set(MS_EDATA, "data.path %s: %s", path, strerror(e));
}

int check_main(int argc, char **argv, const char *usage, FILE *out) {
  check_args a = {.world = 1};
  ms_config *c = NULL;
  char *text = NULL, *emitted = NULL, dir[MS_PATH_MAX + 32];
  size_t text_len = 0;
  data_set *train = NULL, *test = NULL;
  check_length len = {0, 0, 0};
  struct stat st;
  int rc, have_data = 0;

  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage, out);
      return 0;
    }
  if ((rc = parse_args(argc, argv, &a))) return rc;
  ms_model *plan = NULL;
  if (!(c = malloc(sizeof *c)) || !(plan = malloc(sizeof *plan))) {
    free(c);
    return ms_error_set(MS_ENOMEM, "out of memory");
  }
  if ((rc = config_read_file(a.config_path, &text, &text_len))) goto out;
  if ((rc = check_load_config(c, text, text_len, a.config_path, a.overrides, a.n_overrides,
                              a.world)))
    goto out;
  check_ckpt_dir_of(c, dir, sizeof dir);
  if ((rc = check_ckpt_dir(dir))) goto out;

  if ((rc = check_data_path(c->data.path))) goto out;
  if (stat(c->data.path, &st) == 0) {
    /* Streaming mode (budget 0): only the labels are read into memory. */
    data_allow_links(c->data.allow_links);
    rc = check_open_data(c, 0, 0, DATA_CACHE_AUTO, &train);
    if (rc == 0 && c->data.test_x[0]) rc = check_open_data(c, 1, 0, DATA_CACHE_AUTO, &test);
    if (rc == 0) rc = check_model_input(c, train);
    if (rc) goto out;
    have_data = 1;
  }
  /* The model's shapes, from the data or from model.input. */
  int64_t in[MS_MAX_DIMS];
  int nd = have_data ? check_input_shape(c, train, in) : c->model.input.ndim;
  for (int i = 0; !have_data && i < nd; i++) in[i] = c->model.input.dims[i];
  if (nd > 0 && (rc = model_plan(plan, c, in, nd))) goto out;
  if (have_data && (rc = check_data(c, plan, train, test, &len))) goto out;

  if (!(emitted = config_emit(c))) {
    rc = ms_error_set(MS_ENOMEM, "out of memory emitting the config");
    goto out;
  }
  fputs(emitted, out);
  fprintf(out, "\ncheck: config %s is valid for %d rank%s (per-rank batch %d)\n", a.config_path,
          a.world, a.world > 1 ? "s" : "", c->train.batch_size / a.world);
  fprintf(out, "check: checkpoint directory %s is writable\n", dir);
  if (have_data) {
    char shape[160] = "(1)";
    uint64_t dims[MS_MAX_DIMS];
    int dn = data_sample_shape(train, dims, MS_MAX_DIMS);
    if (dn > 0) shape_text(shape, sizeof shape, dims, dn < MS_MAX_DIMS ? dn : MS_MAX_DIMS);
    fprintf(out,
            "check: dataset %s: %llu training samples of shape %s, %s within the %ld "
            "outputs%s\n",
            c->data.path, (unsigned long long)data_count(train), shape,
            check_is_classifier(c) ? "labels" : "targets", model_classes(plan),
            test ? ", test set consistent" : "");
    if (data_is_tokens(train))
      fprintf(out,
              "check: token windows of %llu inputs every %llu tokens, from %llu tokens; "
              "vocab_size %llu\n",
              (unsigned long long)data_seq_len(train), (unsigned long long)data_stride(train),
              (unsigned long long)data_token_count(train),
              (unsigned long long)data_vocab_size(train));
    char length[200];
    check_length_desc(c, &len, length, sizeof length);
    fprintf(out, "check: the run trains %s (warmup %d)\n", length, c->schedule.warmup_steps);
  } else {
    fprintf(out,
            "check: dataset checks skipped: the data file %s is missing (midscale train "
            "would fail)\n",
            c->data.path);
  }
  if (nd > 0) {
    print_summary(out, c, plan, a.world);
    /* The run's own rule (startup.c, share_params), from the config alone. */
    int shared = c->comm.shared_params && c->comm.shared_memory && c->comm.sync && a.world > 1 &&
                 (a.nodes <= 1 ? c->comm.compress == MS_WIRE_NONE /* the one-node window */
                               : a.world % a.nodes == 0 && a.world / a.nodes > 1); /* hier */
    char mem[512];
    check_memory_desc(c, plan, a.world, a.nodes, shared, mem, sizeof mem);
    fprintf(out, "  %s\n", mem);
    print_prediction(out, c, plan, &a, in, nd);
  } else
    fprintf(out,
            "\nmodel summary skipped: the input size is unknown (no data file and no "
            "model.input)\n");
  rc = 0;
out:
  data_close(test);
  data_close(train);
  free(emitted);
  free(text);
  free(plan);
  free(c);
  return rc;
}

int check_reference(FILE *out) {
  char *md = config_reference();
  if (!md) return ms_error_set(MS_ENOMEM, "out of memory writing the reference");
  int rc = fputs(md, out) < 0 ? ms_error_set(MS_EIO, "cannot write the reference") : 0;
  free(md);
  return rc;
}
