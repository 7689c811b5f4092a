//! Runs the kernels on an OpenCL device: PoCL's CPU device in CI, any OpenCL GPU elsewhere.
//! libOpenCL is loaded at run time, so building needs no OpenCL package.
//!
//! Each method copies its inputs to device buffers, launches one kernel with the launch
//! geometry the CUDA backend uses (work-groups of [`BLOCK`] for row kernels), and reads the
//! result back: built for checking kernels, not for speed.

use std::ffi::c_void;
use std::ptr;

use opencl3::command_queue::CommandQueue;
use opencl3::context::Context;
use opencl3::device::{CL_DEVICE_TYPE_ALL, Device, get_all_devices};
use opencl3::kernel::{ExecuteKernel, Kernel};
use opencl3::memory::{Buffer, CL_MEM_READ_WRITE};
use opencl3::program::Program;
use opencl3::types::CL_BLOCKING;

use crate::{BLOCK, program_source};

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

/// A kernel argument: a device buffer or a scalar.
enum Arg<'a> {
    F32(&'a Buffer<f32>),
    I32(&'a Buffer<i32>),
    U16(&'a Buffer<u16>),
    Int(i32),
    Float(f32),
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

    /// Launches `name` over `global` work-items in groups of `local` and waits.
    fn launch(
        &self,
        name: &'static str,
        args: &[Arg<'_>],
        global: &[usize],
        local: Option<&[usize]>,
    ) -> Result<(), OpenClError> {
        let kernel = Kernel::create(&self.program, name).map_err(call("kernel"))?;
        let mut exec = ExecuteKernel::new(&kernel);
        for a in args {
            // SAFETY: every argument matches the kernel's parameter at its position (the
            // methods below follow the kernels' signatures).
            unsafe {
                match a {
                    Arg::F32(b) => exec.set_arg(*b),
                    Arg::I32(b) => exec.set_arg(*b),
                    Arg::U16(b) => exec.set_arg(*b),
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
        let event = unsafe { exec.enqueue_nd_range(&self.queue) }.map_err(call(name))?;
        event.wait().map_err(call(name))?;
        Ok(())
    }

    /// `embed_layernorm`: one row per token of `ids`.
    #[allow(clippy::too_many_arguments)]
    pub fn embed_layernorm(
        &self,
        ids: &[i32],
        positions: &[i32],
        types: &[i32],
        word: &[f32],
        position: &[f32],
        token_type: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> Result<Vec<f32>, OpenClError> {
        let hidden = gamma.len();
        let tokens = ids.len();
        let bufs = (
            self.buffer(ids)?,
            self.buffer(positions)?,
            self.buffer(types)?,
            self.buffer(word)?,
            self.buffer(position)?,
            self.buffer(token_type)?,
            self.buffer(gamma)?,
            self.buffer(beta)?,
            self.buffer(&vec![0f32; tokens * hidden])?,
        );
        self.launch(
            "embed_layernorm",
            &[
                Arg::I32(&bufs.0),
                Arg::I32(&bufs.1),
                Arg::I32(&bufs.2),
                Arg::F32(&bufs.3),
                Arg::F32(&bufs.4),
                Arg::F32(&bufs.5),
                Arg::F32(&bufs.6),
                Arg::F32(&bufs.7),
                Arg::F32(&bufs.8),
                Arg::Int(hidden as i32),
                Arg::Float(eps),
            ],
            &[tokens * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&bufs.8, tokens * hidden)
    }

    /// An element-wise kernel over rows of `bias.len()` columns: `(x, bias, n, cols)`.
    fn per_element<T: Copy + Default>(
        &self,
        name: &'static str,
        x: &[T],
        bias: &[f32],
        arg: fn(&Buffer<T>) -> Arg<'_>,
    ) -> Result<Vec<T>, OpenClError> {
        let (xb, bb) = (self.buffer(x)?, self.buffer(bias)?);
        let n = x.len();
        self.launch(
            name,
            &[
                arg(&xb),
                Arg::F32(&bb),
                Arg::Int(n as i32),
                Arg::Int(bias.len() as i32),
            ],
            &[n.div_ceil(BLOCK) * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&xb, n)
    }

    /// `bias_gelu` on rows of `bias.len()` columns.
    pub fn bias_gelu(&self, x: &[f32], bias: &[f32]) -> Result<Vec<f32>, OpenClError> {
        self.per_element("bias_gelu", x, bias, |b| Arg::F32(b))
    }

    /// `add_bias` on rows of `bias.len()` columns.
    pub fn add_bias(&self, x: &[f32], bias: &[f32]) -> Result<Vec<f32>, OpenClError> {
        self.per_element("add_bias", x, bias, |b| Arg::F32(b))
    }

    /// `bias_gelu_f16`: `x` as IEEE half bits in and out.
    pub fn bias_gelu_f16(&self, x: &[u16], bias: &[f32]) -> Result<Vec<u16>, OpenClError> {
        self.per_element("bias_gelu_f16", x, bias, |b| Arg::U16(b))
    }

    /// `masked_softmax` on scores `[batch, heads, seq, seq]`; `lengths[b]` keys are real.
    pub fn masked_softmax(
        &self,
        scores: &[f32],
        lengths: &[i32],
        heads: usize,
        seq: usize,
        scale: f32,
    ) -> Result<Vec<f32>, OpenClError> {
        let (sb, lb) = (self.buffer(scores)?, self.buffer(lengths)?);
        let rows = scores.len() / seq;
        self.launch(
            "masked_softmax",
            &[
                Arg::F32(&sb),
                Arg::I32(&lb),
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
    pub fn residual_layernorm(
        &self,
        x: &[f32],
        y: &[f32],
        bias: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> Result<Vec<f32>, OpenClError> {
        let hidden = gamma.len();
        let bufs = (
            self.buffer(x)?,
            self.buffer(y)?,
            self.buffer(bias)?,
            self.buffer(gamma)?,
            self.buffer(beta)?,
        );
        self.launch(
            "residual_layernorm",
            &[
                Arg::F32(&bufs.0),
                Arg::F32(&bufs.1),
                Arg::F32(&bufs.2),
                Arg::F32(&bufs.3),
                Arg::F32(&bufs.4),
                Arg::Int(hidden as i32),
                Arg::Float(eps),
            ],
            &[(x.len() / hidden) * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&bufs.0, x.len())
    }

    /// `pool_normalize` on states `[batch, seq, hidden]`.
    pub fn pool_normalize(
        &self,
        states: &[f32],
        lengths: &[i32],
        seq: usize,
        hidden: usize,
        cls: bool,
        normalize: bool,
    ) -> Result<Vec<f32>, OpenClError> {
        let batch = lengths.len();
        let bufs = (
            self.buffer(states)?,
            self.buffer(lengths)?,
            self.buffer(&vec![0f32; batch * hidden])?,
        );
        self.launch(
            "pool_normalize",
            &[
                Arg::F32(&bufs.0),
                Arg::I32(&bufs.1),
                Arg::F32(&bufs.2),
                Arg::Int(seq as i32),
                Arg::Int(hidden as i32),
                Arg::Int(i32::from(cls)),
                Arg::Int(i32::from(normalize)),
            ],
            &[batch * BLOCK],
            Some(&[BLOCK]),
        )?;
        self.read(&bufs.2, batch * hidden)
    }

    /// `gemm_nt`: `a [m, k] * b [n, k]^T (+ bias)`.
    pub fn gemm_nt(
        &self,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<Vec<f32>, OpenClError> {
        let bufs = (
            self.buffer(a)?,
            self.buffer(b)?,
            self.buffer(bias.unwrap_or(&[0.0]))?,
            self.buffer(&vec![0f32; m * n])?,
        );
        self.launch(
            "gemm_nt",
            &[
                Arg::F32(&bufs.0),
                Arg::F32(&bufs.1),
                Arg::F32(&bufs.2),
                Arg::F32(&bufs.3),
                Arg::Int(m as i32),
                Arg::Int(n as i32),
                Arg::Int(k as i32),
                Arg::Int(i32::from(bias.is_some())),
            ],
            &[n.div_ceil(16) * 16, m.div_ceil(16) * 16],
            Some(&[16, 16]),
        )?;
        self.read(&bufs.3, m * n)
    }
}
