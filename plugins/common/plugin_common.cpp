// SPDX-License-Identifier: Apache-2.0
#include "plugin_common.h"

#include "ssp_hd.cuh" // halfBitsToFloat for FLOAT16 fields (plain C++ under a host compiler)

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>

namespace ssp
{
namespace
{

std::mutex gLogMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};
nvinfer1::ILogger* gFallbackLogger{nullptr};

char const* typeName(nvinfer1::PluginFieldType t) noexcept
{
    using T = nvinfer1::PluginFieldType;
    switch (t)
    {
    case T::kFLOAT16: return "FLOAT16";
    case T::kFLOAT32: return "FLOAT32";
    case T::kFLOAT64: return "FLOAT64";
    case T::kINT8: return "INT8";
    case T::kINT16: return "INT16";
    case T::kINT32: return "INT32";
    case T::kINT64: return "INT64";
    case T::kCHAR: return "CHAR";
    case T::kDIMS: return "DIMS";
    default: return "another type";
    }
}

} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    std::lock_guard<std::mutex> lock(gLogMutex);
    if (gLoggerFinder == nullptr && finder != nullptr) // keep the first, as TensorRT's vfcCommon.cpp does
    {
        gLoggerFinder = finder;
    }
}

nvinfer1::IPluginRegistry* findPluginRegistry(std::string* why) noexcept
{
    using GetRegistry = nvinfer1::IPluginRegistry* (*) ();
    void* sym = dlsym(RTLD_DEFAULT, "getPluginRegistry");
    std::string const soname = "libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR);
    if (sym == nullptr)
    {
        // loaded RTLD_LOCAL (or by a library that was): not in the global scope, but dlopen(RTLD_NOLOAD) finds it
        void* handle = dlopen(soname.c_str(), RTLD_LAZY | RTLD_NOLOAD);
        if (handle != nullptr)
        {
            sym = dlsym(handle, "getPluginRegistry");
            dlclose(handle); // drops only the reference NOLOAD added
        }
    }
    nvinfer1::IPluginRegistry* registry = sym != nullptr ? reinterpret_cast<GetRegistry>(sym)() : nullptr;
    if (registry == nullptr && why != nullptr)
    {
        try
        {
            *why = sym == nullptr ? "TensorRT (" + soname + ") is not loaded in this process; load it first"
                                  : "getPluginRegistry() returned no registry";
        }
        catch (...)
        {
        }
    }
    return registry;
}

void setFallbackLogger(nvinfer1::ILogger* logger) noexcept
{
    std::lock_guard<std::mutex> lock(gLogMutex);
    gFallbackLogger = logger;
}

void logMessage(nvinfer1::ILogger::Severity severity, std::string const& msg) noexcept
{
    try
    {
        std::string const line = std::string("[ssp plugins] ") + msg;
        nvinfer1::ILogger* logger{nullptr};
        {
            std::lock_guard<std::mutex> lock(gLogMutex);
            logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
            if (logger == nullptr)
            {
                logger = gFallbackLogger;
            }
        }
        if (logger != nullptr)
        {
            logger->log(severity, line.c_str());
        }
        else if (severity <= nvinfer1::ILogger::Severity::kWARNING)
        {
            std::fprintf(stderr, "%s\n", line.c_str());
        }
    }
    catch (...)
    {
    }
}

FieldReader::FieldReader(nvinfer1::PluginFieldCollection const* fc, char const* pluginName)
    : mFc(fc)
    , mPlugin(pluginName)
{
    if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr) || fc->nbFields < 0)
    {
        throw PluginError(mPlugin + ": no plugin fields given");
    }
}

nvinfer1::PluginField const* FieldReader::find(char const* name) const
{
    for (int32_t i = 0; i < mFc->nbFields; ++i)
    {
        nvinfer1::PluginField const& f = mFc->fields[i];
        if (f.name != nullptr && std::strcmp(f.name, name) == 0)
        {
            return &f;
        }
    }
    return nullptr;
}

bool FieldReader::has(char const* name) const
{
    return find(name) != nullptr;
}

