// SPDX-License-Identifier: Apache-2.0
// Host harness: runs the per-element math of the three SSP ops (the same `.cuh` headers the CUDA kernels use) on
// the CPU, compiled by a plain C++ compiler (no CUDA). Driven by tests/plugins/test_host_kernels.py, which compares
// its outputs with the PyTorch reference ops.
//
// Usage (tensors are raw little-endian files, NCHW contiguous; f16 = IEEE binary16 bits):
//   host_harness aggregate f32|f16 B C H W cell eps  X Q OUT
//   host_harness propagate f32|f16 B C h w cell      Z Q OUT
//   host_harness upsample  f32|f16 B C h w scale     X G Y OUT
//   host_harness f2h IN OUT     (float32 -> binary16 bits, round to nearest even)
//   host_harness h2f IN OUT     (binary16 bits -> float32)
// A file name "-" reads stdin / writes stdout. Exit status 0 on success, 2 on bad arguments or sizes.
#include "../replication_upsample/replication_upsample.cuh"
#include "../superpixel_aggregate/superpixel_aggregate.cuh"
#include "../superpixel_propagate/superpixel_propagate.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

struct UsageError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

std::vector<char> readAll(std::string const& path)
{
    FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
    if (f == nullptr)
    {
        throw UsageError("cannot open " + path);
    }
    std::vector<char> data;
    char buf[1 << 16];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
    {
        data.insert(data.end(), buf, buf + n);
    }
    if (f != stdin)
    {
        std::fclose(f);
    }
    return data;
}

void writeAll(std::string const& path, void const* data, size_t bytes)
{
    FILE* f = path == "-" ? stdout : std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(data, 1, bytes, f) != bytes)
    {
        throw UsageError("cannot write " + path);
    }
    if (f != stdout)
    {
        std::fclose(f);
    }
    else
    {
        std::fflush(stdout);
    }
}

template <typename T>
std::vector<T> readTensor(std::string const& path, int64_t count, char const* what)
{
    std::vector<char> raw = readAll(path);
    if (static_cast<int64_t>(raw.size()) != count * static_cast<int64_t>(sizeof(T)))
    {
        throw UsageError(std::string(what) + ": expected " + std::to_string(count * sizeof(T)) + " bytes in " + path
            + ", got " + std::to_string(raw.size()));
    }
    std::vector<T> out(static_cast<size_t>(count));
    std::memcpy(out.data(), raw.data(), raw.size());
    return out;
}

int64_t toInt(char const* s, char const* what)
{
    char* end = nullptr;
    long long const v = std::strtoll(s, &end, 10);
    if (end == s || *end != '\0')
    {
        throw UsageError(std::string(what) + " must be an integer, got " + s);
    }
    return v;
}

template <typename T>
int runAggregate(char** a)
{
    int64_t const B = toInt(a[0], "B");
    auto const C = static_cast<int32_t>(toInt(a[1], "C"));
    auto const H = static_cast<int32_t>(toInt(a[2], "H"));
    auto const W = static_cast<int32_t>(toInt(a[3], "W"));
    auto const cell = static_cast<int32_t>(toInt(a[4], "cell"));
    float const eps = std::strtof(a[5], nullptr);
    if (B < 1 || C < 1 || cell < 1 || H < cell || W < cell || H % cell || W % cell || !(eps >= 0.0F))
    {
        throw UsageError("aggregate: need B, C >= 1, cell >= 1, H and W positive multiples of cell, eps >= 0");
    }
    int64_t const plane = static_cast<int64_t>(H) * W;
    auto const X = readTensor<T>(a[6], B * C * plane, "X");
    auto const Q = readTensor<T>(a[7], B * 9 * plane, "Q");
    int64_t const n = ssp::aggregateOutputCount(B, C, H, W, cell);
    std::vector<T> Z(static_cast<size_t>(n));
    for (int64_t idx = 0; idx < n; ++idx)
    {
        ssp::aggregateElement<T>(X.data(), Q.data(), Z.data(), idx, C, H, W, cell, eps);
    }
    writeAll(a[8], Z.data(), Z.size() * sizeof(T));
    return 0;
}

