/* midscale — the command line. The only place that prints errors and ends
 * the process. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "comm.h"
#include "check.h"
#include "cmd_prepare_text.h"
#include "ckpt.h"
#include "cmd_export.h"
#include "cmd.h"
#include "cmd_sweep.h"
#include "convert.h"
#include "info.h"
#include "generate.h"
#include "inspect.h"
#include "ms_error.h"
#include "plot.h"
#include "train.h"
#include "version.h"

#define MAX_OVERRIDES 256

/* The first stop signal received; the training loop polls it at every step
 * (through train_args.stop_signal) and all ranks agree on it. */
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int signo) {
  if (!stop_signal) stop_signal = signo;
}

/* SIGTERM (scancel, a time limit), SIGINT (Ctrl-C) and SIGUSR1 (Slurm's
 * --signal=B:USR1@seconds) all mean: checkpoint at the next step, exit 75. */
static void install_stop_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
}

/* The hang watchdog's end (comm/watchdog.h), on the watchdog's thread
 * while the training thread is stuck in MPI: one message, then MPI_Abort,
 * which makes the launcher end every rank with MS_EXIT_HANG. */
static void on_hang(void *ctx, const char *report) {
  (void)ctx;
  fflush(stdout);
  fprintf(stderr, "midscale: error: %s (exit %d)\n", report, MS_EXIT_HANG);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, MS_EXIT_HANG);
  _exit(MS_EXIT_HANG); /* MPI_Abort does not return; if it did, a failed rank ends the job */
}

static const char usage_main[] =
    "midscale — data-parallel training of small models over MPI\n"
    "\n"
    "usage:\n"
    "  mpirun -np N midscale train CONFIG [--set section.key=value]...\n"
    "                                     [--resume PATH|auto] [--stop-at STEP]\n"
    "  midscale prepare fashion-mnist [DIR] OUT.h5\n"
    "  midscale prepare idx --images FILE --labels FILE [--group NAME] OUT.h5\n"
    "  midscale prepare synthetic OUT.h5 [--train N] [--test N] [--features F]\n"
    "                                   [--classes K] [--u8] [--seed S]\n"
    "  midscale prepare csv FILE.csv OUT.h5 --label COLUMN [--group NAME]\n"
    "                                   [--test-fraction F] [--seed S]\n"
    "  midscale prepare npy --x X.npy --y Y.npy OUT.h5 [--group NAME]\n"
    "  midscale prepare text FILE... OUT.h5 [--vocab bytes|FILE] [--test-fraction F]\n"
    "  midscale data-info FILE.h5 [--histogram DATASET]...\n"
    "  midscale check CONFIG [--set section.key=value]... [--world N]\n"
    "                 [--nodes K] [--link 1gbit|10gbit|100gbit|RATE,LATENCY]\n"
    "  midscale config-reference  (Markdown reference of every config key)\n"
    "  midscale inspect CHECKPOINT [--config]\n"
    "  midscale export CHECKPOINT OUT.safetensors [--with-optimizer]\n"
    "  midscale export CHECKPOINT OUT.onnx [--normalised-input] [--input C,H,W]\n"
    "  midscale generate CONFIG CHECKPOINT --prompt TEXT [--tokens N] [--temperature T]\n"
    "                    [--top-k K] [--seed S]  (text from a byte-level language model)\n"
    "  [mpirun -np N] midscale eval CONFIG CHECKPOINT [--split test|train|PATH:DATASET]\n"
    "                               [--labels DATASET] [--json] [--set KEY=VALUE]...\n"
    "  [mpirun -np N] midscale predict CONFIG CHECKPOINT INPUT.h5:DATASET OUT.h5\n"
    "                                  [--force] [--probs] [--set KEY=VALUE]...\n"
    "  midscale sweep SWEEP.yaml [--local] [--out DIR]\n"
    "  midscale sweep-report DIR [--metric NAME] [--mode min|max]\n"
    "  midscale plot RUN_DIR... -o curves.png|curves.svg [--size WxH]\n"
    "  midscale help [COMMAND]    midscale --help    midscale --version\n"
    "\n"
    "exit codes: 0 done, 1 runtime failure, 2 usage or config error, 3 data error,\n"
    "            4 checkpoint error, 6 a collective hung (the watchdog aborted the job),\n"
    "            75 stopped by a signal after a good checkpoint\n";

