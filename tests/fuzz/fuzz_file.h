/* fuzz_file — what the converter fuzzers share: each input as a file
 * (a memfd, so nothing touches the disk) and an output path in /dev/shm.
 * One per process; any failure to set them up aborts (a fuzzer bug). */
#ifndef MS_FUZZ_FILE_H
#define MS_FUZZ_FILE_H

#include <stddef.h>

/* Replaces the input file's bytes with bytes[0..n). The first call creates
 * it; name goes into the memfd's and the output's names. */
void fuzz_file_put(const char *name, const void *bytes, size_t n);

/* The input file's path (/proc/self/fd/N) and the output path, valid after
 * the first fuzz_file_put. */
const char *fuzz_file_in(void);
const char *fuzz_file_out(void);

#endif
