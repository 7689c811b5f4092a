//! Runs the kernels on an OpenCL device: PoCL's CPU device in CI, any OpenCL GPU elsewhere.
//! libOpenCL is loaded at run time, so building needs no OpenCL package.
//!
//! Each method copies its inputs to device buffers, launches one kernel with the launch
//! geometry the CUDA backend uses (work-groups of [`BLOCK`] for row kernels), and reads the
//! result back: built for checking kernels, not for speed. Methods are generic over the
//! activation storage type ([`Activation`]: `f32`, or `half::f16` for the `_f16` kernels).

use std::ffi::c_void;
use std::ptr;

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{CL_DEVICE_TYPE_ALL, Device, get_all_devices};
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_WRITE, ClMem};
use opencl3::program::Program;
use opencl3::types::{CL_BLOCKING, cl_mem};

use crate::{Activation, BLOCK, program_source};

/// Why the kernels could not run.
#[derive(Debug, thiserror::Error)]
pub enum OpenClError {
    #[error("no OpenCL device (install an ICD such as Debian pocl-opencl-icd): {0}")]
    NoDevice(String),
    #[error("building the kernels for {device}: {log}")]
    Build { device: String, log: String },
    #[error("OpenCL {what}: {message}")]
    Call { what: &'static str, message: String },
}

fn call(what: &'static str) -> impl Fn(opencl3::error_codes::ClError) -> OpenClError {
    move |e| OpenClError::Call {
        what,
        message: e.to_string(),
    }
}

/// The kernels built for one OpenCL device.
pub struct Runner {
    context: Context,
    queue: CommandQueue,
    program: Program,
    device_name: String,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("device", &self.device_name)
            .finish()
    }
}

/// A kernel argument: a device buffer (any element type) or a scalar.
enum Arg {
    Mem(cl_mem),
    Int(i32),
    Float(f32),
}

fn mem<T>(buffer: &Buffer<T>) -> Arg {
    Arg::Mem(buffer.get())
}

impl Runner {
    /// Builds every kernel for the first OpenCL device (PoCL's CPU device on a machine
    /// without a GPU).
    pub fn new() -> Result<Self, OpenClError> {
        // The ICD loader's first platform query is not safe to run from several threads at
        // once (a racing caller can see no device): discover devices one caller at a time.
        static DISCOVERY: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = DISCOVERY.lock().unwrap_or_else(|p| p.into_inner());
        let ids = get_all_devices(CL_DEVICE_TYPE_ALL)
            .map_err(|e| OpenClError::NoDevice(e.to_string()))?;
        let id = *ids
            .first()
            .ok_or_else(|| OpenClError::NoDevice("no device listed".into()))?;
        let device = Device::new(id);
        let device_name = device.name().unwrap_or_else(|_| "unknown".into());
        let context = Context::from_device(&device).map_err(call("context"))?;
        #[allow(deprecated, reason = "OpenCL 1.2 devices need the 1.2 call")]
        let queue = CommandQueue::create_default(&context, 0).map_err(call("queue"))?;
        let program =
            Program::create_and_build_from_source(&context, &program_source(), "-cl-std=CL1.2")
                .map_err(|log| OpenClError::Build {
                    device: device_name.clone(),
                    log,
                })?;
        Ok(Self {
            context,
            queue,
            program,
            device_name,
        })
    }

