//! The engine's file primitives, a leaf module (it imports nothing of the crate): the
//! safetensors f32 codecs ([`tensor_f32`], [`f32_le_bytes`], [`f16_to_f32`]) and
//! [`write_atomic`], the one way every vecstream file that must never be half-written
//! (an adapter, a training checkpoint, a fine-tuning embedding table) reaches the disk.

use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::Dtype;

/// A safetensors tensor's values as f32 (stored as F32, F16 or BF16); `None` for other
/// dtypes.
pub fn tensor_f32(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    Some(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        _ => return None,
    })
}

/// `v` as little-endian bytes: the data of an F32 safetensors tensor.
pub fn f32_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// IEEE half → single, exact for every value including subnormals, infinities and NaN.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: value = m * 2^-24.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// The temporary file [`write_atomic`] fills before the rename: `<name>.tmp`, next to
/// `path` (same directory, so the same file system, so the rename is atomic).
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that a reader, or a restart after a crash, sees either the
/// previous file or the whole new one, never a part: the bytes go to a temporary file in
/// the same directory, are flushed to the disk (fsync), and the temporary file is renamed
/// over `path`; the directory is then synced too (best effort), so the rename survives a
/// The bytes of a file written by [`write_atomic`] (a checkpoint, a cached table), or
/// `None` when there is none yet.
pub fn read_if_exists(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A file that is there but malformed (an `InvalidData` I/O error: permanent).
pub fn invalid_data(message: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string())
}

/// power loss.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Not every platform can sync a directory; the file itself is already durable.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000), -0.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn f32_tensors_round_trip() {
        let v = [1.5f32, -0.0, f32::MAX, 3e-39];
        let bytes = f32_le_bytes(&v);
        let view = safetensors::tensor::TensorView::new(Dtype::F32, vec![4], &bytes).unwrap();
        assert_eq!(tensor_f32(&view).unwrap(), v);
        let ints = [0u8; 4];
        let view = safetensors::tensor::TensorView::new(Dtype::U32, vec![1], &ints).unwrap();
        assert!(tensor_f32(&view).is_none());
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("vecstream-tensor-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("table.safetensors");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        // A directory that does not exist: an error, and nothing written.
        assert!(write_atomic(&dir.join("missing/x"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
