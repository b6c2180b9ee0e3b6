// SPDX-License-Identifier: Apache-2.0
#include "ssp_plugin_base.h"

#include <cstdio>
#include <exception>

namespace ssp
{

nvinfer1::IPluginCapability* SspPluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

int32_t SspPluginBase::fail(std::string const& msg) const noexcept
{
    try
    {
        logError(std::string(getPluginName()) + ": " + msg);
    }
    catch (...)
    {
    }
    return -1;
}

int32_t SspPluginBase::checkCounts(int32_t nbInputs, int32_t nbOutputs) const noexcept
{
    if (nbInputs != expectedInputs() || nbOutputs != 1)
    {
        return fail("expects " + std::to_string(expectedInputs()) + " inputs and 1 output, got "
            + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
    }
    return 0;
}

int32_t SspPluginBase::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (checkCounts(nbInputs, nbOutputs) != 0 || in == nullptr || out == nullptr)
        {
            return -1;
        }
        nvinfer1::DataType const type = in[0].desc.type;
        for (int32_t i = 0; i < nbInputs + nbOutputs; ++i)
        {
            nvinfer1::PluginTensorDesc const& d = i < nbInputs ? in[i].desc : out[i - nbInputs].desc;
            if (d.type != type || !isSupportedType(d.type) || d.dims.nbDims != 4)
            {
                return fail("tensor " + std::to_string(i) + " must be a rank-4 FLOAT or HALF tensor of the same type "
                    "as input 0 (" + dataTypeName(type) + "), got " + dataTypeName(d.type) + " " + dimsString(d.dims));
            }
        }
        // the dims with -1 for dynamic ones, then the profile's min and max (all known)
        std::vector<nvinfer1::Dims> dims(static_cast<size_t>(nbInputs));
        for (int pass = 0; pass < 3; ++pass)
        {
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                dims[i] = pass == 0 ? in[i].desc.dims : (pass == 1 ? in[i].min : in[i].max);
            }
            bool filled = true;
            for (int32_t i = 0; i < nbInputs; ++i)
            {
                filled = filled && dims[i].nbDims == 4;
            }
            if (!filled)
            {
                continue; // min/max not filled in
            }
            std::string const why = checkInputDims(dims.data());
            if (!why.empty())
            {
                return fail(why);
            }
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        return fail(e.what());
    }
    catch (...)
    {
        return fail("unexpected error in configurePlugin");
    }
}

int32_t SspPluginBase::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (checkCounts(nbInputs, nbOutputs) != 0 || outputTypes == nullptr || inputTypes == nullptr)
    {
        return -1;
    }
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        if (!isSupportedType(inputTypes[i]) || inputTypes[i] != inputTypes[0])
        {
            return fail(std::string("all inputs must be FLOAT or all HALF; input ") + std::to_string(i) + " is "
                + dataTypeName(inputTypes[i]) + ", input 0 is " + dataTypeName(inputTypes[0]));
        }
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

bool SspPluginBase::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != expectedInputs() || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != nvinfer1::TensorFormat::kLINEAR || !isSupportedType(d.type))
    {
        return false;
    }
    // TensorRT asks position by position; earlier positions are already fixed
    return pos == 0 || d.type == inOut[0].desc.type;
}

int32_t SspPluginBase::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (checkCounts(nbInputs, nbOutputs) != 0 || in == nullptr || out == nullptr)
        {
            return -1;
        }
        std::vector<nvinfer1::Dims> dims(static_cast<size_t>(nbInputs));
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            dims[i] = in[i].dims;
            if (in[i].dims.nbDims != 4 || in[i].type != in[0].type || !isSupportedType(in[i].type))
            {
                return fail("input " + std::to_string(i) + " must be a rank-4 FLOAT or HALF tensor of input 0's type, "
                    "got " + dataTypeName(in[i].type) + " " + dimsString(in[i].dims));
            }
        }
        std::string const why = checkInputDims(dims.data());
        if (!why.empty())
        {
            return fail(why);
        }
        nvinfer1::Dims const expect = outputDims(dims.data());
        nvinfer1::Dims const& got = out[0].dims;
        bool same = got.nbDims == expect.nbDims && out[0].type == in[0].type;
        for (int32_t k = 0; same && k < got.nbDims; ++k)
        {
            same = got.d[k] == expect.d[k];
        }
        if (!same)
        {
            return fail("output must be " + std::string(dataTypeName(in[0].type)) + " " + dimsString(expect) + ", got "
                + dataTypeName(out[0].type) + " " + dimsString(got));
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        return fail(e.what());
    }
    catch (...)
    {
        return fail("unexpected error in onShapeChange");
    }
}

char const* SspPluginBase::getTimingCacheID() noexcept
{
    try
    {
        std::string id = std::string(getPluginName()) + "_v" + kPluginVersion;
        nvinfer1::PluginFieldCollection const* fc = getFieldsToSerialize();
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        {
            nvinfer1::PluginField const& f = fc->fields[i];
            id += std::string(";") + f.name + "=";
            if (f.type == nvinfer1::PluginFieldType::kINT32 && f.data != nullptr)
            {
                id += std::to_string(*static_cast<int32_t const*>(f.data));
            }
            else if (f.type == nvinfer1::PluginFieldType::kFLOAT32 && f.data != nullptr)
            {
                char buf[32];
                std::snprintf(buf, sizeof(buf), "%a", static_cast<double>(*static_cast<float const*>(f.data)));
                id += buf; // exact: two eps values that print alike must not share timings
            }
        }
        mTimingCacheId = id;
        return mTimingCacheId.c_str();
    }
    catch (...)
    {
        return nullptr; // no timing caching for this plugin rather than a wrong one
    }
}

bool SspPluginBase::emptyIO(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc)
    const noexcept
{
    if (inputDesc == nullptr || outputDesc == nullptr)
    {
        return false;
    }
    for (int32_t i = 0; i <= expectedInputs(); ++i)
    {
        nvinfer1::Dims const& d = i < expectedInputs() ? inputDesc[i].dims : outputDesc[0].dims;
        for (int32_t k = 0; k < d.nbDims; ++k)
        {
            if (d.d[k] == 0)
            {
                return true;
            }
        }
    }
    return false;
}

int32_t SspPluginBase::checkEnqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs) const noexcept
{
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        return fail("enqueue called without tensors");
    }
    for (int32_t i = 0; i < expectedInputs(); ++i)
    {
        if (inputs[i] == nullptr || inputDesc[i].type != inputDesc[0].type || inputDesc[i].dims.nbDims != 4)
        {
            return fail("enqueue: input " + std::to_string(i) + " is missing or not a rank-4 tensor of input 0's type");
        }
    }
    if (!isSupportedType(inputDesc[0].type) || outputDesc[0].type != inputDesc[0].type || outputs[0] == nullptr)
    {
        return fail(std::string("enqueue: unsupported I/O type ") + dataTypeName(inputDesc[0].type));
    }
    return 0;
}

nvinfer1::IPluginV3* SspCreatorBase::createPlugin(
    char const* /*name*/, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try
    {
        FieldReader const reader(fc, getPluginName());
        return create(reader);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    catch (...)
    {
        logError(std::string(getPluginName()) + ": unexpected error in createPlugin");
    }
    return nullptr;
}

} // namespace ssp