    /// The device the kernels run on.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    fn buffer<T: Copy>(&self, data: &[T]) -> Result<Buffer<T>, OpenClError> {
        let count = data.len().max(1);
        // SAFETY: a fresh buffer of `count` elements, written before any kernel reads it.
        let mut buffer = unsafe {
            Buffer::<T>::create(
                &self.context,
                CL_MEM_READ_WRITE,
                count,
                ptr::null_mut::<c_void>(),
            )
        }
        .map_err(call("create buffer"))?;
        if !data.is_empty() {
            // SAFETY: `data` outlives the blocking write.
            unsafe {
                self.queue
                    .enqueue_write_buffer(&mut buffer, CL_BLOCKING, 0, data, &[])
            }
            .map_err(call("write buffer"))?;
        }
        Ok(buffer)
    }

    fn read<T: Copy + Default>(
        &self,
        buffer: &Buffer<T>,
        len: usize,
    ) -> Result<Vec<T>, OpenClError> {
        let mut out = vec![T::default(); len];
        if len > 0 {
            // SAFETY: `out` holds `len` elements and the read blocks until it is filled.
            unsafe {
                self.queue
                    .enqueue_read_buffer(buffer, CL_BLOCKING, 0, &mut out, &[])
            }
            .map_err(call("read buffer"))?;
        }
        Ok(out)
    }

    /// Launches `name` (with the precision suffix of `T`) over `global` work-items in groups
    /// of `local` and waits.
    fn launch<T: Activation>(
        &self,
        name: &str,
        args: &[Arg],
        global: &[usize],
        local: Option<&[usize]>,
    ) -> Result<(), OpenClError> {
        let name = format!("{name}{}", T::KERNEL_SUFFIX);
        let kernel = Kernel::create(&self.program, &name).map_err(|e| OpenClError::Call {
            what: "kernel",
            message: format!("{name}: {e}"),
        })?;
        let mut exec = ExecuteKernel::new(&kernel);
        for a in args {
            // SAFETY: every argument matches the kernel's parameter at its position (the
            // methods below follow the kernels' signatures).
            unsafe {
                match a {
                    Arg::Mem(m) => exec.set_arg(m),
                    Arg::Int(v) => exec.set_arg(v),
                    Arg::Float(v) => exec.set_arg(v),
                };
            }
        }
        exec.set_global_work_sizes(global);
        if let Some(l) = local {
            exec.set_local_work_sizes(l);
        }
        // SAFETY: buffers live until `wait` returns.
        let event = unsafe { exec.enqueue_nd_range(&self.queue) }.map_err(call("launch"))?;
        event.wait().map_err(call("wait"))?;
        Ok(())
    }

    /// `embed_layernorm`: one row per token of `ids`.
    #[allow(clippy::too_many_arguments)]
    pub fn embed_layernorm<T: Activation>(
        &self,
        ids: &[i32],
        positions: &[i32],
        types: &[i32],
        word: &[T],
        position: &[T],
        token_type: &[T],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> Result<Vec<T>, OpenClError> {
        let hidden = gamma.len();
        let tokens = ids.len();
        let out = self.buffer(&vec![T::default(); tokens * hidden])?;
        self.launch::<T>(
            "embed_layernorm",
            &[
                mem(&self.buffer(ids)?),
                mem(&self.buffer(positions)?),
                mem(&self.buffer(types)?),
                mem(&self.buffer(word)?),
                mem(&self.buffer(position)?),
                mem(&self.buffer(token_type)?),
                mem(&self.buffer(gamma)?),
                mem(&self.buffer(beta)?),
                mem(&out),
                Arg::Int(hidden as i32),
                Arg::Float(eps),
            ],
            &[tokens * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&out, tokens * hidden)
    }

    /// An element-wise kernel over rows of `bias.len()` columns: `(x, bias, n, cols)`.
    fn per_element<T: Activation>(
        &self,
        name: &str,
        x: &[T],
        bias: &[f32],
    ) -> Result<Vec<T>, OpenClError> {
        let xb = self.buffer(x)?;
        let n = x.len();
        self.launch::<T>(
            name,
            &[
                mem(&xb),
                mem(&self.buffer(bias)?),
                Arg::Int(n as i32),
                Arg::Int(bias.len() as i32),
            ],
            &[n.div_ceil(BLOCK) * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&xb, n)
    }

    /// `bias_gelu` on rows of `bias.len()` columns.
    pub fn bias_gelu<T: Activation>(&self, x: &[T], bias: &[f32]) -> Result<Vec<T>, OpenClError> {
        self.per_element("bias_gelu", x, bias)
    }

    /// `add_bias` on rows of `bias.len()` columns.
    pub fn add_bias<T: Activation>(&self, x: &[T], bias: &[f32]) -> Result<Vec<T>, OpenClError> {
        self.per_element("add_bias", x, bias)
    }

    /// `masked_softmax` on scores `[batch, heads, seq, seq]`; `lengths[b]` keys are real.
    pub fn masked_softmax<T: Activation>(
        &self,
        scores: &[T],
        lengths: &[i32],
        heads: usize,
        seq: usize,
        scale: f32,
    ) -> Result<Vec<T>, OpenClError> {
        let sb = self.buffer(scores)?;
        let rows = scores.len() / seq;
        self.launch::<T>(
            "masked_softmax",
            &[
                mem(&sb),
                mem(&self.buffer(lengths)?),
                Arg::Int(heads as i32),
                Arg::Int(seq as i32),
                Arg::Float(scale),
            ],
            &[rows * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&sb, scores.len())
    }

    /// `residual_layernorm`: `LN(x + y + bias)` per row.
    pub fn residual_layernorm<T: Activation>(
        &self,
        x: &[T],
        y: &[T],
        bias: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> Result<Vec<T>, OpenClError> {
        let hidden = gamma.len();
        let xb = self.buffer(x)?;
        self.launch::<T>(
            "residual_layernorm",
            &[
                mem(&xb),
                mem(&self.buffer(y)?),
                mem(&self.buffer(bias)?),
                mem(&self.buffer(gamma)?),
                mem(&self.buffer(beta)?),
                Arg::Int(hidden as i32),
                Arg::Float(eps),
            ],
            &[(x.len() / hidden) * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&xb, x.len())
    }

    /// `pool_normalize` on states `[batch, seq, hidden]`; the pooled vectors are fp32.
    pub fn pool_normalize<T: Activation>(
        &self,
        states: &[T],
        lengths: &[i32],
        seq: usize,
        hidden: usize,
        cls: bool,
        normalize: bool,
    ) -> Result<Vec<f32>, OpenClError> {
        let batch = lengths.len();
        let out = self.buffer(&vec![0f32; batch * hidden])?;
        self.launch::<T>(
            "pool_normalize",
            &[
                mem(&self.buffer(states)?),
                mem(&self.buffer(lengths)?),
                mem(&out),
                Arg::Int(seq as i32),
                Arg::Int(hidden as i32),
                Arg::Int(i32::from(cls)),
                Arg::Int(i32::from(normalize)),
            ],
            &[batch * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&out, batch * hidden)
    }

    /// `gemm_nt`: `a [m, k] * b [n, k]^T (+ bias)`, accumulated in fp32.
    pub fn gemm_nt<T: Activation>(
        &self,
        a: &[T],
        b: &[T],
        bias: Option<&[f32]>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<Vec<T>, OpenClError> {
        let out = self.buffer(&vec![T::default(); m * n])?;
        self.launch::<T>(
            "gemm_nt",
            &[
                mem(&self.buffer(a)?),
                mem(&self.buffer(b)?),
                mem(&self.buffer(bias.unwrap_or(&[0.0]))?),
                mem(&out),
                Arg::Int(m as i32),
                Arg::Int(n as i32),
                Arg::Int(k as i32),
                Arg::Int(i32::from(bias.is_some())),
            ],
            &[n.div_ceil(16) * 16, m.div_ceil(16) * 16],
            Some(&[16, 16]),
        )?;
        self.read(&out, m * n)
    }
}
