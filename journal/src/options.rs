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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durable: true,
            max_group_events: 16 * 1024,
            live_buffer: 16 * 1024,
        }
    }
}
