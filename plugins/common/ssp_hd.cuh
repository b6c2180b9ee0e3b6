// SPDX-License-Identifier: Apache-2.0
// Shared host/device helpers for the SSP plugin kernels.
//
// Every per-element function of the three ops is written once, in a `.cuh` header, as an `SSP_HD` function:
// nvcc compiles it as `__host__ __device__` for the CUDA kernels, and g++ compiles the very same header as plain
// C++ (no CUDA runtime, no CUDA headers) for the host harness that the pytest suite runs against the PyTorch
// reference (tests/plugins/test_host_kernels.py).
//
// Element types: `float`, `__half` (device only, from cuda_fp16.h) and `ssp::HalfBits` (a 16-bit IEEE binary16
// stored as its bit pattern, converted in software with round-to-nearest-even; the host harness uses it to run the
// FP16 path exactly as the device does: load half -> compute in float32 -> store half, rounded to nearest even).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define SSP_HD __host__ __device__ __forceinline__
#else
#define SSP_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define SSP_UNROLL _Pragma("unroll") // device pass only (the host compiler would warn about an unknown pragma)
#else
#define SSP_UNROLL
#endif

namespace ssp
{

//! Neighbour index k = (dy + 1) * 3 + (dx + 1), dy, dx in {-1, 0, 1} (ARCHITECTURE.md §3b).
constexpr int kNeighbours = 9;

SSP_HD int neighbourDy(int k)
{
    return k / 3 - 1;
}

SSP_HD int neighbourDx(int k)
{
    return k % 3 - 1;
}

SSP_HD uint32_t floatBits(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, sizeof(u));
    return u;
#endif
}

SSP_HD float bitsFloat(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, sizeof(f));
    return f;
#endif
}

//! float32 -> binary16 bits, round to nearest, ties to even (IEEE 754 default; same as __float2half_rn and
//! numpy's astype(float16)). Overflow gives +-inf, NaN stays NaN (quiet), subnormals are produced exactly.
SSP_HD uint16_t floatToHalfBits(float f)
{
    uint32_t const x = floatBits(f);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) // inf or NaN
    {
        return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? (0x0200u | ((ax >> 13) & 0x03ffu)) : 0u));
    }
    if (ax >= 0x477ff000u) // >= 65520 rounds to inf
    {
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (ax >= 0x38800000u) // normal half range (>= 2^-14)
    {
        uint32_t const e = (ax >> 23) - 112u; // rebias 127 -> 15
        uint32_t h = (e << 10) | ((ax >> 13) & 0x03ffu);
        uint32_t const rem = ax & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        {
            ++h; // a carry into the exponent is the correct rounding (up to 65504 here)
        }
        return static_cast<uint16_t>(sign | h);
    }
    if (ax < 0x33000000u) // < 2^-25: rounds to zero (exactly 2^-25 ties to even = 0)
    {
        return static_cast<uint16_t>(sign);
    }
    // subnormal half: value / 2^-24 = m * 2^(e - 126), m with its implicit bit
    uint32_t const e = ax >> 23;
    uint32_t const m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t const shift = 126u - e; // 14 .. 24
    uint32_t q = m >> shift;
    uint32_t const rem = m & ((1u << shift) - 1u);
    uint32_t const halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u)))
    {
        ++q; // may become 0x400, the smallest normal: correct
    }
    return static_cast<uint16_t>(sign | q);
}

//! binary16 bits -> float32 (exact).
SSP_HD float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    int32_t e = (h >> 10) & 0x1f;
    uint32_t m = h & 0x03ffu;
    if (e == 0x1f)
    {
        return bitsFloat(sign | 0x7f800000u | (m << 13));
    }
    if (e == 0)
    {
        if (m == 0)
        {
            return bitsFloat(sign);
        }
        e = 1;
        while ((m & 0x0400u) == 0)
        {
            m <<= 1;
            --e;
        }
        m &= 0x03ffu;
    }
    return bitsFloat(sign | (static_cast<uint32_t>(e + 112) << 23) | (m << 13));
}

//! A binary16 value held as bits (host-side stand-in for __half; same size and layout).
struct HalfBits
{
    uint16_t bits;
};
static_assert(sizeof(HalfBits) == 2, "HalfBits must be 2 bytes");

//! Load an element as float32 / store a float32 result as the element type. All arithmetic is float32.
template <typename T>
struct Io;

template <>
struct Io<float>
{
    static SSP_HD float load(float v)
    {
        return v;
    }
    static SSP_HD float store(float v)
    {
        return v;
    }
};

template <>
struct Io<HalfBits>
{
    static SSP_HD float load(HalfBits v)
    {
        return halfBitsToFloat(v.bits);
    }
    static SSP_HD HalfBits store(float v)
    {
        return HalfBits{floatToHalfBits(v)};
    }
};

#if defined(__CUDACC__)
template <>
struct Io<__half>
{
    static SSP_HD float load(__half v)
    {
        return __half2float(v);
    }
    static SSP_HD __half store(float v)
    {
        return __float2half_rn(v);
    }
};
#endif

//! N consecutive elements as one aligned chunk (one vector load/store on the device).
template <typename T, int N>
struct alignas(sizeof(T) * N) VecN
{
    T v[N];
};

//! Elements per vector chunk: up to 16 bytes.
template <typename T, int S>
struct VecWidth
{
    static constexpr int kBytes = static_cast<int>(sizeof(T)) * S;
    static constexpr int value = kBytes >= 16 ? 16 / static_cast<int>(sizeof(T)) : S;
};

//! Load S consecutive elements from `p`. kVec: p is aligned to one chunk (VecWidth<T,S>::value elements), so the
//! device issues 4/8/16-byte loads; the host copies bytes either way (same values).
template <typename T, int S, bool kVec>
SSP_HD void loadRow(T const* p, T (&out)[S])
{
#if defined(__CUDA_ARCH__)
    if constexpr (kVec)
    {
        constexpr int V = VecWidth<T, S>::value;
        SSP_UNROLL
        for (int c = 0; c < S / V; ++c)
        {
            VecN<T, V> const chunk = reinterpret_cast<VecN<T, V> const*>(p)[c];
            SSP_UNROLL
            for (int t = 0; t < V; ++t)
            {
                out[c * V + t] = chunk.v[t];
            }
        }
    }
    else
    {
        SSP_UNROLL
        for (int t = 0; t < S; ++t)
        {
            out[t] = p[t];
        }
    }
#else
    (void) kVec;
    std::memcpy(out, p, sizeof(T) * S);
#endif
}

//! Store S consecutive elements to `p` (see loadRow).
template <typename T, int S, bool kVec>
SSP_HD void storeRow(T* p, T const (&in)[S])
{
#if defined(__CUDA_ARCH__)
    if constexpr (kVec)
    {
        constexpr int V = VecWidth<T, S>::value;
        SSP_UNROLL
        for (int c = 0; c < S / V; ++c)
        {
            VecN<T, V> chunk;
            SSP_UNROLL
            for (int t = 0; t < V; ++t)
            {
                chunk.v[t] = in[c * V + t];
            }
            reinterpret_cast<VecN<T, V>*>(p)[c] = chunk;
        }
    }
    else
    {
        SSP_UNROLL
        for (int t = 0; t < S; ++t)
        {
            p[t] = in[t];
        }
    }
#else
    (void) kVec;
    std::memcpy(p, in, sizeof(T) * S);
#endif
}

} // namespace ssp
