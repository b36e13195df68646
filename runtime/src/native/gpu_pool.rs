//! The GPU runs' intermediate buffers, kept for the next run instead of going back to the
//! driver. A compiled model allocates and frees every intermediate tensor between its
//! kernel launches; with stream-ordered `cuMemAllocAsync`/`cuMemFreeAsync` that is two
//! driver calls per tensor on the host's critical path (about a quarter of the latency
//! of the int4 decoder fixture, 99 kernels). Repeated runs of one shape need the same
//! sizes again, so a freed buffer is kept under its size and handed out again.
//!
//! Reuse is safe because every kernel of a model runs on its one stream: a buffer freed
//! after the kernel that last reads it is next written by a later kernel on that stream,
//! and kernels that may start early (programmatic dependent launch) write only after
//! waiting for the kernel before them.
//!
//! A size that a whole run did not ask for is given back to the driver at the end of the
//! run, so a model called with changing shapes keeps only the latest run's buffers.

use std::collections::{HashMap, HashSet};

/// Device pointer (`CUdeviceptr`).
pub type DevicePtr = u64;

#[derive(Default)]
pub struct BufferPool {
    /// Free buffers by size in bytes.
    free: HashMap<usize, Vec<DevicePtr>>,
    /// The size of every buffer the pool handed out and has not seen again.
    lent: HashMap<DevicePtr, usize>,
    /// Sizes asked for since the last [`BufferPool::end_run`].
    asked: HashSet<usize>,
}

impl BufferPool {
    /// A free buffer of exactly `size` bytes, if one is kept.
    pub fn take(&mut self, size: usize) -> Option<DevicePtr> {
        self.asked.insert(size);
        let p = self.free.get_mut(&size)?.pop()?;
        self.lent.insert(p, size);
        Some(p)
    }

    /// Records a buffer of `size` bytes just allocated from the driver for a run.
    pub fn lend(&mut self, p: DevicePtr, size: usize) {
        self.asked.insert(size);
        self.lent.insert(p, size);
    }

    /// Takes back a buffer the run frees; false if the pool did not hand it out (the
    /// caller then frees it itself).
    pub fn give_back(&mut self, p: DevicePtr) -> bool {
        match self.lent.remove(&p) {
            Some(size) => {
                self.free.entry(size).or_default().push(p);
                true
            }
            None => false,
        }
    }

    /// Ends a run: the free buffers of sizes the run did not ask for, for the caller to
    /// return to the driver.
    pub fn end_run(&mut self) -> Vec<DevicePtr> {
        let asked = std::mem::take(&mut self.asked);
        let idle: Vec<usize> = self
            .free
            .keys()
            .filter(|s| !asked.contains(s))
            .copied()
            .collect();
        idle.iter()
            .flat_map(|s| self.free.remove(s).unwrap_or_default())
            .collect()
    }

    /// Every buffer the pool holds, free or still lent, for the caller to return to the
    /// driver (when the model is dropped).
    pub fn drain(&mut self) -> Vec<DevicePtr> {
        self.asked.clear();
        let lent = self.lent.drain().map(|(p, _)| p);
        let free = self.free.drain().flat_map(|(_, v)| v);
        lent.chain(free).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_buffer_is_reused_for_the_same_size_only() {
        let mut pool = BufferPool::default();
        assert_eq!(pool.take(64), None);
        pool.lend(0x1000, 64);
        assert!(pool.give_back(0x1000));
        assert_eq!(pool.take(128), None, "sizes must match exactly");
        assert_eq!(pool.take(64), Some(0x1000));
        assert_eq!(pool.take(64), None, "a lent buffer is not lent twice");
        assert!(!pool.give_back(0x2000), "not the pool's buffer");
    }

    #[test]
    fn sizes_a_run_did_not_use_are_released_at_its_end() {
        let mut pool = BufferPool::default();
        pool.lend(0x1000, 64);
        pool.lend(0x2000, 256);
        assert!(pool.give_back(0x1000) && pool.give_back(0x2000));
        assert!(pool.end_run().is_empty(), "the first run asked for both");
        // A second run with a new shape asks for 64 bytes only.
        assert_eq!(pool.take(64), Some(0x1000));
        assert!(pool.give_back(0x1000));
        assert_eq!(pool.end_run(), vec![0x2000]);
        assert_eq!(pool.take(256), None);
        pool.lend(0x3000, 32);
        let mut all = pool.drain();
        all.sort();
        assert_eq!(all, vec![0x1000, 0x3000]);
    }
}
