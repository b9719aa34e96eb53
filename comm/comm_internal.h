/* comm_internal — what the files of comm/ share and nothing outside needs.
 * Private to comm/. */
#ifndef MS_COMM_INTERNAL_H
#define MS_COMM_INTERNAL_H

#include <stddef.h>

/* Writes "<who>: <what> failed: <MPI's text for mpi_rc>" into err (cap
 * bytes; who may be "" for no prefix). Any thread: makes no MPI call but
 * MPI_Error_string. @return COMM_EMPI. */
int comm_mpi_fail(int mpi_rc, const char *who, const char *what, char *err, size_t cap);

/* The cross-node exchanges go as messages of at least COMM_PIPE_BYTES, at
 * most COMM_PIPE_MAX of them per chunk (reducer_hier.c), and the link
 * probe times its exchanges in the same pieces (comm_probe_link), so that
 * it measures the link the way the sync uses it. At 32 KiB a piece stays
 * under Open MPI's TCP eager limit (64 KiB), which spares the rendezvous
 * round trip of larger messages and lets the data go without progress
 * calls. */
#define COMM_PIPE_BYTES ((size_t)32768)
#define COMM_PIPE_MAX 64

#endif
