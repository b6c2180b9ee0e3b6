// SPDX-License-Identifier: Apache-2.0
// C-ABI entry points over the plugin kernels' launchers (common/ssp_kernels.h), for benchmarks/gpu_check.py (`make
// gpu-check`): the very kernels libssp_trt_plugins.so runs, built with nvcc for the local GPU and called with PyTorch
// CUDA tensors through ctypes, so a GPU machine without TensorRT can check them against the PyTorch reference ops.
// Build: nvcc -shared -Xcompiler -fPIC -arch=sm_XY -I plugins plugins/tests/gpu_check_launcher.cu \
//        plugins/*/*_kernel.cu -o libssp_gpu_check.so
#include "../common/ssp_kernels.h"

#include <cuda_runtime.h>

namespace
{
ssp::ElemType elem(int32_t half)
{
    return half != 0 ? ssp::ElemType::kFLOAT16 : ssp::ElemType::kFLOAT32;
}
} // namespace

extern "C" __attribute__((visibility("default"))) int32_t sspGcAggregate(int32_t half, void const* x, void const* q,
    void* z, int64_t b, int64_t c, int64_t h, int64_t w, int32_t cell, float eps, void* stream)
{
    return ssp::launchSuperpixelAggregate(elem(half), x, q, z, b, c, h, w, cell, eps, static_cast<cudaStream_t>(stream));
}

extern "C" __attribute__((visibility("default"))) int32_t sspGcPropagate(int32_t half, void const* z, void const* q,
    void* y, int64_t b, int64_t c, int64_t h, int64_t w, int32_t cell, void* stream)
{
    return ssp::launchSuperpixelPropagate(elem(half), z, q, y, b, c, h, w, cell, static_cast<cudaStream_t>(stream));
}

extern "C" __attribute__((visibility("default"))) int32_t sspGcUpsample(int32_t half, void const* x, void const* g,
    void const* y, void* o, int64_t b, int64_t c, int64_t h, int64_t w, int32_t scale, void* stream)
{
    return ssp::launchReplicationUpsample(
        elem(half), x, g, y, o, b, c, h, w, scale, static_cast<cudaStream_t>(stream));
}

//! The error of everything launched so far on `stream` (synchronises it).
extern "C" __attribute__((visibility("default"))) int32_t sspGcSync(void* stream)
{
    cudaError_t const e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    return static_cast<int32_t>(e != cudaSuccess ? e : cudaGetLastError());
}
