#include "fault.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void fault_stall_init(fault_stall *f) {
  const char *v = getenv("MIDSCALE_DEBUG_STALL");
  long long step = 0;
  f->rank = -1;
  f->seconds = 0;
  if (v && sscanf(v, "%d:%lld:%lf", &f->rank, &step, &f->seconds) != 3) f->rank = -1;
  f->step = step;
}

void fault_stall_at(const fault_stall *f, int rank, int64_t step) {
  if (f->rank < 0 || rank != f->rank || step != f->step) return;
  double s = f->seconds;
  struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}
