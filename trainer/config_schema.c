/* config_schema — the schema table of ms_config and what only walks it:
 * defaults, the resolved-config emitter, the Markdown reference and the
 * resume diff. Parsing, overrides and validation are in config.c.
 */
#include "config.h"

#include "config_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the schema ------------------------------------------------------------ */

_Static_assert(sizeof(ms_activation) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(ms_layer_type) == sizeof(int), "enum fields are stored as int");

_Static_assert(sizeof(ms_init) == sizeof(int), "enum fields are stored as int");

static const char *const loss_names[] = {"softmax_cross_entropy", "bce_with_logits", "mse", "mae",
                                         NULL};
static const char *const shuffle_names[] = {"global", "block", "none", NULL};
static const char *const cache_names[] = {"auto", "memory", "stream", NULL};
static const char *const optim_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const precision_names[] = {"fp32", "bf16", "auto", NULL};
static const char *const compress_names[] = {"none", "fp16", "bf16", NULL};
static const char *const schedule_names[] = {"constant", "cosine", "step", "onecycle", NULL};
/* The K_ENUMI lists follow the order of their C enums (config.h). */
static const char *const layer_types[] = {"dense",     "conv2d",     "maxpool2d",
                                          "avgpool2d", "flatten",    "dropout",
                                          "layernorm", "activation", NULL};
static const char *const activations[] = {"none", "relu",    "leaky_relu", "gelu",
                                          "tanh", "sigmoid", "softmax",    NULL};
static const char *const inits[] = {"auto",          "he_normal",      "he_uniform",
                                    "xavier_normal", "xavier_uniform", NULL};
_Static_assert(sizeof layer_types / sizeof layer_types[0] == CFG_N_LAYER_TYPES + 1, "types");
_Static_assert(MS_LAYER_ACTIVATION == CFG_N_LAYER_TYPES - 1, "layer_types follows ms_layer_type");
_Static_assert(sizeof activations / sizeof activations[0] == MS_ACT_SOFTMAX + 2, "activations");
_Static_assert(sizeof inits / sizeof inits[0] == MS_INIT_XAVIER_UNIFORM + 2, "inits");

/* The resume column: SAFE keys may change between a checkpoint and the run
 * that resumes from it; PINNED keys change the parameter layout, the data or
 * the sample stream, and config_resume_diff() refuses a change. */
#define SAFE 1
#define PINNED 0

#define FLD(T, f) .off = offsetof(T, f), .size = sizeof(((T *)0)->f)
#define STR(p, f, d, fl, rs, doc_)                                                           \
  {                                                                                          \
    .path = p, .type = K_STR, FLD(ms_config, f), .def_s = d, .flags = fl, .resume_safe = rs, \
    .doc = doc_                                                                              \
  }
#define ENUM(p, f, d, set, rs, doc_)                                                             \
  {                                                                                              \
    .path = p, .type = K_ENUM, FLD(ms_config, f), .def_s = d, .allowed = set, .resume_safe = rs, \
    .doc = doc_                                                                                  \
  }
#define NUM(p, t, f, d, lo, hi, fl, rs, doc_)                                               \
  {                                                                                         \
    .path = p, .type = t, FLD(ms_config, f), .def_n = d, .min = lo, .max = hi, .flags = fl, \
    .resume_safe = rs, .doc = doc_                                                          \
  }
#define INT(p, f, d, lo, hi, rs, doc_) NUM(p, K_INT, f, d, lo, hi, 0, rs, doc_)
#define DBL(p, f, d, lo, hi, fl, rs, doc_) NUM(p, K_DBL, f, d, lo, hi, fl, rs, doc_)
#define BOOL(p, f, d, rs, doc_) NUM(p, K_BOOL, f, d, 0, 1, 0, rs, doc_)

