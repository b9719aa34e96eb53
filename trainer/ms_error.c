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

/* Length of the valid UTF-8 sequence at s (n bytes left) and its code
 * point, or 0 when the bytes are not one. */
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned *cp) {
  size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
               : s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : 0;
  if (len == 0 || len > n) return 0;
  unsigned v = len == 1 ? s[0] : s[0] & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3F);
  }
  static const unsigned least[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < least[len] || v > 0x10FFFF || (v >= 0xD800 && v < 0xE000)) return 0;
  *cp = v;
  return len;
}

const char *ms_escape(const char *s, int keep_newlines, char *buf, size_t cap) {
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  size_t n = strlen((const char *)p), o = 0;
  if (cap == 0) return buf;
  for (size_t i = 0; i < n;) {
    unsigned cp = 0;
    size_t len = utf8_seq(p + i, n - i, &cp);
    char esc[8] = "";
    if (len == 0)
      snprintf(esc, sizeof esc, "\\x%02X", p[i]), len = 1;
    else if ((cp < 0x20 && !(keep_newlines && (cp == '\n' || cp == '\t'))) || cp == 0x7F)
      snprintf(esc, sizeof esc, "\\x%02X", cp);
    else if (cp >= 0x80 && cp < 0xA0) /* C1 controls: CSI is 0x9B */
      snprintf(esc, sizeof esc, "\\u%04X", cp);
    size_t add = esc[0] ? strlen(esc) : len;
    if (o + add + 4 > cap) {
      if (o + 4 <= cap) memcpy(buf + o, "...", 3), o += 3;
      break;
    }
    memcpy(buf + o, esc[0] ? esc : (const char *)p + i, add);
    o += add;
    i += len;
  }
  buf[o < cap ? o : cap - 1] = '\0';
  return buf;
}

int ms_error_set(int code, const char *fmt, ...) {
  static _Thread_local char raw[MS_ERRMSG_MAX]; /* off the stack, as in ms_error_prefix */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  /* A message may quote bytes from a file: no terminal escape reaches the
   * user through it (lines stay lines). */
  ms_escape(raw, 1, errmsg, sizeof errmsg);
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