static const char usage_train[] =
    "usage: mpirun -np N midscale train CONFIG [options]\n"
    "\n"
    "Trains the model that CONFIG (YAML) describes, data-parallel over the MPI\n"
    "ranks: train.batch_size is the global batch, split evenly across ranks.\n"
    "Rank 0 prints progress and appends JSON lines to <run.dir>/metrics.jsonl;\n"
    "checkpoints go to <run.dir>/checkpoints (or checkpoint.dir).\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE   override a config key, e.g. --set optim.lr=0.1 or\n"
    "                    --set model.layers[1].units=512 (repeatable)\n"
    "  --resume PATH     continue from a checkpoint file\n"
    "  --resume auto     continue from the newest good checkpoint in the\n"
    "                    checkpoint directory, or start fresh if there is none\n"
    "  --stop-at STEP    stop after global step STEP with a checkpoint, as a\n"
    "                    preemption would (the schedule still plans the whole\n"
    "                    run): fits a run into jobs of limited wall time\n"
    "\n"
    "environment:\n"
    "  MIDSCALE_BLAS_AUTOFIX=0   do not re-run with OPENBLAS_CORETYPE set when\n"
    "                            OpenBLAS falls back to its generic kernels\n"
    "  MIDSCALE_TRACE_SAMPLES=DIR  debug: each rank R writes DIR/rankR.txt\n"
    "                            (step epoch sample-indices per step), .sum\n"
    "                            (FNV-1a of the inputs read) and .f32 (the\n"
    "                            inputs of the first MIDSCALE_TRACE_FLOAT_STEPS\n"
    "                            steps, default 8); see trainer/trace.h\n"
    "  MIDSCALE_DEBUG_STALL=RANK:STEP:SECONDS\n"
    "                            (tests) rank RANK sleeps SECONDS before the gradient\n"
    "                            allreduce of step STEP, to exercise comm.timeout_s\n";

static const char usage_check[] =
    "usage: midscale check CONFIG [--set section.key=value]... [--world N]\n"
    "                      [--nodes K] [--link 1gbit|10gbit|100gbit|RATE,LATENCY]\n"
    "\n"
    "Validates CONFIG without training and without mpirun: parses it, applies\n"
    "the overrides, checks every key for N ranks (default 1: train.batch_size must\n"
    "divide by N) and that the checkpoint directory can be written; if data.path\n"
    "exists, opens the dataset and checks the model input, the labels against\n"
    "the output units and the warmup against the length of the run. Prints the\n"
    "resolved config and a model summary (layers, parameters, FLOPs, memory per\n"
    "rank). A missing data file is reported, not an error.\n"
    "\n"
    "Then predicts a step on N ranks spread over K nodes (default 1), linked by\n"
    "--link (default 10gbit; 1gbit, 10gbit and 100gbit assume 50 us per message,\n"
    "RATE,LATENCY gives both, e.g. 2.5gbit,20us): compute from this model's own\n"
    "layers timed here at the per-rank batch (a private copy, a few passes),\n"
    "communication from the alpha-beta model of the gradient sync that would run\n"
    "(trainer/costmodel.h): the step time, the exposed communication (the ideal\n"
    "overlap schedule when comm.overlap is on and a CPU is free for it) and the\n"
    "weak-scaling efficiency. A run times its layers the same way at start-up\n"
    "(and across nodes its link) and prints the prediction next to what it\n"
    "measured.\n"
    "\n"
    "exit codes: 0 valid, 2 usage or config error, 3 data error\n";

