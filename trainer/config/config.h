/* config — the YAML run description as a typed struct.
 *
 * One table in config_schema.c (key path, type, default, range, resume-safe,
 * one-line doc) drives defaults, parsing, `--set` overrides, validation, the
 * resolved-config emitter, the Markdown reference (configs/REFERENCE.md) and
 * the config diff, so that none of them can drift from the others (the
 * files of the module: config_internal.h). Enum keys are C enums, parsed
 * once here; config_enum_name() gives a value's name back.
 *
 * Sections (DESIGN.md, "Config"): run data model optim schedule train
 * checkpoint comm log. Unknown keys are errors that name file:line:col and the
 * nearest known key.
 *
 * Pure logic: no MPI. The caller makes ranks agree (rank 0 reads the file and
 * broadcasts its bytes; every rank parses the same bytes).
 *
 * Errors: functions return 0 or MS_ECONFIG and record the message (all
 * problems found in one text, one per line) with ms_error_set().
 */
#ifndef MS_CONFIG_H
#define MS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define MS_MAX_LAYERS 32
#define MS_PATH_MAX 1024
#define MS_NAME_MAX 256
#define MS_MAX_DIMS 8

/* Values in data.mean / data.std: enough for one per feature of a
 * 32x32 RGB image (3072), and then some. */
#define MS_NORM_MAX 4096

/* A list of numbers (data.mean, data.std); n 0 = not given. */
typedef struct {
  int n;
  float v[MS_NORM_MAX];
} ms_floats;

/* A per-sample shape, e.g. {2, {28, 28}}; ndim 0 = not given. */
typedef struct {
  int ndim;
  int dims[MS_MAX_DIMS];
} ms_dims;

/* Activations, applied to a layer's output (any layer type) or as a layer of
 * their own ({type: activation, activation: gelu}). */
typedef enum {
  MS_ACT_NONE = 0,
  MS_ACT_RELU,
  MS_ACT_LEAKY_RELU, /* slope `alpha` below 0 */
  MS_ACT_GELU,       /* tanh approximation */
  MS_ACT_TANH,
  MS_ACT_SIGMOID,
  MS_ACT_SOFTMAX     /* over the features of a sample */
} ms_activation;

/* Layer kinds. Images are NCHW (DESIGN.md): model.input [C, H, W] (or [H, W]
 * for one channel); dense layers flatten whatever comes in. */
typedef enum {
  MS_LAYER_DENSE = 0, /* units */
  MS_LAYER_CONV2D,    /* filters, kernel, stride (1), padding (0) */
  MS_LAYER_MAXPOOL2D, /* kernel, stride (= kernel) */
  MS_LAYER_AVGPOOL2D, /* kernel, stride (= kernel) */
  MS_LAYER_FLATTEN,   /* (C, H, W) -> (C*H*W): no data movement */
  MS_LAYER_DROPOUT,   /* rate; deterministic from seed, step, global sample index */
  MS_LAYER_LAYERNORM, /* over all features of a sample; eps; gain and bias */
  MS_LAYER_ACTIVATION, /* only its activation */
  /* Sequence layers (a sequence is (T, D), layers_seq.h): */
  MS_LAYER_EMBEDDING,        /* token ids (T) -> (T, dim); vocab, dim */
  MS_LAYER_POS_EMBEDDING,    /* adds a learned (T, D) table */
  MS_LAYER_ATTENTION,        /* multi-head self-attention with its projections; heads, causal */
  MS_LAYER_TRANSFORMER_BLOCK /* pre-norm block: x + attn(ln1(x)), then + mlp(ln2(.)) */
} ms_layer_type;

/* Weight initialisation; biases start at zero, layer-norm gains at one.
 * auto: He normal before relu/leaky_relu, Xavier (Glorot) normal otherwise. */
typedef enum {
  MS_INIT_AUTO = 0,
  MS_INIT_HE_NORMAL,
  MS_INIT_HE_UNIFORM,
  MS_INIT_XAVIER_NORMAL,
  MS_INIT_XAVIER_UNIFORM
} ms_init;

/* The enum keys of the sections, each parsed once by the config module into
 * one of these (the names are those of the schema table, config_schema.c;
 * config_enum_name() gives them back). Consumers switch on the value. */

/* model.loss */
typedef enum {
  MS_LOSS_XENT = 0, /* softmax_cross_entropy: class labels, takes logits */
  MS_LOSS_BCE,      /* bce_with_logits: 0/1 targets, takes logits */
  MS_LOSS_MSE,      /* mse: real targets */
  MS_LOSS_MAE       /* mae: real targets */
} ms_loss;

/* optim.name */
typedef enum { MS_OPTIM_SGD = 0, MS_OPTIM_ADAM, MS_OPTIM_ADAMW } ms_optim_kind;

