#include "ckpt_sync.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ckpt.h"
#include "ms_error.h"
#include "sampler.h"
#include "saver.h"
#include "timeline.h"

/* Checkpoint tensors: every parameter tensor, and its view in each of the
 * optimizer's state arenas (at most two: Adam's moments). */
#define MAX_TENSORS (MS_MAX_PARAMS * 3)

struct ckpt_sync {
  const ranks *rk;
  comm_world *w;
  ms_metrics *metrics;
  const ms_config *cfg;
  int64_t steps_per_epoch;
  ms_model *model;
  ms_optim *opt;
  comm_node_mem *shared_arenas;
  char dir[MS_PATH_MAX + 32];
  ckpt_tensor tensors[MAX_TENSORS];
  char tensor_names[MAX_TENSORS][80];
  int n_tensors;
  uint64_t layout_hash;
  ms_saver *saver;              /* this rank's share of checkpoint writing */
  int background, background_auto; /* together: compress in the background */
  int save_parts, parts_auto;   /* ranks of one node write their own frames */
  int saver_rc;                 /* a save failed outside a save ... */
  char saver_msg[MS_MSG_MAX];   /* ... with this message */
  double save_t0, save_stall_s; /* the save in flight: start, stall so far */
  double save_compress_s, save_gather_s;
  int64_t save_step;            /* the save in flight */
  int parts_in_flight;          /* ranks of one node are writing their frames */
  uint64_t parts_total;         /* the file's length */
  int64_t last_step;            /* the last save, -1 = none */
  double t_last;                /* when it was made (checkpoint.every_minutes) */
  double seconds;               /* in ckpt_sync_save */
  char last_path[1100];         /* rank 0: the newest checkpoint written */
  char train_state[CKPT_MAX_TRAIN_STATE]; /* saved with every checkpoint; resumed */
  timeline *tl;                 /* the run's trace, or NULL */
};

#define agree(cs, rc) ranks_agree_at((cs)->rk, (rc), __func__)

/* Checkpoint tensors: views of every parameter tensor in the parameter
 * arena and in each optimizer state arena ("optim/<state>/<name>"). */
static void list_tensors(ckpt_sync *cs) {
  float *arenas[3] = {cs->model->params};
  const char *names[3] = {""};
  int n_arenas = 1 + optim_state(cs->opt, arenas + 1, names + 1, 2);
  cs->n_tensors = 0;
  for (int a = 0; a < n_arenas; a++)
    for (int i = 0; i < cs->model->n_p; i++) {
      const ms_param *p = &cs->model->p[i];
      int j = cs->n_tensors++;
      snprintf(cs->tensor_names[j], sizeof cs->tensor_names[j], "%s%s%s%s", a ? "optim/" : "",
               names[a], a ? "/" : "", p->name);
      ckpt_tensor *ct = &cs->tensors[j];
      ct->name = cs->tensor_names[j];
      ct->data = arenas[a] + p->off;
      ct->ndim = p->ndim;
      for (int d = 0; d < p->ndim; d++) ct->shape[d] = p->shape[d];
    }
}

/* Where saves compress and who writes the file: checkpoint.compress and
 * checkpoint.write, `auto` resolved by the rules the header gives. */
static void resolve_policy(ckpt_sync *cs, int blas_threads, int cpus_per_rank) {
  const comm_world *w = cs->w;
  const ms_config *c = cs->cfg;
  cs->background_auto = c->checkpoint.compress == MS_CKPT_COMPRESS_AUTO;
  if (cs->background_auto)
    cs->background = cpus_per_rank > blas_threads;
  else
    cs->background = c->checkpoint.compress == MS_CKPT_COMPRESS_BACKGROUND;
  cs->parts_auto = c->checkpoint.write == MS_CKPT_WRITE_AUTO;
  if (w->size == 1)
    cs->save_parts = 0;
  else if (cs->parts_auto)
    cs->save_parts = w->local_size == w->size;
  else
    cs->save_parts = c->checkpoint.write == MS_CKPT_WRITE_RANKS;
}