static const char usage_prepare[] =
    "usage:\n"
    "  midscale prepare fashion-mnist [DIR] OUT.h5\n"
    "      Converts the Fashion-MNIST idx files in DIR (default\n"
    "      /usr/share/datasets/fashion-mnist, from the Debian package\n"
    "      dataset-fashion-mnist) into OUT.h5 with /train and /test groups.\n"
    "  midscale prepare idx --images FILE --labels FILE [--group NAME] OUT.h5\n"
    "      Converts one idx image/label pair (plain or .gz) into group NAME\n"
    "      (default train) of OUT.h5, keeping other groups.\n"
    "  midscale prepare synthetic OUT.h5 [--train N] [--test N] [--features F]\n"
    "                                   [--classes K] [--u8] [--seed S]\n"
    "      Writes a learnable synthetic classification set (defaults: 8192\n"
    "      train, 2048 test, 32 float32 features, 10 classes, seed 1).\n"
    "  midscale prepare csv FILE.csv OUT.h5 --label COLUMN [--group NAME]\n"
    "                                   [--test-fraction F] [--seed S]\n"
    "      Converts a CSV file with a header row: column COLUMN becomes the\n"
    "      labels (int64 class indices if every value is an integer, float32\n"
    "      regression targets otherwise), the other columns float32 features.\n"
    "      Rows go to group NAME (default train); with --test-fraction F a\n"
    "      random share F of them (picked by --seed, default 1) goes to group\n"
    "      test instead.\n"
    "  midscale prepare npy --x X.npy --y Y.npy OUT.h5 [--group NAME]\n"
    "      Converts NumPy arrays: X (N, ...) becomes NAME/images (default\n"
    "      train), Y (N, ...) NAME/labels. Types are kept, except 32/64-bit\n"
    "      integer inputs, stored as float32.\n"
    "  midscale prepare text FILE... OUT.h5 [--vocab bytes|FILE] [--test-fraction F]\n"
    "      Converts text into a token stream for language models (data.tokens):\n"
    "      /train/tokens, the files one after the other, and with F > 0\n"
    "      /test/tokens, the last share F of each file (from a line start).\n"
    "      --vocab bytes (default): one token per byte, vocab_size 256; FILE: one\n"
    "      character per line (\\n newline, \\t tab, \\s space, <unk> for the\n"
    "      rest), UTF-8 text, ids in line order.\n"
    "\n"
    "Output: chunks of about 1 MiB of whole samples, gzip level 1, and for csv\n"
    "and npy the shuffle filter when a trial on the first chunk shows that it\n"
    "compresses better; an existing OUT.h5 keeps its other groups. Inspect\n"
    "the result with 'midscale data-info OUT.h5'.\n";

static const char usage_data_info[] =
    "usage: midscale data-info FILE.h5 [--histogram DATASET]...\n"
    "\n"
    "Describes every dataset of an HDF5 file (full path, in name order): dtype,\n"
    "shape and sample count (dimension 0), layout and chunk shape, filters\n"
    "(gzip level, shuffle, szip, ...; flagged when this HDF5 cannot decode\n"
    "them), bytes on disk against bytes of data. Then a histogram of every\n"
    "integer dataset whose name contains 'label', and of each DATASET given\n"
    "with --histogram (integer datasets only). No MPI needed.\n"
    "\n"
    "exit codes: 0 done, 2 usage error, 3 the file is missing, a directory,\n"
    "            not HDF5 or damaged, or a --histogram dataset is missing\n"
    "            or not integer\n";

static const char usage_sweep[] =
    "usage: midscale sweep SWEEP.yaml [--local] [--out DIR]\n"
    "       midscale sweep-report DIR [--metric NAME] [--mode min|max]\n"
    "\n"
    "sweep: a base config, fixed overrides (set), a grid and/or random draws over\n"
    "config keys (README, \"Sweeps\"; example: configs/sweep_example.yaml). Every\n"
    "trial is validated like 'midscale check' before anything is written; then\n"
    "DIR (--out, or the file's out:, or sweeps/NAME) gets trial-NNN/config.yaml per\n"
    "trial, trials.tsv and sweep.sbatch, a Slurm job array (one preemptible,\n"
    "requeueable task per trial; submit it with sbatch). --local runs the trials\n"
    "one after another with local.mpirun (default mpirun), skipping those done.\n"
    "\n"
    "sweep-report: every trial's status and last metrics in one table, best first\n"
    "by --metric (default eval_loss; train_loss, train_acc, lr, eval_acc,\n"
    "eval_topk_acc, eval_mse, eval_mae, step), --mode max for names with 'acc',\n"
    "else min; printed as Markdown and written to DIR/report.md and report.csv.\n"
    "\n"
    "exit codes: 0 done, 1 a local trial failed or a file cannot be written,\n"
    "            2 usage or sweep/config error, 75 a local trial was stopped by a\n"
    "            signal (run the command again to continue)\n";

