// SPDX-License-Identifier: Apache-2.0
// Minimal stand-in for the CUDA runtime header, for compiling the host-side plugin tests on a machine without the
// CUDA toolkit: the TensorRT headers only name these two handle types. Never used when CUDA's own headers exist.
#pragma once

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
