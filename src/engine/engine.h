/* engine.h: internals of the continuous-batching engine (the API is the mlc_engine section of
 * mlc.h; the design is docs/engine.md). Exposed here for the tests and the server. */
#ifndef MLC_ENGINE_H
#define MLC_ENGINE_H

#include <stdbool.h>

#include "base/base.h"
#include "mlc.h"
#include "tokenizer/tokenizer.h"

/* The engine's tokenizer (NULL if the model directory has none); thread-safe for encode/decode. */
const mlc_tokenizer *mlc_engine_tokenizer(const mlc_engine *e);
/* The model directory the engine was loaded from. */
const char *mlc_engine_model_dir(const mlc_engine *e);
int mlc_engine_vocab_size(const mlc_engine *e);

/* Stop-string holdback: appends `add` to *hold, then, if a stop string occurs in it, returns the
 * text before the first occurrence in *out (heap) and true; otherwise moves to *out everything
 * that cannot be the start of a stop string and returns false. With final, nothing is held. */
bool mlc_stop_scan(mlc_buf *hold, const char *add, const char *const *stop, int n_stop, bool final, char **out);

#endif