static const char usage_plot[] =
    "usage: midscale plot RUN_DIR... -o curves.png|curves.svg [--size WxH]\n"
    "\n"
    "Draws the training and evaluation loss, the accuracy and the learning rate\n"
    "against the step from each RUN_DIR's metrics.jsonl, several runs overlaid\n"
    "(one colour each; a sweep's DIR stands for its trials): a PNG of WxH pixels\n"
    "or an SVG of WxH points (default 1200x800), drawn with cairo.\n"
    "\n"
    "exit codes: 0 done, 1 the file cannot be written, 2 usage error or a run\n"
    "            without metrics.jsonl or training records\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "midscale: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see 'midscale help')\n");
  return MS_EXIT_USAGE;
}

static int parse_u64(const char *s, unsigned long long *out) {
  char *end;
  if (!s || !*s || *s == '-') return -1;
  *out = strtoull(s, &end, 10);
  return *end ? -1 : 0;
}

/* The Fashion-MNIST idx files of DIR, both splits. *written: the
 * file it writes.
 * @return 0, MS_EXIT_USAGE (message printed) or an MS_E* code. */
static int prepare_fashion_mnist(int argc, char **argv, const char **written) {
  char err[MS_MSG_MAX] = "";
  if (argc != 2 && argc != 3)
    return usage_error("%s", "usage: midscale prepare fashion-mnist [DIR] OUT.h5");
  const char *dir = argc == 3 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const char *out = *written = argv[argc - 1];
  const char *split[2][3] = {
      {"train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
      {"test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}};
  unlink(out);
  for (int i = 0; i < 2; i++) {
    char img[2048], lab[2048];
    snprintf(img, sizeof img, "%s/%s", dir, split[i][1]);
    snprintf(lab, sizeof lab, "%s/%s", dir, split[i][2]);
    int rc = ms_from_data(convert_idx(img, lab, out, split[i][0], err, sizeof err), err);
    if (rc) return rc;
  }
  return 0;
}

/* One split from a pair of idx files. *written: the
 * file it writes.
 * @return 0, MS_EXIT_USAGE (message printed) or an MS_E* code. */
static int prepare_idx(int argc, char **argv, const char **written) {
  char err[MS_MSG_MAX] = "";
  const char *images = NULL, *labels = NULL, *group = "train", *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--images") == 0 && i + 1 < argc)
      images = argv[++i];
    else if (strcmp(argv[i], "--labels") == 0 && i + 1 < argc)
      labels = argv[++i];
    else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
      group = argv[++i];
    else if (argv[i][0] != '-' && !out)
      out = argv[i];
    else
      return usage_error("prepare idx: unexpected argument '%s'", argv[i]);
  }
  if (!images || !labels || !out)
    return usage_error("%s", "prepare idx needs --images, --labels and OUT.h5");
  *written = out;
  return ms_from_data(convert_idx(images, labels, out, group, err, sizeof err), err);
}

/* A synthetic classification set. *written: the
 * file it writes.
 * @return 0, MS_EXIT_USAGE (message printed) or an MS_E* code. */
static int prepare_synthetic(int argc, char **argv, const char **written) {
  char err[MS_MSG_MAX] = "";
  unsigned long long n_train = 8192, n_test = 2048, features = 32, classes = 10, seed = 1;
  int u8 = 0;
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    unsigned long long *dst = NULL;
    const char *opt = argv[i];
    if (strcmp(argv[i], "--train") == 0)
      dst = &n_train;
    else if (strcmp(argv[i], "--test") == 0)
      dst = &n_test;
    else if (strcmp(argv[i], "--features") == 0)
      dst = &features;
    else if (strcmp(argv[i], "--classes") == 0)
      dst = &classes;
    else if (strcmp(argv[i], "--seed") == 0)
      dst = &seed;
    else if (strcmp(argv[i], "--u8") == 0)
      u8 = 1;
    else if (argv[i][0] != '-' && !out)
      out = argv[i];
    else
      return usage_error("prepare synthetic: unexpected argument '%s'", argv[i]);
    if (dst && (i + 1 >= argc || parse_u64(argv[++i], dst) != 0))
      return usage_error("prepare synthetic: %s needs a non-negative integer", opt);
  }
  if (!out) return usage_error("%s", "prepare synthetic needs OUT.h5");
  if (features < 1 || features > (1u << 24) || classes < 2 || classes > 256)
    return usage_error("%s",
                       "prepare synthetic: --features must be 1..16777216 and --classes 2..256");
  *written = out;
  return ms_from_data(convert_synthetic(out, n_train, n_test, (int)features, (int)classes, u8,
                                        seed, err, sizeof err),
                      err);
}

/* A CSV file with one label column. *written: the
 * file it writes.
 * @return 0, MS_EXIT_USAGE (message printed) or an MS_E* code. */
static int prepare_csv(int argc, char **argv, const char **written) {
  char err[MS_MSG_MAX] = "";
  convert_csv_opts o = {.label = NULL, .group = "train", .test_group = "test", .seed = 1};
  const char *in = NULL, *out = NULL;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "--label") == 0 && i + 1 < argc) {
      o.label = argv[++i];
    } else if (strcmp(opt, "--group") == 0 && i + 1 < argc) {
      o.group = argv[++i];
    } else if (strcmp(opt, "--test-fraction") == 0) {
      char *end = NULL;
      if (i + 1 < argc) o.test_fraction = strtod(argv[++i], &end);
      if (!end || *end || !(o.test_fraction >= 0 && o.test_fraction < 1))
        return usage_error("%s", "prepare csv: --test-fraction needs a number in [0, 1)");
    } else if (strcmp(opt, "--seed") == 0) {
      unsigned long long v;
      if (i + 1 >= argc || parse_u64(argv[++i], &v) != 0)
        return usage_error("%s", "prepare csv: --seed needs a non-negative integer");
      o.seed = v;
    } else if (opt[0] != '-' && !in) {
      in = opt;
    } else if (opt[0] != '-' && !out) {
      out = opt;
    } else {
      return usage_error("prepare csv: unexpected argument '%s'", opt);
    }
  }
  if (!in || !out || !o.label)
    return usage_error("%s", "prepare csv needs FILE.csv, OUT.h5 and --label COLUMN");
  *written = out;
  return ms_from_data(convert_csv(in, out, &o, err, sizeof err), err);
}