int ckpt_sync_create(ckpt_sync **out, const ckpt_sync_opts *o) {
  *out = NULL;
  ckpt_sync *cs = calloc(1, sizeof *cs);
  int rc = cs ? 0 : ms_error_set(MS_ENOMEM, "out of memory for the checkpoint coordinator");
  if (cs) {
    cs->rk = o->rk;
    cs->w = o->rk->w;
    cs->metrics = o->metrics;
    cs->cfg = o->cfg;
    cs->steps_per_epoch = o->steps_per_epoch;
    cs->model = o->model;
    cs->opt = o->opt;
    cs->shared_arenas = o->shared_arenas;
    snprintf(cs->dir, sizeof cs->dir, "%s", o->dir);
    cs->layout_hash = model_layout_hash(o->model);
    cs->last_step = -1;
    list_tensors(cs);
    resolve_policy(cs, o->blas_threads, o->cpus_per_rank);
    const ms_config *c = o->cfg;
    rc = saver_create(&cs->saver, cs->tensors, cs->n_tensors, cs->dir, c->checkpoint.level,
                      c->checkpoint.workers, c->checkpoint.keep, cs->w->rank, cs->w->size,
                      cs->background);
  }
  if ((rc = ranks_agree(o->rk, rc))) {
    ckpt_sync_free(cs);
    return rc;
  }
  *out = cs;
  return 0;
}

void ckpt_sync_free(ckpt_sync *cs) {
  if (!cs) return;
  saver_free(cs->saver);
  free(cs);
}

void ckpt_sync_describe(const ckpt_sync *cs, char *buf, size_t n) {
  const ms_config *c = cs->cfg;
  if (cs->w->size == 1) {
    /* A single rank has no slice to share: saver_start always works in the
     * background, and a synchronous write would stall for the whole file. */
    int unused = !cs->background_auto || !cs->parts_auto;
    snprintf(buf, n, "compress background, written by this rank (a single rank)%s%s%s%s%s",
             unused ? "; not used alone:" : "", cs->background_auto ? "" : " checkpoint.compress ",
             cs->background_auto
                 ? ""
                 : config_enum_name("checkpoint.compress", (int)c->checkpoint.compress),
             cs->parts_auto ? "" : " checkpoint.write ",
             cs->parts_auto ? "" : config_enum_name("checkpoint.write", (int)c->checkpoint.write));
    return;
  }
  /* The resolved choices, by the names the config gives them. */
  int compress = cs->background ? MS_CKPT_COMPRESS_BACKGROUND : MS_CKPT_COMPRESS_SYNC;
  int write = cs->save_parts ? MS_CKPT_WRITE_RANKS : MS_CKPT_WRITE_GATHER;
  snprintf(buf, n, "compress %s%s, write %s%s (%s)",
           config_enum_name("checkpoint.compress", compress), cs->background_auto ? " (auto)" : "",
           config_enum_name("checkpoint.write", write), cs->parts_auto ? " (auto)" : "",
           cs->save_parts ? "each rank writes its frame into the file"
                          : "rank 0 gathers the frames and writes the file");
}

/* A save's failure found outside a save, kept until the ranks agree on it
 * at the next step. @return 0, or its code with its message set again. */
int ckpt_sync_failure(const ckpt_sync *cs) {
  return cs->saver_rc < 0 ? ms_error_set(cs->saver_rc, "%s", cs->saver_msg) : 0;
}

int ckpt_sync_failed(const ckpt_sync *cs) { return cs->saver_rc < 0; }

static int keep_failure(ckpt_sync *cs, int rc) {
  if (rc < 0 && cs->saver_rc == 0) {
    cs->saver_rc = rc;
    snprintf(cs->saver_msg, sizeof cs->saver_msg, "%s", ms_error_msg());
  }
  return rc;
}

