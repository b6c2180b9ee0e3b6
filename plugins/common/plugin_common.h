// SPDX-License-Identifier: Apache-2.0
// Shared plugin-side helpers: names, logging, checks, reading and writing PluginFields.
// Needs only the TensorRT headers (TensorRT 10.x and 11.x); nothing here calls into libnvinfer.
#pragma once

#include "NvInferRuntime.h"

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#define SSP_EXPORT __attribute__((visibility("default")))

namespace ssp
{

//! Every creator registers under this namespace and version; the converter writes the same strings into the ONNX
//! nodes' plugin_namespace / plugin_version attributes (converter/schemas.py), which TensorRT's ONNX parser uses to
//! find the creator by op_type.
//! (plugins/ops.json is the one spec of these names, fields and defaults; tests/plugins/test_op_spec.py holds this
//! library to it.)
#define SSP_PLUGIN_VERSION_STRING "1"
constexpr char const* kPluginNamespace = "ssp";
constexpr char const* kPluginVersion = SSP_PLUGIN_VERSION_STRING;

//! Node attributes the ONNX parser may hand over as fields; they select the creator and are ignored here.
constexpr char const* kParserFields[] = {"plugin_namespace", "plugin_version"};

//! Logging: through the ILoggerFinder TensorRT passes to setLoggerFinder(), else a logger from
//! initLibSspPlugins(), else stderr. The first finder is kept, later ones are ignored (as TensorRT's own plugin
//! library does: plugin/common/vfcCommon.cpp, ThreadSafeLoggerFinder).
void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

//! TensorRT's global plugin registry of this process, or nullptr with the reason in `why`: getPluginRegistry from the
//! global scope, else from an already loaded libnvinfer.so.<major> (dlopen RTLD_NOLOAD), which also finds a
//! libnvinfer that was loaded RTLD_LOCAL (Triton's TensorRT backend, Python extensions).
nvinfer1::IPluginRegistry* findPluginRegistry(std::string* why) noexcept;
void setFallbackLogger(nvinfer1::ILogger* logger) noexcept;
void logMessage(nvinfer1::ILogger::Severity severity, std::string const& msg) noexcept;
inline void logError(std::string const& msg) noexcept
{
    logMessage(nvinfer1::ILogger::Severity::kERROR, msg);
}
inline void logWarning(std::string const& msg) noexcept
{
    logMessage(nvinfer1::ILogger::Severity::kWARNING, msg);
}

//! A bad attribute, shape or type: the message names what is wrong and what is expected.
struct PluginError : std::invalid_argument
{
    using std::invalid_argument::invalid_argument;
};

//! Reads typed values from a PluginFieldCollection (the ONNX parser's node attributes, or the fields this library
//! serialized). Integers may come as INT8/16/32/64, floats as FLOAT16/32/64; a field must hold exactly one value.
class FieldReader
{
public:
    FieldReader(nvinfer1::PluginFieldCollection const* fc, char const* pluginName);

    bool has(char const* name) const;
    //! The integer field `name`; throws PluginError when missing or not an integer.
    int32_t requireInt(char const* name) const;
    //! The float field `name`, or `fallback` when absent; throws PluginError when not a float.
    float floatOr(char const* name, float fallback) const;
    //! Warn once per field that is neither in `known` nor one of kParserFields.
    void warnUnknown(std::initializer_list<char const*> known) const;

private:
    nvinfer1::PluginField const* find(char const* name) const;

    nvinfer1::PluginFieldCollection const* mFc;
    std::string mPlugin;
};

//! Owns the PluginFieldCollection returned by getFieldsToSerialize / getFieldNames (pointers into the plugin's
//! own members; rebuilt on every call so that copies made by clone() never point into another object).
class FieldList
{
public:
    void clear();
    void addInt32(char const* name, int32_t const* value);
    void addFloat32(char const* name, float const* value);
    //! A declared field with no data (getFieldNames).
    void declare(char const* name, nvinfer1::PluginFieldType type);
    nvinfer1::PluginFieldCollection const* collection() noexcept;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! "FLOAT", "HALF", ... for messages.
char const* dataTypeName(nvinfer1::DataType type) noexcept;

//! True for the I/O types the plugins implement (FLOAT, HALF).
inline bool isSupportedType(nvinfer1::DataType type) noexcept
{
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

//! "[2,3,-1,8]" for messages.
std::string dimsString(nvinfer1::Dims const& d);

} // namespace ssp
