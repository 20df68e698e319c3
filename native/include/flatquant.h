/*
 * flatquant.h - the public C ABI of the FlatQuant runtime.
 *
 * This header is the only public interface of libflatquant. It is written to be bound from Java through the
 * Foreign Function & Memory API (the committed bindings under bindings/ are generated from this file), and from C.
 *
 * Conventions
 *  - Every symbol starts with fq_ / FQ_. Objects are opaque handles returned through out-pointers and released
 *    with the matching *_free function (free(NULL) is a no-op).
 *  - Every fallible call returns an int32_t status (FQ_STATUS_*). On failure it fills the caller-owned error
 *    record if one is passed (it may be NULL). There is no thread-local "last error".
 *  - Option structs begin with struct_size and have an *_init function that fills the defaults; a caller built
 *    against an older, smaller struct keeps working.
 *  - Outputs go into caller-allocated buffers. A call whose buffer is too small returns
 *    FQ_STATUS_BUFFER_TOO_SMALL and reports the size it needed.
 *  - Nothing here aborts or exits the process, and no C++ exception crosses this boundary.
 *
 * Thread contract
 *  - fq_runtime and fq_model are immutable after creation and may be shared by any number of threads.
 *    A runtime must outlive every model loaded with it; a model must outlive its sessions.
 *  - fq_session serves one caller at a time. A call on a session that is already inside another call returns
 *    FQ_STATUS_BUSY and leaves the session untouched.
 *  - fq_cancel_token may be signalled from any thread at any time.
 *  - Progress callbacks run on the calling thread of the long operation.
 */
#ifndef FLATQUANT_H
#define FLATQUANT_H

#include <stdint.h>

#if defined(_WIN32)
#define FQ_API __declspec(dllexport)
#else
#define FQ_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on every incompatible change of this header. Equals fq_abi_version() of the loaded library. */
#define FQ_ABI_VERSION 1

/* ---------------------------------------------------------------------------------------------------------------
 * Status codes. Values are stable; a removed code keeps its number reserved.
 * ------------------------------------------------------------------------------------------------------------- */
#define FQ_STATUS_OK 0
#define FQ_STATUS_INVALID_ARGUMENT 1    /* a NULL handle, a bad size, an option out of range, wrong shapes    */
#define FQ_STATUS_NOT_FOUND 2           /* a file that is not there                                           */
#define FQ_STATUS_IO 3                  /* a read or write that failed                                        */
#define FQ_STATUS_MODEL_FORMAT 4        /* a truncated, corrupt or inconsistent model or artifact file        */
#define FQ_STATUS_UNSUPPORTED 5         /* a valid input this build does not handle (architecture, type)     */
#define FQ_STATUS_OUT_OF_MEMORY 6       /* host memory                                                        */
#define FQ_STATUS_DEVICE_OUT_OF_MEMORY 7 /* GPU memory                                                        */
#define FQ_STATUS_DEVICE_UNAVAILABLE 8  /* no usable GPU, or the library was built without CUDA              */
#define FQ_STATUS_CUDA 9                /* any other CUDA error; fq_error.cuda_error has the code             */
#define FQ_STATUS_CANCELLED 10          /* cancelled through a callback or an fq_cancel_token                 */
#define FQ_STATUS_BUSY 11               /* the session is being used by another call                          */
#define FQ_STATUS_BUFFER_TOO_SMALL 12   /* the caller's buffer is too small; the needed size was reported     */
#define FQ_STATUS_NUMERIC 13            /* NaN or Inf in weights or results                                   */
#define FQ_STATUS_INTERNAL 14           /* a bug: please report it with the message                           */

/* The error record. Owned by the caller; the library only writes into it. */
typedef struct fq_error {
    uint32_t struct_size;  /* sizeof(fq_error), set by fq_error_init                                   */
    int32_t code;          /* FQ_STATUS_*, FQ_STATUS_OK when no error                                   */
    int32_t cuda_error;    /* the cudaError_t value for FQ_STATUS_CUDA / DEVICE_*, otherwise 0          */
    char cuda_error_name[64]; /* e.g. "cudaErrorIllegalAddress", empty when cuda_error == 0             */
    char message[1024];    /* NUL-terminated, human readable, names the problem (and file:line inside)  */
} fq_error;

