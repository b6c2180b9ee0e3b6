// SPDX-License-Identifier: Apache-2.0
// SuperpixelAggregate CUDA kernel: one thread per output element (b, c, i, j), gather over the 3x3 neighbour cells
// (no atomics, float32 accumulation). The math is superpixel_aggregate.cuh, shared with the host harness.
#include "../common/ssp_kernels.h"
#include "superpixel_aggregate.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace ssp
{
namespace
{

constexpr int32_t kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) superpixelAggregateKernel(T const* __restrict__ X,
    T const* __restrict__ Q, T* __restrict__ Z, int64_t total, int32_t C, int32_t H, int32_t W, int32_t cell,
    float eps)
{
    int64_t const stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride)
    {
        aggregateElement<T>(X, Q, Z, idx, C, H, W, cell, eps);
    }
}

template <typename T>
int32_t launch(void const* X, void const* Q, void* Z, int64_t B, int32_t C, int32_t H, int32_t W, int32_t cell,
    float eps, cudaStream_t stream)
{
    int64_t const total = aggregateOutputCount(B, C, H, W, cell);
    superpixelAggregateKernel<T><<<gridFor(total, kThreads), kThreads, 0, stream>>>(
        static_cast<T const*>(X), static_cast<T const*>(Q), static_cast<T*>(Z), total, C, H, W, cell, eps);
    return static_cast<int32_t>(cudaGetLastError());
}

} // namespace

int32_t launchSuperpixelAggregate(ElemType type, void const* X, void const* Q, void* Z, int64_t B, int64_t C,
    int64_t H, int64_t W, int32_t cell, float eps, cudaStream_t stream) noexcept
{
    if (X == nullptr || Q == nullptr || Z == nullptr || cell < 1 || !(eps >= 0.0F) || !dimOk(B) || !dimOk(C)
        || !dimOk(H) || !dimOk(W) || H % cell != 0 || W % cell != 0)
    {
        return -1;
    }
    auto const c = static_cast<int32_t>(C);
    auto const hh = static_cast<int32_t>(H);
    auto const ww = static_cast<int32_t>(W);
    switch (type)
    {
    case ElemType::kFLOAT32: return launch<float>(X, Q, Z, B, c, hh, ww, cell, eps, stream);
    case ElemType::kFLOAT16: return launch<__half>(X, Q, Z, B, c, hh, ww, cell, eps, stream);
    }
    return -1;
}

} // namespace ssp
