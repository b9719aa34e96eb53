/* generate — `midscale generate CONFIG CHECKPOINT --prompt TEXT [--tokens N]
 * [--temperature T] [--top-k K] [--seed S]`: text from a language model
 * trained on the token data `midscale prepare text` makes.
 *
 * Tokenizer: with data.tokens, the one data.train_x records (data/
 * tokenizer.h: the "tokenizer" attribute, and for "chars" the "vocab"
 * dataset beside it), so data.path must be readable; otherwise bytes. The
 * model's vocabulary (embedding rows and logits per position) must be the
 * tokenizer's size. The prompt's characters map to ids (a character outside
 * the vocabulary, when it has no <unk>, is a usage error naming it); new ids
 * are written as their characters (UTF-8; <unk> as U+FFFD).
 *
 * The model is CONFIG's; its parameters are CHECKPOINT's (verified, and its
 * layout hash must be the model's). The context is the model's input
 * length T: model.input [T] when the config gives it, else the rows of the
 * checkpoint's pos_emb.weight. The prompt's tokens, then each new token,
 * fill positions 0..n-1 of the context (the last T tokens once there are
 * more); the logits at position n-1 give the next token. The padding after
 * n is invisible to those positions because every attention must be causal
 * (checked).
 *
 * Sampling: temperature 0 takes the argmax; otherwise softmax(logits / T)
 * over the top K logits (K 0 = all; ties by lower id) and a uniform draw
 * that is a pure function of (seed, token index): the same seed gives the
 * same text. BLAS runs on one thread so that the logits do not depend on
 * the machine's core count.
 *
 * Serial, no MPI. Writes the prompt and the generated text to `out`.
 * Errors: MS_EUSAGE (arguments, a prompt outside the vocabulary),
 * MS_ECONFIG (config, or a model that is not a causal language model of the
 * tokenizer's size), MS_EDATA (data.train_x's tokenizer cannot be read),
 * MS_ECKPT (the checkpoint), MS_ENOMEM.
 */
#ifndef MS_GENERATE_H
#define MS_GENERATE_H

#include <stdint.h>
#include <stdio.h>

/* The next token from logits (V) with the rules above; draw is token i's
 * uniform in [0, 1) (generate_uniform). order: V ints of scratch. */
int generate_pick(const float *logits, int V, double temperature, int top_k, double draw,
                  int *order);

/* Uniform in [0, 1) for token i of a run seeded with seed. */
double generate_uniform(uint64_t seed, uint64_t i);

/* The whole command: argv holds the arguments after "generate". */
int generate_main(int argc, char **argv, FILE *out);

#endif