FQ_API void fq_error_init(fq_error *err);

/* The ABI version of the loaded library (FQ_ABI_VERSION it was built with). */
FQ_API int32_t fq_abi_version(void);
/* A static NUL-terminated version string such as "0.1.0". Never NULL, never freed. */
FQ_API const char *fq_version_string(void);
/* A static name for a status code, e.g. "FQ_STATUS_MODEL_FORMAT"; "FQ_STATUS_UNKNOWN" for unknown values. */
FQ_API const char *fq_status_name(int32_t status);
/* Does nothing and returns 0: the cost of one call across the boundary, for benchmarks. */
FQ_API int32_t fq_noop(void);

/* ---------------------------------------------------------------------------------------------------------------
 * Cancellation and progress
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct fq_cancel_token fq_cancel_token;

FQ_API int32_t fq_cancel_token_create(fq_cancel_token **out, fq_error *err);
/* Requests cancellation. Safe from any thread, any number of times. Long operations notice it within one step. */
FQ_API void fq_cancel_token_cancel(fq_cancel_token *token);
FQ_API int32_t fq_cancel_token_is_cancelled(const fq_cancel_token *token);
FQ_API void fq_cancel_token_reset(fq_cancel_token *token);
FQ_API void fq_cancel_token_free(fq_cancel_token *token);

/* Called by long operations. stage is a static string ("tokenize", "perplexity", ...); done <= total.
 * Return 0 to continue, any other value to cancel (the operation then returns FQ_STATUS_CANCELLED). */
typedef int32_t (*fq_progress_fn)(void *user_data, const char *stage, int64_t done, int64_t total);

/* ---------------------------------------------------------------------------------------------------------------
 * Runtime: the compute backend and its threads.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct fq_runtime fq_runtime;

#define FQ_DEVICE_CPU (-1)

typedef struct fq_runtime_options {
    uint32_t struct_size;
    int32_t n_threads;  /* CPU worker threads; 0 = one per available core                              */
    int32_t device;     /* FQ_DEVICE_CPU, or a CUDA device ordinal (0, 1, ...)                          */
} fq_runtime_options;

FQ_API void fq_runtime_options_init(fq_runtime_options *opts);
/* With a CUDA device, calibration (fq_calibrate), whole-sequence evaluation (fq_model_logits,
 * fq_model_loglikelihood, fq_model_perplexity) and sessions of the models loaded with the runtime run on that GPU
 * (fq_model_info's eval_engine and session_engine say with which engine).
 * Statuses: OK, INVALID_ARGUMENT, DEVICE_UNAVAILABLE (a CUDA device was asked for and none is usable). */
FQ_API int32_t fq_runtime_create(const fq_runtime_options *opts, fq_runtime **out, fq_error *err);
FQ_API void fq_runtime_free(fq_runtime *rt);
FQ_API int32_t fq_runtime_n_threads(const fq_runtime *rt);
/* 1 when the library was built with the CUDA backend, 0 otherwise. */
FQ_API int32_t fq_build_has_cuda(void);
/* Number of usable CUDA devices; 0 (and OK) when there are none or the build has no CUDA. */
FQ_API int32_t fq_cuda_device_count(int32_t *out, fq_error *err);

/* ---------------------------------------------------------------------------------------------------------------
 * Model: weights, configuration and tokenizer of a LLaMA-family model. Immutable, shareable.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct fq_model fq_model;

typedef struct fq_model_options {
    uint32_t struct_size;
    int32_t check_finite;  /* 1 (default): refuse weights holding NaN or Inf with FQ_STATUS_NUMERIC           */
} fq_model_options;

FQ_API void fq_model_options_init(fq_model_options *opts);
/* Loads a GGUF file (versions 2 and 3). Weights are dequantized to FP32 on load.
 * The file may also be a quantized-model file written by fq_model_save_quantized (docs/quantized-model-format.md):
 * the handle is then a quantized model (fq_model_info.quant etc. are set, quantized_file is 1) that runs on a CUDA
 * runtime with the real W4A4 kernels, and on a CPU runtime as the same fake-quantized model fq_model_quantize makes.
 * Statuses: OK, INVALID_ARGUMENT, NOT_FOUND, IO, MODEL_FORMAT (truncated/corrupt), UNSUPPORTED (architecture,
 * tensor type, tokenizer, a newer quantized-model format), OUT_OF_MEMORY, NUMERIC. On failure *out is left NULL and
 * nothing leaks. */
