/* cmd_prepare_text — `midscale prepare text`: text files into a token
 * stream with a held-out split (data/convert.h, convert_text).
 *
 * Serial, no MPI. Prints the token counts to stdout on success; never
 * exits.
 */
#ifndef MS_CMD_PREPARE_TEXT_H
#define MS_CMD_PREPARE_TEXT_H

/* argv[0] is "text": FILE... OUT.h5 [--vocab bytes|FILE] [--test-fraction F]
 * (options anywhere; the last plain argument is OUT.h5). *written: OUT.h5.
 * @return 0; MS_EXIT_USAGE with the message printed; or a negative MS_E*
 * code with its message set (ms_error.h): MS_EDATA for unreadable text, a
 * bad vocabulary or an output that cannot be written. */
int cmd_prepare_text(int argc, char **argv, const char **written);

#endif