/* Together, one node: every rank's part is written (block: wait for them)
 * or not yet (return 0 and try at a later step); rank 0 then renames the
 * file into place in the background (block: now). Collective. */
static int finish_parts(ckpt_sync *cs, int block) {
  double t0 = comm_wtime();
  int all = comm_all_ready(cs->w, block || saver_part_ready(cs->saver));
  if (all < 0) return ms_from_comm(all, comm_errmsg(cs->w));
  if (!all) return 0;
  timeline_span(cs->tl, TIMELINE_TID_TRAIN, "checkpoint parts written", t0, comm_wtime());
  cs->parts_in_flight = 0;
  int rc = agree(cs, saver_part_wait(cs->saver));
  if (rc == 0 && cs->w->rank == 0) rc = saver_commit(cs->saver, cs->parts_total, block);
  if (rc == 0) rc = agree(cs, rc);
  if (rc) saver_part_discard(cs->saver);
  cs->save_stall_s += comm_wtime() - t0;
  return rc;
}

/* Together, one node: rank 0 creates the file, and each rank writes its
 * frame (len bytes) at its offset in the background (sync: now, and the
 * file is in place on return). Collective. */
static int write_parts(ckpt_sync *cs, size_t len, int sync) {
  comm_world *w = cs->w;
  uint64_t *lens = malloc(sizeof *lens * (size_t)w->size), mine = len;
  int rc = lens ? 0 : ms_error_set(MS_ENOMEM, "out of memory for %d frame lengths", w->size);
  if ((rc = agree(cs, rc))) {
    free(lens);
    return rc;
  }
  rc = ms_from_comm(comm_allgather_bytes(w, &mine, sizeof mine, lens), comm_errmsg(cs->w));
  uint64_t offset = 0, total = 0;
  for (int q = 0; rc == 0 && q < w->size; q++) {
    if (q < w->rank) offset += lens[q];
    total += lens[q];
  }
  free(lens);
  if (rc) return rc;
  char *tmp = NULL;
  size_t tmp_len = 0;
  if (w->rank == 0) {
    rc = ckpt_part_create(cs->dir, cs->save_step, &tmp);
    if (tmp) tmp_len = strlen(tmp) + 1;
  }
  if ((rc = agree(cs, rc))) return rc;
  rc = ms_from_comm(comm_bcast_bytes(w, &tmp, &tmp_len, 0), comm_errmsg(cs->w));
  if (rc == 0) rc = saver_write_part(cs->saver, cs->save_step, tmp, offset, sync);
  free(tmp);
  if ((rc = agree(cs, rc))) {
    if (w->rank == 0) saver_part_discard(cs->saver);
    return rc;
  }
  cs->parts_total = total;
  cs->parts_in_flight = 1;
  return sync ? finish_parts(cs, 1) : 0;
}

static int gather_frames_in(ckpt_sync *cs, int sync) {
  double t0 = comm_wtime();
  const void *frame = NULL;
  size_t len = 0;
  double compress_s = 0;
  int rc = agree(cs, saver_frame(cs->saver, &frame, &len, &compress_s));
  if (rc) return rc;
  cs->save_compress_s = compress_s;
  if (cs->save_parts) {
    rc = write_parts(cs, len, sync);
    cs->save_gather_s = comm_wtime() - t0;
    return rc;
  }
  char *all = NULL;
  size_t all_len = 0;
  rc = ms_from_comm(comm_gatherv_bytes(cs->w, frame, len, 0, &all, &all_len, NULL),
                    comm_errmsg(cs->w));
  saver_frame_done(cs->saver);
  if (rc) return rc;
  if (cs->w->rank == 0) rc = saver_write(cs->saver, all, all_len, sync);
  cs->save_gather_s = comm_wtime() - t0;
  return agree(cs, rc);
}