FQ_API int32_t fq_model_load(fq_runtime *rt, const char *path, const fq_model_options *opts, fq_model **out,
                             fq_error *err);
FQ_API void fq_model_free(fq_model *model);

typedef struct fq_model_info {
    uint32_t struct_size;
    char architecture[32];    /* "llama", "qwen2"                                                         */
    char name[128];           /* general.name, or empty                                                   */
    char tokenizer_model[16]; /* "llama" (SentencePiece-style) or "gpt2" (byte-level BPE)                  */
    char tokenizer_pre[32];   /* the BPE pre-tokenizer ("default", "smollm", "llama-bpe", "qwen2", ...)     */
    char weight_types[64];    /* tensor types found in the file, e.g. "Q4_1,Q8_0,F32"                       */
    int64_t n_params;         /* parameters in the file's tensors                                          */
    int64_t file_bytes;
    int32_t n_vocab;
    int32_t n_ctx_train;      /* context length the model was trained with                                */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim;
    int32_t n_ff;
    int32_t rope_dim;
    int32_t bos_id;           /* -1 when the model has none                                               */
    int32_t eos_id;           /* -1 when the model has none                                               */
    int32_t add_bos;          /* 1 when texts get a BOS token by default                                  */
    int32_t tied_embeddings;  /* 1 when the output projection reuses the token embedding                  */
    int32_t has_qkv_bias;     /* 1 for Qwen2-style q/k/v biases                                            */
    float rope_freq_base;
    float rms_eps;
    int32_t gguf_version;
    /* Quantized models (fq_model_quantize) only; empty strings for a full-precision model:                       */
    char quant[16];           /* bit widths, e.g. "w4a4kv4", "w4a16"                                              */
    char method[16];          /* "rtn", "rotate" or "flatquant"                                                   */
    char weight_quantizer[8]; /* "rtn" or "gptq"                                                                  */
    int32_t quantized_file;   /* 1 when loaded from a quantized-model file (fq_model_save_quantized)              */
    /* What runs this handle: whole-sequence evaluation (logits, log-likelihood, perplexity) and sessions.
     *   "cpu"             the FP32 CPU engine (full precision, or fake-quantized for a quantized model)
     *   "cuda-fp32"       full precision on the GPU in FP32 (evaluation of a full-precision model)
     *   "cuda-fakequant"  the fake-quantized model on the GPU in FP32 (evaluation of fq_model_quantize's handle)
     *   "cuda-w4a4"       the real W4A4 engine: INT4 weights and activations, INT4 GEMMs, 4-bit KV cache
     *   "cuda-fp16"       the FP16 engine of the same kernels (sessions of a full-precision model)
     *   ""                not available (sessions of quantized models other than w4a4kv4 on a GPU)           */
    char eval_engine[24];
    char session_engine[24];
} fq_model_info;

FQ_API void fq_model_info_init(fq_model_info *info);
FQ_API int32_t fq_model_get_info(const fq_model *model, fq_model_info *out, fq_error *err);
/* SHA-256 of the model file as 64 lowercase hex digits plus NUL, into buf[65]. */
FQ_API int32_t fq_model_fingerprint(const fq_model *model, char *buf, int64_t buf_size, fq_error *err);

/* ---------------------------------------------------------------------------------------------------------------
 * Tokenizer (part of the model)
 * ------------------------------------------------------------------------------------------------------------- */
#define FQ_BOS_DEFAULT (-1) /* follow the model's add_bos */
#define FQ_BOS_NO 0
#define FQ_BOS_YES 1

/* Tokenizes text (UTF-8, text_len bytes, need not be NUL-terminated; invalid UTF-8 is tokenized as bytes).
 * Writes at most capacity ids; *n_tokens receives the count (also when the buffer was too small: then the status
 * is BUFFER_TOO_SMALL and nothing useful is in tokens). text_len + 2 ids always suffice. */