const key_spec cfg_keys[] = {
    STR("run.name", run.name, "run", F_REQUIRED, SAFE, "run name, used in messages and metrics"),
    STR("run.dir", run.dir, "runs/run", F_REQUIRED, SAFE,
        "run directory: metrics, resolved config"),
    NUM("run.seed", K_U64, run.seed, 0, 0, 0, 0, PINNED, "seeds init and the sample order"),
    INT("run.threads", run.threads, 0, 0, 1024, SAFE, "BLAS threads per rank; 0 = cores / ranks"),
    STR("data.path", data.path, "", F_REQUIRED, PINNED, "HDF5 file with the dataset"),
    STR("data.train_x", data.train_x, "/train/images", F_REQUIRED, PINNED,
        "dataset of training inputs"),
    STR("data.train_y", data.train_y, "/train/labels", F_REQUIRED, PINNED,
        "dataset of training labels"),
    STR("data.test_x", data.test_x, "/test/images", 0, SAFE,
        "dataset of test inputs; \"\" = no eval"),
    STR("data.test_y", data.test_y, "/test/labels", 0, SAFE, "dataset of test labels"),
    DBL("data.scale", data.scale, 1.0, 0, HUGE_VAL, F_MIN_EXCL, PINNED,
        "multiplies every input value, before mean and std"),
    {.path = "data.mean",
     .type = K_FLOATS,
     FLD(ms_config, data.mean),
     .min = -HUGE_VAL,
     .max = HUGE_VAL,
     .resume_safe = PINNED,
     .doc = "subtracted after scale: 1 value, 1 per channel (inputs (N, C, ...)) or 1 per "
            "feature; [] = none"},
    {.path = "data.std",
     .type = K_FLOATS,
     FLD(ms_config, data.std),
     .min = 0,
     .max = HUGE_VAL,
     .flags = F_MIN_EXCL,
     .resume_safe = PINNED,
     .doc = "divides after the mean: 1 value, 1 per channel or 1 per feature; [] = none"},
    BOOL("data.check_finite", data.check_finite, 0, SAFE,
         "before training, read all data once and refuse NaN/Inf (each rank checks 1/world)"),
    ENUM("data.shuffle", data.shuffle, "global", shuffle_names, PINNED,
         "sample order per epoch: global (a permutation), block (shuffled blocks of block_size "
         "samples, mixed shuffle_window blocks at a time; for slow random reads), none "
         "(sequential)"),
    INT("data.block_size", data.block_size, 0, 0, INT_MAX, PINNED,
        "shuffle block: samples per block; 0 = the inputs' HDF5 chunk (about 1 MiB of samples "
        "if not chunked)"),
    INT("data.shuffle_window", data.shuffle_window, 16, 1, INT_MAX, PINNED,
        "shuffle block: blocks whose samples are shuffled together"),
    INT("data.prefetch", data.prefetch, 2, 0, 64, SAFE,
        "batches a loader thread reads ahead from the file while the step computes (streamed "
        "data only: data in memory is copied in the step); 0 = read in the step"),
    ENUM("data.cache", data.cache, "auto", cache_names, SAFE,
         "inputs in memory (memory: error over data.memory_mb), streamed from the file "
         "(stream), or in memory when they fit data.memory_mb (auto)"),
    INT("data.memory_mb", data.memory_mb, 2048, 1, 1048576, SAFE,
        "per-rank memory budget in MiB for the training (and, apart, the test) inputs: held in "
        "memory when they fit, else the HDF5 chunk cache of the streamed reads"),
    {.path = "model.input",
     .type = K_DIMS,
     FLD(ms_config, model.input),
     .min = 1,
     .max = INT_MAX,
     .resume_safe = PINNED,
     .doc = "per-sample input shape; [] = from the data"},
    {.path = "model.layers",
     .type = K_LAYERS,
     .resume_safe = PINNED,
     .doc = "the layer stack, input to logits"},
    ENUM("model.loss", model.loss, "softmax_cross_entropy", loss_names, PINNED,
         "loss function; softmax_cross_entropy and bce_with_logits take logits (last activation "
         "none)"),
    DBL("model.label_smoothing", model.label_smoothing, 0, 0, 1, F_MAX_EXCL, SAFE,
        "softmax_cross_entropy: share of the target spread over all classes"),
    ENUM("model.precision", model.precision, "fp32", precision_names, SAFE,
         "dense layers' products: fp32 (OpenBLAS), bf16 (oneDNN: bf16 inputs and weights, fp32 "
         "sums, fp32 master weights and optimizer), or auto (bf16 where the CPU executes it "
         "natively and faster than fp32: AMX, or AVX512_BF16 on AMD; else fp32; the choice "
         "and its reason are printed)"),
    ENUM("optim.name", optim.name, "sgd", optim_names, PINNED,
         "optimizer (its state differs: no change on resume)"),
    DBL("optim.lr", optim.lr, 0.01, 0, 10, F_MIN_EXCL, SAFE, "peak learning rate"),
    DBL("optim.momentum", optim.momentum, 0.9, 0, 1, F_MAX_EXCL, SAFE, "sgd: momentum coefficient"),
    DBL("optim.weight_decay", optim.weight_decay, 0, 0, 1, 0, SAFE,
        "weight decay: L2 for sgd and adam, decoupled for adamw"),
    BOOL("optim.nesterov", optim.nesterov, 0, SAFE, "sgd: Nesterov momentum"),
    DBL("optim.beta1", optim.beta1, 0.9, 0, 1, F_MAX_EXCL, SAFE,
        "adam, adamw: decay of the gradient average"),
    DBL("optim.beta2", optim.beta2, 0.999, 0, 1, F_MAX_EXCL, SAFE,
        "adam, adamw: decay of the squared-gradient average"),
    DBL("optim.eps", optim.eps, 1e-8, 0, HUGE_VAL, F_MIN_EXCL, SAFE,
        "adam, adamw: added to the root of the squared-gradient average"),
    BOOL("optim.decay_all", optim.decay_all, 0, SAFE,
         "also apply weight decay to biases and normalisation parameters; by default they are "
         "excluded"),
    DBL("optim.clip_norm", optim.clip_norm, 0, 0, HUGE_VAL, 0, SAFE,
        "scale the gradients down when their global L2 norm (after the sync) exceeds this; "
        "0 = off"),
    ENUM("schedule.name", schedule.name, "constant", schedule_names, SAFE,
         "learning-rate schedule"),
    INT("schedule.warmup_steps", schedule.warmup_steps, 0, 0, INT_MAX, SAFE, "linear warmup steps"),
    DBL("schedule.min_lr_ratio", schedule.min_lr_ratio, 0, 0, 1, 0, SAFE, "cosine floor / lr"),
    INT("schedule.step_size", schedule.step_size, 1000, 1, INT_MAX, SAFE,
        "step: multiply the lr by gamma every step_size steps (the default suits runs of a few "
        "thousand steps: set it for yours)"),
    DBL("schedule.gamma", schedule.gamma, 0.1, 0, 1, F_MIN_EXCL, SAFE,
        "step: factor applied to the lr every step_size steps"),
    DBL("schedule.div_factor", schedule.div_factor, 25, 1, HUGE_VAL, 0, SAFE,
        "onecycle: start at lr / div_factor"),
    DBL("schedule.final_div_factor", schedule.final_div_factor, 1e4, 1, HUGE_VAL, 0, SAFE,
        "onecycle: end at the start lr / final_div_factor"),
    DBL("schedule.pct_start", schedule.pct_start, 0.3, 0, 1, F_MIN_EXCL | F_MAX_EXCL, SAFE,
        "onecycle: fraction of the steps spent rising to lr"),
    INT("train.epochs", train.epochs, 1, 1, 100000, SAFE, "passes over the training set"),
    INT("train.batch_size", train.batch_size, 64, 1, 1 << 24, PINNED,
        "global batch, split over ranks"),
    INT("train.eval_batch_size", train.eval_batch_size, 1000, 1, 1 << 24, SAFE,
        "global eval batch"),
    INT("train.max_steps", train.max_steps, 0, 0, INT_MAX, SAFE, "stop after N steps; 0 = epochs"),
    INT("train.eval_top_k", train.eval_top_k, 0, 0, INT_MAX, SAFE,
        "also report top-k accuracy at evaluation (softmax_cross_entropy); 0 = off"),
    INT("train.accumulate", train.accumulate, 1, 1, 1 << 16, SAFE,
        "gradient accumulation: each rank's share of the global batch runs as K micro-batches, "
        "synced once per step (batch_size stays the global batch; it must divide by world x K)"),
    STR("checkpoint.dir", checkpoint.dir, "", 0, SAFE, "\"\" = <run.dir>/checkpoints"),
    INT("checkpoint.every_steps", checkpoint.every_steps, 0, 0, INT_MAX, SAFE,
        "0 = only at the end"),
    INT("checkpoint.keep", checkpoint.keep, 3, 1, 1000, SAFE, "keep the newest K checkpoints"),
    INT("checkpoint.level", checkpoint.level, 3, 1, 19, SAFE, "zstd level"),
    INT("checkpoint.workers", checkpoint.workers, 0, 0, 256, SAFE,
        "zstd compression threads; 0 = none"),
    DBL("checkpoint.every_minutes", checkpoint.every_minutes, 0, 0, HUGE_VAL, 0, SAFE,
        "also checkpoint after this much time; 0 = off"),
    BOOL("checkpoint.shuffle", checkpoint.shuffle, 0, SAFE,
         "store tensor bytes byte-shuffled (smaller, faster to read; export gives plain)"),
    DBL("comm.timeout_s", comm.timeout_s, 300, 0, HUGE_VAL, F_MIN_EXCL, SAFE,
        "hang watchdog: a rank that waits longer than this in a collective during training "
        "reports the step and operation and aborts the job (exit 6)"),
    DBL("comm.bucket_mb", comm.bucket_mb, 25, 0, 4096, F_MIN_EXCL, SAFE,
        "gradient bucket size in MiB: whole layers, from the last, until the bucket reaches it "
        "(as PyTorch DDP)"),
    DBL("comm.first_bucket_mb", comm.first_bucket_mb, 1, 0, 4096, F_MIN_EXCL, SAFE,
        "size of the first bucket (the last layers), which starts earliest"),
    BOOL("comm.overlap", comm.overlap, 1, SAFE,
         "reduce each bucket while backward computes the layers before it; false = one "
         "collective after backward (same result, bit for bit)"),
    BOOL("comm.shared_memory", comm.shared_memory, 1, SAFE,
         "when every rank is on one node, sum the gradients in a node-shared MPI window (no "
         "message copies, no overlap; same result, bit for bit); and share a streamed set's "
         "chunk cache among the ranks of a node when it holds the whole set (each chunk "
         "decoded once per node); false = MPI collectives, each rank decodes its own"),
    ENUM("comm.compress", comm.compress, "none", compress_names, SAFE,
         "gradients on the wire: fp16 or bf16 halve the bytes, with error feedback (each rank "
         "adds what rounding lost to its next gradient; not kept in checkpoints)"),
    BOOL("comm.sync", comm.sync, 1, SAFE,
         "benchmarks only: false skips the gradient sync, so ranks train different models"),
    INT("log.every_steps", log.every_steps, 50, 1, INT_MAX, SAFE, "log interval in steps"),
    BOOL("log.progress", log.progress, 1, SAFE, "progress bar when stdout is a tty"),
};
const size_t cfg_n_keys = sizeof cfg_keys / sizeof cfg_keys[0];
_Static_assert(sizeof cfg_keys / sizeof cfg_keys[0] <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

/* Items of model.layers, in the order the emitter writes a layer. All change
 * the parameter layout or the computation, so all are pinned. */
#define LT(t) (1u << MS_LAYER_##t)
#define POOLS (LT(MAXPOOL2D) | LT(AVGPOOL2D))
#define WEIGHTED (LT(DENSE) | LT(CONV2D))
#define ACTIVATED (LT(DENSE) | LT(CONV2D) | LT(LAYERNORM) | LT(ACTIVATION))
#define ALL_TYPES ((1u << CFG_N_LAYER_TYPES) - 1)
#define WINDOW_MAX (1 << 16) /* kernel, stride, padding: far beyond any image, no overflow */
#define LKEY(p, t, f, d, lo, hi, fl, use, need, set, doc_)                                     \
  {                                                                                            \
    .path = p, .type = t, FLD(ms_layer_cfg, f), .def_n = d, .min = lo, .max = hi, .flags = fl, \
    .resume_safe = PINNED, .allowed = set, .doc = doc_, .uses = use, .needs = need             \
  }

const key_spec cfg_layer_keys[] = {
    LKEY("type", K_ENUMI, type, MS_LAYER_DENSE, 0, 0, 0, ALL_TYPES, 0, layer_types, "layer kind"),
    LKEY("units", K_INT, units, 0, 1, INT_MAX, 0, LT(DENSE), LT(DENSE), NULL, "output features"),
    LKEY("filters", K_INT, filters, 0, 1, INT_MAX, 0, LT(CONV2D), LT(CONV2D), NULL,
         "output channels"),
    LKEY("kernel", K_INT, kernel, 0, 1, WINDOW_MAX, 0, LT(CONV2D) | POOLS, LT(CONV2D) | POOLS, NULL,
         "side of the square window"),
    LKEY("stride", K_INT, stride, 0, 0, WINDOW_MAX, 0, LT(CONV2D) | POOLS, 0, NULL,
         "step of the window; 0 = 1 for conv2d, = kernel for pools"),
    LKEY("padding", K_INT, padding, 0, 0, WINDOW_MAX, 0, LT(CONV2D), 0, NULL,
         "zeros added on each side of the input"),
    LKEY("rate", K_DBL, rate, 0, 0, 1, F_MAX_EXCL, LT(DROPOUT), 0, NULL,
         "probability of zeroing an input while training"),
    LKEY("eps", K_DBL, eps, 1e-5, 0, HUGE_VAL, F_MIN_EXCL, LT(LAYERNORM), 0, NULL,
         "added to the variance"),
    LKEY("activation", K_ENUMI, activation, MS_ACT_NONE, 0, 0, 0, ACTIVATED, 0, activations,
         "applied to the output; an activation layer needs one; none on the last layer for a "
         "loss that takes logits"),
    LKEY("alpha", K_DBL, alpha, 0.01, 0, HUGE_VAL, 0, ACTIVATED, 0, NULL,
         "slope below 0 of leaky_relu (only with activation leaky_relu)"),
    LKEY("init", K_ENUMI, init, MS_INIT_AUTO, 0, 0, 0, WEIGHTED, 0, inits,
         "weight initialisation; auto = he_normal before relu and leaky_relu, xavier_normal "
         "otherwise"),
};
const size_t cfg_n_layer_keys = sizeof cfg_layer_keys / sizeof cfg_layer_keys[0];
_Static_assert(sizeof cfg_layer_keys / sizeof cfg_layer_keys[0] == CFG_N_LAYER_KEYS, "layer keys");
const char *const cfg_layer_key_names[] = {"type",       "units",   "filters", "kernel",
                                           "stride",     "padding", "rate",    "eps",
                                           "activation", "alpha",   "init"};
_Static_assert(sizeof cfg_layer_key_names / sizeof cfg_layer_key_names[0] == CFG_N_LAYER_KEYS,
               "one name per layer key");

const layer_type_doc cfg_layer_type_docs[] = {
    {"it is fully connected",
     "fully connected: flattens its input into `units` outputs, then its activation"},
    {"it is a 2-D convolution",
     "2-D convolution of a (C, H, W) input into `filters` channels with a `kernel` x `kernel` "
     "window, `stride` (0 = 1) and `padding` zeros on each side, then its activation"},
    {"it keeps the channels",
     "maximum of each `kernel` x `kernel` window, channel by channel; `stride` 0 = `kernel`"},
    {"it keeps the channels",
     "mean of each `kernel` x `kernel` window, channel by channel; `stride` 0 = `kernel`"},
    {"it only reshapes", "(C, H, W) to (C*H*W); no data movement, no keys besides `type`"},
    {"it keeps the shape",
     "zeroes each input with probability `rate` while training; the identity at evaluation"},
    {"it normalises each sample",
     "normalises all features of a sample (`eps` added to the variance), then a learned gain "
     "and bias, then its activation"},
    {"it only applies its activation", "applies `activation` (not none) and nothing else"},
};
_Static_assert(sizeof cfg_layer_type_docs / sizeof cfg_layer_type_docs[0] == CFG_N_LAYER_TYPES,
               "one doc per layer type");

const char *const cfg_sections[] = {"run",   "data",       "model", "optim", "schedule",
                                    "train", "checkpoint", "comm",  "log"};
const size_t cfg_n_sections = sizeof cfg_sections / sizeof cfg_sections[0];
_Static_assert(sizeof cfg_sections / sizeof cfg_sections[0] == CFG_N_SECTIONS, "sections");

/* ---- text helpers ---------------------------------------------------------- */

void cfg_sb_printf(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = b->oom ? -1 : vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (n >= 0 && b->len + (size_t)n + 1 > cap) cap *= 2;
    char *s = n < 0 ? NULL : realloc(b->s, cap);
    if (!s) {
      b->oom = 1;
      return;
    }
    b->s = s;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

const char *cfg_leaf(const char *path) {
  const char *dot = strrchr(path, '.');
  return dot ? dot + 1 : path;
}

int cfg_is_null_word(const char *s, size_t n) {
  return n == 0 || (n == 1 && s[0] == '~') ||
         (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

/* 300 stays 300 (not 3e+02) and 0.05 stays 0.05 (not 0.050000000000000003). */
void cfg_fmt_double(char *out, size_t n, double v) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(out, n, "%.*g", prec, v);
    if (strtod(out, NULL) == v) return;
  }
}

/* "[1, 100000]", "> 0", "(0, 1)": the bounds of k without the noun. */
static void range_bounds(const key_spec *k, char *out, size_t n) {
  if (k->max >= (k->type == K_DBL ? HUGE_VAL : INT_MAX))
    snprintf(out, n, "%s %.15g", k->flags & F_MIN_EXCL ? ">" : ">=", k->min);
  else
    snprintf(out, n, "%c%.15g, %.15g%c", k->flags & F_MIN_EXCL ? '(' : '[', k->min, k->max,
             k->flags & F_MAX_EXCL ? ')' : ']');
}

void cfg_range_desc(const key_spec *k, char *out, size_t n) {
  char bounds[96];
  range_bounds(k, bounds, sizeof bounds);
  snprintf(out, n, "%s %s%s", k->type == K_DBL ? "a number" : "an integer",
           bounds[0] == '[' || bounds[0] == '(' ? "in " : "", bounds);
}

int cfg_in_range(const key_spec *k, double v) {
  if (k->flags & F_MIN_EXCL ? !(v > k->min) : !(v >= k->min)) return 0;
  return k->flags & F_MAX_EXCL ? v < k->max : v <= k->max;
}

void cfg_allowed_list(const key_spec *k, char *out, size_t n) {
  size_t len = 0;
  out[0] = '\0';
  for (const char *const *a = k->allowed; a && *a && len < n; a++)
    len += (size_t)snprintf(out + len, n - len, "%s%s", a == k->allowed ? "" : ", ", *a);
}

int cfg_find_allowed(const key_spec *k, const char *s, size_t n) {
  for (int i = 0; k->allowed[i]; i++)
    if (strlen(k->allowed[i]) == n && !memcmp(k->allowed[i], s, n)) return i;
  return -1;
}

const char *cfg_enum_name(const key_spec *k, int v) {
  for (int i = 0; k->allowed[i]; i++)
    if (i == v) return k->allowed[i];
  return "invalid";
}

/* The code point of the UTF-8 sequence at s (n bytes left) and its length
 * in *len; a byte that starts no valid sequence is returned as itself. */
static unsigned utf8_at(const unsigned char *s, size_t n, size_t *len) {
  unsigned cp = s[0];
  size_t k = cp >= 0xF0 ? 4 : cp >= 0xE0 ? 3 : cp >= 0xC0 ? 2 : 1;
  *len = 1;
  if (k == 1 || k > n) return cp;
  cp &= 0x3F >> (k - 1);
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return s[0];
    cp = cp << 6 | (s[i] & 0x3F);
  }
  *len = k;
  return cp;
}

void cfg_emit_string(sbuf *b, const char *s, size_t size) {
  size_t n = strnlen(s, size), i = 0, len;
  int plain = n > 0 && s[0] != '-' && !cfg_is_null_word(s, n);
  for (; plain && i < n; i++) plain = isalnum((unsigned char)s[i]) || strchr("_./-", s[i]);
  if (plain) {
    cfg_sb_printf(b, "%.*s", (int)n, s);
    return;
  }
  cfg_sb_printf(b, "\"");
  for (i = 0; i < n; i += len) {
    unsigned cp = utf8_at((const unsigned char *)s + i, n - i, &len);
    if (cp == '"' || cp == '\\')
      cfg_sb_printf(b, "\\%c", (char)cp);
    else if (cp == '\n')
      cfg_sb_printf(b, "\\n");
    else if (cp == '\t')
      cfg_sb_printf(b, "\\t");
    else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
      /* C0 and C1 controls: YAML does not allow them raw (U+0085 would even
       * read as a line break). */
      cfg_sb_printf(b, "\\x%02X", cp);
    else if (cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF)
      /* Line and paragraph separators fold like line breaks; the BOM and the
       * non-characters are not printable YAML. */
      cfg_sb_printf(b, "\\u%04X", cp);
    else
      cfg_sb_printf(b, "%.*s", (int)len, s + i);
  }
  cfg_sb_printf(b, "\"");
}

void cfg_emit_dims(sbuf *b, const ms_dims *d) {
  cfg_sb_printf(b, "[");
  for (int i = 0; i < d->ndim && i < MS_MAX_DIMS; i++)
    cfg_sb_printf(b, "%s%d", i ? ", " : "", d->dims[i]);
  cfg_sb_printf(b, "]");
}

void cfg_emit_floats(sbuf *b, const ms_floats *f) {
  char num[40];
  cfg_sb_printf(b, "[");
  for (int i = 0; i < f->n && i < MS_NORM_MAX; i++) {
    /* The shortest form that reads back as the same float. */
    for (int prec = 6; prec <= 9; prec++) {
      snprintf(num, sizeof num, "%.*g", prec, (double)f->v[i]);
      if (strtof(num, NULL) == f->v[i]) break;
    }
    cfg_sb_printf(b, "%s%s", i ? ", " : "", num);
  }
  cfg_sb_printf(b, "]");
}

/* Appends the value of row k inside base as the emitter writes it (model.layers
 * excepted: its items are written apart). */
static void emit_value(sbuf *b, const key_spec *k, const void *base) {
  const char *field = (const char *)base + k->off;
  char num[40];
  int iv = 0;
  uint64_t uv;
  double dv;
  memcpy(&iv, field, k->type == K_INT || k->type == K_BOOL || k->type == K_ENUMI ? sizeof iv : 0);
  switch (k->type) {
    case K_STR:
    case K_ENUM: cfg_emit_string(b, field, k->size); break;
    case K_INT: cfg_sb_printf(b, "%d", iv); break;
    case K_BOOL: cfg_sb_printf(b, "%s", iv == 1 ? "true" : iv ? "invalid" : "false"); break;
    case K_ENUMI: cfg_sb_printf(b, "%s", cfg_enum_name(k, iv)); break;
    case K_U64:
      memcpy(&uv, field, sizeof uv);
      cfg_sb_printf(b, "%" PRIu64, uv);
      break;
    case K_DBL:
      memcpy(&dv, field, sizeof dv);
      cfg_fmt_double(num, sizeof num, dv);
      cfg_sb_printf(b, "%s", num);
      break;
    case K_DIMS: {
      ms_dims d;
      memcpy(&d, field, sizeof d);
      cfg_emit_dims(b, &d);
      break;
    }
    case K_FLOATS: cfg_emit_floats(b, (const ms_floats *)(const void *)field); break;
    case K_LAYERS: break;
  }
}

/* A layer as a flow mapping: type first, then the keys of its type, then any
 * other key that does not hold its default (only an invalid layer has one),
 * so that every layer reads back as itself. */
static void emit_layer(sbuf *b, const ms_layer_cfg *l) {
  cfg_sb_printf(b, "{type: ");
  emit_value(b, &cfg_layer_keys[LAYER_TYPE], l);
  for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++) {
    if (!cfg_layer_key_applies(l, j) && cfg_layer_key_is_default(l, j)) continue;
    cfg_sb_printf(b, ", %s: ", cfg_layer_keys[j].path);
    emit_value(b, &cfg_layer_keys[j], l);
  }
  cfg_sb_printf(b, "}");
}

