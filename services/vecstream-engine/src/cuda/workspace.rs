//! The [`Workspace`]'s buffers: device memory grown to the largest batch seen, page-locked
//! host memory for the token upload and the vector download.

use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm};
use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DeviceRepr, PinnedHostSlice, ValidAsZeroBits,
    sys::CU_MEMHOSTALLOC_WRITECOMBINED,
};

use super::{DeviceActivation, DeviceModel, Workspace, cuda_err};
use crate::EngineError;

/// `buf` with room for `need` elements: replaced by a larger one only when too small.
fn grown<T: DeviceRepr + ValidAsZeroBits>(
    stream: &Arc<CudaStream>,
    buf: &mut CudaSlice<T>,
    need: usize,
) -> Result<(), EngineError> {
    if buf.len() < need {
        *buf = stream
            .alloc_zeros::<T>(need)
            .map_err(|e| cuda_err("allocating the workspace", e))?;
    }
    Ok(())
}

/// Page-locked host memory for `len` elements. Write-combined for buffers the host only
/// writes (uploads); plain page-locked for ones it reads (downloads), which write-combining
/// would make slow to read.
fn pinned<T: DeviceRepr>(
    ctx: &Arc<CudaContext>,
    len: usize,
    host_reads: bool,
) -> Result<PinnedHostSlice<T>, EngineError> {
    let flags = if host_reads {
        0
    } else {
        CU_MEMHOSTALLOC_WRITECOMBINED
    };
    // SAFETY: the memory is written (by the host, or by a device copy) before it is read.
    unsafe { ctx.alloc_pinned_with_flags::<T>(len.max(1), flags) }
        .map_err(|e| cuda_err("allocating page-locked memory", e))
}

fn grown_pinned<T: DeviceRepr>(
    ctx: &Arc<CudaContext>,
    buf: &mut PinnedHostSlice<T>,
    need: usize,
    host_reads: bool,
) -> Result<(), EngineError> {
    if buf.len() < need {
        *buf = pinned(ctx, need, host_reads)?;
    }
    Ok(())
}

impl<T: DeviceActivation> Workspace<T>
where
    CudaBlas: Gemm<T>,
{
    /// Buffers for one sequence of the model's maximum length (the usual first batch is
    /// larger, and grows them once).
    pub(super) fn new(model: &DeviceModel<T>, max_seq: usize) -> Result<Self, EngineError> {
        let s = &model.stream;
        let z = |n: usize| {
            s.alloc_zeros::<T>(n.max(1))
                .map_err(|e| cuda_err("allocating the workspace", e))
        };
        let (h, rows) = (model.hidden, max_seq);
        let ctx = s.context();
        Ok(Self {
            tokens: s
                .alloc_zeros::<i32>(3 * rows + 1)
                .map_err(|e| cuda_err("allocating the workspace", e))?,
            host_tokens: pinned(ctx, 3 * rows + 1, false)?,
            x: z(rows * h)?,
            q: z(rows * h)?,
            k: z(rows * h)?,
            v: z(rows * h)?,
            context: z(rows * h)?,
            projected: z(rows * h)?,
            up: z(rows * model.inter)?,
            scores: z(model.heads * rows * rows)?,
            out: s
                .alloc_zeros::<f32>(h)
                .map_err(|e| cuda_err("allocating the workspace", e))?,
            host_out: pinned(ctx, h, true)?,
        })
    }

    /// Room for `n` sequences padded to `seq` tokens.
    pub(super) fn fit(
        &mut self,
        model: &DeviceModel<T>,
        n: usize,
        seq: usize,
    ) -> Result<(), EngineError> {
        let s = &model.stream;
        let (h, rows) = (model.hidden, n * seq);
        grown(s, &mut self.tokens, 3 * rows + n)?;
        grown_pinned(s.context(), &mut self.host_tokens, 3 * rows + n, false)?;
        for buf in [
            &mut self.x,
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.context,
            &mut self.projected,
        ] {
            grown(s, buf, rows * h)?;
        }
        grown(s, &mut self.up, rows * model.inter)?;
        grown(s, &mut self.scores, n * model.heads * seq * seq)?;
        grown(s, &mut self.out, n * h)?;
        grown_pinned(s.context(), &mut self.host_out, n * h, true)
    }
}