FQ_API int32_t fq_model_tokenize(const fq_model *model, const char *text, int64_t text_len, int32_t add_bos,
                                 int32_t *tokens, int64_t capacity, int64_t *n_tokens, fq_error *err);
/* Turns ids back into UTF-8 text (no NUL added). *n_bytes receives the length, also on BUFFER_TOO_SMALL.
 * Ids out of range give INVALID_ARGUMENT. BOS/EOS and other control tokens are skipped. */
FQ_API int32_t fq_model_detokenize(const fq_model *model, const int32_t *tokens, int64_t n_tokens, char *buf,
                                   int64_t capacity, int64_t *n_bytes, fq_error *err);

/* ---------------------------------------------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------------------------------------------- */

/* Logits of every position of one sequence, run from an empty context: logits[n_tokens][n_vocab], row-major.
 * capacity is in floats. Statuses: OK, INVALID_ARGUMENT (ids out of range, n_tokens above the context),
 * BUFFER_TOO_SMALL. */
FQ_API int32_t fq_model_logits(const fq_model *model, const int32_t *tokens, int64_t n_tokens, float *logits,
                               int64_t capacity, fq_error *err);

/* Log-likelihood of a continuation after a context, as lm-evaluation-harness scores a request: the sequence
 * context + continuation is evaluated from an empty context, *logprob receives the sum over the continuation's tokens
 * of log p(token | all tokens before it), and *is_greedy is 1 when each continuation token is the argmax at its
 * position. n_context >= 1 (start with BOS for models that add one), n_continuation >= 1, and the total at most the
 * model's context length. Statuses: OK, INVALID_ARGUMENT. */
FQ_API int32_t fq_model_loglikelihood(const fq_model *model, const int32_t *context, int64_t n_context,
                                      const int32_t *continuation, int64_t n_continuation, double *logprob,
                                      int32_t *is_greedy, fq_error *err);

/* Several log-likelihood requests in one call: request i is the id sequence tokens[offsets[i] .. offsets[i+1])
 * (offsets has n_requests + 1 entries, non-decreasing), whose first n_context[i] ids are the context and the rest
 * the continuation; logprob[i] and is_greedy[i] (may be NULL) receive what fq_model_loglikelihood gives for it. Every
 * request is still evaluated from an empty context; on a GPU several run in one pass, right-padded to the longest of
 * their group, which a causal model does not see (results equal the one-by-one calls up to the order of floating-point
 * sums), and on the CPU they run one by one (identical results). Statuses: OK, INVALID_ARGUMENT (naming the
 * request), CUDA, DEVICE_OUT_OF_MEMORY. */
FQ_API int32_t fq_model_loglikelihood_batch(const fq_model *model, const int32_t *tokens, const int64_t *offsets,
                                            const int64_t *n_context, int64_t n_requests, double *logprob,
                                            int32_t *is_greedy, fq_error *err);

typedef struct fq_perplexity_options {
    uint32_t struct_size;
    int32_t seqlen;           /* window length in tokens; default 2048; at most the model's context         */
    int32_t add_bos;          /* FQ_BOS_DEFAULT, FQ_BOS_NO or FQ_BOS_YES: one BOS before the whole text      */
    int64_t max_chunks;       /* -1 (default) = every full window; otherwise at least 1                      */
    fq_progress_fn progress;  /* may be NULL                                                                */
    void *progress_user_data;
    fq_cancel_token *cancel;  /* may be NULL                                                                */
} fq_perplexity_options;

typedef struct fq_perplexity_result {
    uint32_t struct_size;
    int32_t bos;              /* 1 when a BOS token was put before the text                                 */
    int64_t n_tokens;         /* tokens in the whole tokenized text, BOS included                           */
    int64_t n_chunks;         /* windows evaluated                                                           */
    int64_t n_predicted;      /* tokens whose negative log-likelihood was summed                            */
    double nll_sum;           /* natural log                                                                 */
    double ppl;               /* exp(nll_sum / n_predicted)                                                   */
    double seconds;           /* wall time of tokenization and evaluation                                    */
} fq_perplexity_result;