int32_t FieldReader::requireInt(char const* name) const
{
    nvinfer1::PluginField const* f = find(name);
    if (f == nullptr)
    {
        throw PluginError(mPlugin + ": required attribute '" + name + "' (int) is missing");
    }
    if (f->data == nullptr || f->length != 1)
    {
        throw PluginError(mPlugin + ": attribute '" + name + "' must hold exactly one value (got length "
            + std::to_string(f->length) + ")");
    }
    int64_t v = 0;
    using T = nvinfer1::PluginFieldType;
    switch (f->type)
    {
    case T::kINT8: v = *static_cast<int8_t const*>(f->data); break;
    case T::kINT16: v = *static_cast<int16_t const*>(f->data); break;
    case T::kINT32: v = *static_cast<int32_t const*>(f->data); break;
    case T::kINT64: v = *static_cast<int64_t const*>(f->data); break;
    default:
        throw PluginError(mPlugin + ": attribute '" + name + "' must be an integer (INT32), got "
            + typeName(f->type));
    }
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    {
        throw PluginError(mPlugin + ": attribute '" + name + "' = " + std::to_string(v) + " does not fit in int32");
    }
    return static_cast<int32_t>(v);
}

float FieldReader::floatOr(char const* name, float fallback) const
{
    nvinfer1::PluginField const* f = find(name);
    if (f == nullptr)
    {
        return fallback;
    }
    if (f->data == nullptr || f->length != 1)
    {
        throw PluginError(mPlugin + ": attribute '" + name + "' must hold exactly one value (got length "
            + std::to_string(f->length) + ")");
    }
    using T = nvinfer1::PluginFieldType;
    switch (f->type)
    {
    case T::kFLOAT32: return *static_cast<float const*>(f->data);
    case T::kFLOAT64: return static_cast<float>(*static_cast<double const*>(f->data));
    case T::kFLOAT16: return halfBitsToFloat(*static_cast<uint16_t const*>(f->data));
    default:
        throw PluginError(mPlugin + ": attribute '" + name + "' must be a float (FLOAT32), got " + typeName(f->type));
    }
}

void FieldReader::warnUnknown(std::initializer_list<char const*> known) const
{
    for (int32_t i = 0; i < mFc->nbFields; ++i)
    {
        char const* n = mFc->fields[i].name;
        if (n == nullptr)
        {
            continue;
        }
        bool ok = false;
        for (char const* k : known)
        {
            ok = ok || std::strcmp(n, k) == 0;
        }
        for (char const* k : kParserFields)
        {
            ok = ok || std::strcmp(n, k) == 0;
        }
        if (!ok)
        {
            logWarning(mPlugin + ": ignoring unknown attribute '" + n + "'");
        }
    }
}

void FieldList::clear()
{
    mFields.clear();
}

void FieldList::addInt32(char const* name, int32_t const* value)
{
    mFields.emplace_back(name, value, nvinfer1::PluginFieldType::kINT32, 1);
}

void FieldList::addFloat32(char const* name, float const* value)
{
    mFields.emplace_back(name, value, nvinfer1::PluginFieldType::kFLOAT32, 1);
}

void FieldList::declare(char const* name, nvinfer1::PluginFieldType type)
{
    mFields.emplace_back(name, nullptr, type, 1);
}

nvinfer1::PluginFieldCollection const* FieldList::collection() noexcept
{
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
    return &mCollection;
}

char const* dataTypeName(nvinfer1::DataType type) noexcept
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return "FLOAT";
    case nvinfer1::DataType::kHALF: return "HALF";
    case nvinfer1::DataType::kINT8: return "INT8";
    case nvinfer1::DataType::kINT32: return "INT32";
    case nvinfer1::DataType::kBOOL: return "BOOL";
    case nvinfer1::DataType::kUINT8: return "UINT8";
    case nvinfer1::DataType::kFP8: return "FP8";
    case nvinfer1::DataType::kBF16: return "BF16";
    case nvinfer1::DataType::kINT64: return "INT64";
    default: return "another type";
    }
}

std::string dimsString(nvinfer1::Dims const& d)
{
    std::string s = "[";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        s += (i ? "," : "") + std::to_string(d.d[i]);
    }
    return s + "]";
}

} // namespace ssp
