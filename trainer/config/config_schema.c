/* config_schema — the schema table of ms_config, the defaults it gives, and
 * the small text helpers every file of the module uses. The writers that walk
 * the table (resolved config, reference, diff) are in config_emit.c; the
 * readers in config_value.c, config_parse.c and config.c.
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

/* The name lists of the enum keys, indexed by their C enums (config.h): the
 * one place where a value's name is spelled. Every enum key is stored as
 * its C enum (K_ENUM), so an int-sized field. */
#define INT_SIZED(type) _Static_assert(sizeof(type) == sizeof(int), #type " is stored as an int")
INT_SIZED(ms_loss);
INT_SIZED(ms_shuffle);
INT_SIZED(ms_cache);
INT_SIZED(ms_optim_kind);
INT_SIZED(ms_wire);
INT_SIZED(ms_schedule_kind);
INT_SIZED(ms_comm_algorithm);
INT_SIZED(ms_ckpt_compress);
INT_SIZED(ms_ckpt_write);
INT_SIZED(ms_layer_type);
INT_SIZED(ms_activation);
INT_SIZED(ms_init);
INT_SIZED(ms_es_metric);
INT_SIZED(ms_es_mode);

static const char *const loss_names[] = {[MS_LOSS_XENT] = "softmax_cross_entropy",
                                         [MS_LOSS_BCE] = "bce_with_logits",
                                         [MS_LOSS_MSE] = "mse",
                                         [MS_LOSS_MAE] = "mae",
                                         [MS_LOSS_MAE + 1] = NULL};
static const char *const shuffle_names[] = {[MS_SHUFFLE_GLOBAL] = "global",
                                            [MS_SHUFFLE_BLOCK] = "block",
                                            [MS_SHUFFLE_NONE] = "none",
                                            [MS_SHUFFLE_NONE + 1] = NULL};
static const char *const cache_names[] = {[MS_CACHE_AUTO] = "auto",
                                          [MS_CACHE_MEMORY] = "memory",
                                          [MS_CACHE_STREAM] = "stream",
                                          [MS_CACHE_STREAM + 1] = NULL};
static const char *const optim_names[] = {[MS_OPTIM_SGD] = "sgd",
                                          [MS_OPTIM_ADAM] = "adam",
                                          [MS_OPTIM_ADAMW] = "adamw",
                                          [MS_OPTIM_ADAMW + 1] = NULL};
static const char *const wire_names[] = {[MS_WIRE_NONE] = "none",
                                         [MS_WIRE_FP16] = "fp16",
                                         [MS_WIRE_BF16] = "bf16",
                                         [MS_WIRE_BF16 + 1] = NULL};
static const char *const algorithm_names[] = {[MS_ALGO_AUTO] = "auto",
                                              [MS_ALGO_RING] = "ring",
                                              [MS_ALGO_HALVING_DOUBLING] = "halving_doubling",
                                              [MS_ALGO_MPI] = "mpi",
                                              [MS_ALGO_MPI + 1] = NULL};
static const char *const ckpt_compress_names[] = {[MS_CKPT_COMPRESS_AUTO] = "auto",
                                                  [MS_CKPT_COMPRESS_SYNC] = "sync",
                                                  [MS_CKPT_COMPRESS_BACKGROUND] = "background",
                                                  [MS_CKPT_COMPRESS_BACKGROUND + 1] = NULL};
static const char *const ckpt_write_names[] = {[MS_CKPT_WRITE_AUTO] = "auto",
                                               [MS_CKPT_WRITE_RANKS] = "ranks",
                                               [MS_CKPT_WRITE_GATHER] = "gather",
                                               [MS_CKPT_WRITE_GATHER + 1] = NULL};
static const char *const precision_names[] = {[MS_PRECISION_FP32] = "fp32",
                                              [MS_PRECISION_BF16] = "bf16",
                                              [MS_PRECISION_AUTO] = "auto",
                                              [MS_PRECISION_AUTO + 1] = NULL};