/* ---- defaults and emission --------------------------------------------------- */

/* Writes the default of row k into base (model.layers and model.input: none). */
static void set_default(const key_spec *k, void *base) {
  char *field = (char *)base + k->off;
  int iv = (int)k->def_n;
  uint64_t uv = (uint64_t)k->def_n;
  switch (k->type) {
    case K_STR:
    case K_ENUM: memcpy(field, k->def_s, strlen(k->def_s) + 1); break;
    case K_INT:
    case K_BOOL:
    case K_ENUMI: memcpy(field, &iv, sizeof iv); break;
    case K_U64: memcpy(field, &uv, sizeof uv); break;
    case K_DBL: memcpy(field, &k->def_n, sizeof k->def_n); break;
    case K_DIMS: /* empty: the shape comes from the data */
    case K_FLOATS: /* empty: no mean, no std */
    case K_LAYERS: /* no layers: the config must give them */ break;
  }
}

void config_defaults(ms_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < cfg_n_keys; i++) set_default(&cfg_keys[i], cfg);
}

void cfg_layer_defaults(ms_layer_cfg *l) {
  memset(l, 0, sizeof *l);
  for (size_t j = 0; j < cfg_n_layer_keys; j++) set_default(&cfg_layer_keys[j], l);
}

int cfg_layer_key_applies(const ms_layer_cfg *l, size_t row) {
  unsigned type = (unsigned)l->type;
  if (row >= cfg_n_layer_keys || type >= CFG_N_LAYER_TYPES) return 0;
  if (!(cfg_layer_keys[row].uses & (1u << type))) return 0;
  return row != LAYER_ALPHA || l->activation == MS_ACT_LEAKY_RELU;
}

