/* What eval and predict (cmd.h) share on their command lines. */
#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "ms_error.h"

int cmd_take_set(int argc, char **argv, int *i, const char **overrides, int *n) {
  const char *s = argv[*i];
  if (strcmp(s, "--set") != 0 && strncmp(s, "--set=", 6) != 0) return 0;
  const char *v = s[5] == '=' ? s + 6 : (*i + 1 < argc ? argv[++*i] : NULL);
  if (!v || !*v) return ms_error_set(MS_EUSAGE, "--set needs section.key=value");
  if (*n == CMD_MAX_OVERRIDES) return ms_error_set(MS_EUSAGE, "too many --set options");
  overrides[(*n)++] = v;
  return 1;
}

int cmd_wants_help(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
  return 0;
}

int cmd_split_target(const char *arg, char *path, size_t path_cap, char *name, size_t name_cap) {
  const char *colon = strrchr(arg, ':');
  if (!colon || colon == arg || !colon[1])
    return ms_error_set(MS_EUSAGE, "'%s' is not FILE.h5:DATASET", arg);
  size_t n = (size_t)(colon - arg);
  if (n >= path_cap || strlen(colon + 1) >= name_cap)
    return ms_error_set(MS_EUSAGE, "'%s' is too long", arg);
  memcpy(path, arg, n);
  path[n] = '\0';
  snprintf(name, name_cap, "%s", colon + 1);
  return 0;
}
