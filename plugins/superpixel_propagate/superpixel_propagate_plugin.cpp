// SPDX-License-Identifier: Apache-2.0
#include "superpixel_propagate_plugin.h"

#include <exception>
#include <memory>

namespace ssp
{

SuperpixelPropagatePlugin::SuperpixelPropagatePlugin(int32_t cell)
    : mCell(cell)
{
    if (cell < 1)
    {
        throw PluginError(std::string(kSuperpixelPropagateName) + ": attribute 'cell' must be >= 1, got "
            + std::to_string(cell));
    }
}

nvinfer1::IPluginV3* SuperpixelPropagatePlugin::clone() noexcept
{
    try
    {
        return new SuperpixelPropagatePlugin(*this);
    }
    catch (std::exception const& e)
    {
        fail(e.what());
    }
    return nullptr;
}

std::string SuperpixelPropagatePlugin::checkInputDims(nvinfer1::Dims const* in) const
{
    nvinfer1::Dims const& z = in[0];
    nvinfer1::Dims const& q = in[1];
    std::string const shapes = " (Z " + dimsString(z) + ", Q " + dimsString(q) + ", cell " + std::to_string(mCell) + ")";
    if (z.nbDims != 4 || q.nbDims != 4)
    {
        return "Z and Q must be rank 4 (B,C,h,w) and (B,9,h*cell,w*cell)" + shapes;
    }
    if (known(q.d[1]) && q.d[1] != 9)
    {
        return "Q must have 9 channels" + shapes;
    }
    if (known(z.d[0]) && known(q.d[0]) && z.d[0] != q.d[0])
    {
        return "Z and Q must have the same batch" + shapes;
    }
    for (int k : {2, 3})
    {
        if (known(z.d[k]) && known(q.d[k]) && q.d[k] != z.d[k] * mCell)
        {
            return "Q's height and width must be Z's times cell" + shapes;
        }
    }
    return "";
}

nvinfer1::Dims SuperpixelPropagatePlugin::outputDims(nvinfer1::Dims const* in) const
{
    nvinfer1::Dims d = in[0];
    for (int k : {2, 3})
    {
        d.d[k] = known(in[0].d[k]) ? in[0].d[k] * mCell : -1;
    }
    return d;
}

int32_t SuperpixelPropagatePlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != 2 || nbOutputs != 1 || inputs[0].nbDims != 4
        || inputs[1].nbDims != 4)
    {
        return fail("getOutputShapes: expects Z (B,C,h,w) and Q (B,9,h*cell,w*cell)");
    }
    nvinfer1::IDimensionExpr const* cell = exprBuilder.constant(mCell);
    if (cell == nullptr)
    {
        return fail("getOutputShapes: could not build the cell constant");
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0]; // dynamic batch passes through
    outputs[0].d[1] = inputs[0].d[1];
    outputs[0].d[2] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[2], *cell);
    outputs[0].d[3] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[3], *cell);
    if (outputs[0].d[2] == nullptr || outputs[0].d[3] == nullptr)
    {
        return fail("getOutputShapes: could not build h*cell, w*cell");
    }
    return 0;
}

int32_t SuperpixelPropagatePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
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
    nvinfer1::Dims const& z = inputDesc[0].dims;
    int32_t const status = launchSuperpixelPropagate(elemType(inputDesc[0].type), inputs[0], inputs[1], outputs[0],
        z.d[0], z.d[1], z.d[2], z.d[3], mCell, stream);
    if (status != 0)
    {
        return fail("kernel launch failed (status " + std::to_string(status) + ", Z " + dimsString(z) + ")");
    }
    return 0;
}

nvinfer1::PluginFieldCollection const* SuperpixelPropagatePlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialized.clear();
        mSerialized.addInt32("cell", &mCell);
        return mSerialized.collection();
    }
    catch (std::exception const& e)
    {
        fail(e.what());
    }
    return nullptr;
}

SuperpixelPropagateCreator::SuperpixelPropagateCreator()
{
    mFieldNames.declare("cell", nvinfer1::PluginFieldType::kINT32);
}

nvinfer1::IPluginV3* SuperpixelPropagateCreator::create(FieldReader const& fields) const
{
    fields.warnUnknown({"cell"});
    return std::make_unique<SuperpixelPropagatePlugin>(fields.requireInt("cell")).release();
}

} // namespace ssp