int cfg_layer_key_is_default(const ms_layer_cfg *l, size_t row) {
  ms_layer_cfg d;
  const key_spec *k = &cfg_layer_keys[row];
  cfg_layer_defaults(&d);
  return !memcmp((const char *)l + k->off, (const char *)&d + k->off, k->size);
}

void cfg_layer_type_keys(int type, char *out, size_t n) {
  size_t len = 0;
  out[0] = '\0';
  for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys && len < n; j++)
    if (type >= 0 && type < CFG_N_LAYER_TYPES && cfg_layer_keys[j].uses & (1u << type))
      len += (size_t)snprintf(out + len, n - len, "%s%s", len ? ", " : "", cfg_layer_keys[j].path);
}

char *config_emit(const ms_config *cfg) {
  sbuf b = {0};
  size_t section_len = 0;
  cfg_sb_printf(&b, "# midscale resolved config: every key, defaults filled in\n");
  for (size_t i = 0; i < cfg_n_keys; i++) {
    const key_spec *k = &cfg_keys[i];
    const char *name = cfg_leaf(k->path);
    size_t sec_len = (size_t)(name - 1 - k->path), start;
    if (i == 0 || sec_len != section_len || strncmp(cfg_keys[i - 1].path, k->path, sec_len + 1))
      cfg_sb_printf(&b, "%.*s:\n", (int)sec_len, k->path);
    section_len = sec_len;
    start = b.len;
    cfg_sb_printf(&b, "  %s: ", name);
    if (k->type == K_LAYERS)
      cfg_sb_printf(&b, "%s", cfg->model.n_layers > 0 ? "" : "[]");
    else
      emit_value(&b, k, cfg);
    /* Comments line up at column 40 when the value leaves room. */
    size_t w = b.oom ? 0 : b.len - start;
    cfg_sb_printf(&b, "%*s# %s\n", w < 38 ? (int)(38 - w) : 2, "", k->doc);
    for (int l = 0; k->type == K_LAYERS && l < cfg->model.n_layers && l < MS_MAX_LAYERS; l++) {
      cfg_sb_printf(&b, "    - ");
      emit_layer(&b, &cfg->model.layers[l]);
      cfg_sb_printf(&b, "\n");
    }
  }
  if (b.oom) free(b.s);
  return b.oom ? NULL : b.s;
}