/* Together: every rank's frame is ready. Ranks of one node write their own
 * frames into the file (write_parts); otherwise rank 0 gathers them and
 * starts writing the file in the background. sync: the file is in place on
 * return. Collective. */
static int gather_frames(ckpt_sync *cs, int sync) {
  timeline_begin(cs->tl, "checkpoint frames to the file");
  int rc = gather_frames_in(cs, sync);
  timeline_end(cs->tl);
  return rc;
}

/* Rank 0: a write has finished; says where the file is and what it cost. */
static void report_saved(ckpt_sync *cs, const saver_result *res) {
  snprintf(cs->last_path, sizeof cs->last_path, "%s", res->path);
  double mb = (double)res->file_bytes / 1e6, total = comm_wtime() - cs->save_t0;
  metrics_say(cs->metrics,
              "checkpoint %s (%.2f MB, ratio %.3f; in place after %.2f s, step stalled %.3f s)",
              res->path, mb, mb > 0 ? (double)res->raw_bytes / 1e6 / mb : 0.0, total,
              cs->save_stall_s);
  const metrics_ckpt rec = {.step = res->step,
                            .path = res->path,
                            .bytes = res->file_bytes,
                            .raw_bytes = res->raw_bytes,
                            .world = cs->w->size,
                            .background_compress = cs->w->size == 1 || cs->background,
                            .ranks_write = cs->save_parts,
                            .write_s = total,
                            .stall_s = cs->save_stall_s,
                            .compress_s = cs->save_compress_s,
                            .gather_s = cs->save_gather_s,
                            .file_s = res->write_seconds};
  metrics_checkpoint(cs->metrics, &rec);
}

/* Completes what a save left in flight, on every rank: frames compressed in
 * the background are gathered once every rank's is ready (block: wait for
 * them); rank 0 reports a finished write (block: waits for it). A failure
 * is kept for the next step's agreement. @return ckpt_sync_failure(cs). */
static int collect_save(ckpt_sync *cs, int block) {
  if (saver_compressing(cs->saver)) { /* the same on every rank */
    double t0 = comm_wtime();
    int ready = block || saver_frame_ready(cs->saver);
    int all = comm_all_ready(cs->w, ready);
    int rc = all < 0 ? ms_from_comm(all, comm_errmsg(cs->w)) : all ? gather_frames(cs, 0) : 0;
    if (all != 0) cs->save_stall_s += comm_wtime() - t0;
    if (keep_failure(cs, rc)) return rc;
  }
  if (cs->parts_in_flight) {
    int rc = finish_parts(cs, block);
    if (keep_failure(cs, rc)) return rc;
  }
  if (cs->w->rank != 0 || !saver_pending(cs->saver) || (!block && !saver_finished(cs->saver)))
    return ckpt_sync_failure(cs);
  saver_result res;
  int rc = saver_wait(cs->saver, &res);
  if (rc < 0) return keep_failure(cs, rc);
  report_saved(cs, &res);
  return 0;
}

int ckpt_sync_poll(ckpt_sync *cs) { return collect_save(cs, 0); }

int ckpt_sync_finish(ckpt_sync *cs) { return agree(cs, collect_save(cs, 1)); }

/* Together: hash the slices, rank 0 makes the header from the gathered
 * hashes, every rank compresses its slice (now, or in the background to be
 * gathered by a later collect_save). sync: everything now, the file in
 * place on return. Collective. */
