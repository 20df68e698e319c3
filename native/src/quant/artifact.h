// The calibration artifact: everything calibration learned, in a safetensors file.
//
// Layout (safetensors): an 8-byte little-endian unsigned header length N, N bytes of UTF-8 JSON (padded with spaces
// to a multiple of 8), then the tensor data, little-endian, row-major, each tensor at the [begin, end) byte range of
// its "data_offsets" relative to the start of the data; the ranges tile the data section exactly. The JSON object
// maps every tensor name to {"dtype": "F32"|"F64"|"I8", "shape": [...], "data_offsets": [begin, end]}, plus
// "__metadata__", an object of strings:
//   format "flatquant-calibration", format_version "1";
//   method (rtn|rotate|flatquant), bits (e.g. "w4a4kv4"), w_bits, a_bits, k_bits, v_bits, weight_quantizer
//   (rtn|gptq); nsamples, seqlen, batch, epochs, flat_lr, diag_alpha, add_diag, lwc, lac, direct_inv (0|1), seed,
//   percdamp, gptq_blocksize; data_sha256 and data_tokens (the calibration windows as int32 little-endian);
//   model_fingerprint (SHA-256 of the model file), n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab.
// Tensors, per layer i, names prefixed "layers.<i>." (the official flat_matrices.pth names; a transform, clip or
// quantizer that the method does not use is simply absent):
//   self_attn.ln_trans.{matrix_left [n1,n1], matrix_right [n2,n2], matrix_left_inv, matrix_right_inv, diag_scale [E]}
//   mlp.up_gate_trans.{same, diag_scale [E]}, mlp.down_trans.{same over F = n1*n2, diag_scale [F]}
//       (P_a, P_ug, P_d; "_inv" holds the inverse-TRANSPOSE of the factor, as the official code stores it)
//   self_attn.o_trans.{matrix, matrix_inv_t} [H,H], self_attn.vcache_trans.{...} [D,D], self_attn.kcache_trans [D,D]
//   self_attn.{q,k,v,o}_proj.* and mlp.{up,gate,down}_proj.*:
//       clip_factor_w_max, clip_factor_w_min [out,1] (LWC logits), act_quantizer.clip_factor_a_max/min [1] (LAC
//       logits), qweight I8 [out,in] and wscale F32 [out] (GPTQ codes: w = wscale[row] * qweight; only with
//       weight_quantizer gptq)
//   self_attn.k_cache_quantizer.clip_factor_a_max/min [1], self_attn.v_cache_quantizer.* [1] (LAC of K/V)
// and globally "calibration.epoch_mse" F64 [n_layer, epochs] (the mean loss of every epoch; flatquant only).
// RTN weights are not stored: they follow deterministically from the model and the transforms. GPTQ weights are
// stored (one byte per weight) because they depend on the calibration data and a long sequential pass.
//
// Writing goes to a temporary file in the same directory, is fsync'ed, then renamed over the target (and the
// directory fsync'ed): a reader sees the old file or the complete new one, never a half-written one, and a failed or
// cancelled write leaves no temporary file behind.
#pragma once

#include <string>

#include "core/progress.h"
#include "model/model.h"
#include "quant/transform_set.h"

namespace fq::quant {

// Throws IO (cannot create/write/rename), CANCELLED (progress; checked between tensors, stage "save").
void save_artifact(const std::string &path, const CalibrationResult &r, const Progress &progress = Progress());

// Reads and validates an artifact on its own: structure, JSON, offsets, dtypes, shapes against the stored
// dimensions, values (finite, positive scales, codes in range). Throws NOT_FOUND, IO, MODEL_FORMAT (truncated,
// corrupt or inconsistent), UNSUPPORTED (a newer format_version).
CalibrationResult read_artifact(const std::string &path);

// read_artifact plus the check that the artifact belongs to `model`: a different fingerprint is INVALID_ARGUMENT
// naming both fingerprints; different dimensions are INVALID_ARGUMENT too.
CalibrationResult load_artifact(const std::string &path, const Model &model);

}  // namespace fq::quant
