/* comm_internal — what the files of comm/ share and nothing outside needs.
 * Private to comm/. */
#ifndef MS_COMM_INTERNAL_H
#define MS_COMM_INTERNAL_H

#include <stddef.h>

/* Writes "<who>: <what> failed: <MPI's text for mpi_rc>" into err (cap
 * bytes; who may be "" for no prefix). Any thread: makes no MPI call but
 * MPI_Error_string. @return COMM_EMPI. */
int comm_mpi_fail(int mpi_rc, const char *who, const char *what, char *err, size_t cap);

#endif