/* ---- the reference ------------------------------------------------------------- */

static const char *type_name(const key_spec *k) {
  switch (k->type) {
    case K_STR: return "string";
    case K_INT: return "integer";
    case K_U64: return "unsigned 64-bit integer";
    case K_DBL: return "number";
    case K_BOOL: return "bool";
    case K_ENUM:
    case K_ENUMI: return "enum";
    case K_LAYERS: return "list of layers";
    case K_DIMS: return "list of integers";
    case K_FLOATS: return "list of numbers";
  }
  return "?";
}

/* Appends one table row: key, type, default, allowed values, resume, doc. */
static void reference_row(sbuf *b, const char *path, const key_spec *k, const void *defaults) {
  char want[160];
  cfg_sb_printf(b, "| `%s` | %s | ", path, type_name(k));
  if (k->type == K_LAYERS) {
    cfg_sb_printf(b, "(none) | 1 to %d layers, each a mapping of the `model.layers[i].*` keys",
                  MS_MAX_LAYERS);
  } else if (k->type == K_INT &&
             !cfg_in_range(k, *(const int *)((const char *)defaults + k->off))) {
    /* A default outside the range means the key is required. */
    range_bounds(k, want, sizeof want);
    cfg_sb_printf(b, "(none) | required, %s", want);
  } else {
    cfg_sb_printf(b, "`");
    emit_value(b, k, defaults);
    cfg_sb_printf(b, "` | ");
    switch (k->type) {
      case K_STR:
        cfg_sb_printf(b, "%sat most %zu bytes", k->flags & F_REQUIRED ? "required, " : "",
                      k->size - 1);
        break;
      case K_ENUM:
      case K_ENUMI:
        for (const char *const *a = k->allowed; *a; a++)
          cfg_sb_printf(b, "%s`%s`", a == k->allowed ? "" : ", ", *a);
        break;
      case K_BOOL: cfg_sb_printf(b, "`true`, `false`"); break;
      case K_U64: cfg_sb_printf(b, "[0, %" PRIu64 "]", UINT64_MAX); break;
      case K_INT:
      case K_DBL:
        range_bounds(k, want, sizeof want);
        cfg_sb_printf(b, "%s", want);
        break;
      case K_DIMS: cfg_sb_printf(b, "0 to %d integers >= 1, e.g. `[28, 28]`", MS_MAX_DIMS); break;
      case K_FLOATS:
        range_bounds(k, want, sizeof want);
        cfg_sb_printf(b, "0 to %d %snumbers%s%s, e.g. `[0.5]`", MS_NORM_MAX,
                      k->min <= -HUGE_VAL ? "finite " : "", k->min <= -HUGE_VAL ? "" : " ",
                      k->min <= -HUGE_VAL ? "" : want);
        break;
      case K_LAYERS: break;
    }
  }
  cfg_sb_printf(b, " | %s | ", k->resume_safe ? "yes" : "no");
  /* Markdown: a bar would end the cell, `<run.dir>` would read as a tag. */
  for (const char *s = k->doc; *s; s++)
    cfg_sb_printf(b, "%s", *s == '|' ? "\\|" : *s == '<' ? "&lt;" : (char[2]){*s, '\0'});
  /* Layer items: the types they belong to. */
  for (int t = 0, n = 0; k->uses && k->uses != ALL_TYPES && t < CFG_N_LAYER_TYPES; t++)
    if (k->uses & (1u << t))
      cfg_sb_printf(b, "%s%s",
                    n++ ? ", " : "; layer types: ", cfg_enum_name(&cfg_layer_keys[LAYER_TYPE], t));
  cfg_sb_printf(b, " |\n");
}

