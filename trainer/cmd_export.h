/* cmd_export — `midscale export CHECKPOINT OUT [options]`: a checkpoint as a
 * plain safetensors file (ckpt_export) or as an ONNX model (onnx_export.h),
 * by OUT's extension (.onnx) or --format. Serial, no MPI. */
#ifndef MS_CMD_EXPORT_H
#define MS_CMD_EXPORT_H

#include <stdio.h>

extern const char export_usage[];

/* Parses the arguments after "export", writes the file and a one-line
 * summary to out. @return 0, or an MS_E* code with its message set
 * (MS_EUSAGE for bad arguments; the export's codes otherwise). */
int export_main(int argc, char **argv, FILE *out);

#endif