/* A pair of .npy files. *written: the
 * file it writes.
 * @return 0, MS_EXIT_USAGE (message printed) or an MS_E* code. */
static int prepare_npy(int argc, char **argv, const char **written) {
  char err[MS_MSG_MAX] = "";
  const char *x = NULL, *y = NULL, *group = "train", *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--x") == 0 && i + 1 < argc)
      x = argv[++i];
    else if (strcmp(argv[i], "--y") == 0 && i + 1 < argc)
      y = argv[++i];
    else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
      group = argv[++i];
    else if (argv[i][0] != '-' && !out)
      out = argv[i];
    else
      return usage_error("prepare npy: unexpected argument '%s'", argv[i]);
  }
  if (!x || !y || !out) return usage_error("%s", "prepare npy needs --x, --y and OUT.h5");
  *written = out;
  return ms_from_data(convert_npy(x, y, out, group, err, sizeof err), err);
}

static int cmd_prepare(int argc, char **argv) {
  static const struct {
    const char *kind;
    int (*run)(int argc, char **argv, const char **written);
  } kinds[] = {{"fashion-mnist", prepare_fashion_mnist},
               {"idx", prepare_idx},
               {"synthetic", prepare_synthetic},
               {"csv", prepare_csv},
               {"npy", prepare_npy},
               {"text", cmd_prepare_text}};
  const char *written = NULL;
  if (argc < 1)
    return usage_error("prepare needs a kind: %s",
                       "fashion-mnist, idx, synthetic, csv, npy or text");
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    if (strcmp(argv[0], kinds[i].kind) != 0) continue;
    int rc = kinds[i].run(argc, argv, &written);
    if (rc > 0) return rc; /* a usage error, already printed */
    if (rc < 0) {
      fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
      return ms_exit_code(rc);
    }
    printf("wrote %s\n", written);
    return 0;
  }
  return usage_error("unknown prepare kind '%s' (fashion-mnist, idx, synthetic, csv, npy or text)",
                     argv[0]);
}

static int cmd_data_info(int argc, char **argv) {
  const char *path = NULL, *hist[64];
  int n_hist = 0;
  char err[MS_MSG_MAX] = "";
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage_data_info, stdout);
      return 0;
    } else if (strcmp(argv[i], "--histogram") == 0) {
      if (i + 1 >= argc) return usage_error("%s", "--histogram needs a DATASET");
      if (n_hist == (int)(sizeof hist / sizeof *hist))
        return usage_error("%s", "too many --histogram options");
      hist[n_hist++] = argv[++i];
    } else if (argv[i][0] != '-' && !path) {
      path = argv[i];
    } else {
      return usage_error("data-info: unexpected argument '%s'", argv[i]);
    }
  }
  if (!path) return usage_error("%s", "usage: midscale data-info FILE.h5 [--histogram DATASET]...");
  int rc = ms_from_data(data_info(path, hist, n_hist, stdout, err, sizeof err), err);
  if (rc) {
    fflush(stdout);
    fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
  }
  return ms_exit_code(rc);
}

