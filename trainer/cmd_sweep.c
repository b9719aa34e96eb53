/* cmd_sweep — `midscale sweep`: trials validated, written, and run
 * locally or as a Slurm job array (cmd_sweep.h). */
#include "cmd_sweep.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "ms_error.h"
#include "sweep.h"

#define N_OVERRIDES (SWEEP_MAX_KEYS * 2 + 3)
#define OVERRIDE_MAX (PATH_MAX + 64)

typedef char override_text[OVERRIDE_MAX];

/* snprintf whose cut is checked by the callers' limits (paths of at most
 * MS_PATH_MAX, keys and values of SWEEP_*_MAX). */
__attribute__((format(printf, 3, 4))) static int fmt(char *dst, size_t cap, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  int n = vsnprintf(dst, cap, f, ap);
  va_end(ap);
  return n;
}

/* What one invocation works with. */
typedef struct {
  sweep_spec *spec;
  char *base_text; /* the base config's bytes */
  size_t base_len;
  char base_path[MS_PATH_MAX];
  char out[PATH_MAX]; /* absolute */
  char cwd[PATH_MAX];
  char exe[PATH_MAX];
  int n_trials;
} sweep_job;

/* mkdir -p. @return 0 or MS_EIO. */
static int make_dirs(const char *path) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s) continue;
    char keep = *s;
    *s = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
      return ms_error_set(MS_EIO, "cannot create directory '%s': %s", p, strerror(errno));
    if (!keep) return 0;
    *s = keep;
  }
}

/* Writes text to path through a temporary name and a rename, so that a
 * crash never leaves half a config. @return 0 or MS_EIO. */
static int write_file(const char *path, const char *text, size_t len) {
  char tmp[PATH_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) return ms_error_set(MS_EIO, "cannot write '%s': %s", tmp, strerror(errno));
  int ok = fwrite(text, 1, len, f) == len;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return ms_error_set(MS_EIO, "cannot write '%s': %s", path, strerror(e));
  }
  return 0;
}

/* The #SBATCH lines cannot quote, and the script quotes in single quotes:
 * a path with whitespace, quotes, '%', '$', '`' or '\' is refused. */
static int plain_path(const char *what, const char *p) {
  for (const char *s = p; *s; s++)
    if ((unsigned char)*s <= ' ' || strchr("'\"%$`\\", *s))
      return ms_error_set(MS_EUSAGE,
                          "%s '%s': the Slurm script cannot carry a path with whitespace, "
                          "quotes, '%%', '$', '`' or '\\'",
                          what, p);
  return 0;
}

/* The overrides of trial i, in the order they apply: the sweep's `set`,
 * the swept values, then the trial's own run.dir, run.name and
 * checkpoint.dir. */
static int trial_overrides(const sweep_job *j, int i, override_text *ov) {
  const sweep_spec *s = j->spec;
  char values[SWEEP_MAX_KEYS][SWEEP_VALUE_MAX];
  int n = 0;
  sweep_trial_values(s, i, values);
  for (int k = 0; k < s->n_set; k++) fmt(ov[n++], OVERRIDE_MAX, "%s", s->set[k]);
  for (int k = 0; k < s->n_params; k++)
    fmt(ov[n++], OVERRIDE_MAX, "%s=%s", s->params[k].key, values[k]);
  fmt(ov[n++], OVERRIDE_MAX, "run.dir=%s/trial-%03d", j->out, i);
  fmt(ov[n++], OVERRIDE_MAX, "run.name=%s-%03d", s->name, i);
  fmt(ov[n++], OVERRIDE_MAX, "checkpoint.dir=%s/trial-%03d/checkpoints", j->out, i);
  return n;
}

/* Each listed value alone on the base config (with `set`), so that an
 * unknown key or a value of the wrong type is reported at its line. */
static int check_values(const sweep_job *j, ms_config *cfg) {
  const sweep_spec *s = j->spec;
  const char *set[SWEEP_MAX_KEYS];
  for (int k = 0; k < s->n_set; k++) set[k] = s->set[k];
  int rc = check_load_config(cfg, j->base_text, j->base_len, j->base_path, set, s->n_set, 1);
  if (rc) {
    ms_error_prefix("%s: base %s with set", s->path, s->base);
    return rc;
  }
  ms_config *trial = malloc(sizeof *trial);
  if (!trial) return ms_error_set(MS_ENOMEM, "out of memory");
  for (int k = 0; k < s->n_params && rc == 0; k++) {
    const sweep_param *p = &s->params[k];
    for (int v = 0; v < p->n_values && rc == 0; v++) {
      char a[OVERRIDE_MAX];
      fmt(a, sizeof a, "%s=%s", p->key, p->values[v]);
      memcpy(trial, cfg, sizeof *trial);
      if ((rc = config_override(trial, a))) ms_error_prefix("%s:%d", s->path, p->line);
    }
  }
  free(trial);
  return rc;
}

