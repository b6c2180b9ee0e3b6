// SPDX-License-Identifier: Apache-2.0
// Host-side entry points of the CUDA kernels (defined in the per-op .cu files, built into the `ssp_kernels` static
// library). Plain C++: the plugin classes call these from enqueue, so the plugin .cpp files never need nvcc, and the
// host-side plugin tests link plugins/tests/launch_stubs.cpp instead (no GPU, no CUDA runtime).
//
// Every launcher: NCHW contiguous tensors of one element type, launches on `stream`, returns 0 on success, a
// cudaError_t value from the launch, or -1 for invalid arguments (nothing launched).
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace ssp
{

enum class ElemType : int32_t
{
    kFLOAT32 = 0,
    kFLOAT16 = 1,
};

//! X: (B,C,H,W), Q: (B,9,H,W) -> Z: (B,C,H/cell,W/cell). H, W multiples of cell, cell >= 1, eps >= 0.
int32_t launchSuperpixelAggregate(ElemType type, void const* X, void const* Q, void* Z, int64_t B, int64_t C,
    int64_t H, int64_t W, int32_t cell, float eps, cudaStream_t stream) noexcept;

//! Z: (B,C,h,w), Q: (B,9,h*cell,w*cell) -> Y: (B,C,h*cell,w*cell).
int32_t launchSuperpixelPropagate(ElemType type, void const* Z, void const* Q, void* Y, int64_t B, int64_t C,
    int64_t h, int64_t w, int32_t cell, cudaStream_t stream) noexcept;

//! X: (B,C,h,w), G: (B,1,s*h,s*w), Y: (B,C*s*s,h,w) -> O: (B,C,s*h,s*w); scale in {2, 4, 8}.
int32_t launchReplicationUpsample(ElemType type, void const* X, void const* G, void const* Y, void* O, int64_t B,
    int64_t C, int64_t h, int64_t w, int32_t scale, cudaStream_t stream) noexcept;

//! Grid size for a grid-stride loop over `n` items with `threads` per block (at least 1 block).
inline uint32_t gridFor(int64_t n, int32_t threads) noexcept
{
    int64_t blocks = (n + threads - 1) / threads;
    int64_t const cap = int64_t{1} << 20; // grid-stride loops cover the rest
    if (blocks > cap)
    {
        blocks = cap;
    }
    return static_cast<uint32_t>(blocks < 1 ? 1 : blocks);
}

//! Dimensions a launcher accepts: positive and small enough for the int32 per-dimension index math.
inline bool dimOk(int64_t d) noexcept
{
    return d > 0 && d <= int64_t{0x7fffffff};
}

} // namespace ssp
