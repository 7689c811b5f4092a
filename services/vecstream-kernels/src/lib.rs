//! The engine's GPU kernels: written once in `kernels/` in a portable dialect
//! (`kernels/portable.h` maps the CUDA and OpenCL C spellings), compiled with NVRTC for
//! CUDA and by the OpenCL driver elsewhere. [`opencl::Runner`] runs every kernel on an
//! OpenCL device (PoCL on the CPU in CI) so tests compare each one with the Rust CPU
//! reference.

// The OpenCL API is FFI: every call that takes raw buffers is `unsafe`, each with its
// reason stated where it is made.
#[allow(unsafe_code)]
pub mod opencl;

/// The `half` crate whose `f16` is the storage type of the `_f16` kernels.
pub use half;

/// How activations are stored on the device: the kernels exist once per storage type.
pub trait Activation: Copy + Default + Send + Sync + 'static {
    /// Suffix of this precision's kernel names (`VS_NAME` in `kernels/precision_*.h`).
    const KERNEL_SUFFIX: &'static str;
    /// Rounds an fp32 value to this type.
    fn from_f32(v: f32) -> Self;
    /// Widens to fp32.
    fn to_f32(self) -> f32;
}

impl Activation for f32 {
    const KERNEL_SUFFIX: &'static str = "";
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Activation for half::f16 {
    const KERNEL_SUFFIX: &'static str = "_f16";
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

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

/// The precision preludes: each kernel is compiled once after each of them (`VS_NAME(x)` is
/// `x` in fp32 and `x_f16` in fp16).
pub const PRECISIONS: &[(&str, &str)] = &[
    (
        "precision_f32.h",
        include_str!("../../../kernels/precision_f32.h"),
    ),
    (
        "precision_f16.h",
        include_str!("../../../kernels/precision_f16.h"),
    ),
];

/// The kernels, by their fp32 names; each also exists as `<name>_f16` (half activations).
pub const KERNELS: &[&str] = &[
    "embed_layernorm",
    "bias_gelu",
    "add_bias",
    "masked_softmax",
    "residual_layernorm",
    "pool_normalize",
    "gemm_nt",
];

/// Every entry point of the program, both precisions, as both dialects name them.
pub fn entry_points() -> Vec<String> {
    KERNELS
        .iter()
        .flat_map(|k| [k.to_string(), format!("{k}_f16")])
        .collect()
}

/// Work-group (block) size of the row kernels (`VS_BLOCK` in the header).
pub const BLOCK: usize = 128;

/// The whole program: the header, then for each precision its prelude and every kernel, each
/// source preceded by a `#line` marker so compiler messages name the file.
/// `kernels/compile_ptx.py` assembles the same text.
pub fn program_source() -> String {
    let mut src = String::from(PORTABLE_HEADER);
    for (prelude, defines) in PRECISIONS {
        src.push_str(&format!("\n#line 1 \"{prelude}\"\n"));
        src.push_str(defines);
        for (file, body) in SOURCES {
            src.push_str(&format!("\n#line 1 \"{file}\"\n"));
            src.push_str(body);
        }
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_is_in_the_program() {
        let src = program_source();
        for name in KERNELS {
            assert!(
                src.matches(&format!("VS_KERNEL void VS_NAME({name})("))
                    .count()
                    == 2,
                "{name}: not once per precision"
            );
        }
        // Every kernel file is listed (a new file must not be forgotten here).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
        let on_disk = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".k"))
            .count();
        assert_eq!(on_disk, SOURCES.len());
        assert!(src.contains(&format!("#define VS_BLOCK {BLOCK}")));
    }
}
