/* ckpt_eval — the run's own evaluation (evaluate.h) of a checkpoint's
 * parameters, for tests/e2e/early_stop.sh: the best model early stopping
 * kept must reproduce the best value the run logged. (The `midscale eval`
 * subcommand does this for users; this test tool only strings together
 * the calls a training run makes: start-up, resume, eval_run.)
 *
 * usage: [mpiexec -n N] ckpt_eval CONFIG CHECKPOINT [--set section.key=value]...
 * Prints one line on rank 0: {"step":S,"loss":L,"acc":A} with 9 significant
 * digits, as metrics.jsonl writes them. Exit 0, or 1 with a message. */
#include <stdio.h>
#include <string.h>

#include "ckpt_sync.h"
#include "comm.h"
#include "evaluate.h"
#include "ms_error.h"
#include "ranks.h"
#include "startup.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ckpt_eval CONFIG CHECKPOINT [--set section.key=value]...\n");
    return 1;
  }
  const char *sets[64];
  int n_sets = 0;
  for (int i = 3; i + 1 < argc && n_sets < 64; i += 2)
    if (!strcmp(argv[i], "--set")) sets[n_sets++] = argv[i + 1];
  comm_world w;
  memset(&w, 0, sizeof w);
  if (comm_init(&w, &argc, &argv)) {
    fprintf(stderr, "ckpt_eval: %s\n", comm_errmsg(&w));
    return 1;
  }
  ranks rk = {.w = &w};
  train_setup s;
  memset(&s, 0, sizeof s);
  train_args a = {.config_path = argv[1], .overrides = sets, .n_overrides = n_sets};
  ckpt_sync *ck = NULL;
  evaluator *ev = NULL;
  loss_fn loss;
  ckpt_cursor cur = {0};
  char from[1100];
  ms_eval e;
  int rc = startup_open(&s, &rk, &a);
  if (rc == 0 && !s.test) rc = ranks_agree(&rk, ms_error_set(MS_ECONFIG, "no test set"));
  if (rc == 0) {
    ckpt_sync_opts co = {.rk = &rk,
                         .cfg = &s.cfg,
                         .dir = s.ckpt_dir,
                         .model = s.model,
                         .opt = s.opt,
                         .blas_threads = s.blas_threads};
    rc = ckpt_sync_create(&ck, &co);
  }
  if (rc == 0) rc = ckpt_sync_resume(ck, argv[2], &cur, from, sizeof from);
  if (rc == 0) {
    loss_init(&loss, &s.cfg, (int)s.model->n_out);
    rc = eval_create(&ev, &rk, s.model, &loss, s.test, &s.norm, s.eval_chunk,
                     s.cfg.train.eval_top_k);
  }
  if (rc == 0) rc = eval_run(ev, &e);
  if (rc == 0 && w.rank == 0)
    printf("{\"step\":%lld,\"loss\":%.9g,\"acc\":%.6f}\n", (long long)cur.step, e.loss, e.acc);
  if (rc && w.rank == 0) fprintf(stderr, "ckpt_eval: %s\n", ms_error_msg());
  eval_free(ev);
  ckpt_sync_free(ck);
  startup_close(&s);
  comm_finalize(&w);
  return rc ? 1 : 0;
}
