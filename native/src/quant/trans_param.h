// Parameterizations of one transform factor P (k x k), forward and backward (spec sections 2.4-2.5).
//
// SVD/Cayley form (the default): P = U diag(s) V^T with U = Cayley(A_u), V = Cayley(A_v), where
//   Cayley(A) = (I - A/2)^{-1} (I + A/2),   A = tril(Q,-1) - tril(Q,-1)^T
// from an unconstrained k x k matrix Q (torch's orthogonal parametrization with orthogonal_map="cayley" and
// use_trivialization=False; only the strictly lower triangle of Q matters, the rest gets zero gradient). The exact
// inverse-transpose is P^{-T} = U diag(1/s) V^T; no clamp keeps s away from 0, as in the official code.
// Direct-inverse form (--direct_inv): P is the parameter itself and P^{-T} comes from an LU inverse in double.
//
// All k x k matrices are row-major. The Cayley solves and the inverse run in double whatever T is (torch runs
// them in fp32 and fp64 respectively); results are rounded to T once.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace fq::quant {

// Standard normal draws from std::mt19937_64 through the Box-Muller transform; each pair of uniforms gives two
// normals (cos branch first, then sin). Uniforms are (top 53 bits + 0.5) * 2^-53, so they lie in (0, 1) and log()
// never sees 0. The stream is ours: it does not reproduce numpy's, only its distribution.
class NormalRng {
  public:
    explicit NormalRng(uint64_t seed) : gen_(seed) {}
    double next();

  private:
    double uniform_open();
    std::mt19937_64 gen_;
    bool has_spare_ = false;
    double spare_ = 0.0;
};

// q [k][k] = a Haar-random orthogonal matrix: the Q of the QR of a Gaussian matrix (filled row-major from rng)
// with the sign fix Q <- Q diag(sign(diag R)), i.e. the unique QR with positive diag(R) (the official
// get_random_orthg). Computed by classical Gram-Schmidt applied twice, in double.
template <typename T>
void random_orthogonal(T *q, int k, NormalRng &rng);

// The official initialization of one SVD factor: q_u and q_v independent Haar-random orthogonal (drawn in that
// order from rng), s = 1. The resulting U = Cayley(q_u) is a random orthogonal matrix, not q_u itself (spec 2.4).
template <typename T>
void svd_factor_init(T *q_u, T *q_v, T *s, int k, NormalRng &rng);

// ---- LU with partial pivoting (double), and its adjoint solve -----------------------------------------------------
class LuFactor {
  public:
    // Throws FQ_STATUS_NUMERIC when a is singular to working precision or holds NaN/Inf. a [k][k].
    LuFactor(const double *a, int k);
    // b [k][nrhs] <- A^{-1} b
    void solve(double *b, int nrhs) const;
    // b [k][nrhs] <- A^{-T} b   (the adjoint solve that backward passes need)
    void solve_transposed(double *b, int nrhs) const;
    int size() const { return k_; }

  private:
    int k_;
    std::vector<double> lu_;  // [k][k]: L below the diagonal (unit diagonal implied), U on and above
    std::vector<int> perm_;   // row i of P A is row perm_[i] of A
};

// ---- Cayley map --------------------------------------------------------------------------------------------------
// u [k][k] = Cayley(tril(q,-1) - tril(q,-1)^T), q [k][k].
template <typename T>
void cayley_forward(T *u, const T *q, int k);

// dq += dL/dq given du = dL/dU. With B = I - A/2: dL/dA = B^{-T} du (I + U)^T / 2, and
// dq[i][j] += dA[i][j] - dA[j][i] for i > j (0 on and above the diagonal). U is recomputed from q in double.
template <typename T>
void cayley_backward(T *dq, const T *du, const T *q, int k);

// ---- SVD factor: P = U diag(s) V^T and P^{-T} = U diag(1/s) V^T ------------------------------------------------------
// m [k][k] = P, m_inv_t [k][k] = P^{-T} (nullptr to skip). q_u, q_v [k][k]; s [k].
template <typename T>
void svd_factor_forward(T *m, T *m_inv_t, const T *q_u, const T *q_v, const T *s, int k);

// Accumulates (+=) into dq_u, dq_v, ds from dm = dL/dP and dm_inv_t = dL/d(P^{-T}) (either may be nullptr):
//   dU = dm V diag(s) + dm_inv_t V diag(1/s),  dV = dm^T U diag(s) + dm_inv_t^T U diag(1/s),
//   ds_l += (U^T dm V)_ll - (U^T dm_inv_t V)_ll / s_l^2,  then the Cayley backward for U and V.
template <typename T>
void svd_factor_backward(T *dq_u, T *dq_v, T *ds, const T *dm, const T *dm_inv_t, const T *q_u, const T *q_v,
                         const T *s, int k);

// ---- direct-inverse factor ----------------------------------------------------------------------------------------
// m_inv_t [k][k] = (m^{-1})^T computed by LU in double (the official get_inverse(m).T). Throws FQ_STATUS_NUMERIC if
// m is singular.
template <typename T>
void inverse_t_forward(T *m_inv_t, const T *m, int k);

// dm += -M^{-T} dm_inv_t^T M^{-T}: the adjoint of d(M^{-1}) = -M^{-1} dM M^{-1} composed with the transpose.
// M^{-T} is recomputed from m in double (torch keeps its double inverse for backward the same way).
template <typename T>
void inverse_t_backward(T *dm, const T *dm_inv_t, const T *m, int k);

}  // namespace fq::quant
