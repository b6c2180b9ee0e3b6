// SPDX-License-Identifier: Apache-2.0
#include "replication_upsample_plugin.h"

#include <exception>
#include <memory>

namespace ssp
{

ReplicationUpsamplePlugin::ReplicationUpsamplePlugin(int32_t scale)
    : mScale(scale)
{
    if (scale != 2 && scale != 4 && scale != 8)
    {
        throw PluginError(std::string(kReplicationUpsampleName) + ": attribute 'scale' must be 2, 4 or 8, got "
            + std::to_string(scale));
    }
}

nvinfer1::IPluginV3* ReplicationUpsamplePlugin::clone() noexcept
{
    try
    {
        return new ReplicationUpsamplePlugin(*this);
    }
    catch (std::exception const& e)
    {
        fail(e.what());
    }
    return nullptr;
}

std::string ReplicationUpsamplePlugin::checkInputDims(nvinfer1::Dims const* in) const
{
    nvinfer1::Dims const& x = in[0];
    nvinfer1::Dims const& g = in[1];
    nvinfer1::Dims const& y = in[2];
    int64_t const s = mScale;
    std::string const shapes = " (X " + dimsString(x) + ", G " + dimsString(g) + ", Y " + dimsString(y) + ", scale "
        + std::to_string(s) + ")";
    if (x.nbDims != 4 || g.nbDims != 4 || y.nbDims != 4)
    {
        return "X, G and Y must be rank 4: (B,C,h,w), (B,1,s*h,s*w), (B,C*s*s,h,w)" + shapes;
    }
    if (known(g.d[1]) && g.d[1] != 1)
    {
        return "G must have 1 channel" + shapes;
    }
    auto mismatch = [](int64_t a, int64_t b) { return known(a) && known(b) && a != b; };
    if (mismatch(g.d[0], x.d[0]) || mismatch(y.d[0], x.d[0]))
    {
        return "X, G and Y must have the same batch" + shapes;
    }
    if ((known(x.d[1]) && mismatch(y.d[1], x.d[1] * s * s)) || mismatch(y.d[2], x.d[2]) || mismatch(y.d[3], x.d[3]))
    {
        return "Y must be (B, C*scale*scale, h, w)" + shapes;
    }
    if ((known(x.d[2]) && mismatch(g.d[2], x.d[2] * s)) || (known(x.d[3]) && mismatch(g.d[3], x.d[3] * s)))
    {
        return "G must be (B, 1, scale*h, scale*w)" + shapes;
    }
    return "";
}

nvinfer1::Dims ReplicationUpsamplePlugin::outputDims(nvinfer1::Dims const* in) const
{
    nvinfer1::Dims d = in[0];
    for (int k : {2, 3})
    {
        d.d[k] = known(in[0].d[k]) ? in[0].d[k] * mScale : -1;
    }
    return d;
}

int32_t ReplicationUpsamplePlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != 3 || nbOutputs != 1 || inputs[0].nbDims != 4
        || inputs[1].nbDims != 4 || inputs[2].nbDims != 4)
    {
        return fail("getOutputShapes: expects X (B,C,h,w), G (B,1,s*h,s*w) and Y (B,C*s*s,h,w)");
    }
    nvinfer1::IDimensionExpr const* scale = exprBuilder.constant(mScale);
    if (scale == nullptr)
    {
        return fail("getOutputShapes: could not build the scale constant");
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0]; // dynamic batch passes through
    outputs[0].d[1] = inputs[0].d[1];
    outputs[0].d[2] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[2], *scale);
    outputs[0].d[3] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[3], *scale);
    if (outputs[0].d[2] == nullptr || outputs[0].d[3] == nullptr)
    {
        return fail("getOutputShapes: could not build scale*h, scale*w");
    }
    return 0;
}

int32_t ReplicationUpsamplePlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
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
    int32_t const status = launchReplicationUpsample(elemType(inputDesc[0].type), inputs[0], inputs[1], inputs[2],
        outputs[0], x.d[0], x.d[1], x.d[2], x.d[3], mScale, stream);
    if (status != 0)
    {
        return fail("kernel launch failed (status " + std::to_string(status) + ", X " + dimsString(x) + ")");
    }
    return 0;
}

nvinfer1::PluginFieldCollection const* ReplicationUpsamplePlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialized.clear();
        mSerialized.addInt32("scale", &mScale);
        return mSerialized.collection();
    }
    catch (std::exception const& e)
    {
        fail(e.what());
    }
    return nullptr;
}

ReplicationUpsampleCreator::ReplicationUpsampleCreator()
{
    mFieldNames.declare("scale", nvinfer1::PluginFieldType::kINT32);
}

nvinfer1::IPluginV3* ReplicationUpsampleCreator::create(FieldReader const& fields) const
{
    fields.warnUnknown({"scale"});
    return std::make_unique<ReplicationUpsamplePlugin>(fields.requireInt("scale")).release();
}

} // namespace ssp
