//! A byte ring whose words live on the heap, for unit tests and loom
//! models: the data area is one atomic word per 8 bytes (headers), and
//! payloads go wherever the test keeps them.

use super::StreamWords;
use crate::primitive::AtomicU64;

pub(crate) struct HeapStream {
    pub tail: AtomicU64,
    pub head: AtomicU64,
    pub words: Vec<AtomicU64>,
}

impl HeapStream {
    /// A ring of `size` data bytes (a multiple of 8, at least 16).
    pub(crate) fn new(size: usize) -> Self {
        assert!(size % 8 == 0 && size >= 16);
        let ring = HeapStream {
            tail: AtomicU64::new(0),
            head: AtomicU64::new(0),
            words: (0..size / 8).map(|_| AtomicU64::new(0)).collect(),
        };
        super::init(&ring);
        ring
    }
}

impl StreamWords for HeapStream {
    fn size(&self) -> u64 {
        self.words.len() as u64 * 8
    }
    fn tail(&self) -> &AtomicU64 {
        &self.tail
    }
    fn head(&self) -> &AtomicU64 {
        &self.head
    }
    fn header(&self, offset: u64) -> &AtomicU64 {
        &self.words[(offset / 8) as usize]
    }
}
