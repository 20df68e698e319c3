# The CUDA backend. Included by the top-level CMakeLists.txt once check_language(CUDA) has found a compiler; where
# no CUDA toolkit is installed, tools/install_cuda.sh provides one from PyPI wheels:
#   cmake -DCMAKE_CUDA_COMPILER=<prefix>/bin/nvcc -DCUDAToolkit_ROOT=<prefix> [-DFQ_CUTLASS_DIR=<prefix>/cutlass]
#
# Builds the static library fq_cuda (kernels + host-side backend), which the top level links into libflatquant and
# fq_tests, and defines FQ_HAVE_CUDA=1 on fq_core so that every C++ source can #ifdef on it.
#
# Code for: sm_80 (A100) and sm_86 (RTX 3090) SASS; compute_86 PTX, which the driver JIT-compiles on any newer GPU
# (so the sm_86 path runs, for correctness only, on an H100); sm_90a SASS (H100: wgmma, TMA and setmaxnreg exist
# only for the 'a' target). -DFQ_CUDA_GENCODE=... narrows this, e.g. to sm_90a alone for a quick build on the GPU.
#
# The runtime is linked statically and nothing links libcuda: cudart dlopens the driver on first use, so
# libflatquant loads on a machine with neither GPU nor driver and reports "no device" from there.

# nvcc otherwise picks whatever g++ comes first on PATH, which need not be the C++ compiler of the rest.
if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  set(CMAKE_CUDA_HOST_COMPILER "${CMAKE_CXX_COMPILER}")
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "flatquant: CUDA backend with nvcc ${CMAKE_CUDA_COMPILER_VERSION} (${CMAKE_CUDA_COMPILER})")

set(_fq_cuda_gencode_default
  -gencode=arch=compute_80,code=sm_80
  -gencode=arch=compute_86,code=sm_86
  -gencode=arch=compute_86,code=compute_86
  -gencode=arch=compute_90a,code=sm_90a)
set(FQ_CUDA_GENCODE "${_fq_cuda_gencode_default}" CACHE STRING
    "nvcc -gencode flags of the CUDA backend (a ;-separated list)")
option(FQ_CUDA_LINEINFO "Keep source line information in device code (for Nsight Compute)" OFF)

file(GLOB FQ_CUDA_SOURCES CONFIGURE_DEPENDS
  "${CMAKE_CURRENT_LIST_DIR}/*.cu" "${CMAKE_CURRENT_LIST_DIR}/*.cpp")
add_library(fq_cuda STATIC ${FQ_CUDA_SOURCES})
set_target_properties(fq_cuda PROPERTIES
  CUDA_ARCHITECTURES OFF            # FQ_CUDA_GENCODE says it all (CMake before 3.28 cannot spell sm_90a)
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CUDA_EXTENSIONS OFF
  CUDA_SEPARABLE_COMPILATION OFF    # whole-program compilation: no device-link step, g++ links the objects
  CUDA_RUNTIME_LIBRARY None         # CUDA::cudart_static below instead, so it reaches whoever links fq_cuda
  CUDA_VISIBILITY_PRESET hidden
  POSITION_INDEPENDENT_CODE ON)     # it ends up inside libflatquant.so

# Plain host flags the top level adds for every language (the sanitizers) reach g++ through nvcc as they are:
# CMake calls nvcc with -forward-unknown-to-host-compiler.
target_compile_options(fq_cuda PRIVATE
  "$<$<COMPILE_LANGUAGE:CUDA>:${FQ_CUDA_GENCODE}>"
  # Host side of .cu files held to the same warnings as the C++ sources.
  "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>"
  # The per-architecture passes of one file run in parallel (CI has 2 cores and few .cu files).
  "$<$<COMPILE_LANGUAGE:CUDA>:--threads=2>"
  "$<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${FQ_CUDA_LINEINFO}>>:-lineinfo>")

# fq_core is an OBJECT library: linking it here would copy its objects into fq_cuda as well, so take only its
# usage requirements. Its symbols (fq::Error, ...) come from the same final link.
target_include_directories(fq_cuda PRIVATE "$<TARGET_PROPERTY:fq_core,INTERFACE_INCLUDE_DIRECTORIES>")
target_compile_definitions(fq_cuda PRIVATE "$<TARGET_PROPERTY:fq_core,INTERFACE_COMPILE_DEFINITIONS>")
target_link_libraries(fq_cuda PUBLIC CUDA::cudart_static)
# Keep the runtime's own symbols out of libflatquant's dynamic symbol table: another CUDA library in the same
# process (a JVM may load several) then keeps its own runtime.
target_link_options(fq_cuda INTERFACE "LINKER:--exclude-libs,libcudart_static.a")

target_compile_definitions(fq_core PUBLIC FQ_HAVE_CUDA=1)

# CUTLASS headers (include/ and tools/util/include/ of a CUTLASS tree): found beside the toolkit that
# tools/install_cuda.sh lays out, or in its default location; -DFQ_CUTLASS_DIR=... names another tree.
set(_fq_cutlass_guess "")
foreach(_dir "${CUDAToolkit_LIBRARY_ROOT}/cutlass" "$ENV{FQ_CACHE}/cuda-13.0/cutlass"
             "$ENV{HOME}/.cache/flatquant/cuda-13.0/cutlass")
  if(NOT _fq_cutlass_guess AND EXISTS "${_dir}/include/cutlass/cutlass.h")
    set(_fq_cutlass_guess "${_dir}")
  endif()
endforeach()
set(FQ_CUTLASS_DIR "${_fq_cutlass_guess}" CACHE PATH "CUTLASS source tree (with include/ and tools/util/include/)")
if(FQ_CUTLASS_DIR)
  if(NOT EXISTS "${FQ_CUTLASS_DIR}/include/cutlass/cutlass.h")
    message(FATAL_ERROR "FQ_CUTLASS_DIR=${FQ_CUTLASS_DIR} has no include/cutlass/cutlass.h")
  endif()
  message(STATUS "flatquant: CUTLASS from ${FQ_CUTLASS_DIR}")
  target_include_directories(fq_cuda SYSTEM PRIVATE "${FQ_CUTLASS_DIR}/include" "${FQ_CUTLASS_DIR}/tools/util/include")
  target_compile_definitions(fq_cuda PRIVATE FQ_HAVE_CUTLASS=1)
  # CUTLASS calls constexpr host functions from device code (cute's tuple algebra); it documents this flag as
  # required.
  target_compile_options(fq_cuda PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>")
else()
  message(STATUS "flatquant: no CUTLASS headers found (set FQ_CUTLASS_DIR); kernels built on CUTLASS are left out")
endif()
