// SPDX-License-Identifier: Apache-2.0
// Entry points of libssp_trt_plugins.so.
//
// TensorRT 10 and 11 load a plugin library dynamically (trtexec --dynamicPlugins=LIB,
// IPluginRegistry::loadLibrary / Python registry.load_library, and engines that serialize the library with
// --setPluginsToSerialize / plugins_to_serialize) through two extern "C" symbols:
//   IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)   -- the creators the library contains
//   void setLoggerFinder(ILoggerFinder* finder)                        -- how the library finds TensorRT's logger
// (TensorRT's own examples: plugin/common/vfcCommon.cpp at 10.3, plugin/vc/vfcCommon.cpp at 11.1, and
// samples/trtexec/README.md.) The older getPluginCreators() entry point is for IPluginV2 creators
// (IPluginCreator), which this library does not have, so it is not exported.
//
// initLibSspPlugins() registers the same creators into the process's TensorRT registry, for applications that
// link or dlopen the library themselves instead of calling loadLibrary (use one or the other: registering a creator
// twice fails). sspPluginsBuildInfo() says what the library was built against.
#include "../replication_upsample/replication_upsample_plugin.h"
#include "../superpixel_aggregate/superpixel_aggregate_plugin.h"
#include "../superpixel_propagate/superpixel_propagate_plugin.h"
#include "plugin_common.h"

#include <string>

#ifndef SSP_CUDA_ARCHS_STRING
#define SSP_CUDA_ARCHS_STRING "unknown"
#endif
#ifndef SSP_CUDA_VERSION_STRING
#define SSP_CUDA_VERSION_STRING "unknown"
#endif
#ifndef SSP_CUDA_RUNTIME_STRING
#define SSP_CUDA_RUNTIME_STRING "unknown"
#endif

namespace
{

ssp::SuperpixelAggregateCreator gAggregateCreator;
ssp::SuperpixelPropagateCreator gPropagateCreator;
ssp::ReplicationUpsampleCreator gUpsampleCreator;

nvinfer1::IPluginCreatorInterface* const gCreators[] = {&gAggregateCreator, &gPropagateCreator, &gUpsampleCreator};

#define SSP_STR2(x) #x
#define SSP_STR(x) SSP_STR2(x)

// one literal, so it can also be read from the file without loading it
constexpr char gBuildInfo[] = "ssp_trt_plugins " SSP_PLUGIN_VERSION_STRING "; TensorRT headers " SSP_STR(
    NV_TENSORRT_MAJOR) "." SSP_STR(NV_TENSORRT_MINOR) "." SSP_STR(NV_TENSORRT_PATCH) "." SSP_STR(NV_TENSORRT_BUILD)
    "; CUDA " SSP_CUDA_VERSION_STRING " (cudart " SSP_CUDA_RUNTIME_STRING "); CUDA archs " SSP_CUDA_ARCHS_STRING
    "; plugins SuperpixelAggregate, SuperpixelPropagate, ReplicationUpsample (namespace ssp)";

} // namespace

extern "C" SSP_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    nbCreators = static_cast<int32_t>(sizeof(gCreators) / sizeof(gCreators[0]));
    return gCreators;
}

extern "C" SSP_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    ssp::setLoggerFinder(finder);
}

//! Register the creators with the TensorRT plugin registry of this process (libnvinfer must already be loaded, in
//! the global scope or RTLD_LOCAL: ssp::findPluginRegistry; the library itself never needs to link it). `logger` (an nvinfer1::ILogger*, may be
//! null) receives the library's messages when TensorRT has not given a logger finder. Creators already registered
//! under the same name/version/namespace are left alone. Returns true when all three are registered afterwards.
extern "C" SSP_EXPORT bool initLibSspPlugins(void* logger)
{
    if (logger != nullptr)
    {
        ssp::setFallbackLogger(static_cast<nvinfer1::ILogger*>(logger));
    }
    std::string why;
    nvinfer1::IPluginRegistry* registry = ssp::findPluginRegistry(&why);
    if (registry == nullptr)
    {
        ssp::logError("initLibSspPlugins: " + why + ", or use IPluginRegistry::loadLibrary on this library");
        return false;
    }
    bool ok = true;
    for (nvinfer1::IPluginCreatorInterface* creator : gCreators)
    {
        auto* c = static_cast<ssp::SspCreatorBase*>(creator);
        if (registry->getCreator(c->getPluginName(), c->getPluginVersion(), c->getPluginNamespace()) != nullptr)
        {
            continue;
        }
        if (!registry->registerCreator(*creator, ssp::kPluginNamespace))
        {
            ssp::logError(std::string("initLibSspPlugins: could not register ") + c->getPluginName());
            ok = false;
        }
    }
    return ok;
}

//! One line: plugin version, TensorRT header version and CUDA architectures the library was built for.
extern "C" SSP_EXPORT char const* sspPluginsBuildInfo()
{
    return gBuildInfo;
}
