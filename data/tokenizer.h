/* tokenizer — text to token ids and back, the way `midscale prepare text`
 * made them (convert.h, convert_text): one id per byte ("bytes", 256 ids),
 * or one per character of a vocabulary ("chars": a list of Unicode code
 * points, id = position, with an optional <unk> that takes every other
 * character). A language model's tools (generate) load the tokenizer of
 * their training data with data_tokenizer_load.
 *
 * Ownership: a data_tokenizer owns its tables; free with
 * data_tokenizer_free (accepts NULL). Threads: a tokenizer is read-only
 * after it is made and may be shared; data_tokenizer_load calls HDF5 under
 * the process-wide lock (dataset.h). Errors: 0 or -1 with one line in err
 * (dataset.h, "Errors").
 */
#ifndef MS_TOKENIZER_H
#define MS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct data_tokenizer data_tokenizer;

/* The byte tokenizer: id = byte value. Fails only when out of memory. */
int data_tokenizer_bytes(data_tokenizer **out, char *err, size_t errlen);

/* A vocabulary of characters from the text of a vocabulary file (convert.h:
 * UTF-8, one character per line, "\\n", "\\t", "\\r", "\\s", "\\\\" escapes,
 * "<unk>", blank lines skipped); err names `path` and the line of a line
 * that is not one character, a repeated character or <unk>, and an empty
 * list. */
int data_tokenizer_parse(data_tokenizer **out, const char *text, size_t len, const char *path,
                         char *err, size_t errlen);

/* The tokenizer of the token dataset `tokens` of the HDF5 file `path`, from
 * its `tokenizer` attribute ("bytes" or "chars") and, for "chars", the
 * dataset "vocab" beside it (the code point of each id, -1 for <unk>).
 * Errors: the file or the dataset is missing or damaged (as data_open), the
 * attribute is missing (not written by prepare text) or unknown, "vocab" is
 * missing, not integers, or holds a value that is not a code point, a
 * repeat or more than one -1. */
int data_tokenizer_load(data_tokenizer **out, const char *path, const char *tokens, char *err,
                        size_t errlen);

/* Ids: [0, data_tokenizer_size). 1 for the byte tokenizer. */
int32_t data_tokenizer_size(const data_tokenizer *t);
int data_tokenizer_is_bytes(const data_tokenizer *t);

/* The code point of id (chars), the byte (bytes); UINT32_MAX for <unk> and
 * for ids out of range. */
uint32_t data_tokenizer_codepoint(const data_tokenizer *t, int32_t id);

/* The first character of text[0..len) (len >= 1): its id into *id (-1
 * when it is outside the vocabulary and there is no <unk>) and its code
 * point (the byte, for bytes) into *cp. @return its length in bytes (1 for
 * bytes), 0 when text does not start with a UTF-8 character (chars). */
size_t data_tokenizer_next(const data_tokenizer *t, const char *text, size_t len, int32_t *id,
                           uint32_t *cp);

/* Appends the ids of text[0..len) to *ids (*n used of *cap, grown with
 * realloc; the caller frees *ids). `what` and *line (advanced past each
 * newline) name the place in messages: "'WHAT' line N: ...". Errors: text
 * that is not UTF-8 (chars), a character outside the vocabulary without
 * <unk>, out of memory. */
int data_tokenizer_encode(const data_tokenizer *t, const char *text, size_t len, const char *what,
                          long *line, int32_t **ids, size_t *n, size_t *cap, char *err,
                          size_t errlen);

/* The text of one id into out (1 to 4 bytes, UTF-8 for chars, the byte
 * for bytes); @return its length, 0 for <unk> or an id out of range. */
size_t data_tokenizer_decode(const data_tokenizer *t, int32_t id, char out[4]);

void data_tokenizer_free(data_tokenizer *t);

#endif
