// SPDX-License-Identifier: Apache-2.0
// ReplicationUpsample CUDA kernel: one thread per input cell (b, c, i, j) writes its s x s output block; X and Y
// are read once, G and O move in 4/8/16-byte vectors per row when the pointers allow it. Threads of a warp take
// consecutive j, so the row loads/stores of a warp are contiguous. The math is replication_upsample.cuh, shared
// with the host harness.
#include "../common/ssp_kernels.h"
#include "replication_upsample.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace ssp
{
namespace
{

constexpr int32_t kThreads = 256;

template <typename T, int S, bool kVec>
__global__ void __launch_bounds__(kThreads) replicationUpsampleKernel(T const* __restrict__ X,
    T const* __restrict__ G, T const* __restrict__ Y, T* __restrict__ O, int64_t total, int32_t C, int32_t h,
    int32_t w)
{
    int64_t const stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride)
    {
        replicationCell<T, S, kVec>(X, G, Y, O, idx, C, h, w);
    }
}

template <typename T, int S>
int32_t launchScale(void const* X, void const* G, void const* Y, void* O, int64_t B, int32_t C, int32_t h, int32_t w,
    cudaStream_t stream)
{
    int64_t const total = replicationCellCount(B, C, h, w);
    // Rows of G and O start at multiples of S elements, so vector access only needs aligned base pointers.
    constexpr uintptr_t kAlign = sizeof(T) * VecWidth<T, S>::value;
    bool const vec = (reinterpret_cast<uintptr_t>(G) % kAlign == 0) && (reinterpret_cast<uintptr_t>(O) % kAlign == 0);
    auto const* x = static_cast<T const*>(X);
    auto const* g = static_cast<T const*>(G);
    auto const* y = static_cast<T const*>(Y);
    auto* o = static_cast<T*>(O);
    if (vec)
    {
        replicationUpsampleKernel<T, S, true><<<gridFor(total, kThreads), kThreads, 0, stream>>>(x, g, y, o, total, C, h, w);
    }
    else
    {
        replicationUpsampleKernel<T, S, false><<<gridFor(total, kThreads), kThreads, 0, stream>>>(x, g, y, o, total, C, h, w);
    }
    return static_cast<int32_t>(cudaGetLastError());
}

template <typename T>
int32_t launch(void const* X, void const* G, void const* Y, void* O, int64_t B, int32_t C, int32_t h, int32_t w,
    int32_t scale, cudaStream_t stream)
{
    switch (scale)
    {
    case 2: return launchScale<T, 2>(X, G, Y, O, B, C, h, w, stream);
    case 4: return launchScale<T, 4>(X, G, Y, O, B, C, h, w, stream);
    case 8: return launchScale<T, 8>(X, G, Y, O, B, C, h, w, stream);
    default: return -1;
    }
}

} // namespace

int32_t launchReplicationUpsample(ElemType type, void const* X, void const* G, void const* Y, void* O, int64_t B,
    int64_t C, int64_t h, int64_t w, int32_t scale, cudaStream_t stream) noexcept
{
    if (X == nullptr || G == nullptr || Y == nullptr || O == nullptr || !(scale == 2 || scale == 4 || scale == 8)
        || !dimOk(B) || !dimOk(C) || !dimOk(h) || !dimOk(w) || !dimOk(h * scale) || !dimOk(w * scale)
        || !dimOk(C * scale * scale))
    {
        return -1;
    }
    auto const c = static_cast<int32_t>(C);
    auto const hh = static_cast<int32_t>(h);
    auto const ww = static_cast<int32_t>(w);
    switch (type)
    {
    case ElemType::kFLOAT32: return launch<float>(X, G, Y, O, B, c, hh, ww, scale, stream);
    case ElemType::kFLOAT16: return launch<__half>(X, G, Y, O, B, c, hh, ww, scale, stream);
    }
    return -1;
}

} // namespace ssp