static int save_together(ckpt_sync *cs, const ckpt_meta *meta, int sync) {
  const uint64_t *hashes = NULL;
  size_t n_hashes = 0;
  int bg = cs->background && !sync;
  timeline_begin(cs->tl, "checkpoint hash");
  int rc = agree(cs, saver_hash(cs->saver, cs->cfg->checkpoint.shuffle, bg, &hashes, &n_hashes));
  timeline_end(cs->tl);
  if (rc) return rc;
  char *all = NULL;
  size_t all_len = 0;
  rc = ms_from_comm(
      comm_gatherv_bytes(cs->w, hashes, n_hashes * sizeof *hashes, 0, &all, &all_len, NULL),
      comm_errmsg(cs->w));
  if (rc) return rc;
  timeline_begin(cs->tl, bg ? "checkpoint snapshot" : "checkpoint compress");
  rc = saver_compress(cs->saver, cs->w->rank == 0 ? meta : NULL, (const uint64_t *)all,
                      all_len / sizeof(uint64_t));
  timeline_end(cs->tl);
  free(all);
  if ((rc = agree(cs, rc))) return rc;
  return bg ? 0 : gather_frames(cs, sync);
}

/* Alone, rank 0 snapshots the arenas and a background thread compresses
 * and writes; together, every rank hashes and compresses its slice and
 * rank 0 gathers and writes in the background (saver.h). sync does all of
 * the work on the training threads, at their priority, since they would
 * only wait. */
static int save(ckpt_sync *cs, const ckpt_cursor *cur, int sync) {
  double t0 = comm_wtime();
  int rc = agree(cs, collect_save(cs, 1)); /* one save at a time */
  ckpt_meta meta = {0};
  if (rc == 0 && cs->w->rank == 0) {
    const ms_config *c = cs->cfg;
    meta = (ckpt_meta){.step = cur->step,
                       .epoch = cur->epoch,
                       .step_in_epoch = cur->step_in_epoch,
                       .world_size = cs->w->size,
                       .seed = c->run.seed,
                       .rng_state = sampler_mix64(c->run.seed),
                       .layout_hash = cs->layout_hash,
                       .config = config_emit(c),
                       .byte_shuffle = c->checkpoint.shuffle};
    memcpy(meta.train_state, cs->train_state, sizeof meta.train_state);
    if (!meta.config) rc = ms_error_set(MS_ENOMEM, "out of memory emitting the config");
  }
  if (rc == 0) {
    cs->save_t0 = t0;
    cs->save_step = cur->step;
    cs->save_compress_s = cs->save_gather_s = 0;
    if (cs->w->size == 1)
      rc = saver_start(cs->saver, &meta, sync);
    else if ((rc = agree(cs, rc)) == 0)
      rc = save_together(cs, &meta, sync);
    cs->save_stall_s = comm_wtime() - t0;
  }
  free(meta.config);
  if (rc == 0 && sync) rc = collect_save(cs, 1);
  rc = agree(cs, rc);
  cs->seconds += comm_wtime() - t0;
  if (rc == 0) cs->last_step = cur->step, cs->t_last = comm_wtime();
  return rc;
}

int ckpt_sync_save(ckpt_sync *cs, const ckpt_cursor *cur, int sync) {
  timeline_begin(cs->tl, sync ? "checkpoint save (sync)" : "checkpoint save");
  int rc = save(cs, cur, sync);
  timeline_end(cs->tl);
  return rc;
}

static size_t tensor_elems(const ckpt_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
  return n;
}

/* Asks whether a checkpoint's saved config allows resuming this run. */
static int resume_accept(void *ctx, const char *path, const ckpt_meta *meta) {
  const ckpt_sync *cs = ctx;
  int rc = check_resume_meta(path, meta, cs->cfg);
  if (rc == 0) rc = check_resume_cursor(path, meta, cs->cfg, cs->steps_per_epoch);
  return rc;
}

/* Rank 0: finds, reads and verifies the checkpoint into scratch first
 * (`--resume auto` may read a damaged newer file before a good one, and if
 * none is good the run starts from the initial arenas), then copies it into
 * the arenas. cursor: found, step, epoch, step_in_epoch. @return 0 (also
 * when nothing was found) or an error. */