FQ_API void fq_perplexity_options_init(fq_perplexity_options *opts);
FQ_API void fq_perplexity_result_init(fq_perplexity_result *res);
/* Perplexity as GPTQ, QuaRot and FlatQuant compute it: the text is tokenized once (with one optional BOS in front),
 * cut into non-overlapping windows of seqlen tokens (the rest is dropped), each window is evaluated from an empty
 * context, and the mean negative log-likelihood of every predicted token (seqlen - 1 per window) is exponentiated.
 * Statuses: OK, INVALID_ARGUMENT (empty text, seqlen out of range, max_chunks 0, text shorter than one window),
 * CANCELLED, NUMERIC. */
FQ_API int32_t fq_model_perplexity(const fq_model *model, const char *text, int64_t text_len,
                                   const fq_perplexity_options *opts, fq_perplexity_result *out, fq_error *err);

/* ---------------------------------------------------------------------------------------------------------------
 * Quantization: FlatQuant calibration and fake-quantized models.
 *
 * Bit widths are named "w<W>a<A>[kv<KV>]" (each 2..8, or 16 = off; kv left out = 16): "w4a4kv4", "w4a16",
 * "w4a8kv8", "w8a8". Methods: "rtn" (no transform), "rotate" (fixed random orthogonal Kronecker rotations,
 * QuaRot-like), "flatquant" (learned transforms, smoothing and clipping: needs calibration). Weight quantizers:
 * "rtn" and "gptq" (needs calibration data).
 * ------------------------------------------------------------------------------------------------------------- */

/* One line of the calibration log, after every epoch of every layer. */
typedef struct fq_calibration_event {
    uint32_t struct_size;
    int32_t layer;            /* 0-based                                                                     */
    int32_t n_layer;
    int32_t epoch;            /* 1-based                                                                     */
    int32_t n_epochs;
    double mse;               /* mean calibration loss of the epoch's steps                                  */
    double lr;                /* learning rate of the transforms at the epoch's last step                    */
    double seconds;           /* wall time of the epoch                                                      */
} fq_calibration_event;

/* Called on the calling thread of fq_calibrate; the event is valid only during the call. */
typedef void (*fq_calibration_log_fn)(void *user_data, const fq_calibration_event *event);

typedef struct fq_calibration_options {
    uint32_t struct_size;
    const char *quant;        /* bit widths; NULL = "w4a4kv4"                                                */
    const char *method;       /* NULL = "flatquant"                                                          */
    const char *weights;      /* weight quantizer; NULL = "rtn"                                              */
    int32_t nsamples;         /* calibration windows; default 128                                            */
    int32_t seqlen;           /* tokens per window; default 2048                                             */
    int32_t batch;            /* windows per optimizer step; default 4                                       */
    int32_t epochs;           /* default 15                                                                  */
    double lr;                /* transforms and smoothing scales; clipping logits get 10x; default 5e-3      */
    double diag_alpha;        /* smoothing-scale initialization exponent; default 0.3                        */
    int32_t add_diag;         /* learnable smoothing scales; default 1                                       */
    int32_t lwc;              /* learnable weight clipping; default 1                                        */
    int32_t lac;              /* learnable activation (and K/V) clipping; default 1                          */
    int32_t direct_inv;       /* 1 = plain factors with a computed inverse instead of the SVD form; default 0 */
    uint64_t seed;            /* window offsets and initialization; default 0                                */
    double percdamp;          /* GPTQ damping; default 0.01                                                  */
    int32_t gptq_blocksize;   /* default 128                                                                 */
    int32_t add_bos;          /* BOS before the calibration text: FQ_BOS_DEFAULT (default), _NO or _YES      */
    fq_progress_fn progress;  /* stages "tokenize", "calibrate", "gptq", "save"; may be NULL                   */
    void *progress_user_data;
    fq_cancel_token *cancel;  /* may be NULL                                                                */
    fq_calibration_log_fn log; /* may be NULL                                                               */
    void *log_user_data;
    const char *base_artifact; /* NULL, or an artifact of this model whose learned transforms are kept: only the
                                * weight quantizer runs (GPTQ on the artifact's own calibration windows, so the text
                                * and nsamples/seqlen/seed must be the ones it was calibrated with; they are taken
                                * from the artifact and checked against its data_sha256)                          */
} fq_calibration_options;