/* Every trial through the config pipeline, then its resolved config into
 * texts[i]; nothing is written until all passed. */
static int resolve_trials(const sweep_job *j, char **texts) {
  const char *ovp[N_OVERRIDES];
  override_text *ov = malloc(N_OVERRIDES * sizeof *ov);
  ms_config *cfg = malloc(sizeof *cfg);
  int rc = cfg && ov ? check_values(j, cfg) : ms_error_set(MS_ENOMEM, "out of memory");
  for (int i = 0; rc == 0 && i < j->n_trials; i++) {
    int n = trial_overrides(j, i, ov);
    for (int k = 0; k < n; k++) ovp[k] = ov[k];
    rc = check_load_config(cfg, j->base_text, j->base_len, j->base_path, ovp, n, j->spec->ranks);
    if (rc) {
      /* The trial by its name and its swept values, which follow `set`. */
      char what[512] = "";
      for (int k = j->spec->n_set, l = 0; k < n - 3 && l < (int)sizeof what - 4; k++)
        l += fmt(what + l, sizeof what - (size_t)l, "%s%s", l ? ", " : "", ov[k]);
      ms_error_prefix("%s: trial-%03d of %d (%s)", j->spec->path, i, j->n_trials, what);
    } else if (!(texts[i] = config_emit(cfg))) {
      rc = ms_error_set(MS_ENOMEM, "out of memory");
    }
  }
  free(cfg);
  free(ov);
  return rc;
}

/* trials.tsv: a header of the swept keys, then one row per trial. */
static char *trials_table(const sweep_job *j) {
  const sweep_spec *s = j->spec;
  size_t cap = (size_t)(j->n_trials + 1) * (size_t)(s->n_params + 1) * (SWEEP_VALUE_MAX + 2) + 64;
  char *t = malloc(cap), values[SWEEP_MAX_KEYS][SWEEP_VALUE_MAX];
  size_t n = 0;
  if (!t) return NULL;
  n += (size_t)snprintf(t + n, cap - n, "trial");
  for (int k = 0; k < s->n_params; k++) n += (size_t)snprintf(t + n, cap - n, "\t%s", s->params[k].key);
  n += (size_t)snprintf(t + n, cap - n, "\n");
  for (int i = 0; i < j->n_trials; i++) {
    sweep_trial_values(s, i, values);
    n += (size_t)snprintf(t + n, cap - n, "trial-%03d", i);
    for (int k = 0; k < s->n_params; k++) n += (size_t)snprintf(t + n, cap - n, "\t%s", values[k]);
    n += (size_t)snprintf(t + n, cap - n, "\n");
  }
  return t;
}

/* The job array. The task body is scripts/slurm/preemptible.sbatch's
 * (USR1 passed on to the ranks, exit 75 requeues the task, --resume auto
 * continues it), plus the exit status that sweep-report reads. */
