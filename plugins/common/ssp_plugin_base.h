// SPDX-License-Identifier: Apache-2.0
// Base class of the three SSP IPluginV3 plugins and their IPluginCreatorV3One creators: everything the ops share
// (one output, FLOAT/HALF LINEAR I/O of one type, no workspace, shape checks in configurePlugin / onShapeChange,
// attribute errors logged and turned into nullptr / non-zero status). The per-op classes add the attributes, the
// output-shape expressions and enqueue.
#pragma once

#include "plugin_common.h"
#include "ssp_kernels.h"

#include <string>
#include <vector>

namespace ssp
{

//! Shape checks: a dimension < 0 is not known yet (build time, dynamic) and is skipped.
inline bool known(int64_t d) noexcept
{
    return d >= 0;
}

class SspPluginBase : public nvinfer1::IPluginV3,
                      public nvinfer1::IPluginV3OneCore,
                      public nvinfer1::IPluginV3OneBuild,
                      public nvinfer1::IPluginV3OneRuntime
{
public:
    ~SspPluginBase() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;

    // IPluginV3OneCore
    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override
    {
        return 1;
    }
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
        nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept override
    {
        return 0;
    }

    //! The plugin name, version and attributes: TensorRT caches the plugin's tactic timings under this (plus the I/O
    //! shapes and formats) instead of re-timing it on every build; also shown as the layer's metadata.
    char const* getTimingCacheID() noexcept override;
    char const* getMetadataString() noexcept override
    {
        return getTimingCacheID();
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override
    {
        return clone(); // no per-context resources
    }

protected:
    SspPluginBase() = default;
    SspPluginBase(SspPluginBase const&) = default;

    //! Number of inputs of the op (2 or 3).
    virtual int32_t expectedInputs() const noexcept = 0;
    //! "" when the input dims are consistent with each other and the attributes (unknown dims skipped), else why.
    virtual std::string checkInputDims(nvinfer1::Dims const* in) const = 0;
    //! Output dims for the input dims (unknown inputs give -1).
    virtual nvinfer1::Dims outputDims(nvinfer1::Dims const* in) const = 0;

    //! Log "<name>: msg" as an error and return -1.
    int32_t fail(std::string const& msg) const noexcept;
    //! The kernels' element type for a TensorRT type (FLOAT or HALF; checked before).
    static ElemType elemType(nvinfer1::DataType type) noexcept
    {
        return type == nvinfer1::DataType::kHALF ? ElemType::kFLOAT16 : ElemType::kFLOAT32;
    }
    //! True when an input or the output has no elements (a dimension 0): enqueue has nothing to do and returns 0
    //! before looking at the (possibly null) addresses, as TensorRT's own V3 plugins do (plugin/roiAlignPlugin).
    bool emptyIO(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc) const
        noexcept;
    //! Common checks of enqueue's arguments: counts, pointers, one supported type, rank 4.
    int32_t checkEnqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs) const noexcept;

    FieldList mSerialized;

private:
    int32_t checkCounts(int32_t nbInputs, int32_t nbOutputs) const noexcept;

    std::string mTimingCacheId;
};

//! Base creator: name/version/namespace, the declared fields, and createPlugin's error handling.
class SspCreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override
    {
        return mFieldNames.collection();
    }
    char const* getPluginVersion() const noexcept override
    {
        return kPluginVersion;
    }
    char const* getPluginNamespace() const noexcept override
    {
        return kPluginNamespace;
    }

protected:
    //! Build the plugin from the fields; throw PluginError for a bad or missing attribute.
    virtual nvinfer1::IPluginV3* create(FieldReader const& fields) const = 0;

    FieldList mFieldNames;
};

} // namespace ssp