/* schedule.name */
typedef enum {
  MS_SCHED_CONSTANT = 0,
  MS_SCHED_COSINE,
  MS_SCHED_STEP,
  MS_SCHED_ONECYCLE
} ms_schedule_kind;

/* data.shuffle: the sample order (data/sampler.h) */
typedef enum { MS_SHUFFLE_GLOBAL = 0, MS_SHUFFLE_BLOCK, MS_SHUFFLE_NONE } ms_shuffle;

/* data.cache: where the inputs live (data/dataset.h) */
typedef enum { MS_CACHE_AUTO = 0, MS_CACHE_MEMORY, MS_CACHE_STREAM } ms_cache;

/* checkpoint.compress: where ranks compress their slices of a checkpoint
 * (auto: background only with a core to spare) */
typedef enum {
  MS_CKPT_COMPRESS_AUTO = 0,
  MS_CKPT_COMPRESS_SYNC,
  MS_CKPT_COMPRESS_BACKGROUND
} ms_ckpt_compress;

/* checkpoint.write: who writes a checkpoint of several ranks (auto: ranks
 * on one node, else gather) */
typedef enum { MS_CKPT_WRITE_AUTO = 0, MS_CKPT_WRITE_RANKS, MS_CKPT_WRITE_GATHER } ms_ckpt_write;

/* comm.algorithm: the sum across nodes (comm/hier.h) */
typedef enum {
  MS_ALGO_AUTO = 0,
  MS_ALGO_RING,
  MS_ALGO_HALVING_DOUBLING,
  MS_ALGO_MPI
} ms_comm_algorithm;

/* model.precision: what the dense and conv layers multiply in (dnn.h) */
typedef enum { MS_PRECISION_FP32 = 0, MS_PRECISION_BF16, MS_PRECISION_AUTO } ms_precision;

/* model.conv_kernel: which library runs fp32 conv2d layers (model.h) */
typedef enum { MS_CONV_AUTO = 0, MS_CONV_IM2COL, MS_CONV_ONEDNN } ms_conv_kernel;

/* train.early_stop.metric: an evaluation value as metrics.jsonl logs it;
 * none = no early stopping */
typedef enum {
  MS_ES_NONE = 0,
  MS_ES_LOSS,
  MS_ES_ACC,
  MS_ES_TOPK_ACC,
  MS_ES_BINARY_ACC,
  MS_ES_MSE,
  MS_ES_MAE
} ms_es_metric;

/* train.early_stop.mode: better is lower (min) or higher (max); auto = max
 * for the accuracies, min otherwise */
typedef enum { MS_ES_AUTO = 0, MS_ES_MIN, MS_ES_MAX } ms_es_mode;

/* comm.compress: gradients on the wire (comm/wire.h) */
typedef enum { MS_WIRE_NONE = 0, MS_WIRE_FP16, MS_WIRE_BF16 } ms_wire;

typedef struct {
  ms_layer_type type;
  int units;                /* dense: output features, >= 1 */
  int filters;              /* conv2d: output channels, >= 1 */
  int kernel;               /* conv2d, pools: square window side, >= 1 */
  int stride;               /* conv2d, pools: >= 1; 0 = default (conv 1, pool = kernel) */
  int padding;              /* conv2d: zeros on each side, >= 0 */
  ms_activation activation; /* applied to the output; none on the last layer for logits */
  double alpha;             /* leaky_relu slope (0.01) */
  double rate;              /* dropout probability in [0, 1) */
  double eps;               /* layernorm epsilon (1e-5) */
  ms_init init;             /* dense, conv2d weights */
  int vocab;                /* embedding: token ids 0..vocab-1 */
  int dim;                  /* embedding: features per position */
  int heads;                /* attention, transformer_block: heads, dividing the width */
  int causal;               /* bool, attention, transformer_block: see only earlier positions */
  int hidden;               /* transformer_block: MLP width; 0 = 4 * width */
} ms_layer_cfg;

