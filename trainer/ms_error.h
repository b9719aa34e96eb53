/* ms_error — the one table of midscale error codes, and the last error message.
 *
 * Functions in trainer/ that can fail return 0 or a negative MS_E* code and
 * record a message with context (file, key, dataset, line) through
 * ms_error_set(). They never print and never exit: trainer/main.c decides what
 * the user sees and maps the code to an exit status with ms_exit_code().
 *
 * data/ and comm/ sit below trainer/ and do not include this header; they
 * report failures their own way (data: -1 and a message in a caller's
 * buffer; comm: COMM_E* and the world's err buffer). The trainer turns them
 * into MS_E* codes through the bridges below, ms_from_data and
 * ms_from_comm, and nowhere else.
 *
 * The message buffer is thread-local: a message set on the loader thread is
 * read on the loader thread.
 */
#ifndef MS_ERROR_H
#define MS_ERROR_H

#include <stddef.h>

/* The size of every message buffer of the trainer: this thread's message,
 * the buffers it hands to data/ (which writes at most cap bytes), the
 * agreement that carries a rank's message to the others. It holds the
 * longest report, a config report of 20 problems (config_value.c checks it),
 * so the trainer never cuts a lower layer's message. */
#define MS_MSG_MAX 16384

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

/* Copies s into buf (cap bytes, always NUL-terminated, cut with "..."),
 * printable: control characters (all but newline and tab when
 * keep_newlines) and DEL as \xNN, C1 controls as \uNNNN, bytes that are
 * not UTF-8 as \xNN. Every string from a file that midscale prints goes
 * through it (names and values in messages, `inspect`). @return buf. */
const char *ms_escape(const char *s, int keep_newlines, char *buf, size_t cap);

/* Records a printf-style message for this thread (through ms_escape, newlines
 * kept) and returns code, so that a failing function can
 * `return ms_error_set(MS_EDATA, "…", …);`. */
int ms_error_set(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to the current message (adds context on the way up). */
void ms_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* @return this thread's last message ("" when none). Valid until the next
 * ms_error_set on this thread. */
const char *ms_error_msg(void);

/* Clears this thread's message. */
void ms_error_clear(void);

/* ---- bridges from the layers below ----------------------------------------- */

/* A data/ result: rc < 0 (data's failure) becomes MS_EDATA with err (the
 * message data wrote into the caller's buffer) as this thread's message;
 * rc >= 0 is returned as it is.
 * @return 0 (or rc >= 0), or MS_EDATA. */
int ms_from_data(int rc, const char *err);

/* A comm/ result: COMM_ENOMEM becomes MS_ENOMEM, any other rc < 0 (COMM_EMPI)
 * MS_ECOMM, with err (comm_errmsg of the world) as this thread's message;
 * rc >= 0 is returned as it is (comm_all_ready's 1 and 0).
 * @return rc >= 0, MS_ENOMEM or MS_ECOMM. */
int ms_from_comm(int rc, const char *err);

#endif
