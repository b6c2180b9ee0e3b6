// SPDX-License-Identifier: Apache-2.0
// SuperpixelPropagate CUDA kernel: one thread per output pixel (b, c, y, x), 9 neighbour terms, float32
// accumulation. The math is superpixel_propagate.cuh, shared with the host harness.
#include "../common/ssp_kernels.h"
#include "superpixel_propagate.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace ssp
{
namespace
{

constexpr int32_t kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) superpixelPropagateKernel(T const* __restrict__ Z,
    T const* __restrict__ Q, T* __restrict__ Y, int64_t total, int32_t C, int32_t h, int32_t w, int32_t cell)
{
    int64_t const stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride)
    {
        propagateElement<T>(Z, Q, Y, idx, C, h, w, cell);
    }
}

template <typename T>
int32_t launch(void const* Z, void const* Q, void* Y, int64_t B, int32_t C, int32_t h, int32_t w, int32_t cell,
    cudaStream_t stream)
{
    int64_t const total = propagateOutputCount(B, C, h, w, cell);
    superpixelPropagateKernel<T><<<gridFor(total, kThreads), kThreads, 0, stream>>>(
        static_cast<T const*>(Z), static_cast<T const*>(Q), static_cast<T*>(Y), total, C, h, w, cell);
    return static_cast<int32_t>(cudaGetLastError());
}

} // namespace

int32_t launchSuperpixelPropagate(ElemType type, void const* Z, void const* Q, void* Y, int64_t B, int64_t C,
    int64_t h, int64_t w, int32_t cell, cudaStream_t stream) noexcept
{
    if (Z == nullptr || Q == nullptr || Y == nullptr || cell < 1 || !dimOk(B) || !dimOk(C) || !dimOk(h)
        || !dimOk(w) || !dimOk(h * cell) || !dimOk(w * cell))
    {
        return -1;
    }
    auto const c = static_cast<int32_t>(C);
    auto const hh = static_cast<int32_t>(h);
    auto const ww = static_cast<int32_t>(w);
    switch (type)
    {
    case ElemType::kFLOAT32: return launch<float>(Z, Q, Y, B, c, hh, ww, cell, stream);
    case ElemType::kFLOAT16: return launch<__half>(Z, Q, Y, B, c, hh, ww, cell, stream);
    }
    return -1;
}

} // namespace ssp