typedef struct fq_calibration_result {
    uint32_t struct_size;
    int32_t on_gpu;           /* 1 when the work (training, GPTQ) ran on the runtime's CUDA device           */
    int32_t n_layer;
    int64_t n_tokens;         /* tokens of the calibration text (0 when the method needs none)              */
    int64_t n_windows;        /* windows used (0 when the method needs none)                                 */
    double final_mse;         /* mean over layers of the last epoch's loss (0 without training)              */
    double seconds;           /* wall time of tokenization, calibration, weight quantization and saving      */
} fq_calibration_result;

FQ_API void fq_calibration_options_init(fq_calibration_options *opts);
FQ_API void fq_calibration_result_init(fq_calibration_result *res);
/* Calibrates the method's transforms on a full-precision model and writes the calibration artifact to out_path
 * (safetensors with JSON metadata; the format is described in docs/artifact-format.md). The write is atomic: on any
 * failure or cancellation out_path is left as it was and no temporary file remains. text is the calibration text
 * (UTF-8); it may be empty only for rtn/rotate with rtn weights, which need no data. Runs on the runtime's CUDA device
 * when it has one, otherwise on the CPU threads. Statuses: OK, INVALID_ARGUMENT (a quantized model, unknown names,
 * options out of range, a text too short for nsamples windows of seqlen tokens), IO, CANCELLED, NUMERIC (the loss
 * became non-finite), OUT_OF_MEMORY, DEVICE_OUT_OF_MEMORY, CUDA. */
FQ_API int32_t fq_calibrate(const fq_model *model, const char *text, int64_t text_len, const char *out_path,
                            const fq_calibration_options *opts, fq_calibration_result *out, fq_error *err);

typedef struct fq_quantize_options {
    uint32_t struct_size;
    const char *artifact;     /* a calibration artifact of this model, or NULL                               */
    const char *quant;        /* NULL = the artifact's, or "w4a4kv4" without one; must match the artifact     */
    const char *method;       /* NULL = the artifact's, or "rtn" without one; "flatquant" needs an artifact   */
    uint64_t seed;            /* the rotations of method "rotate" without an artifact; default 0             */
    fq_progress_fn progress;  /* stages "load", "quantize"; may be NULL                                      */
    void *progress_user_data;
    fq_cancel_token *cancel;  /* may be NULL                                                                */
} fq_quantize_options;

FQ_API void fq_quantize_options_init(fq_quantize_options *opts);
/* Makes the fake-quantized model of a full-precision model: the transforms merged into the weights in float64,
 * weights quantized (RTN, or the artifact's GPTQ codes), and the online transforms, activation and K/V quantizers
 * applied in the forward pass. The result is a model handle like any other (tokenizer, logits, log-likelihood,
 * perplexity, sessions) that shares the base model's embeddings and tokenizer: it keeps the base alive, so the base
 * handle may be freed first. Statuses: OK, INVALID_ARGUMENT (an already quantized model, unknown names, an artifact of
 * another model: both fingerprints are named, names that contradict the artifact), NOT_FOUND, IO, MODEL_FORMAT (a
 * truncated or corrupt artifact), UNSUPPORTED (a newer artifact format), CANCELLED, OUT_OF_MEMORY. */
FQ_API int32_t fq_model_quantize(const fq_model *base, const fq_quantize_options *opts, fq_model **out,
                                 fq_error *err);

/* Writes a quantized model (a handle of fq_model_quantize, or one loaded from a quantized-model file) as a
 * quantized-model file: a GGUF file holding the base model's metadata, tokenizer, embeddings, final norm and output
 * projection as they were, and per layer the packed INT4 weights with their scales, the online transforms, the
 * norms with the smoothing folded in and the learned clip values (docs/quantized-model-format.md). fq_model_load
 * reads it back without the base model or the artifact. The write is atomic: on failure or cancellation path is left
 * as it was and no temporary file remains. Statuses: OK, INVALID_ARGUMENT (a full-precision model, a NULL path),
 * UNSUPPORTED (weights wider than 8 bits, e.g. w16a16: nothing to pack), IO, CANCELLED, OUT_OF_MEMORY. */
