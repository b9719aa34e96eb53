/* ms_error — the one table of midscale error codes, and the last error message.
 *
 * Functions in trainer/ that can fail return 0 or a negative MS_E* code and
 * record a message with context (file, key, dataset, line) through
 * ms_error_set(). They never print and never exit: trainer/main.c decides what
 * the user sees and maps the code to an exit status with ms_exit_code().
 *
 * data/ and comm/ sit below trainer/ and do not include this header; they
 * report failures through their own error buffers, which the trainer turns
 * into MS_E* codes at the call site.
 *
 * The message buffer is thread-local: a message set on the loader thread is
 * read on the loader thread.
 */
#ifndef MS_ERROR_H
#define MS_ERROR_H

#include <stddef.h>

/* X(name, value, exit status, description) */
#define MS_ERROR_TABLE(X)                                                  \
  X(MS_EUSAGE,  -1, 2,  "usage error")                                     \
  X(MS_ECONFIG, -2, 2,  "config error")                                    \
  X(MS_EDATA,   -3, 3,  "data error")                                      \
  X(MS_ECKPT,   -4, 4,  "checkpoint error")                                \
  X(MS_EIO,     -5, 1,  "I/O error")                                       \
  X(MS_ENOMEM,  -6, 1,  "out of memory")                                   \
  X(MS_ECOMM,   -7, 1,  "communication error")                             \
  X(MS_ESTOP,   -8, 75, "stopped by a signal after a good checkpoint")     \
  X(MS_EPEER,   -9, 1,  "another rank failed")                             \
  X(MS_EINTERNAL, -10, 1, "internal error")

enum {
#define MS_X(name, value, exit_status, desc) name = value,
  MS_ERROR_TABLE(MS_X)
#undef MS_X
};

/* Exit statuses (DESIGN.md, "Errors"). */
enum {
  MS_EXIT_OK = 0,
  MS_EXIT_RUNTIME = 1,
  MS_EXIT_USAGE = 2,
  MS_EXIT_DATA = 3,
  MS_EXIT_CKPT = 4,
  MS_EXIT_HANG = 6, /* the hang watchdog aborted the job (MPI_Abort) */
  MS_EXIT_STOPPED = 75
};

/* @return a static description of code (0 gives "success"). */
const char *ms_strerror(int code);

/* @return the process exit status for code (0 for 0, 1 for unknown codes). */
int ms_exit_code(int code);

/* Records a printf-style message for this thread and returns code, so that a
 * failing function can `return ms_error_set(MS_EDATA, "…", …);`. */
int ms_error_set(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to the current message (adds context on the way up). */
void ms_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* @return this thread's last message ("" when none). Valid until the next
 * ms_error_set on this thread. */
const char *ms_error_msg(void);

/* Clears this thread's message. */
void ms_error_clear(void);

#endif
