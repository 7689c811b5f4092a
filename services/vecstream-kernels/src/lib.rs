//! The engine's GPU kernels: written once in `kernels/` in a portable dialect
//! (`kernels/portable.h` maps the CUDA and OpenCL C spellings), compiled with NVRTC for
//! CUDA and by the OpenCL driver elsewhere. [`opencl::Runner`] runs every kernel on an
//! OpenCL device (PoCL on the CPU in CI) so tests compare each one with the Rust CPU
//! reference.

// The OpenCL API is FFI: every call that takes raw buffers is `unsafe`, each with its
// reason stated where it is made.
#[allow(unsafe_code)]
pub mod opencl;

/// The portable header, prepended to every source.
pub const PORTABLE_HEADER: &str = include_str!("../../../kernels/portable.h");

/// Kernel sources: `(file, source)`.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "embed_layernorm.k",
        include_str!("../../../kernels/embed_layernorm.k"),
    ),
    ("bias_gelu.k", include_str!("../../../kernels/bias_gelu.k")),
    (
        "masked_softmax.k",
        include_str!("../../../kernels/masked_softmax.k"),
    ),
    (
        "residual_layernorm.k",
        include_str!("../../../kernels/residual_layernorm.k"),
    ),
    (
        "pool_normalize.k",
        include_str!("../../../kernels/pool_normalize.k"),
    ),
    ("gemm.k", include_str!("../../../kernels/gemm.k")),
];

/// Entry points, as both dialects name them.
pub const KERNEL_NAMES: &[&str] = &[
    "embed_layernorm",
    "bias_gelu",
    "bias_gelu_f16",
    "add_bias",
    "masked_softmax",
    "residual_layernorm",
    "pool_normalize",
    "gemm_nt",
];

/// Work-group (block) size of the row kernels (`VS_BLOCK` in the header).
pub const BLOCK: usize = 128;

/// The whole program: the header, then every kernel, each preceded by a `#line` marker so
/// compiler messages name the kernel file.
pub fn program_source() -> String {
    let mut src = String::from(PORTABLE_HEADER);
    for (file, body) in SOURCES {
        src.push_str(&format!("\n#line 1 \"{file}\"\n"));
        src.push_str(body);
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_is_in_the_program() {
        let src = program_source();
        for name in KERNEL_NAMES {
            assert!(
                src.contains(&format!("VS_KERNEL void {name}(")),
                "{name} missing"
            );
        }
        assert!(src.contains(&format!("#define VS_BLOCK {BLOCK}")));
    }
}
