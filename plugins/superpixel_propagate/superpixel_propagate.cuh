// SPDX-License-Identifier: Apache-2.0
// SuperpixelPropagate per-element math, shared by the CUDA kernel and the host harness (plain C++ under g++).
//
//   Y[b,c,p] = sum_k Q[b,k,p] * Z[b,c, cell(p) + (dy_k, dx_k)]     (terms outside the h x w grid are 0)
//
// Z: (B,C,h,w), Q: (B,9,h*cell,w*cell) -> Y: (B,C,h*cell,w*cell). Accumulation is float32.
#pragma once

#include "../common/ssp_hd.cuh"

namespace ssp
{

//! Y at pixel (y, x) of image b, channel c.
template <typename T>
SSP_HD float propagatePixel(T const* Z, T const* Q, int64_t b, int64_t c, int32_t y, int32_t x, int32_t C, int32_t h,
    int32_t w, int32_t cell)
{
    int32_t const H = h * cell;
    int32_t const W = w * cell;
    int64_t const plane = static_cast<int64_t>(H) * W;
    int32_t const ci = y / cell;
    int32_t const cj = x / cell;
    T const* zp = Z + (b * C + c) * (static_cast<int64_t>(h) * w);
    T const* qp = Q + b * kNeighbours * plane + static_cast<int64_t>(y) * W + x;
    float acc = 0.0F;
    for (int32_t k = 0; k < kNeighbours; ++k)
    {
        int32_t const zi = ci + neighbourDy(k);
        int32_t const zj = cj + neighbourDx(k);
        if (zi < 0 || zi >= h || zj < 0 || zj >= w)
        {
            continue;
        }
        acc += Io<T>::load(qp[k * plane]) * Io<T>::load(zp[static_cast<int64_t>(zi) * w + zj]);
    }
    return acc;
}

//! Number of output elements: B * C * (h * cell) * (w * cell).
SSP_HD int64_t propagateOutputCount(int64_t B, int32_t C, int32_t h, int32_t w, int32_t cell)
{
    return B * C * static_cast<int64_t>(h * cell) * (w * cell);
}

//! Compute output element `idx` of Y (flat NCHW index; x fastest) and store it.
template <typename T>
SSP_HD void propagateElement(
    T const* Z, T const* Q, T* Y, int64_t idx, int32_t C, int32_t h, int32_t w, int32_t cell)
{
    int32_t const H = h * cell;
    int32_t const W = w * cell;
    int32_t const x = static_cast<int32_t>(idx % W);
    int64_t t = idx / W;
    int32_t const y = static_cast<int32_t>(t % H);
    t /= H;
    int64_t const c = t % C;
    int64_t const b = t / C;
    Y[idx] = Io<T>::store(propagatePixel(Z, Q, b, c, y, x, C, h, w, cell));
}

} // namespace ssp
