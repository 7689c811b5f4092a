/* One spelling for CUDA (NVRTC) and OpenCL C (PoCL and GPUs): the kernels in this folder use
 * only these macros for what differs between the two dialects. Prepended to every kernel
 * source by vecstream-kernels; not #included, so NVRTC needs no include path. */
#ifdef __OPENCL_VERSION__
#define VS_KERNEL __kernel
#define VS_GLOBAL __global
#define VS_SHARED __local
#define VS_BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#define VS_TID ((int)get_local_id(0))
#define VS_BID ((int)get_group_id(0))
#define VS_BID_Y ((int)get_group_id(1))
#define VS_NTHREADS ((int)get_local_size(0))
#define VS_GID ((int)get_global_id(0))
#define VS_GID_Y ((int)get_global_id(1))
#define VS_SQRT(x) sqrt(x)
#define VS_RSQRT(x) rsqrt(x)
#define VS_EXP(x) exp(x)
#define VS_ERF(x) erf(x)
#define VS_FMAX(a, b) fmax(a, b)
#define VS_INF INFINITY
#define VS_HALF half
#define VS_LOAD_HALF(p, i) vload_half((i), (p))
#define VS_STORE_HALF(v, p, i) vstore_half((v), (i), (p))
#else
/* Half precision as raw bits with PTX conversions: NVRTC then needs no cuda_fp16.h. */
__device__ __forceinline__ float vs_h2f(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ unsigned short vs_f2h(float f) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
#define VS_KERNEL extern "C" __global__
#define VS_GLOBAL
#define VS_SHARED __shared__
#define VS_BARRIER() __syncthreads()
#define VS_TID ((int)threadIdx.x)
#define VS_BID ((int)blockIdx.x)
#define VS_BID_Y ((int)blockIdx.y)
#define VS_NTHREADS ((int)blockDim.x)
#define VS_GID ((int)(blockIdx.x * blockDim.x + threadIdx.x))
#define VS_GID_Y ((int)(blockIdx.y * blockDim.y + threadIdx.y))
#define VS_SQRT(x) sqrtf(x)
#define VS_RSQRT(x) rsqrtf(x)
#define VS_EXP(x) expf(x)
#define VS_ERF(x) erff(x)
#define VS_FMAX(a, b) fmaxf(a, b)
#define VS_INF __int_as_float(0x7f800000)
#define VS_HALF unsigned short
#define VS_LOAD_HALF(p, i) vs_h2f((p)[i])
#define VS_STORE_HALF(v, p, i) ((p)[i] = vs_f2h(v))
#endif

/* Work-group (block) size every row kernel is launched with: a power of two. */
#define VS_BLOCK 128

/* Sum of `v` over the work-group; every thread gets the result. `scratch` holds VS_BLOCK. */
#define VS_BLOCK_SUM(scratch, v, out)                                  \
  do {                                                                  \
    scratch[VS_TID] = (v);                                              \
    VS_BARRIER();                                                       \
    for (int vs_s = VS_BLOCK / 2; vs_s > 0; vs_s >>= 1) {               \
      if (VS_TID < vs_s) scratch[VS_TID] += scratch[VS_TID + vs_s];     \
      VS_BARRIER();                                                     \
    }                                                                   \
    (out) = scratch[0];                                                 \
    VS_BARRIER();                                                       \
  } while (0)

/* Maximum of `v` over the work-group. */
#define VS_BLOCK_MAX(scratch, v, out)                                               \
  do {                                                                               \
    scratch[VS_TID] = (v);                                                           \
    VS_BARRIER();                                                                    \
    for (int vs_s = VS_BLOCK / 2; vs_s > 0; vs_s >>= 1) {                            \
      if (VS_TID < vs_s) scratch[VS_TID] = VS_FMAX(scratch[VS_TID], scratch[VS_TID + vs_s]); \
      VS_BARRIER();                                                                  \
    }                                                                                \
    (out) = scratch[0];                                                              \
    VS_BARRIER();                                                                    \
  } while (0)