static const char *const conv_kernel_names[] = {[MS_CONV_AUTO] = "auto",
                                                [MS_CONV_IM2COL] = "im2col",
                                                [MS_CONV_ONEDNN] = "onednn",
                                                [MS_CONV_ONEDNN + 1] = NULL};
static const char *const schedule_names[] = {[MS_SCHED_CONSTANT] = "constant",
                                             [MS_SCHED_COSINE] = "cosine",
                                             [MS_SCHED_STEP] = "step",
                                             [MS_SCHED_ONECYCLE] = "onecycle",
                                             [MS_SCHED_ONECYCLE + 1] = NULL};
static const char *const layer_types[] = {
    [MS_LAYER_DENSE] = "dense",         [MS_LAYER_CONV2D] = "conv2d",
    [MS_LAYER_MAXPOOL2D] = "maxpool2d", [MS_LAYER_AVGPOOL2D] = "avgpool2d",
    [MS_LAYER_FLATTEN] = "flatten",     [MS_LAYER_DROPOUT] = "dropout",
    [MS_LAYER_LAYERNORM] = "layernorm", [MS_LAYER_ACTIVATION] = "activation",
    [MS_LAYER_EMBEDDING] = "embedding", [MS_LAYER_POS_EMBEDDING] = "pos_embedding",
    [MS_LAYER_ATTENTION] = "attention", [MS_LAYER_TRANSFORMER_BLOCK] = "transformer_block",
    [MS_LAYER_TRANSFORMER_BLOCK + 1] = NULL};
static const char *const activations[] = {
    [MS_ACT_NONE] = "none",       [MS_ACT_RELU] = "relu",     [MS_ACT_LEAKY_RELU] = "leaky_relu",
    [MS_ACT_GELU] = "gelu",       [MS_ACT_TANH] = "tanh",     [MS_ACT_SIGMOID] = "sigmoid",
    [MS_ACT_SOFTMAX] = "softmax", [MS_ACT_SOFTMAX + 1] = NULL};
static const char *const es_metric_names[] = {[MS_ES_NONE] = "none",
                                              [MS_ES_LOSS] = "loss",
                                              [MS_ES_ACC] = "acc",
                                              [MS_ES_TOPK_ACC] = "topk_acc",
                                              [MS_ES_BINARY_ACC] = "binary_acc",
                                              [MS_ES_MSE] = "mse",
                                              [MS_ES_MAE] = "mae",
                                              [MS_ES_MAE + 1] = NULL};
static const char *const es_mode_names[] = {
    [MS_ES_AUTO] = "auto", [MS_ES_MIN] = "min", [MS_ES_MAX] = "max", [MS_ES_MAX + 1] = NULL};
static const char *const inits[] = {[MS_INIT_AUTO] = "auto",
                                    [MS_INIT_HE_NORMAL] = "he_normal",
                                    [MS_INIT_HE_UNIFORM] = "he_uniform",
                                    [MS_INIT_XAVIER_NORMAL] = "xavier_normal",
                                    [MS_INIT_XAVIER_UNIFORM] = "xavier_uniform",
                                    [MS_INIT_XAVIER_UNIFORM + 1] = NULL};
_Static_assert(MS_LAYER_TRANSFORMER_BLOCK == CFG_N_LAYER_TYPES - 1,
               "layer_types follows ms_layer_type");

