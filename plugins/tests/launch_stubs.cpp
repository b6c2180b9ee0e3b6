// SPDX-License-Identifier: Apache-2.0
#include "launch_stubs.h"

namespace ssp
{
namespace test
{
LaunchRecord gLastLaunch;
int32_t gLaunchStatus = 0;
} // namespace test

int32_t launchSuperpixelAggregate(ElemType type, void const* X, void const* Q, void* Z, int64_t B, int64_t C,
    int64_t H, int64_t W, int32_t cell, float eps, cudaStream_t stream) noexcept
{
    test::gLastLaunch = test::LaunchRecord{"SuperpixelAggregate", type, {X, Q, nullptr}, Z, {B, C, H, W}, cell, eps,
        stream};
    return test::gLaunchStatus;
}

int32_t launchSuperpixelPropagate(ElemType type, void const* Z, void const* Q, void* Y, int64_t B, int64_t C,
    int64_t h, int64_t w, int32_t cell, cudaStream_t stream) noexcept
{
    test::gLastLaunch = test::LaunchRecord{"SuperpixelPropagate", type, {Z, Q, nullptr}, Y, {B, C, h, w}, cell, 0.0F,
        stream};
    return test::gLaunchStatus;
}

int32_t launchReplicationUpsample(ElemType type, void const* X, void const* G, void const* Y, void* O, int64_t B,
    int64_t C, int64_t h, int64_t w, int32_t scale, cudaStream_t stream) noexcept
{
    test::gLastLaunch = test::LaunchRecord{"ReplicationUpsample", type, {X, G, Y}, O, {B, C, h, w}, scale, 0.0F,
        stream};
    return test::gLaunchStatus;
}

} // namespace ssp