static char *slurm_script(const sweep_job *j) {
  const sweep_spec *s = j->spec;
  size_t cap = 8192 + 4 * PATH_MAX;
  char *t = malloc(cap), part[96] = "", from[MS_PATH_MAX];
  if (!t) return NULL;
  /* The sweep file's name goes into a comment line: nothing may end it. */
  snprintf(from, sizeof from, "%s", s->path);
  for (char *c = from; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  if (s->partition[0]) snprintf(part, sizeof part, "#SBATCH --partition=%s\n", s->partition);
  int n = snprintf(t, cap,
      "#!/bin/bash\n"
      "# Written by 'midscale sweep %s': one array task per trial of\n"
      "# %s/trials.tsv. Each task is preemptible and resumable as\n"
      "# scripts/slurm/preemptible.sbatch is: Slurm sends USR1 to this script\n"
      "# %d s before the time limit (or scancel --signal=USR1 --batch JOB_TASK),\n"
      "# the script passes it to the ranks, which checkpoint and exit 75; the\n"
      "# script then requeues the task, which resumes with --resume auto.\n"
      "#   sbatch %s/sweep.sbatch        midscale sweep-report %s\n"
      "# MIDSCALE_LAUNCH=\"scripts/mpirun.sh\" launches with mpirun instead of srun.\n"
      "#SBATCH --job-name=%s\n"
      "#SBATCH --array=0-%d%%%d\n"
      "#SBATCH --ntasks=%d\n"
      "#SBATCH --cpus-per-task=%d\n"
      "#SBATCH --time=%s\n"
      "#SBATCH --signal=B:USR1@%d\n"
      "#SBATCH --requeue\n"
      "#SBATCH --open-mode=append\n"
      "#SBATCH --output=%s/logs/trial-%%3a.out\n"
      "%s"
      "set -uo pipefail\n"
      "cd '%s' || exit 1\n"
      "MIDSCALE=${MIDSCALE:-'%s'}\n"
      "export OPENBLAS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n"
      "trial=$(printf 'trial-%%03d' \"$SLURM_ARRAY_TASK_ID\")\n"
      "dir='%s'/$trial\n"
      "rm -f \"$dir/exit_status\"\n"
      "echo \"task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} ($trial) start $(date -Is), "
      "restart count ${SLURM_RESTART_COUNT:-0}\"\n"
      "\n"
      "step=\n"
      "forward() { echo \"got USR1 at $(date +%%T.%%N | cut -c1-12): asking midscale to "
      "checkpoint and stop\"; [ -n \"$step\" ] && kill -USR1 \"$step\"; }\n"
      "trap forward USR1\n"
      "${MIDSCALE_LAUNCH:-srun --mpi=pmix} \"$MIDSCALE\" train \"$dir/config.yaml\" "
      "--resume auto &\n"
      "step=$!\n"
      "# wait returns early when a trapped signal arrives; wait again until the\n"
      "# step has really ended.\n"
      "while :; do\n"
      "  wait \"$step\"\n"
      "  rc=$?\n"
      "  kill -0 \"$step\" 2>/dev/null || break\n"
      "done\n"
      "echo \"midscale exited with $rc\"\n"
      "echo \"$rc\" >\"$dir/exit_status\"\n"
      "if [ \"$rc\" -eq 75 ]; then\n"
      "  echo \"checkpointed after a signal: requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n"
      "  scontrol requeue \"$SLURM_JOB_ID\"\n"
      "  exit 0\n"
      "fi\n"
      "exit \"$rc\"\n",
      from, j->out, s->signal_s, j->out, j->out, s->name, j->n_trials - 1, s->max_parallel,
      s->ranks, s->cpus_per_task, s->time, s->signal_s, j->out, part, j->cwd, j->exe, j->out);
  if (n < 0 || (size_t)n >= cap) { /* cap holds the text and every path at PATH_MAX */
    free(t);
    return NULL;
  }
  return t;
}

/* An existing file must hold what this sweep would write there (the same
 * trials, the same resolved configs), so that two sweeps never mix their
 * trials and a trial recorded as done is never skipped under a changed
 * config. @return 0 (also when the file does not exist) or MS_EUSAGE. */
static int same_as(const char *path, const char *text) {
  char *old = NULL;
  size_t len = 0;
  if (access(path, F_OK) != 0) return 0;
  int rc = config_read_file(path, &old, &len);
  if (rc == 0 && (len != strlen(text) || memcmp(old, text, len) != 0))
    rc = ms_error_set(MS_EUSAGE,
                      "'%s' belongs to another sweep (it differs from what this one would "
                      "write): choose another --out or remove it",
                      path);
  free(old);
  return rc;
}

static int write_all(const sweep_job *j, char **texts, const char *tsv, const char *script) {
  char p[PATH_MAX + 64], *sweep_text = NULL;
  size_t sweep_len = 0;
  int rc = same_as((snprintf(p, sizeof p, "%s/trials.tsv", j->out), p), tsv);
  for (int i = 0; rc == 0 && i < j->n_trials; i++)
    rc = same_as((snprintf(p, sizeof p, "%s/trial-%03d/config.yaml", j->out, i), p), texts[i]);
  if (!rc) rc = config_read_file(j->spec->path, &sweep_text, &sweep_len);
  if (!rc) rc = make_dirs((snprintf(p, sizeof p, "%s/logs", j->out), p));
  for (int i = 0; rc == 0 && i < j->n_trials; i++) {
    snprintf(p, sizeof p, "%s/trial-%03d", j->out, i);
    if (!(rc = make_dirs(p)))
      rc = write_file((snprintf(p, sizeof p, "%s/trial-%03d/config.yaml", j->out, i), p), texts[i],
                      strlen(texts[i]));
  }
  if (!rc) rc = write_file((snprintf(p, sizeof p, "%s/sweep.yaml", j->out), p), sweep_text, sweep_len);
  if (!rc) rc = write_file((snprintf(p, sizeof p, "%s/sweep.sbatch", j->out), p), script, strlen(script));
  if (!rc) rc = write_file((snprintf(p, sizeof p, "%s/trials.tsv", j->out), p), tsv, strlen(tsv));
  free(sweep_text);
  return rc;
}

/* The child of --local: a signal to `midscale sweep` goes on to it, so
 * the trial checkpoints and stops as it would under Slurm. */
static volatile sig_atomic_t child_pid = 0;

static void pass_signal(int signo) {
  if (child_pid > 0) kill((pid_t)child_pid, signo);
}

/* Runs argv with stdout and stderr appended to log. @return its exit
 * status (128 + N for signal N), or -1 when it could not start. */
static int run_child(char *const *argv, const char *log) {
  struct sigaction sa, old[3];
  const int sigs[3] = {SIGINT, SIGTERM, SIGUSR1};
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = pass_signal;
  sigemptyset(&sa.sa_mask);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    FILE *f = freopen(log, "a", stdout);
    if (!f || dup2(fileno(stdout), 2) < 0) _exit(127);
    setpgid(0, 0); /* a Ctrl-C reaches it once, through pass_signal */
    execvp(argv[0], argv);
    fprintf(stderr, "midscale sweep: cannot run '%s': %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  child_pid = pid;
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, &old[i]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  for (int i = 0; i < 3; i++) sigaction(sigs[i], &old[i], NULL);
  child_pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The exit status a trial recorded, -1 when none. */
static int trial_status(const char *out, int i) {
  char p[PATH_MAX + 64];
  int v = -1;
  snprintf(p, sizeof p, "%s/trial-%03d/exit_status", out, i);
  FILE *f = fopen(p, "r");
  if (f) {
    if (fscanf(f, "%d", &v) != 1) v = -1;
    fclose(f);
  }
  return v;
}

/* --local: the trials one after another, each under local.mpirun with the
 * sweep's ranks and --resume auto; a trial already done is skipped. */
static int run_local(const sweep_job *j, FILE *out) {
  char mpirun[sizeof j->spec->mpirun], np[16], cfg[PATH_MAX + 64], log[PATH_MAX + 64];
  char stat_path[PATH_MAX + 64], failed[512] = "";
  char *argv[40];
  int n = 0, n_failed = 0;
  snprintf(mpirun, sizeof mpirun, "%s", j->spec->mpirun);
  for (char *tok = strtok(mpirun, " \t"); tok && n < 32; tok = strtok(NULL, " \t")) argv[n++] = tok;
  if (n == 0) return ms_error_set(MS_ECONFIG, "%s: local.mpirun is empty", j->spec->path);
  snprintf(np, sizeof np, "%d", j->spec->ranks);
  argv[n++] = "-np";
  argv[n++] = np;
  argv[n++] = (char *)j->exe;
  argv[n++] = "train";
  argv[n++] = cfg;
  argv[n++] = "--resume";
  argv[n++] = "auto";
  argv[n] = NULL;
  for (int i = 0; i < j->n_trials; i++) {
    if (trial_status(j->out, i) == 0) {
      fprintf(out, "trial-%03d: done before, skipped\n", i);
      continue;
    }
    snprintf(cfg, sizeof cfg, "%s/trial-%03d/config.yaml", j->out, i);
    snprintf(log, sizeof log, "%s/logs/trial-%03d.out", j->out, i);
    fprintf(out, "trial-%03d of %d: running (log %s)\n", i, j->n_trials, log);
    fflush(out);
    int rc = run_child(argv, log);
    if (rc < 0) return ms_error_set(MS_EIO, "cannot start '%s': %s", argv[0], strerror(errno));
    char text[16];
    snprintf(stat_path, sizeof stat_path, "%s/trial-%03d/exit_status", j->out, i);
    int wrc = write_file(stat_path, text, (size_t)snprintf(text, sizeof text, "%d\n", rc));
    if (wrc) return wrc;
    fprintf(out, "trial-%03d: exit %d\n", i, rc);
    if (rc == MS_EXIT_STOPPED)
      return ms_error_set(MS_ESTOP,
                          "trial-%03d stopped by a signal after a checkpoint; run the same "
                          "command again to continue the sweep",
                          i);
    if (rc != 0) {
      size_t l = strlen(failed);
      snprintf(failed + l, sizeof failed - l, "%strial-%03d (exit %d)", n_failed ? ", " : "", i, rc);
      n_failed++;
    }
  }
  if (n_failed)
    return ms_error_set(MS_EIO, "%d of %d trials failed: %s (their logs are in %s/logs)", n_failed,
                        j->n_trials, failed, j->out);
  return 0;
}

/* The sweep file's folder joined to base (unless base is absolute). */
static void base_path(const sweep_spec *s, char *out, size_t cap) {
  const char *slash = strrchr(s->path, '/');
  if (s->base[0] == '/' || !slash)
    snprintf(out, cap, "%s", s->base);
  else
    fmt(out, cap, "%.*s/%s", (int)(slash - s->path), s->path, s->base);
}

/* The absolute output folder (created), the working folder and this
 * program, which the Slurm script names. */
static int locate(sweep_job *j, const char *out_opt) {
  char want[PATH_MAX];
  const sweep_spec *s = j->spec;
  if (out_opt) snprintf(want, sizeof want, "%s", out_opt);
  else if (s->out[0]) snprintf(want, sizeof want, "%s", s->out);
  else snprintf(want, sizeof want, "sweeps/%s", s->name);
  if (!getcwd(j->cwd, sizeof j->cwd))
    return ms_error_set(MS_EIO, "cannot read the working directory: %s", strerror(errno));
  ssize_t n = readlink("/proc/self/exe", j->exe, sizeof j->exe - 1);
  if (n <= 0) return ms_error_set(MS_EIO, "cannot find this program: %s", strerror(errno));
  j->exe[n] = '\0';
  if (want[0] == '/') snprintf(j->out, sizeof j->out, "%s", want);
  else if (snprintf(j->out, sizeof j->out, "%s/%s", j->cwd, want) >= (int)sizeof j->out)
    return ms_error_set(MS_EUSAGE, "output path too long: '%s'", want);
  size_t l = strlen(j->out);
  while (l > 1 && j->out[l - 1] == '/') j->out[--l] = '\0';
  if (l + 64 > MS_PATH_MAX) return ms_error_set(MS_EUSAGE, "output path too long: '%s'", j->out);
  int rc = plain_path("output directory", j->out);
  if (!rc) rc = plain_path("working directory", j->cwd);
  if (!rc) rc = plain_path("program", j->exe);
  return rc;
}

int sweep_main(int argc, char **argv, const char *usage, FILE *out) {
  const char *file = NULL, *out_opt = NULL;
  int local = 0, rc;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, out);
      return 0;
    } else if (!strcmp(argv[i], "--local")) {
      local = 1;
    } else if (!strcmp(argv[i], "--out")) {
      if (i + 1 >= argc || !argv[i + 1][0]) return ms_error_set(MS_EUSAGE, "sweep: --out needs a DIR");
      out_opt = argv[++i];
    } else if (argv[i][0] != '-' && !file) {
      file = argv[i];
    } else {
      return ms_error_set(MS_EUSAGE, "sweep: unexpected argument '%s' (see 'midscale help sweep')",
                          argv[i]);
    }
  }
  if (!file) return ms_error_set(MS_EUSAGE, "sweep needs a SWEEP.yaml (see 'midscale help sweep')");
  sweep_job j;
  memset(&j, 0, sizeof j);
  char **texts = NULL, *tsv = NULL, *script = NULL;
  if ((rc = sweep_parse_file(file, &j.spec))) return rc;
  j.n_trials = sweep_n_trials(j.spec);
  base_path(j.spec, j.base_path, sizeof j.base_path);
  if ((rc = config_read_file(j.base_path, &j.base_text, &j.base_len))) {
    ms_error_prefix("%s: base", file);
    goto out;
  }
  if ((rc = locate(&j, out_opt))) goto out;
  texts = calloc((size_t)j.n_trials, sizeof *texts);
  if (!texts) {
    rc = ms_error_set(MS_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = resolve_trials(&j, texts))) goto out;
  tsv = trials_table(&j);
  script = slurm_script(&j);
  if (!tsv || !script) {
    rc = ms_error_set(MS_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = write_all(&j, texts, tsv, script))) goto out;
  fprintf(out, "wrote %d trial configs, %s/trials.tsv and %s/sweep.sbatch\n", j.n_trials, j.out,
          j.out);
  if (local) rc = run_local(&j, out);
  else fprintf(out, "submit: sbatch %s/sweep.sbatch\n", j.out);
  if (rc == 0) fprintf(out, "report: midscale sweep-report %s\n", j.out);
out:
  for (int i = 0; texts && i < j.n_trials; i++) free(texts[i]);
  free(texts);
  free(tsv);
  free(script);
  free(j.base_text);
  free(j.spec);
  return rc;
}