static int cmd_inspect(int argc, char **argv) {
  const char *path = NULL;
  int show_config = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0) show_config = 1;
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else return usage_error("inspect: unexpected argument '%s'", argv[i]);
  }
  if (!path) return usage_error("%s", "usage: midscale inspect CHECKPOINT [--config]");
  int rc = inspect_checkpoint(path, show_config, stdout);
  if (rc) fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
  return ms_exit_code(rc);
}

/* OpenBLAS chooses its kernels when it loads; the variable that corrects a
 * wrong choice must be in the environment before that, so the process runs
 * itself again (before MPI starts) with it set. */
static void fix_blas_core(char **argv) {
  const char *flag = getenv("MIDSCALE_BLAS_AUTOFIX");
  if (flag && strcmp(flag, "0") == 0) return;
  const char *core = blas_suggested_coretype();
  if (!core) return;
  if (setenv("MIDSCALE_BLAS_DETECTED", blas_corename(), 1) != 0 ||
      setenv("OPENBLAS_CORETYPE", core, 1) != 0)
    return;
  execv("/proc/self/exe", argv);
  /* exec failed: carry on with the generic kernels; train reports them. */
  unsetenv("OPENBLAS_CORETYPE");
}

static int cmd_train(int argc, char **argv, char **full_argv, int *pargc, char ***pargv) {
  const char *overrides[MAX_OVERRIDES];
  train_args a = {
      .config_path = NULL, .resume = NULL, .overrides = overrides, .n_overrides = 0, .stop_at = 0};
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(usage_train, stdout);
      return 0;
    } else if (strcmp(argv[i], "--set") == 0 || strncmp(argv[i], "--set=", 6) == 0) {
      const char *v = argv[i][5] == '=' ? argv[i] + 6 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) return usage_error("%s", "--set needs section.key=value");
      if (a.n_overrides == MAX_OVERRIDES) return usage_error("%s", "too many --set options");
      overrides[a.n_overrides++] = v;
    } else if (strcmp(argv[i], "--resume") == 0 || strncmp(argv[i], "--resume=", 9) == 0) {
      a.resume = argv[i][8] == '=' ? argv[i] + 9 : (i + 1 < argc ? argv[++i] : NULL);
      if (!a.resume || !*a.resume)
        return usage_error("%s", "--resume needs a checkpoint path or 'auto'");
    } else if (strcmp(argv[i], "--stop-at") == 0) {
      unsigned long long v = 0;
      if (i + 1 >= argc || parse_u64(argv[++i], &v) != 0 || v == 0 || v > (1ULL << 62))
        return usage_error("%s", "--stop-at needs a step number >= 1");
      a.stop_at = (long long)v;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      return usage_error("train: unknown option '%s'", argv[i]);
    } else if (!a.config_path) {
      a.config_path = argv[i];
    } else {
      return usage_error("train: unexpected argument '%s'", argv[i]);
    }
  }
  if (!a.config_path)
    return usage_error("%s", "train needs a CONFIG file (see 'midscale help train')");

  fix_blas_core(full_argv);
  comm_world w;
  int rc = ms_from_comm(comm_init(&w, pargc, pargv), comm_errmsg(&w));
  if (rc) {
    fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    return ms_exit_code(rc);
  }
  if (w.rank == 0 && getenv("MIDSCALE_BLAS_DETECTED"))
    printf(
        "note: OpenBLAS detected '%s' (generic kernels) on a CPU with wider vectors; "
        "re-ran with OPENBLAS_CORETYPE=%s (MIDSCALE_BLAS_AUTOFIX=0 turns this off)\n",
        getenv("MIDSCALE_BLAS_DETECTED"), getenv("OPENBLAS_CORETYPE"));
  install_stop_handlers();
  a.stop_signal = &stop_signal;
  a.on_hang = on_hang;
  rc = train_run(&w, &a);
  if (rc != 0 && w.rank == 0) {
    fflush(stdout);
    fprintf(stderr, "midscale: %s: %s\n", rc == MS_ESTOP ? "stopped" : "error", ms_error_msg());
  }
  comm_finalize(&w);
  return ms_exit_code(rc);
}

