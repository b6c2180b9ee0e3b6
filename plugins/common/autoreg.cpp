// SPDX-License-Identifier: Apache-2.0
// libssp_trt_plugins_autoreg.so: the same three plugins, registered with TensorRT's global plugin registry when the
// library is loaded. For hosts that only dlopen a plugin library and never call getCreators / initLibSspPlugins:
// Triton's TensorRT backend (--backend-config=tensorrt,plugins="..."), DeepStream's custom-lib-path, LD_PRELOAD,
// and trtexec --staticPlugins / --plugins. (libssp_trt_plugins.so stays free of load-time side effects for
// getCreators users: trtexec --dynamicPlugins, IPluginRegistry::loadLibrary; TensorRT warns when a creator is
// registered twice, so load one library or the other.)
//
// The registry is found as initLibSspPlugins finds it (ssp::findPluginRegistry): libnvinfer must be loaded before
// this library (it is linked against libnvinfer when CMake finds one, which guarantees that order).
// sspPluginsAutoregistered() says how many creators the load registered (or found registered), for diagnosis.
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

#define SSP_STR2(x) #x
#define SSP_STR(x) SSP_STR2(x)

constexpr char gBuildInfo[] = "ssp_trt_plugins " SSP_PLUGIN_VERSION_STRING " (autoreg); TensorRT headers " SSP_STR(
    NV_TENSORRT_MAJOR) "." SSP_STR(NV_TENSORRT_MINOR) "." SSP_STR(NV_TENSORRT_PATCH) "." SSP_STR(NV_TENSORRT_BUILD)
    "; CUDA " SSP_CUDA_VERSION_STRING " (cudart " SSP_CUDA_RUNTIME_STRING "); CUDA archs " SSP_CUDA_ARCHS_STRING
    "; plugins SuperpixelAggregate, SuperpixelPropagate, ReplicationUpsample (namespace ssp)";

// constructed before gRegistrar below (same translation unit: declaration order)
ssp::SuperpixelAggregateCreator gAggregateCreator;
ssp::SuperpixelPropagateCreator gPropagateCreator;
ssp::ReplicationUpsampleCreator gUpsampleCreator;

int32_t gRegistered = -1;

struct Registrar
{
    Registrar() noexcept
    {
        std::string why;
        nvinfer1::IPluginRegistry* registry = ssp::findPluginRegistry(&why);
        if (registry == nullptr)
        {
            ssp::logError("libssp_trt_plugins_autoreg.so: cannot register the ssp plugins: " + why
                + " before this library (or load libssp_trt_plugins.so with getCreators instead)");
            return;
        }
        int32_t n = 0;
        ssp::SspCreatorBase* creators[] = {&gAggregateCreator, &gPropagateCreator, &gUpsampleCreator};
        for (ssp::SspCreatorBase* c : creators)
        {
            if (registry->getCreator(c->getPluginName(), c->getPluginVersion(), c->getPluginNamespace()) != nullptr
                || registry->registerCreator(*c, ssp::kPluginNamespace))
            {
                ++n;
            }
            else
            {
                ssp::logError(std::string("libssp_trt_plugins_autoreg.so: could not register ") + c->getPluginName());
            }
        }
        gRegistered = n;
    }
};

Registrar const gRegistrar;

} // namespace

//! How many of the three creators are registered since this library was loaded (-1: no registry was found).
extern "C" SSP_EXPORT int32_t sspPluginsAutoregistered()
{
    return gRegistered;
}

//! As libssp_trt_plugins.so's: plugin version, TensorRT headers, CUDA toolkit and architectures, "(autoreg)".
extern "C" SSP_EXPORT char const* sspPluginsBuildInfo()
{
    return gBuildInfo;
}
