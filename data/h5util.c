#include "h5util.h"

#include <stdarg.h>
#include <stdio.h>

void h5util_quiet_begin(h5util_quiet *q) {
  H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void h5util_quiet_end(const h5util_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->func, q->data); }

void h5util_set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}
