//! Room kept on the state disk for the operations that free space. When the
//! disk is full, every record save fails, and stop and destroy begin with a
//! save (the phase before the side effect): without help, a full disk could
//! not be emptied through the agent. So the agent keeps a reserve file of
//! [`RESERVE_BYTES`] in the state directory and gives it up to save the
//! record of a stop or a destroy when the disk is full; it is made again
//! once there is room.

use std::io::Write;
use std::path::Path;

/// Enough for hundreds of record saves.
pub const RESERVE_BYTES: usize = 1 << 20;

/// Make the reserve file if it is missing (best effort: a disk too full for
/// it is reported by the caller's next save anyway). Real blocks are
/// written (zeros would be holes on some filesystems only if seeked over).
pub fn ensure(path: &Path) -> std::io::Result<()> {
    if path.metadata().map(|m| m.len() as usize).ok() == Some(RESERVE_BYTES) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        // Bytes that do not compress, so a compressing filesystem keeps
        // the whole reserve.
        let mut block = vec![0u8; 64 << 10];
        let mut x: u32 = 0x9e37_79b9;
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for _ in 0..RESERVE_BYTES / block.len() {
            f.write_all(&block)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Give the reserve up; true when there was one.
pub fn release(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// Whether an error is the disk being full (or over quota).
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_once_and_released() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("reserve");
        ensure(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len() as usize, RESERVE_BYTES);
        ensure(&p).unwrap();
        assert!(release(&p));
        assert!(!p.exists());
        assert!(!release(&p));
    }
}
