// SPDX-License-Identifier: Apache-2.0
#include "superpixel_aggregate_plugin.h"

#include <cmath>
#include <exception>
#include <memory>

namespace ssp
{

SuperpixelAggregatePlugin::SuperpixelAggregatePlugin(int32_t cell, float eps)
    : mCell(cell)
    , mEps(eps)
{
    if (cell < 1)
    {
        throw PluginError(std::string(kSuperpixelAggregateName) + ": attribute 'cell' must be >= 1, got "
            + std::to_string(cell));
    }
    if (!std::isfinite(eps) || eps < 0.0F)
    {
        throw PluginError(std::string(kSuperpixelAggregateName) + ": attribute 'eps' must be a finite float >= 0, got "
            + std::to_string(eps));
    }
}

nvinfer1::IPluginV3* SuperpixelAggregatePlugin::clone() noexcept
{
    try
    {
        return new SuperpixelAggregatePlugin(*this);
    }
    catch (std::exception const& e)
    {
        fail(e.what());
    }
    return nullptr;
}

std::string SuperpixelAggregatePlugin::checkInputDims(nvinfer1::Dims const* in) const
{
    nvinfer1::Dims const& x = in[0];
    nvinfer1::Dims const& q = in[1];
    std::string const shapes = " (X " + dimsString(x) + ", Q " + dimsString(q) + ", cell " + std::to_string(mCell) + ")";
    if (x.nbDims != 4 || q.nbDims != 4)
    {
        return "X and Q must be rank 4 (B,C,H,W) and (B,9,H,W)" + shapes;
    }
    if (known(q.d[1]) && q.d[1] != 9)
    {
        return "Q must have 9 channels" + shapes;
    }
    for (int k : {0, 2, 3})
    {
        if (known(x.d[k]) && known(q.d[k]) && x.d[k] != q.d[k])
        {
            return "X and Q must have the same batch, height and width" + shapes;
        }
    }
    for (int k : {2, 3})
    {
        if (known(x.d[k]) && (x.d[k] < mCell || x.d[k] % mCell != 0))
        {
            return "H and W must be positive multiples of cell" + shapes;
        }
    }
    return "";
}

nvinfer1::Dims SuperpixelAggregatePlugin::outputDims(nvinfer1::Dims const* in) const
{
    nvinfer1::Dims d = in[0];
    for (int k : {2, 3})
    {
        d.d[k] = known(in[0].d[k]) ? in[0].d[k] / mCell : -1;
    }
    return d;
}

int32_t SuperpixelAggregatePlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != 2 || nbOutputs != 1 || inputs[0].nbDims != 4
        || inputs[1].nbDims != 4)
    {
        return fail("getOutputShapes: expects X (B,C,H,W) and Q (B,9,H,W)");
    }
    nvinfer1::IDimensionExpr const* cell = exprBuilder.constant(mCell);
    if (cell == nullptr)
    {
        return fail("getOutputShapes: could not build the cell constant");
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0]; // dynamic batch passes through
    outputs[0].d[1] = inputs[0].d[1];
    outputs[0].d[2] = exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *inputs[0].d[2], *cell);
    outputs[0].d[3] = exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *inputs[0].d[3], *cell);
    if (outputs[0].d[2] == nullptr || outputs[0].d[3] == nullptr)
    {
        return fail("getOutputShapes: could not build H/cell, W/cell");
    }
    return 0;
}

int32_t SuperpixelAggregatePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    if (emptyIO(inputDesc, outputDesc))
    {
        return 0; // nothing to compute (e.g. no prompts in this batch)
    }
    if (checkEnqueue(inputDesc, outputDesc, inputs, outputs) != 0)
    {
        return -1;
    }
    nvinfer1::Dims const& x = inputDesc[0].dims;
    int32_t const status = launchSuperpixelAggregate(elemType(inputDesc[0].type), inputs[0], inputs[1], outputs[0],
        x.d[0], x.d[1], x.d[2], x.d[3], mCell, mEps, stream);
    if (status != 0)
    {
        return fail("kernel launch failed (status " + std::to_string(status) + ", X " + dimsString(x) + ")");
    }
    return 0;
}

nvinfer1::PluginFieldCollection const* SuperpixelAggregatePlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialized.clear();
        mSerialized.addInt32("cell", &mCell);
        mSerialized.addFloat32("eps", &mEps);
        return mSerialized.collection();
    }
    catch (std::exception const& e)
    {
        fail(e.what());
    }
    return nullptr;
}

SuperpixelAggregateCreator::SuperpixelAggregateCreator()
{
    mFieldNames.declare("cell", nvinfer1::PluginFieldType::kINT32);
    mFieldNames.declare("eps", nvinfer1::PluginFieldType::kFLOAT32);
}

nvinfer1::IPluginV3* SuperpixelAggregateCreator::create(FieldReader const& fields) const
{
    fields.warnUnknown({"cell", "eps"});
    int32_t const cell = fields.requireInt("cell");
    float const eps = fields.floatOr("eps", kSuperpixelAggregateDefaultEps);
    return std::make_unique<SuperpixelAggregatePlugin>(cell, eps).release();
}

} // namespace ssp