static int restore_on_root(ckpt_sync *cs, const char *what, int64_t cursor[4], char **path,
                           char **skipped) {
  int rc = 0;
  ckpt_meta meta = {0};
  size_t n_floats = 0, off = 0;
  for (int i = 0; i < cs->n_tensors; i++) n_floats += tensor_elems(&cs->tensors[i]);
  ckpt_tensor *scratch = malloc(sizeof *scratch * (cs->n_tensors > 0 ? (size_t)cs->n_tensors : 1));
  float *arena = malloc(sizeof(float) * (n_floats ? n_floats : 1));
  if (!scratch || !arena) rc = ms_error_set(MS_ENOMEM, "out of memory for resuming");
  for (int i = 0; rc == 0 && i < cs->n_tensors; i++) {
    scratch[i] = cs->tensors[i];
    scratch[i].data = arena + off;
    off += tensor_elems(&cs->tensors[i]);
  }
  int is_auto = strcmp(what, "auto") == 0;
  /* The config is compared first (resume_accept), so that a changed model
   * is named by its keys rather than by the tensor shapes. */
  if (rc == 0)
    rc = ckpt_restore(is_auto ? cs->dir : NULL, is_auto ? NULL : what, scratch, cs->n_tensors,
                      cs->layout_hash, resume_accept, (void *)cs, &meta, path, skipped);
  if (rc == 1) {
    rc = 0; /* nothing to resume: a fresh start */
  } else if (rc == 0) {
    for (int i = 0; i < cs->n_tensors; i++)
      memcpy(cs->tensors[i].data, scratch[i].data, tensor_elems(&cs->tensors[i]) * sizeof(float));
    cursor[0] = 1, cursor[1] = meta.step, cursor[2] = meta.epoch, cursor[3] = meta.step_in_epoch;
    memcpy(cs->train_state, meta.train_state, sizeof cs->train_state);
  }
  ckpt_meta_free(&meta);
  free(arena);
  free(scratch);
  return rc;
}

int ckpt_sync_resume(ckpt_sync *cs, const char *what, ckpt_cursor *cur, char *from, size_t cap) {
  comm_world *w = cs->w;
  char *path = NULL, *skipped = NULL;
  int64_t cursor[4] = {0, 0, 0, 0}; /* found, step, epoch, step_in_epoch */
  if (cap) from[0] = '\0';
  int rc = w->rank == 0 ? restore_on_root(cs, what, cursor, &path, &skipped) : 0;
  if ((rc = agree(cs, rc))) goto done;
  if (skipped) metrics_say(cs->metrics, "resume: skipped damaged checkpoints:\n%s", skipped);
  char *buf = (char *)cursor;
  size_t len = sizeof cursor;
  if ((rc = ms_from_comm(comm_bcast_bytes(w, &buf, &len, 0), comm_errmsg(cs->w)))) goto done;
  if (w->rank != 0) {
    memcpy(cursor, buf, sizeof cursor);
    free(buf);
  }
  if (!cursor[0]) {
    metrics_say(cs->metrics, "resume: no checkpoint in %s, starting from step 0", cs->dir);
    goto done;
  }
  if (cs->shared_arenas) {
    /* Rank 0 restored its node's one copy; the other nodes' first ranks
     * receive it into theirs (a broadcast to every rank would write into
     * the memory its own source is in), and a barrier over each node makes
     * it every rank's. One node: no message, the barrier only. */
    atomic_thread_fence(memory_order_seq_cst);
    rc = ms_from_comm(comm_node_mem_bcast_f32(cs->shared_arenas, cs->model->params,
                                              cs->model->n_params),
                      comm_errmsg(cs->w));
    float *state[2];
    for (int a = 0, n = optim_state(cs->opt, state, NULL, 2); rc == 0 && a < n; a++)
      rc = ms_from_comm(comm_node_mem_bcast_f32(cs->shared_arenas, state[a], cs->opt->n),
                        comm_errmsg(cs->w));
    if (rc) goto done;
  } else {
    if ((rc = ms_from_comm(comm_bcast_f32(w, cs->model->params, cs->model->n_params, 0),
                           comm_errmsg(cs->w))))
      goto done;
    float *state[2];
    const char *names[2];
    for (int a = 0, n = optim_state(cs->opt, state, names, 2); a < n; a++)
      if ((rc = ms_from_comm(comm_bcast_f32(w, state[a], cs->opt->n, 0), comm_errmsg(cs->w))))
        goto done;
  }
  /* The loop's own state (early stopping) as the file kept it. */
  buf = cs->train_state;
  len = sizeof cs->train_state;
  if ((rc = ms_from_comm(comm_bcast_bytes(w, &buf, &len, 0), comm_errmsg(cs->w)))) goto done;
  if (w->rank != 0) {
    snprintf(cs->train_state, sizeof cs->train_state, "%.*s", (int)len, buf);
    free(buf);
  }
  cur->step = cursor[1], cur->epoch = cursor[2], cur->step_in_epoch = cursor[3];
  cs->last_step = cur->step;
  snprintf(from, cap, "%s", path ? path : "checkpoint");
done:
  free(path);
  free(skipped);
  return rc;
}