FQ_API int32_t fq_model_save_quantized(const fq_model *model, const char *path, fq_progress_fn progress,
                                       void *progress_user_data, fq_cancel_token *cancel, fq_error *err);

/* ---------------------------------------------------------------------------------------------------------------
 * Sessions: incremental decoding with a KV cache. One caller at a time.
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct fq_session fq_session;

typedef struct fq_session_options {
    uint32_t struct_size;
    int32_t n_ctx;            /* KV cache length in tokens; 0 (default) = min(model context, 4096)           */
    int32_t n_seq;            /* sequences decoded together (a batch), 1 (default) to 256; see
                               * fq_session_decode_batch                                                      */
} fq_session_options;

FQ_API void fq_session_options_init(fq_session_options *opts);
FQ_API int32_t fq_session_create(const fq_model *model, const fq_session_options *opts, fq_session **out,
                                 fq_error *err);
FQ_API void fq_session_free(fq_session *session);
/* Forgets every token: the next decode starts at position 0. */
FQ_API int32_t fq_session_reset(fq_session *session, fq_error *err);
/* Number of tokens in the KV cache. */
FQ_API int32_t fq_session_position(fq_session *session, int64_t *out, fq_error *err);
/* Appends n_tokens ids to the context and, if logits is not NULL, writes the logits of the last one
 * (logits[n_vocab]; capacity in floats). On a CUDA runtime the step runs on the GPU (fq_model_info.session_engine)
 * and returns once the logits are on the host. Statuses: OK, INVALID_ARGUMENT (bad ids, context full: the session is
 * then unchanged), BUSY, BUFFER_TOO_SMALL, CANCELLED, UNSUPPORTED (fq_session_create: no session engine for this
 * model on a GPU), DEVICE_OUT_OF_MEMORY, CUDA. */
FQ_API int32_t fq_session_decode(fq_session *session, const int32_t *tokens, int64_t n_tokens, float *logits,
                                 int64_t capacity, fq_error *err);
/* A batch session (fq_session_options.n_seq sequences, each with its own KV cache of n_ctx tokens) advances all its
 * sequences together: tokens[n_seq][n_tokens] (row-major) appends n_tokens ids to each sequence, and if logits is not
 * NULL, logits[n_seq][n_vocab] receives the logits of each sequence's last new token (capacity in floats). Every call
 * appends the same number of tokens to every sequence, so the prompts of one batch have equal lengths (group prompts
 * by length); fq_session_position is that common length. On a CUDA runtime the whole batch is one step of the GPU
 * engine (one pass over the weights for all sequences); on the CPU the sequences run one after another. It works on
 * a session of n_seq = 1 too; fq_session_decode on a session of n_seq > 1 is INVALID_ARGUMENT.
 * Statuses: as fq_session_decode. */
FQ_API int32_t fq_session_decode_batch(fq_session *session, const int32_t *tokens, int64_t n_tokens, float *logits,
                                       int64_t capacity, fq_error *err);

/* ---------------------------------------------------------------------------------------------------------------
 * Sampling
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct fq_sampler fq_sampler;

typedef struct fq_sampler_options {
    uint32_t struct_size;
    float temperature;        /* 0 (default) = greedy (argmax, lowest id on ties)                              */
    float top_p;              /* nucleus mass in (0, 1]; 1 (default) = off                                      */
    int32_t top_k;            /* 0 (default) = off                                                              */
    uint64_t seed;            /* the random stream is a pure function of the seed                               */
} fq_sampler_options;

FQ_API void fq_sampler_options_init(fq_sampler_options *opts);
FQ_API int32_t fq_sampler_create(const fq_sampler_options *opts, fq_sampler **out, fq_error *err);
FQ_API void fq_sampler_free(fq_sampler *sampler);
/* Picks the next token from logits[n_vocab]. A sampler is used by one thread at a time. */
FQ_API int32_t fq_sampler_sample(fq_sampler *sampler, const float *logits, int32_t n_vocab, int32_t *out_token,
                                 fq_error *err);

#ifdef __cplusplus
}
#endif

#endif /* FLATQUANT_H */
