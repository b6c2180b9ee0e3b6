// SPDX-License-Identifier: Apache-2.0
// SuperpixelAggregate per-element math, shared by the CUDA kernel and the host harness (plain C++ under g++).
//
//   Z[b,c,i,j] = num / (den + eps)
//   num = sum over pixels p and neighbours k with cell(p) + (dy_k, dx_k) == (i, j) of Q[b,k,p] * X[b,c,p]
//   den = the same sum of Q[b,k,p]
//
// Gather form (no atomics): the pixels that send mass to cell (i, j) through neighbour k = (dy, dx) are the pixels
// of cell (i - dy, j - dx); so one output element loops over its 3x3 neighbour cells and their cell x cell pixels.
// Accumulation is float32 for every element type.
#pragma once

#include "../common/ssp_hd.cuh"

namespace ssp
{

//! Z for output cell (i, j) of image b, channel c. X: (B,C,H,W), Q: (B,9,H,W), H and W multiples of cell.
template <typename T>
SSP_HD float aggregateCell(T const* X, T const* Q, int64_t b, int64_t c, int32_t i, int32_t j, int32_t C, int32_t H,
    int32_t W, int32_t cell, float eps)
{
    int32_t const h = H / cell;
    int32_t const w = W / cell;
    int64_t const plane = static_cast<int64_t>(H) * W;
    T const* xp = X + (b * C + c) * plane;
    T const* qp = Q + b * kNeighbours * plane;
    float num = 0.0F;
    float den = 0.0F;
    for (int32_t k = 0; k < kNeighbours; ++k)
    {
        int32_t const si = i - neighbourDy(k); // source cell sending its k-th mass to (i, j)
        int32_t const sj = j - neighbourDx(k);
        if (si < 0 || si >= h || sj < 0 || sj >= w)
        {
            continue; // out-of-grid terms are dropped
        }
        T const* qk = qp + k * plane;
        for (int32_t py = si * cell; py < (si + 1) * cell; ++py)
        {
            int64_t const row = static_cast<int64_t>(py) * W;
            for (int32_t px = sj * cell; px < (sj + 1) * cell; ++px)
            {
                float const q = Io<T>::load(qk[row + px]);
                num += q * Io<T>::load(xp[row + px]);
                den += q;
            }
        }
    }
    return num / (den + eps);
}

//! Number of output elements: B * C * (H / cell) * (W / cell).
SSP_HD int64_t aggregateOutputCount(int64_t B, int32_t C, int32_t H, int32_t W, int32_t cell)
{
    return B * C * static_cast<int64_t>(H / cell) * (W / cell);
}

//! Compute output element `idx` of Z (flat NCHW index; j fastest) and store it.
template <typename T>
SSP_HD void aggregateElement(
    T const* X, T const* Q, T* Z, int64_t idx, int32_t C, int32_t H, int32_t W, int32_t cell, float eps)
{
    int32_t const h = H / cell;
    int32_t const w = W / cell;
    int32_t const j = static_cast<int32_t>(idx % w);
    int64_t t = idx / w;
    int32_t const i = static_cast<int32_t>(t % h);
    t /= h;
    int64_t const c = t % C;
    int64_t const b = t / C;
    Z[idx] = Io<T>::store(aggregateCell(X, Q, b, c, i, j, C, H, W, cell, eps));
}

} // namespace ssp