/* The table of layer types: their keys (required ones marked) and what they do. */
static void reference_layer_types(sbuf *b) {
  cfg_sb_printf(b,
                "\n### Layer types\n\n"
                "Each item of `model.layers` is a flow or block mapping, `type` first by\n"
                "convention (`{type: conv2d, filters: 32, kernel: 3, activation: relu}`); an\n"
                "omitted key takes its default. A key that does not belong to the layer's type\n"
                "is an error unless it holds its default, and so is `alpha` with an activation\n"
                "other than `leaky_relu`. `--set model.layers[i].KEY=value` edits layer i; an\n"
                "index equal to the number of layers appends a layer that starts from the\n"
                "defaults (set its `type` first). A `--set` after which a key no longer applies\n"
                "(another `type`, an activation other than `leaky_relu`) resets that key to its\n"
                "default. Whether a window fits the input is checked with the model, once the\n"
                "input shape is known.\n\n"
                "| type | keys | what it does |\n| --- | --- | --- |\n");
  for (int t = 0; t < CFG_N_LAYER_TYPES; t++) {
    int n = 0;
    cfg_sb_printf(b, "| `%s` | ", cfg_enum_name(&cfg_layer_keys[LAYER_TYPE], t));
    for (size_t j = LAYER_TYPE + 1; j < cfg_n_layer_keys; j++)
      if (cfg_layer_keys[j].uses & (1u << t))
        cfg_sb_printf(b, "%s`%s`%s", n++ ? ", " : "", cfg_layer_keys[j].path,
                      cfg_layer_keys[j].needs & (1u << t) ? " (required)" : "");
    cfg_sb_printf(b, "%s | %s |\n", n ? "" : "(none)", cfg_layer_type_docs[t].doc);
  }
}

