// SPDX-License-Identifier: Apache-2.0
// TensorRT IPluginV3 plugin "SuperpixelAggregate" (namespace "ssp", version "1") and its creator.
#pragma once

#include "../common/ssp_plugin_base.h"

namespace ssp
{

constexpr char const* kSuperpixelAggregateName = "SuperpixelAggregate";
constexpr float kSuperpixelAggregateDefaultEps = 1e-8F;

class SuperpixelAggregatePlugin final : public SspPluginBase
{
public:
    //! Throws PluginError unless cell >= 1 and eps is finite and >= 0.
    SuperpixelAggregatePlugin(int32_t cell, float eps);
    SuperpixelAggregatePlugin(SuperpixelAggregatePlugin const&) = default;

    int32_t cell() const noexcept
    {
        return mCell;
    }
    float eps() const noexcept
    {
        return mEps;
    }

    nvinfer1::IPluginV3* clone() noexcept override;
    char const* getPluginName() const noexcept override
    {
        return kSuperpixelAggregateName;
    }
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

protected:
    int32_t expectedInputs() const noexcept override
    {
        return 2;
    }
    std::string checkInputDims(nvinfer1::Dims const* in) const override;
    nvinfer1::Dims outputDims(nvinfer1::Dims const* in) const override;

private:
    int32_t mCell;
    float mEps;
};

class SuperpixelAggregateCreator final : public SspCreatorBase
{
public:
    SuperpixelAggregateCreator();
    char const* getPluginName() const noexcept override
    {
        return kSuperpixelAggregateName;
    }

protected:
    nvinfer1::IPluginV3* create(FieldReader const& fields) const override;
};

} // namespace ssp
