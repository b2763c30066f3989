//! [`Region`]: one mapping of shared memory, whatever made it.
//!
//! A POSIX object mapped with `mmap` and a System V segment attached with
//! `shmat` are the same thing to everything above them: a base address, a
//! length, and whether writing is allowed. `Region` models that once.
//!
//! # Safety model
//!
//! Another process can change any byte of a region at any moment, so this type
//! never hands out `&[u8]` or `&mut [u8]` over it: such a reference promises
//! the compiler that the bytes do not change behind its back, and that promise
//! would be false. Instead a region offers
//!
//! - copies in and out ([`Region::read_at`], [`Region::write_at`]), checked
//!   against the region's bounds in release builds, and made of relaxed
//!   atomic accesses to the aligned 64-bit words that hold the bytes (as the
//!   board's sequence lock copies), so two threads copying the same bytes
//!   at once through a shared `&Region` is not a data race;
//! - atomics at checked, aligned offsets ([`Region::atomic_u32`],
//!   [`Region::load_u32`]), the right tool for shared state;
//! - raw pointers for zero-copy paths, whose users take on the obligations in
//!   their own `unsafe` code.
//!
//! A read-only region cannot be written through this API: the writing methods
//! return [`ErrorKind::ReadOnly`] instead of faulting.
//!
//! One hazard no library can remove: if another process shrinks a POSIX object
//! below a mapped range, touching the lost pages raises `SIGBUS`. shmkit's own
//! objects are never shrunk while mapped by shmkit; `resize` documents it.

use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::word_copy;

/// How a region gives its memory back when dropped.
#[derive(Debug)]
enum Release {
    /// Nothing to release: an empty region.
    Nothing,
    /// `munmap(addr, len)`: a POSIX mapping or an anonymous one.
    Munmap { addr: NonNull<c_void>, len: usize },
    /// `shmdt(addr)`: a System V attachment.
    Shmdt { addr: NonNull<c_void> },
}

/// A mapped range of shared memory with bounds-checked, copy-based access.
///
/// Dropping a region unmaps (or detaches) it.
#[derive(Debug)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
    writable: bool,
    release: Release,
    object: String,
}

// SAFETY: a Region owns its mapping; all access goes through raw pointers and
// atomics whose callers already cope with concurrent writers (other
// processes), so sharing it between threads adds no new hazard.
unsafe impl Send for Region {}
// SAFETY: see `Send` above; no method hands out references into the
// mapping, and the copying methods (`read_at`, `write_at`, `fill`) access it
// only with atomic word operations (`with_words`), so calls from several
// threads at once do not race.
unsafe impl Sync for Region {}

impl Region {
    /// Wraps a mapping made by `mmap`: the caller's bytes start `skip` bytes
    /// into the `map_len`-byte mapping at `addr`, and are `len` long.
    ///
    /// # Safety
    /// `addr..addr+map_len` must be a live mapping that this region may
    /// `munmap` when dropped, readable, and writable if `writable`;
    /// `skip + len <= map_len`.
    pub(crate) unsafe fn from_mmap(
        addr: NonNull<c_void>,
        map_len: usize,
        skip: usize,
        len: usize,
        writable: bool,
        object: String,
    ) -> Self {
        debug_assert!(skip + len <= map_len);
        // SAFETY: skip < map_len by the caller's contract, so the sum stays in the mapping.
        let base = unsafe { NonNull::new_unchecked(addr.as_ptr().cast::<u8>().add(skip)) };
        Region {
            base,
            len,
            writable,
            release: Release::Munmap { addr, len: map_len },
            object,
        }
    }

    /// Wraps an attachment made by `shmat`.
    ///
    /// # Safety
    /// `addr..addr+len` must be a live System V attachment that this region
    /// may `shmdt` when dropped, readable, and writable if `writable`.
    pub(crate) unsafe fn from_shmat(
        addr: NonNull<c_void>,
        len: usize,
        writable: bool,
        object: String,
    ) -> Self {
        Region {
            base: addr.cast(),
            len,
            writable,
            release: Release::Shmdt { addr },
            object,
        }
    }

