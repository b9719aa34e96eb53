#include "ranks.h"

#include <stdio.h>

#include "ms_error.h"

void ranks_enter(const ranks *r, const char *op, const char *where) {
  watchdog_enter(r->wd, op, where, r->step ? *r->step : 0);
}

void ranks_leave(const ranks *r) { watchdog_leave(r->wd); }

int ranks_agree_at(const ranks *r, int rc, const char *where) {
  char msg[MS_MSG_MAX];
  if (rc < 0) {
    if (r->w->size > 1 && r->w->rank != 0)
      snprintf(msg, sizeof msg, "rank %d: %s", r->w->rank, ms_error_msg());
    else
      snprintf(msg, sizeof msg, "%s", ms_error_msg());
  } else {
    msg[0] = '\0';
  }
  r->w->err[0] = '\0';
  ranks_enter(r, "agreement", where);
  int code = comm_agree_msg(r->w, rc, msg, sizeof msg);
  ranks_leave(r);
  if (code == 0) return 0;
  if (code == COMM_EMPI && r->w->err[0]) return ms_from_comm(code, comm_errmsg(r->w));
  return ms_error_set(code, "%s", msg);
}
