// SPDX-License-Identifier: Apache-2.0
// ReplicationUpsample per-element math, shared by the CUDA kernel and the host harness (plain C++ under g++).
//
//   O[b,c,y,x] = X[b,c,y/s,x/s] * G[b,0,y,x] + Y[b, c*s*s + (y%s)*s + (x%s), y/s, x/s]
//
// X: (B,C,h,w), G: (B,1,s*h,s*w), Y: (B,C*s*s,h,w) -> O: (B,C,s*h,s*w); s in {2, 4, 8}.
// One work item = one input cell (b, c, i, j): it reads X once, its s*s values of Y once, its s x s block of G row by
// row, and writes its s x s output block row by row (vector loads/stores of G and O when aligned, kVec).
#pragma once

#include "../common/ssp_hd.cuh"

namespace ssp
{

//! The fused value of one output element: nearest(X) * gate + depth-to-space(Y).
SSP_HD float replicationValue(float x, float g, float y)
{
    return x * g + y;
}

//! Number of work items (input cells): B * C * h * w.
SSP_HD int64_t replicationCellCount(int64_t B, int32_t C, int32_t h, int32_t w)
{
    return B * C * static_cast<int64_t>(h) * w;
}

//! Write the S x S output block of input cell `idx` (flat NCHW index over X; j fastest).
template <typename T, int S, bool kVec>
SSP_HD void replicationCell(T const* X, T const* G, T const* Y, T* O, int64_t idx, int32_t C, int32_t h, int32_t w)
{
    int32_t const j = static_cast<int32_t>(idx % w);
    int64_t t = idx / w;
    int32_t const i = static_cast<int32_t>(t % h);
    t /= h;
    int64_t const c = t % C;
    int64_t const b = t / C;

    int64_t const Ws = static_cast<int64_t>(w) * S;
    int64_t const Hs = static_cast<int64_t>(h) * S;
    int64_t const hw = static_cast<int64_t>(h) * w;
    float const xv = Io<T>::load(X[idx]);
    // Y[b, c*S*S + r*S + u, i, j]: channel stride h*w
    T const* yp = Y + (b * C + c) * (S * S) * hw + static_cast<int64_t>(i) * w + j;
    T const* gp = G + (b * Hs + static_cast<int64_t>(i) * S) * Ws + static_cast<int64_t>(j) * S;
    T* op = O + ((b * C + c) * Hs + static_cast<int64_t>(i) * S) * Ws + static_cast<int64_t>(j) * S;
    SSP_UNROLL
    for (int r = 0; r < S; ++r)
    {
        T g[S];
        loadRow<T, S, kVec>(gp + r * Ws, g);
        T o[S];
        SSP_UNROLL
        for (int u = 0; u < S; ++u)
        {
            o[u] = Io<T>::store(replicationValue(xv, Io<T>::load(g[u]), Io<T>::load(yp[(r * S + u) * hw])));
        }
        storeRow<T, S, kVec>(op + r * Ws, o);
    }
}

//! Runtime-scale dispatch (host harness). Returns false for an unsupported scale.
template <typename T>
inline bool replicationCellAnyScale(
    T const* X, T const* G, T const* Y, T* O, int64_t idx, int32_t C, int32_t h, int32_t w, int32_t scale)
{
    switch (scale)
    {
    case 2: replicationCell<T, 2, false>(X, G, Y, O, idx, C, h, w); return true;
    case 4: replicationCell<T, 4, false>(X, G, Y, O, idx, C, h, w); return true;
    case 8: replicationCell<T, 8, false>(X, G, Y, O, idx, C, h, w); return true;
    default: return false;
    }
}

} // namespace ssp