    /// A region of no bytes (mapping zero bytes is an error for `mmap`).
    pub(crate) fn empty(writable: bool, object: String) -> Self {
        Region {
            base: NonNull::dangling(),
            len: 0,
            writable,
            release: Release::Nothing,
            object,
        }
    }

    /// Maps `len` bytes of anonymous shared memory (`MAP_SHARED|MAP_ANONYMOUS`).
    ///
    /// The memory is zeroed and shared with children created by `fork` after
    /// this call; it has no name. Useful for tests and for parent/child IPC.
    #[doc(alias = "mmap")]
    pub fn anonymous(len: usize) -> Result<Self> {
        let object = "anonymous memory".to_string();
        if len == 0 {
            return Ok(Self::empty(true, object));
        }
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses
        // cannot overlap any existing Rust object.
        let addr = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )
        }
        .map_err(|e| Error::from(("map", object.as_str(), e)))?;
        let addr = NonNull::new(addr).expect("mmap never returns NULL on success");
        // SAFETY: the mapping is live, readable and writable, len bytes long.
        Ok(unsafe { Self::from_mmap(addr, len, 0, len, true, object) })
    }

    /// The number of bytes in the region.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the safe API allows writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The object the region maps, as named in errors.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The first byte of the region.
    ///
    /// Reading through it races with other processes' writes: copy out with
    /// `ptr::copy_nonoverlapping` or use atomics; never build a reference.
    pub fn as_ptr(&self) -> *const u8 {
        self.base.as_ptr()
    }

    /// The first byte of the region, for writing; fails on a read-only region.
    pub fn as_mut_ptr(&self) -> Result<*mut u8> {
        self.check_writable("write")?;
        Ok(self.base.as_ptr())
    }

    /// Checks that `offset..offset+len` lies inside the region.
    pub fn check_range(&self, op: &'static str, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                op,
                self.object.clone(),
                format!(
                    "{len} bytes at offset {offset} exceed the mapped size of {} bytes",
                    self.len
                ),
            )),
        }
    }

    fn check_writable(&self, op: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::ReadOnly,
                op,
                self.object.clone(),
                "the mapping is read-only",
            ))
        }
    }

    /// Runs `f` on each aligned 64-bit word that holds bytes of
    /// `offset..offset + len` (which must lie inside the region), with the
    /// range of those bytes within the word and within `offset..`.
    ///
    /// Each word is one atomic: copies are made of whole-word atomic loads
    /// and stores (and compare-and-swap for a word the range covers only in
    /// part), never plain or mixed-size accesses.
    fn with_words(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(&AtomicU64, std::ops::Range<usize>, std::ops::Range<usize>),
    ) {
        if len == 0 {
            return; // nothing to touch (an empty region's base is dangling)
        }
        // Addresses for the arithmetic, pointers (with the mapping's
        // provenance) for the accesses.
        let start = self.base.as_ptr() as usize + offset;
        let end = start + len;
        let first = start & !7;
        let mut word = first;
        while word < end {
            let lo = start.max(word);
            let hi = end.min(word + 8);
            // The word's pointer, derived from `base`: it may begin up to 7
            // bytes before it (an aligned word is inside the page).
            let ptr = self
                .base
                .as_ptr()
                .wrapping_add(offset)
                .wrapping_sub(start - first)
                .wrapping_add(word - first);
            // SAFETY: `ptr` is 8-aligned and its word holds at least one
            // byte of the range, which lies in the mapping; mappings are made
            // of whole pages and an aligned word never straddles a page, so
            // all 8 bytes are mapped (bytes outside the range are only
            // loaded, or stored back unchanged by a CAS). AtomicU64 may be
            // shared between threads and processes; the reference ends
            // with `f`.
            let atomic = unsafe { &*ptr.cast::<AtomicU64>() };
            f(atomic, lo - word..hi - word, lo - start..hi - start);
            word += 8;
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the region.
    ///
    /// Bytes that another process writes during the copy may be seen old or
    /// new, word by word (an aligned 8-byte word is never torn): protocols
    /// that need a consistent snapshot put a version or lock around it (see
    /// the channel and board modules). Relaxed: order it with the protocol's
    /// own Acquire load or fence.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range("read", offset, buf.len())?;
        self.with_words(offset, buf.len(), |word, inside, out| {
            // Relaxed: see above. A load: fine on a read-only mapping.
            word_copy::part::load(word, inside, &mut buf[out]);
        });
        Ok(())
    }

    /// Copies `len` bytes starting at `offset` into a new vector.
    pub fn read_vec(&self, offset: usize, len: usize) -> Result<Vec<u8>> {
        self.check_range("read", offset, len)?;
        let mut out = vec![0u8; len];
        self.read_at(offset, &mut out)?;
        Ok(out)
    }

    /// Copies `data` into the region at `offset`.
    ///
    /// Fails, writing nothing, if the region is read-only or the range does
    /// not fit.
    ///
    /// Word by word, as [`read_at`](Region::read_at) reads: a word the range
    /// covers whole is stored, one it covers in part is merged by
    /// compare-and-swap, so bytes next to the range that another thread or
    /// process writes meanwhile are never lost. Relaxed: publish with the
    /// protocol's own Release store.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_writable("write")?;
        self.check_range("write", offset, data.len())?;
        self.with_words(offset, data.len(), |word, inside, from| {
            word_copy::part::store(word, inside, |bytes| {
                bytes.copy_from_slice(&data[from.clone()])
            });
        });
        Ok(())
    }

    /// Sets `len` bytes starting at `offset` to `byte` (word by word, as
    /// [`write_at`](Region::write_at) writes).
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check_writable("write")?;
        self.check_range("write", offset, len)?;
        self.with_words(offset, len, |word, inside, _| {
            word_copy::part::store(word, inside, |bytes| bytes.fill(byte));
        });
        Ok(())
    }

    fn check_aligned(&self, op: &'static str, offset: usize, size: usize) -> Result<()> {
        self.check_range(op, offset, size)?;
        if (self.base.as_ptr() as usize + offset) % size != 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                op,
                self.object.clone(),
                format!("offset {offset} is not aligned to {size} bytes"),
            ));
        }
        Ok(())
    }

    /// The 32-bit atomic at `offset`, which must be 4-byte aligned and in
    /// bounds. Fails on a read-only region, where a store would fault.
    ///
    /// A shared reference to an atomic is sound over memory other processes
    /// write: every access to it is atomic.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
        self.check_writable("access")?;
        self.check_aligned("access", offset, 4)?;
        // SAFETY: in bounds and aligned (checked); AtomicU32 has the size and
        // alignment of u32 and permits concurrent access from anywhere; the
        // reference lives no longer than `self`, which keeps the mapping.
        Ok(unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() })
    }

    /// The 64-bit atomic at `offset` (8-byte aligned, in bounds, writable region).
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check_writable("access")?;
        self.check_aligned("access", offset, 8)?;
        // SAFETY: as in `atomic_u32`, for 8 bytes.
        Ok(unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() })
    }

    /// Atomically loads the `u32` at `offset`; works on read-only regions too.
    pub fn load_u32(&self, offset: usize, order: Ordering) -> Result<u32> {
        self.check_aligned("read", offset, 4)?;
        // SAFETY: in bounds and aligned (checked). An atomic load only reads,
        // so it is sound on a read-only mapping; the temporary reference does
        // not outlive this call.
        Ok(unsafe { (*self.base.as_ptr().add(offset).cast::<AtomicU32>()).load(order) })
    }

    /// Atomically loads the `u64` at `offset`; works on read-only regions too.
    pub fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64> {
        self.check_aligned("read", offset, 8)?;
        // SAFETY: as in `load_u32`, for 8 bytes.
        Ok(unsafe { (*self.base.as_ptr().add(offset).cast::<AtomicU64>()).load(order) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        match self.release {
            Release::Nothing => {}
            Release::Munmap { addr, len } => {
                // SAFETY: this region owns the mapping and nothing borrowed
                // from it outlives `self`. munmap can only fail for arguments
                // we built ourselves; there is nothing useful to do with such
                // an error in a destructor, so it is ignored (as memmap2 does).
                let _ = unsafe { rustix::mm::munmap(addr.as_ptr(), len) };
            }
            Release::Shmdt { addr } => {
                // SAFETY: this region owns the attachment; shmdt fails only
                // for an address that is not an attachment, which cannot be.
                let _ = unsafe { libc::shmdt(addr.as_ptr()) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_in_and_out_with_bounds_checks() {
        let r = Region::anonymous(4096).unwrap();
        r.write_at(10, b"hello").unwrap();
        assert_eq!(r.read_vec(10, 5).unwrap(), b"hello");
        let e = r.write_at(4094, b"abc").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("exceed the mapped size"), "{e}");
        assert!(r.read_vec(usize::MAX, 2).is_err());
        assert!(r.atomic_u32(3).is_err());
        r.atomic_u32(8).unwrap().store(7, Ordering::Relaxed);
        assert_eq!(r.load_u32(8, Ordering::Relaxed).unwrap(), 7);
    }

    /// Issue 15, defect 9: the word-wise copies write exactly the bytes
    /// asked for, at every alignment and length, and read them back.
    #[test]
    fn word_copies_touch_exactly_their_range() {
        let r = Region::anonymous(64).unwrap();
        for offset in 0..20 {
            for len in 0..30 {
                r.fill(0, 64, 0xee).unwrap();
                let data: Vec<u8> = (0..len as u8).map(|i| i + 1).collect();
                r.write_at(offset, &data).unwrap();
                let all = r.read_vec(0, 64).unwrap();
                for (i, &b) in all.iter().enumerate() {
                    let want = if (offset..offset + len).contains(&i) {
                        data[i - offset]
                    } else {
                        0xee
                    };
                    assert_eq!(b, want, "offset {offset} len {len} byte {i}");
                }
                let mut back = vec![0; len];
                r.read_at(offset, &mut back).unwrap();
                assert_eq!(back, data);
            }
        }
    }

    /// Issue 15, defect 9: two threads copying into and out of the same
    /// bytes through one `&Region` (it is `Sync`): every access is an
    /// atomic word, so an aligned 8-byte value is never seen torn, and two
    /// writers of the two halves of one word never lose each other's bytes.
    #[test]
    fn threads_copy_the_same_bytes_without_tearing() {
        let r = Region::anonymous(4096).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for k in 0..20_000u32 {
                    r.write_at(64, &[(k % 251) as u8; 8]).unwrap();
                    r.write_at(128, &[1; 4]).unwrap();
                }
            });
            s.spawn(|| {
                let mut buf = [0u8; 8];
                for _ in 0..20_000 {
                    r.read_at(64, &mut buf).unwrap();
                    assert!(buf.iter().all(|&b| b == buf[0]), "torn: {buf:?}");
                    r.write_at(132, &[2; 4]).unwrap();
                }
            });
        });
        assert_eq!(r.read_vec(128, 8).unwrap(), [1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn empty_region_reads_nothing() {
        let r = Region::anonymous(0).unwrap();
        assert!(r.is_empty());
        assert_eq!(r.read_vec(0, 0).unwrap(), Vec::<u8>::new());
        assert!(r.read_vec(0, 1).is_err());
    }
}
