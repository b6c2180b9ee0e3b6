// SPDX-License-Identifier: Apache-2.0
// Stand-ins for the CUDA kernel launchers (plugins/common/ssp_kernels.h) for host-side plugin tests: no GPU, no CUDA
// runtime. Each call is recorded so a test can check what enqueue passed on.
#pragma once

#include "../common/ssp_kernels.h"

#include <string>

namespace ssp
{
namespace test
{

struct LaunchRecord
{
    std::string op; // "" until a launcher is called
    ElemType type{ElemType::kFLOAT32};
    void const* in[3]{};
    void* out{};
    int64_t dims[4]{}; // B, C, H|h, W|w of input 0
    int32_t attr{};    // cell or scale
    float eps{};
    cudaStream_t stream{};
};

extern LaunchRecord gLastLaunch;
//! What the stub launchers return (0 = success).
extern int32_t gLaunchStatus;

} // namespace test
} // namespace ssp