/* eval and predict (cmd.h): under mpirun or alone; rank 0 prints the
 * error every rank agreed on. */
static int cmd_on_ranks(int (*run)(comm_world *, int, char **, FILE *), const char *usage,
                        char **full_argv, int *pargc, char ***pargv) {
  if (cmd_wants_help(*pargc - 2, *pargv + 2)) {
    fputs(usage, stdout);
    return 0;
  }
  fix_blas_core(full_argv); /* the forward passes run the kernels training ran */
  comm_world w;
  int rc = ms_from_comm(comm_init(&w, pargc, pargv), comm_errmsg(&w));
  if (rc == 0) {
    rc = run(&w, *pargc - 2, *pargv + 2, stdout);
    fflush(stdout);
    if (rc && w.rank == 0) fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    comm_finalize(&w);
  } else {
    fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
  }
  return ms_exit_code(rc);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage_main, stderr);
    return MS_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("midscale %s\n", MS_VERSION_STRING);
    return 0;
  }
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    fputs(usage_main, stdout);
    return 0;
  }
  if (strcmp(cmd, "help") == 0) {
    const char *topic = argc > 2 ? argv[2] : "";
    fputs(strcmp(topic, "train") == 0     ? usage_train
          : strcmp(topic, "prepare") == 0 ? usage_prepare
          : strcmp(topic, "check") == 0   ? usage_check
          : strcmp(topic, "data-info") == 0 ? usage_data_info
          : strcmp(topic, "eval") == 0      ? cmd_eval_usage
          : strcmp(topic, "predict") == 0   ? cmd_predict_usage
          : strncmp(topic, "sweep", 5) == 0 ? usage_sweep
          : strcmp(topic, "plot") == 0      ? usage_plot
                                          : usage_main,
          stdout);
    return 0;
  }
  if (strcmp(cmd, "train") == 0) return cmd_train(argc - 2, argv + 2, argv, &argc, &argv);
  if (strcmp(cmd, "check") == 0 || strcmp(cmd, "config-reference") == 0) {
    if (strcmp(cmd, "check") == 0) fix_blas_core(argv); /* the prediction's sgemm peak */
    int rc = strcmp(cmd, "check") == 0 ? check_main(argc - 2, argv + 2, usage_check, stdout)
                                       : check_reference(stdout);
    if (rc) fflush(stdout), fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    return ms_exit_code(rc);
  }
  if (strcmp(cmd, "sweep") == 0 || strcmp(cmd, "sweep-report") == 0) {
    int rc = strcmp(cmd, "sweep") == 0 ? sweep_main(argc - 2, argv + 2, usage_sweep, stdout)
                                       : sweep_report_main(argc - 2, argv + 2, usage_sweep, stdout);
    if (rc) fflush(stdout), fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    return ms_exit_code(rc);
  }
  if (strcmp(cmd, "plot") == 0) {
    int rc = plot_main(argc - 2, argv + 2, usage_plot, stdout);
    if (rc) fflush(stdout), fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    return ms_exit_code(rc);
  }
  if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 2, argv + 2);
  if (strcmp(cmd, "data-info") == 0) return cmd_data_info(argc - 2, argv + 2);
  if (strcmp(cmd, "export") == 0) {
    int rc = export_main(argc - 2, argv + 2, stdout);
    if (rc) fflush(stdout), fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    return ms_exit_code(rc);
  }
  if (strcmp(cmd, "generate") == 0) {
    int rc = generate_main(argc - 2, argv + 2, stdout);
    if (rc) fflush(stdout), fprintf(stderr, "midscale: error: %s\n", ms_error_msg());
    return ms_exit_code(rc);
  }
  if (strcmp(cmd, "eval") == 0) return cmd_on_ranks(cmd_eval, cmd_eval_usage, argv, &argc, &argv);
  if (strcmp(cmd, "predict") == 0)
    return cmd_on_ranks(cmd_predict, cmd_predict_usage, argv, &argc, &argv);
  if (strcmp(cmd, "prepare") == 0) {
    if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
      fputs(usage_prepare, stdout);
      return 0;
    }
    return cmd_prepare(argc - 2, argv + 2);
  }
  return usage_error("unknown command '%s'", cmd);
}