char *config_reference(void) {
  sbuf b = {0};
  ms_config defaults;
  ms_layer_cfg layer_defaults;
  config_defaults(&defaults);
  cfg_layer_defaults(&layer_defaults);
  cfg_sb_printf(&b,
                "# midscale config reference\n\n"
                "<!-- Generated by `midscale config-reference` from the schema table in\n"
                "     trainer/config_schema.c. Do not edit: the test e2e_config_reference\n"
                "     fails when this file and the table disagree. -->\n\n"
                "A config is YAML with one mapping per section. Every key has a type, a\n"
                "default and a range; an omitted key takes its default, an unknown key is an\n"
                "error. `--set section.key=value` overrides a key from the command line\n"
                "(`--set model.layers[1].units=512` for list items, `--set "
                "model.input=[28,28]`\n"
                "for lists). `midscale check CONFIG` validates a config without training.\n"
                "An enum value that is not allowed is an error that names the nearest allowed\n"
                "value.\n\n"
                "**Resume-safe** keys may differ between a checkpoint and the run that resumes\n"
                "from it (`--resume`); a change in any other key (they change the model, the\n"
                "data or the sample order) makes the resume fail with a message that lists\n"
                "every differing key with both values.\n");
  for (size_t s = 0; s < cfg_n_sections; s++) {
    size_t sl = strlen(cfg_sections[s]);
    cfg_sb_printf(&b,
                  "\n## %s\n\n| key | type | default | allowed values | resume-safe | "
                  "description |\n| --- | --- | --- | --- | --- | --- |\n",
                  cfg_sections[s]);
    for (size_t i = 0; i < cfg_n_keys; i++) {
      const key_spec *k = &cfg_keys[i];
      if (strncmp(k->path, cfg_sections[s], sl) || k->path[sl] != '.') continue;
      reference_row(&b, k->path, k, &defaults);
      for (size_t j = 0; k->type == K_LAYERS && j < cfg_n_layer_keys; j++) {
        char path[64];
        snprintf(path, sizeof path, "model.layers[i].%s", cfg_layer_keys[j].path);
        reference_row(&b, path, &cfg_layer_keys[j], &layer_defaults);
      }
    }
    if (!strcmp(cfg_sections[s], "model")) reference_layer_types(&b);
  }
  if (b.oom) free(b.s);
  return b.oom ? NULL : b.s;
}