template <typename T>
int runPropagate(char** a)
{
    int64_t const B = toInt(a[0], "B");
    auto const C = static_cast<int32_t>(toInt(a[1], "C"));
    auto const h = static_cast<int32_t>(toInt(a[2], "h"));
    auto const w = static_cast<int32_t>(toInt(a[3], "w"));
    auto const cell = static_cast<int32_t>(toInt(a[4], "cell"));
    if (B < 1 || C < 1 || h < 1 || w < 1 || cell < 1)
    {
        throw UsageError("propagate: need B, C, h, w, cell >= 1");
    }
    int64_t const plane = static_cast<int64_t>(h) * cell * w * cell;
    auto const Z = readTensor<T>(a[5], B * C * h * w, "Z");
    auto const Q = readTensor<T>(a[6], B * 9 * plane, "Q");
    int64_t const n = ssp::propagateOutputCount(B, C, h, w, cell);
    std::vector<T> Y(static_cast<size_t>(n));
    for (int64_t idx = 0; idx < n; ++idx)
    {
        ssp::propagateElement<T>(Z.data(), Q.data(), Y.data(), idx, C, h, w, cell);
    }
    writeAll(a[7], Y.data(), Y.size() * sizeof(T));
    return 0;
}

template <typename T>
int runUpsample(char** a)
{
    int64_t const B = toInt(a[0], "B");
    auto const C = static_cast<int32_t>(toInt(a[1], "C"));
    auto const h = static_cast<int32_t>(toInt(a[2], "h"));
    auto const w = static_cast<int32_t>(toInt(a[3], "w"));
    auto const s = static_cast<int32_t>(toInt(a[4], "scale"));
    if (B < 1 || C < 1 || h < 1 || w < 1 || !(s == 2 || s == 4 || s == 8))
    {
        throw UsageError("upsample: need B, C, h, w >= 1 and scale in {2, 4, 8}");
    }
    int64_t const hw = static_cast<int64_t>(h) * w;
    auto const X = readTensor<T>(a[5], B * C * hw, "X");
    auto const G = readTensor<T>(a[6], B * hw * s * s, "G");
    auto const Y = readTensor<T>(a[7], B * C * s * s * hw, "Y");
    std::vector<T> O(static_cast<size_t>(B * C * hw * s * s));
    int64_t const n = ssp::replicationCellCount(B, C, h, w);
    for (int64_t idx = 0; idx < n; ++idx)
    {
        ssp::replicationCellAnyScale<T>(X.data(), G.data(), Y.data(), O.data(), idx, C, h, w, s);
    }
    writeAll(a[8], O.data(), O.size() * sizeof(T));
    return 0;
}

int convert(std::string const& mode, char** a)
{
    std::vector<char> raw = readAll(a[0]);
    if (mode == "f2h")
    {
        if (raw.size() % 4)
        {
            throw UsageError("f2h: input size is not a multiple of 4");
        }
        std::vector<uint16_t> out(raw.size() / 4);
        for (size_t i = 0; i < out.size(); ++i)
        {
            float f;
            std::memcpy(&f, raw.data() + 4 * i, 4);
            out[i] = ssp::floatToHalfBits(f);
        }
        writeAll(a[1], out.data(), out.size() * 2);
        return 0;
    }
    if (raw.size() % 2)
    {
        throw UsageError("h2f: input size is not a multiple of 2");
    }
    std::vector<float> out(raw.size() / 2);
    for (size_t i = 0; i < out.size(); ++i)
    {
        uint16_t h;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        out[i] = ssp::halfBitsToFloat(h);
    }
    writeAll(a[1], out.data(), out.size() * 4);
    return 0;
}

template <typename T>
int dispatch(std::string const& op, int nargs, char** a)
{
    if (op == "aggregate" && nargs == 9)
    {
        return runAggregate<T>(a);
    }
    if (op == "propagate" && nargs == 8)
    {
        return runPropagate<T>(a);
    }
    if (op == "upsample" && nargs == 9)
    {
        return runUpsample<T>(a);
    }
    throw UsageError("unknown op or wrong number of arguments for " + op);
}

} // namespace

int main(int argc, char** argv)
{
    try
    {
        if (argc < 2)
        {
            throw UsageError("usage: host_harness aggregate|propagate|upsample|f2h|h2f ...");
        }
        std::string const op = argv[1];
        if (op == "f2h" || op == "h2f")
        {
            if (argc != 4)
            {
                throw UsageError(op + " IN OUT");
            }
            return convert(op, argv + 2);
        }
        if (argc < 3)
        {
            throw UsageError(op + ": missing element type f32|f16");
        }
        std::string const type = argv[2];
        int const nargs = argc - 3;
        if (type == "f32")
        {
            return dispatch<float>(op, nargs, argv + 3);
        }
        if (type == "f16")
        {
            return dispatch<ssp::HalfBits>(op, nargs, argv + 3);
        }
        throw UsageError("element type must be f32 or f16, got " + type);
    }
    catch (std::exception const& e)
    {
        std::cerr << "host_harness: " << e.what() << "\n";
        return 2;
    }
}
