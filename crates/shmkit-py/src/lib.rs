//! The native part of the `shmkit` Python package (`shmkit._shmkit`):
//! shmkit's channels, boards, broadcasts, shared memory objects, robust
//! mutexes and semaphores, with the GIL released during every wait.
//!
//! The Python package (`python/shmkit`) adds the exception classes, the
//! numpy record descriptions, `SharedMemory` and the typed stubs.

mod board;
mod broadcast;
mod bytes_like;
mod channel;
mod errors;
mod memory;
mod record;
mod sync;
mod view;
mod wait;

use pyo3::prelude::*;

#[pymodule]
fn _shmkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<channel::NativeChannel>()?;
    m.add_class::<channel::Sender>()?;
    m.add_class::<channel::Receiver>()?;
    m.add_class::<view::RecordView>()?;
    m.add_class::<view::Lease>()?;
    m.add_class::<board::NativeBoard>()?;
    m.add_class::<broadcast::NativeBroadcast>()?;
    m.add_class::<broadcast::Publisher>()?;
    m.add_class::<broadcast::Subscriber>()?;
    m.add_class::<memory::ShmObject>()?;
    m.add_class::<memory::Mapping>()?;
    m.add_class::<sync::Mutex>()?;
    m.add_class::<sync::MutexGuard>()?;
    m.add_class::<sync::Semaphore>()?;
    Ok(())
}
