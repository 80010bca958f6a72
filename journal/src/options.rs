//! `Options`: how the sled journal is opened.
//!
//! Owns the knobs and their defaults. It must never hold state or reach the
//! store: it is read once, when the journal opens.

/// How a journal is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// Acknowledge appends only after a flush to disk. On unless turned off
    /// (tests and benchmarks that measure everything but the disk).
    pub durable: bool,
    /// Most events one group commit gathers.
    pub max_group_events: usize,
    /// How many live events a subscriber may fall behind before it goes back
    /// to reading the store.
    pub live_buffer: usize,
    /// How many bytes of live events a subscriber may fall behind before it
    /// goes back to reading the store. The live buffer holds each event once
    /// for all subscribers, so this also bounds its memory.
    pub live_buffer_bytes: usize,
    /// After a failed write or flush, how often the writer checks whether
    /// the storage takes writes again (and then resumes).
    pub retry_after_failure: std::time::Duration,
    /// The free space the writer keeps on the store's disk: a group is
    /// refused (nothing written, the journal unavailable) while less is
    /// free, and writes resume once it is free again. So the disk never
    /// fills under the store, which is what sled cannot recover from without
    /// a restart. 0 turns the reserve off.
    pub min_free_bytes: u64,
    /// The sled store's page cache, in bytes (for [`crate::EventLog::open`];
    /// other stores ignore it).
    pub cache_bytes: u64,
}

/// The default [`Options::min_free_bytes`]: 64 MiB.
pub const MIN_FREE_BYTES_DEFAULT: u64 = 64 << 20;

impl Default for Options {
    fn default() -> Self {
        Options {
            durable: true,
            max_group_events: 16 * 1024,
            live_buffer: 16 * 1024,
            live_buffer_bytes: 8 * 1024 * 1024,
            retry_after_failure: std::time::Duration::from_secs(1),
            min_free_bytes: MIN_FREE_BYTES_DEFAULT,
            cache_bytes: crate::store::sled::CACHE_BYTES_DEFAULT,
        }
    }
}