int ckpt_sync_minutes_due(const ckpt_sync *cs, double now) {
  double every = cs->cfg->checkpoint.every_minutes;
  return every > 0 && now - cs->t_last >= 60.0 * every;
}

void ckpt_sync_start_clock(ckpt_sync *cs, double now) { cs->t_last = now; }

int64_t ckpt_sync_last_step(const ckpt_sync *cs) { return cs->last_step; }

const char *ckpt_sync_last_path(const ckpt_sync *cs) { return cs->last_path; }

double ckpt_sync_seconds(const ckpt_sync *cs) { return cs->seconds; }

static int save_best(ckpt_sync *cs, const ckpt_cursor *cur, const char *why);

void ckpt_sync_set_state(ckpt_sync *cs, const char *state) {
  snprintf(cs->train_state, sizeof cs->train_state, "%s", state ? state : "");
}

const char *ckpt_sync_state(const ckpt_sync *cs) { return cs->train_state; }

void ckpt_sync_set_timeline(ckpt_sync *cs, timeline *tl) { cs->tl = tl; }

int ckpt_sync_save_best(ckpt_sync *cs, const ckpt_cursor *cur, const char *why) {
  timeline_begin(cs->tl, "checkpoint best model");
  int rc = save_best(cs, cur, why);
  timeline_end(cs->tl);
  return rc;
}

static int save_best(ckpt_sync *cs, const ckpt_cursor *cur, const char *why) {
  double t0 = comm_wtime();
  int rc = 0;
  if (cs->w->rank == 0) {
    /* The parameters and optimizer state are the same on every rank: rank 0
     * writes the whole file, on the spot, while the others wait in the
     * agreement. A rolling save in flight works from its own snapshot. */
    const ms_config *c = cs->cfg;
    ckpt_meta meta = {.step = cur->step,
                      .epoch = cur->epoch,
                      .step_in_epoch = cur->step_in_epoch,
                      .world_size = cs->w->size,
                      .seed = c->run.seed,
                      .rng_state = sampler_mix64(c->run.seed),
                      .layout_hash = cs->layout_hash,
                      .config = config_emit(c),
                      .byte_shuffle = c->checkpoint.shuffle};
    memcpy(meta.train_state, cs->train_state, sizeof meta.train_state);
    char *path = NULL;
    rc = meta.config ? ckpt_write_named(cs->dir, CKPT_BEST_NAME, cs->tensors, cs->n_tensors, &meta,
                                        c->checkpoint.level, c->checkpoint.workers, &path)
                     : ms_error_set(MS_ENOMEM, "out of memory emitting the config");
    if (rc == 0)
      metrics_say(cs->metrics, "best so far (%s): %s (%.2f s)", why, path, comm_wtime() - t0);
    free(path);
    free(meta.config);
  }
  rc = agree(cs, rc);
  cs->seconds += comm_wtime() - t0;
  return rc;
}