typedef struct {
  struct {
    char name[MS_NAME_MAX];  /* run name, used in messages and metrics */
    char dir[MS_PATH_MAX];   /* run directory: metrics.jsonl, config.resolved.yaml */
    uint64_t seed;           /* seeds init and the sample order */
    int threads;             /* BLAS threads per rank; 0 = cores / ranks on the node */
  } run;
  struct {
    char path[MS_PATH_MAX];        /* HDF5 file */
    char train_x[MS_NAME_MAX];     /* dataset path of training inputs */
    char train_y[MS_NAME_MAX];     /* dataset path of training labels */
    char test_x[MS_NAME_MAX];      /* "" = no evaluation */
    char test_y[MS_NAME_MAX];
    double scale;                  /* multiplies every input value (1/255 typical for uint8) */
    ms_floats mean;                /* subtracted after scale: 1, per channel or per feature */
    ms_floats std;                 /* divides after the mean: 1, per channel or per feature */
    int check_finite;              /* bool: refuse NaN/Inf in the data before training */
    int allow_links;               /* bool: follow HDF5 external/virtual links (data_allow_links) */
    ms_shuffle shuffle;            /* the sample order (data/sampler.h) */
    int block_size;                /* block: samples per block; 0 = the inputs' HDF5 chunk */
    int shuffle_window;            /* block: blocks whose samples are shuffled together */
    int prefetch;                  /* batches the loader thread reads ahead; 0 = no thread */
    ms_cache cache;                /* where the inputs live */
    int memory_mb;                 /* per-rank budget: inputs in memory, or the chunk cache */
    int tokens;                    /* bool: train_x/test_x are token sets (data/dataset.h) */
    int seq_len;                   /* tokens: window inputs, >= 1 */
    int stride;                    /* tokens: between window starts; 0 = seq_len */
  } data;
  struct {
    int n_layers;
    ms_layer_cfg layers[MS_MAX_LAYERS];
    ms_loss loss;                  /* the loss function */
    double label_smoothing;        /* softmax_cross_entropy: epsilon in [0, 1) */
    ms_dims input;                 /* per-sample input shape; ndim 0 = from the data */
    ms_precision precision;        /* the dense and conv layers' products (dnn.h) */
    ms_conv_kernel conv_kernel;    /* fp32 conv2d: by shape, im2col or oneDNN (model.h) */
    int tie_embeddings;            /* bool: the output head uses the embedding's table */
  } model;
  struct {
    ms_optim_kind name;            /* the optimizer */
    double lr;
    double momentum;               /* sgd */
    double weight_decay;           /* sgd, adam: L2; adamw: decoupled */
    int nesterov;                  /* bool, sgd */
    double beta1, beta2, eps;      /* adam, adamw */
    int decay_all;                 /* bool: also decay biases and norm parameters */
    double clip_norm;              /* clip the global gradient norm to this; 0 = off */
  } optim;
  struct {
    ms_schedule_kind name;         /* the schedule */
    int warmup_steps;
    double min_lr_ratio;           /* cosine floor as a fraction of lr */
    int step_size;                 /* step: multiply the lr by gamma every step_size steps */
    double gamma;                  /* step */
    double div_factor;             /* onecycle: start at lr / div_factor */
    double final_div_factor;       /* onecycle: end at start / final_div_factor */
    double pct_start;              /* onecycle: fraction of the steps rising */
  } schedule;
  struct {
    int epochs;
    int batch_size;                /* global batch: divided across ranks */
    int eval_batch_size;           /* global */
    int max_steps;                 /* > 0: the run's length, overriding epochs; 0 = epochs decide */
    int eval_top_k;                /* also report top-k accuracy (classifiers); 0 = off */
    int accumulate;                /* micro-batches per step: each rank's share of the global
                                      batch in K parts, gradients synced once per step */
    int eval_every_steps;          /* > 0: also evaluate every N global steps; 0 = epoch ends */
    struct {
      ms_es_metric metric;         /* none = off */
      ms_es_mode mode;
      int patience;                /* evaluations without improvement before stopping */
      double min_delta;            /* an improvement is better by more than this */
    } early_stop;
  } train;
  struct {
    char dir[MS_PATH_MAX];         /* "" = <run.dir>/checkpoints */
    int every_steps;               /* 0 = only at the end */
    int keep;                      /* keep the newest K, >= 1 */
    int level;                     /* zstd level 1..19 */
    int workers;                   /* zstd compression threads, 0 = none */
    double every_minutes;          /* also checkpoint after this much time, 0 = off */
    int shuffle;                   /* bool: store tensor bytes byte-shuffled */
    ms_ckpt_compress compress;     /* where ranks compress their slices */
    ms_ckpt_write write;           /* who writes the file */
  } checkpoint;
  struct {
    double timeout_s;              /* hang watchdog: longest wait in a collective, seconds */
    double bucket_mb;              /* gradient bucket size, MiB */
    double first_bucket_mb;        /* the first bucket (the last layers), MiB */
    int overlap;                   /* bool: reduce buckets while backward runs */
    int shared_memory;             /* bool: sum in a node-shared window on one node */
    int shared_params;             /* bool: parameters and optimizer state once per node,
                                    * the optimizer sharded over the node's ranks */
    ms_wire compress;              /* gradients on the wire */
    ms_comm_algorithm algorithm;   /* the sum across nodes */
    int sync;                      /* bool: false skips the gradient sync (benchmarks only) */
  } comm;
  struct {
    int every_steps;               /* log interval in steps, >= 1 */
    int progress;                  /* 1 = progress bar when stdout is a tty */
    ms_dims trace_steps;           /* [from, to]: per-rank timeline of these global steps
                                      (1-based, inclusive) in <run.dir>/trace.json; [] = off */
  } log;
} ms_config;