/* The resume column: SAFE keys may change between a checkpoint and the run
 * that resumes from it; PINNED keys change the parameter layout, the data or
 * the sample stream, and a resume refuses a change (config_diff, CONFIG_DIFF_PINNED). */
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
    .path = p, .type = K_ENUM, FLD(ms_config, f), .def_n = d, .allowed = set, .resume_safe = rs, \
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
    INT("run.threads", run.threads, 0, 0, 1024, SAFE,
        "BLAS threads per rank; 0 = the CPUs of the rank's affinity mask / ranks sharing it"),
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
    BOOL("data.allow_links", data.allow_links, 0, SAFE,
         "follow HDF5 external links, virtual datasets and external storage, only to files in the "
         "data file's directory; false = refuse them"),
    ENUM("data.shuffle", data.shuffle, MS_SHUFFLE_GLOBAL, shuffle_names, PINNED,
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
    ENUM("data.cache", data.cache, MS_CACHE_AUTO, cache_names, SAFE,
         "inputs in memory (memory: error over data.memory_mb), streamed from the file "
         "(stream), or in memory when they fit data.memory_mb (auto)"),
    INT("data.memory_mb", data.memory_mb, 2048, 1, 1048576, SAFE,
        "per-rank memory budget in MiB for the training (and, apart, the test) inputs: held in "
        "memory when they fit, else the HDF5 chunk cache of the streamed reads (at least 2 "
        "chunks); labels and the sample order (8 B/sample each) come on top (data/dataset.h)"),
    BOOL("data.tokens", data.tokens, 0, PINNED,
         "train_x and test_x are token ids (a stream (T,) or sequences (N, L), integers; "
         "train_y/test_y unused): a sample is a window of seq_len inputs and the seq_len next "
         "tokens as labels, one every stride tokens (data/dataset.h)"),
    INT("data.seq_len", data.seq_len, 0, 0, INT_MAX, PINNED,
        "tokens: the tokens a window feeds the model (its labels are the same shifted by one); "
        "required with data.tokens"),
    INT("data.stride", data.stride, 0, 0, INT_MAX, PINNED,
        "tokens: tokens between the starts of windows; 0 = seq_len (an epoch is one pass)"),
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
    ENUM("model.loss", model.loss, MS_LOSS_XENT, loss_names, PINNED,
         "loss function; softmax_cross_entropy and bce_with_logits take logits (last activation "
         "none)"),
    DBL("model.label_smoothing", model.label_smoothing, 0, 0, 1, F_MAX_EXCL, SAFE,
        "softmax_cross_entropy: share of the target spread over all classes"),
    ENUM("model.precision", model.precision, MS_PRECISION_FP32, precision_names, SAFE,
         "dense and conv layers' products: fp32 (OpenBLAS), bf16 (oneDNN: bf16 inputs and weights, "
         "fp32 sums, fp32 master weights and optimizer), or auto (bf16 where the CPU executes it "
         "natively and faster than fp32: AMX, or AVX512_BF16 on AMD; else fp32; the choice "
         "and its reason are printed)"),
    ENUM("model.conv_kernel", model.conv_kernel, MS_CONV_AUTO, conv_kernel_names, SAFE,
         "fp32 conv2d layers: auto (oneDNN convolutions for layers of 8 or more input channels; "
         "for fewer, a direct convolution at stride 1, else im2col + OpenBLAS sgemm; a rule of "
         "the shape alone; the banner names each "
         "layer's library), im2col (every layer on im2col + sgemm, the kernels before oneDNN), "
         "or onednn (every layer on oneDNN). bf16 always runs oneDNN"),
    BOOL("model.tie_embeddings", model.tie_embeddings, 0, PINNED,
         "sequence models: the last dense layer (the output head, units = the embedding's vocab) "
         "multiplies by the embedding's table (vocab, dim) instead of a weight of its own"),
    ENUM("optim.name", optim.name, MS_OPTIM_SGD, optim_names, PINNED,
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
    ENUM("schedule.name", schedule.name, MS_SCHED_CONSTANT, schedule_names, SAFE,
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
    INT("train.max_steps", train.max_steps, 0, 0, INT_MAX, SAFE,
        "the run's length in steps when > 0, overriding train.epochs (training goes on into "
        "further epochs, the last one partial); 0 = train.epochs decide"),
    INT("train.eval_top_k", train.eval_top_k, 0, 0, INT_MAX, SAFE,
        "also report top-k accuracy at evaluation (softmax_cross_entropy); 0 = off"),
    INT("train.accumulate", train.accumulate, 1, 1, 1 << 16, SAFE,
        "gradient accumulation: each rank's share of the global batch runs as K micro-batches, "
        "synced once per step (batch_size stays the global batch; it must divide by world x K)"),
    INT("train.eval_every_steps", train.eval_every_steps, 0, 0, INT_MAX, SAFE,
        "also evaluate on the test set every N global steps (logged like the epoch "
        "evaluations); 0 = at the end of each epoch only"),
    ENUM("train.early_stop.metric", train.early_stop.metric, MS_ES_NONE, es_metric_names, SAFE,
         "early stopping on this evaluation value, named as metrics.jsonl logs it; none = off. "
         "The best model so far is kept as best.safetensors.zst in the checkpoint directory"),
    ENUM("train.early_stop.mode", train.early_stop.mode, MS_ES_AUTO, es_mode_names, SAFE,
         "min (lower is better) or max; auto = max for the accuracies, min for loss, mse, mae"),
    INT("train.early_stop.patience", train.early_stop.patience, 3, 1, INT_MAX, SAFE,
        "stop after this many evaluations in a row without an improvement"),
    DBL("train.early_stop.min_delta", train.early_stop.min_delta, 0, 0, HUGE_VAL, 0, SAFE,
        "an improvement must beat the best value by more than this"),
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
    ENUM("checkpoint.compress", checkpoint.compress, MS_CKPT_COMPRESS_AUTO, ckpt_compress_names,
         SAFE,
         "where ranks compress their slices of a checkpoint (2 ranks or more; a single rank "
         "always compresses and writes in the background): sync (on the spot, all ranks in "
         "parallel, stalling the step), background (low-priority threads, from a snapshot), "
         "auto (background only when the rank may run on more CPUs - its share of its affinity "
         "mask - than its BLAS threads use; see scripts/bench/results/ckpt.md)"),
    ENUM("checkpoint.write", checkpoint.write, MS_CKPT_WRITE_AUTO, ckpt_write_names, SAFE,
         "who writes a checkpoint of 2 ranks or more: ranks (each rank writes its frame into "
         "the file; the checkpoint directory must be on a file system every rank sees), gather "
         "(rank 0 gathers the frames and writes the file), auto (ranks when all ranks run on "
         "one node, else gather)"),
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
         "decoded once per node); with ranks on several nodes, each node's sum of the hierarchical "
         "path (comm.algorithm); false = MPI collectives, each rank decodes its own"),
    BOOL("comm.shared_params", comm.shared_params, 1, SAFE,
         "when the gradients are summed in node shared memory (one node, or the hierarchical "
         "path with more than one rank per node): the parameters and the optimizer state live "
         "once per node in a shared window, every rank's forward and backward read them in "
         "place, and each rank updates its own range of them (the range whose gradient sum it "
         "computes, across nodes too; ZeRO stage 1 inside the node); same result, bit for bit; "
         "false (or one rank per node) = every rank holds and updates its own copy"),
    ENUM("comm.compress", comm.compress, MS_WIRE_NONE, wire_names, SAFE,
         "gradients on the wire: fp16 or bf16 halve the bytes, with error feedback (each rank "
         "adds what rounding lost to its next gradient; not kept in checkpoints)"),
    ENUM(
        "comm.algorithm", comm.algorithm, MS_ALGO_AUTO, algorithm_names, SAFE,
        "across nodes (ranks on more than one node, the same number on each): "
        "each node first sums in shared memory, then each of its ranks reduces its slice with "
        "the same local rank of the other nodes by ring, halving_doubling (power-of-two node "
        "counts, else ring) or mpi (MPI_Allreduce; only 2 nodes and fp32, else ring); the order of "
        "every addition is fixed by the layout, so results are bitwise reproducible; auto "
        "picks from the node count and gradient size"),
    BOOL("comm.sync", comm.sync, 1, SAFE,
         "benchmarks only: false skips the gradient sync, so ranks train different models"),
    INT("log.every_steps", log.every_steps, 50, 1, INT_MAX, SAFE, "log interval in steps"),
    BOOL("log.progress", log.progress, 1, SAFE, "progress bar when stdout is a tty"),
    {.path = "log.trace_steps",
     .type = K_DIMS,
     FLD(ms_config, log.trace_steps),
     .min = 1,
     .max = INT_MAX,
     .resume_safe = SAFE,
     .doc = "[from, to]: every rank records a timeline of these global steps (forward, "
            "backward per layer, each bucket's communication, data wait, evaluation, "
            "checkpoint phases), merged by rank 0 into <run.dir>/trace.json (Chrome trace "
            "events, for Perfetto); [] = off"},
};
const size_t cfg_n_keys = sizeof cfg_keys / sizeof cfg_keys[0];
_Static_assert(sizeof cfg_keys / sizeof cfg_keys[0] <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

/* Items of model.layers, in the order the emitter writes a layer. All change
 * the parameter layout or the computation, so all are pinned. */
#define LT(t) (1u << MS_LAYER_##t)
#define POOLS (LT(MAXPOOL2D) | LT(AVGPOOL2D))
#define WEIGHTED (LT(DENSE) | LT(CONV2D))
#define ACTIVATED (LT(DENSE) | LT(CONV2D) | LT(LAYERNORM) | LT(ACTIVATION))
#define HEADED (LT(ATTENTION) | LT(TRANSFORMER_BLOCK))
#define ALL_TYPES CFG_ALL_LAYER_TYPES
#define WINDOW_MAX (1 << 16) /* kernel, stride, padding: far beyond any image, no overflow */
#define LKEY(p, t, f, d, lo, hi, fl, use, need, set, doc_)                                     \
  {                                                                                            \
    .path = p, .type = t, FLD(ms_layer_cfg, f), .def_n = d, .min = lo, .max = hi, .flags = fl, \
    .resume_safe = PINNED, .allowed = set, .doc = doc_, .uses = use, .needs = need             \
  }

const key_spec cfg_layer_keys[] = {
    LKEY("type", K_ENUM, type, MS_LAYER_DENSE, 0, 0, 0, ALL_TYPES, 0, layer_types, "layer kind"),
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
    LKEY("eps", K_DBL, eps, 1e-5, 0, HUGE_VAL, F_MIN_EXCL, LT(LAYERNORM) | LT(TRANSFORMER_BLOCK),
         0, NULL, "added to the variance (of both layer norms of a transformer_block)"),
    LKEY("activation", K_ENUM, activation, MS_ACT_NONE, 0, 0, 0, ACTIVATED, 0, activations,
         "applied to the output; an activation layer needs one; none on the last layer for a "
         "loss that takes logits"),
    LKEY("alpha", K_DBL, alpha, 0.01, 0, HUGE_VAL, 0, ACTIVATED, 0, NULL,
         "slope below 0 of leaky_relu (only with activation leaky_relu)"),
    LKEY("init", K_ENUM, init, MS_INIT_AUTO, 0, 0, 0, WEIGHTED, 0, inits,
         "weight initialisation; auto = he_normal before relu and leaky_relu, xavier_normal "
         "otherwise"),
    LKEY("vocab", K_INT, vocab, 0, 1, 1 << 24, 0, LT(EMBEDDING), LT(EMBEDDING), NULL,
         "token ids 0 .. vocab - 1 (byte-level text: 256)"),
    LKEY("dim", K_INT, dim, 0, 1, 1 << 16, 0, LT(EMBEDDING), LT(EMBEDDING), NULL,
         "features per position (the model's width)"),
    LKEY("heads", K_INT, heads, 0, 1, 1 << 12, 0, HEADED, HEADED, NULL,
         "attention heads; must divide the width"),
    LKEY("causal", K_BOOL, causal, 1, 0, 1, 0, HEADED, 0, NULL,
         "a position attends to itself and earlier positions only (language models)"),
    LKEY("hidden", K_INT, hidden, 0, 0, 1 << 20, 0, LT(TRANSFORMER_BLOCK), 0, NULL,
         "width of the block's MLP; 0 = 4 * the width"),
};
const size_t cfg_n_layer_keys = sizeof cfg_layer_keys / sizeof cfg_layer_keys[0];
_Static_assert(sizeof cfg_layer_keys / sizeof cfg_layer_keys[0] == CFG_N_LAYER_KEYS, "layer keys");
const char *const cfg_layer_key_names[] = {
    "type", "units", "filters", "kernel", "stride", "padding", "rate", "eps",
    "activation", "alpha", "init", "vocab", "dim", "heads", "causal", "hidden"};
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
    {"it looks up token vectors",
     "token ids (the input's T values, floats holding integers) to a (T, `dim`) sequence: row "
     "id of a (`vocab`, `dim`) table (tensor tok_emb.weight); must be the first layer"},
    {"it adds a learned table",
     "adds a learned (T, D) table to a (T, D) sequence (tensor pos_emb.weight)"},
    {"it keeps the shape",
     "multi-head scaled dot-product self-attention over a (T, D) sequence: a (3D, D) qkv "
     "projection, `heads` heads (`causal`: each position sees itself and earlier ones), a "
     "(D, D) output projection"},
    {"it keeps the shape",
     "pre-norm transformer block on a (T, D) sequence: x + attention(layernorm(x)), then "
     "+ MLP(layernorm(.)) with a `hidden`-wide GELU (tanh) layer; tensors blocks.<k>.*"},
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

void cfg_range_bounds(const key_spec *k, char *out, size_t n) {
  if (k->max >= (k->type == K_DBL ? HUGE_VAL : INT_MAX))
    snprintf(out, n, "%s %.15g", k->flags & F_MIN_EXCL ? ">" : ">=", k->min);
  else
    snprintf(out, n, "%c%.15g, %.15g%c", k->flags & F_MIN_EXCL ? '(' : '[', k->min, k->max,
             k->flags & F_MAX_EXCL ? ')' : ']');
}

void cfg_range_desc(const key_spec *k, char *out, size_t n) {
  char bounds[96];
  cfg_range_bounds(k, bounds, sizeof bounds);
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

int cfg_enum_valid(const key_spec *k, int v) {
  for (int i = 0; k->allowed && k->allowed[i]; i++)
    if (i == v) return 1;
  return 0;
}

const char *cfg_enum_name(const key_spec *k, int v) {
  return cfg_enum_valid(k, v) ? k->allowed[v] : "invalid";
}

const char *config_enum_name(const char *key, int v) {
  static const char layer_prefix[] = "model.layers[i].";
  const key_spec *table = cfg_keys;
  size_t count = cfg_n_keys;
  if (!strncmp(key, layer_prefix, sizeof layer_prefix - 1)) {
    key += sizeof layer_prefix - 1;
    table = cfg_layer_keys;
    count = cfg_n_layer_keys;
  }
  for (size_t i = 0; i < count; i++)
    if (table[i].type == K_ENUM && !strcmp(table[i].path, key)) return cfg_enum_name(&table[i], v);
  return "invalid";
}

/* ---- defaults ----------------------------------------------------------------------- */

/* Writes the default of row k into base (model.layers and model.input: none). */
static void set_default(const key_spec *k, void *base) {
  char *field = (char *)base + k->off;
  int iv = (int)k->def_n;
  uint64_t uv = (uint64_t)k->def_n;
  switch (k->type) {
    case K_STR: memcpy(field, k->def_s, strlen(k->def_s) + 1); break;
    case K_INT:
    case K_BOOL:
    case K_ENUM: memcpy(field, &iv, sizeof iv); break;
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