/* ---- the resume diff ----------------------------------------------------------- */

/* Adds "path old → new" to b when the values of k in a and b differ. */
static int diff_value(sbuf *out, const char *path, const key_spec *k, const void *a,
                      const void *b) {
  sbuf va = {0}, vb = {0};
  int differ;
  emit_value(&va, k, a);
  emit_value(&vb, k, b);
  differ = va.oom || vb.oom || strcmp(va.s, vb.s) != 0;
  if (differ)
    cfg_sb_printf(out, "%s%s %s → %s", out->len ? "; " : "", path, va.s ? va.s : "?",
                  vb.s ? vb.s : "?");
  free(va.s);
  free(vb.s);
  return differ;
}

int config_resume_diff(const ms_config *saved, const ms_config *now, char *msg, size_t cap) {
  sbuf d = {0};
  int n = 0;
  char path[64];
  for (size_t i = 0; i < cfg_n_keys; i++) {
    const key_spec *k = &cfg_keys[i];
    if (k->resume_safe) continue;
    if (k->type != K_LAYERS) {
      n += diff_value(&d, k->path, k, saved, now);
      continue;
    }
    int ns = saved->model.n_layers, nn = now->model.n_layers;
    if (ns != nn) {
      cfg_sb_printf(&d, "%smodel.layers %d layers → %d layers", d.len ? "; " : "", ns, nn);
      n++;
    }
    for (int l = 0; l < ns && l < nn && l < MS_MAX_LAYERS; l++)
      for (size_t j = 0; j < cfg_n_layer_keys; j++) {
        if (cfg_layer_keys[j].resume_safe) continue;
        snprintf(path, sizeof path, "model.layers[%d].%s", l, cfg_layer_keys[j].path);
        n += diff_value(&d, path, &cfg_layer_keys[j], &saved->model.layers[l],
                        &now->model.layers[l]);
      }
  }
  if (cap > 0) {
    if (d.oom || !d.s)
      snprintf(msg, cap, "%s", n ? "(out of memory listing the keys)" : "");
    else if (d.len < cap)
      memcpy(msg, d.s, d.len + 1);
    else {
      size_t keep = cap > 4 ? cap - 4 : 0;
      while (keep > 0 && ((unsigned char)d.s[keep] & 0xC0) == 0x80) keep--; /* whole UTF-8 */
      snprintf(msg, cap, "%.*s...", (int)keep, d.s);
    }
  }
  free(d.s);
  return n;
}