/* Fills every key with its default. */
void config_defaults(ms_config *cfg);

/* Limits on a config text, a file's or the one saved in a checkpoint
 * (README "Checkpoints"): libyaml's time grows with the square of the
 * nesting depth of flow collections, so depth is counted while parsing and
 * a text nested deeper stops there, before the costly part. A real config
 * is a few KiB, nested 4 levels deep. */
#define CONFIG_MAX_BYTES (1u << 20)
#define CONFIG_MAX_DEPTH 32

/* Parses YAML text (len bytes, need not be NUL-terminated) into cfg, which
 * should hold defaults. `filename` is only used in messages. A text over
 * CONFIG_MAX_BYTES or nested deeper than CONFIG_MAX_DEPTH is refused.
 * @return 0, or MS_ECONFIG with every problem of the text in the message. */
int config_parse(ms_config *cfg, const char *text, size_t len, const char *filename);

/* Applies one `section.key=value` override (the value is parsed as YAML
 * scalar and type-checked like the file; a second YAML document in the
 * value is refused); list items as
 * `model.layers[1].units=512`.
 * @return 0 or MS_ECONFIG. */
int config_override(ms_config *cfg, const char *assignment);

/* Checks what needs no dataset, reporting every problem at once: ranges and
 * allowed values, required keys, 1..MS_MAX_LAYERS layers with a last layer
 * without activation (it produces logits), train.batch_size divisible by
 * world_size (pass 1 to skip; evaluation splits any count), data.test_y set
 * with data.test_x, warmup within max_steps.
 * @return 0 or MS_ECONFIG. */
int config_validate(const ms_config *cfg, int world_size);

/* @return the resolved config as YAML (every key, defaults filled in), which
 * config_parse() reads back to an equal struct. Caller frees. NULL on OOM. */
char *config_emit(const ms_config *cfg);

/* @return the number of input features model.input declares (the product of
 * its dims), or 0 when it is not given. */
int64_t config_input_features(const ms_config *cfg);

/* Cross-check of the model input against the dataset: `shape` (ndim dims)
 * is the per-sample shape of the training inputs named by `source` (e.g.
 * "'data.h5' /train/images"). Inputs are flattened, so the product of
 * model.input must equal the product of shape; an empty model.input takes
 * the shape from the data and always passes.
 * @return 0 or MS_ECONFIG naming both shapes. */
int config_check_input(const ms_config *cfg, const uint64_t *shape, int ndim,
                       const char *source);

/* Cross-check of the schedule against the length of the run, once it is
 * known (check_run_length: max_steps when set, else epochs * floor(N / batch)).
 * @return 0 or MS_ECONFIG when schedule.warmup_steps >= total_steps. */
int config_check_steps(const ms_config *cfg, int64_t total_steps);

/* Which keys config_diff() compares. */
typedef enum {
  CONFIG_DIFF_ALL = 0, /* every key: ranks must run the same config */
  CONFIG_DIFF_PINNED   /* the keys whose schema row is not resume-safe (those that change
                        * the model, the data or the sample stream: model.*,
                        * data.path/train_x/train_y/scale, run.seed, train.batch_size,
                        * optim.name): a resume refuses a change in them */
} config_diff_keys;

/* Compares two configs key by key (a layer item key by key,
 * "model.layers[1].units"; a different number of layers as "model.layers
 * 2 layers → 3 layers"), in schema order.
 * @return 0 when none differs; otherwise the number of differing keys, with
 * "key A_VALUE → B_VALUE" for each, separated by "; ", in msg (cap bytes;
 * cut with "..." on a whole UTF-8 character when longer). */
int config_diff(const ms_config *a, const ms_config *b, config_diff_keys which, char *msg,
                size_t cap);

/* @return the name of value v of the enum key `key` ("model.loss",
 * "model.layers[i].activation"), as the config spells it, from the schema
 * table; "invalid" for a value out of range or a key that is no enum. */
const char *config_enum_name(const char *key, int v);

/* @return the schema as Markdown (configs/REFERENCE.md): a table per section
 * with key, type, default, allowed values, resume-safe and description.
 * Caller frees. NULL on OOM. */
char *config_reference(void);

/* Reads a whole file, a regular one of at most CONFIG_MAX_BYTES.
 * @return 0, MS_EUSAGE (missing/unreadable, message names the path and
 * strerror), MS_ECONFIG (not a regular file, or too long). *out is
 * NUL-terminated; caller frees. */
int config_read_file(const char *path, char **out, size_t *len);

#endif
