/* inspect — `midscale inspect`: what a checkpoint holds, verified.
 * Serial, no MPI. Prints to the stream it is given. */
#ifndef MS_INSPECT_H
#define MS_INSPECT_H

#include <stdio.h>

/* Verifies `path` fully and prints its metadata (the config only when
 * show_config), a table of tensors (shape, size, min, max, mean |x|), the
 * file size and compression ratio.
 * @return 0, or the ckpt error code with its message set. */
int inspect_checkpoint(const char *path, int show_config, FILE *out);

#endif
