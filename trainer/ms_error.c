#include "ms_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "comm.h"

/* comm_agree and comm_agree_msg carry the trainer's MS_E* codes between
 * ranks as plain ints, and return COMM_EMPI when the agreement itself fails:
 * that value must read as MS_ECOMM on the trainer's side, and COMM_ENOMEM
 * as MS_ENOMEM. ms_from_comm maps them explicitly; these asserts keep the
 * codes that travel through an agreement from meaning two things. */
_Static_assert(COMM_EMPI == MS_ECOMM, "a failed agreement reads as MS_ECOMM");
_Static_assert(COMM_ENOMEM == MS_ENOMEM, "comm's out of memory reads as MS_ENOMEM");

#define MS_ERRMSG_MAX MS_MSG_MAX

static _Thread_local char errmsg[MS_ERRMSG_MAX];

const char *ms_strerror(int code) {
  if (code == 0) return "success";
  switch (code) {
#define MS_X(name, value, exit_status, desc) \
  case name:                                 \
    return desc;
    MS_ERROR_TABLE(MS_X)
#undef MS_X
  }
  return "unknown error";
}

int ms_exit_code(int code) {
  if (code == 0) return MS_EXIT_OK;
  switch (code) {
#define MS_X(name, value, exit_status, desc) \
  case name:                                 \
    return exit_status;
    MS_ERROR_TABLE(MS_X)
#undef MS_X
  }
  return MS_EXIT_RUNTIME;
}

int ms_error_set(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, sizeof errmsg, fmt, ap);
  va_end(ap);
  return code;
}

void ms_error_prefix(const char *fmt, ...) {
  char prefix[1024];
  static _Thread_local char old[MS_ERRMSG_MAX]; /* off the stack: the loader thread's is small */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, errmsg, sizeof old);
  /* A message longer than the buffer is cut at its end, on purpose. */
  size_t n = strlen(prefix);
  if (n > sizeof errmsg - 3) n = sizeof errmsg - 3;
  memcpy(errmsg, prefix, n);
  memcpy(errmsg + n, ": ", 2);
  size_t rest = sizeof errmsg - n - 3;
  size_t m = strlen(old);
  if (m > rest) m = rest;
  memcpy(errmsg + n + 2, old, m);
  errmsg[n + 2 + m] = '\0';
}

const char *ms_error_msg(void) { return errmsg; }

void ms_error_clear(void) { errmsg[0] = '\0'; }

int ms_from_data(int rc, const char *err) {
  return rc < 0 ? ms_error_set(MS_EDATA, "%s", err && err[0] ? err : "data error") : rc;
}

int ms_from_comm(int rc, const char *err) {
  if (rc >= 0) return rc;
  int code = rc == COMM_ENOMEM ? MS_ENOMEM : MS_ECOMM;
  return ms_error_set(code, "%s", err && err[0] ? err : ms_strerror(code));
}
