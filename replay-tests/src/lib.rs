//! Shared helpers for retrace's cross-crate tests (the tests themselves live
//! in `tests/`).

pub mod faulty;
pub mod fuzzing;
pub mod workflows;
pub mod world;

pub mod crash {
    //! What the journal crash child writes, so the test can check it.
    use retrace_journal::StreamId;

    /// The id of crash-test execution `n`.
    pub fn execution(n: u64) -> StreamId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&n.to_be_bytes());
        bytes[8] = 0xc7;
        StreamId::from_bytes(bytes)
    }

    /// The payload of event `seq` of crash-test execution `n`.
    pub fn payload(n: u64, seq: u64) -> Vec<u8> {
        format!("execution {n} event {seq}").into_bytes()
    }
}

pub mod rng {
    //! A tiny seeded generator, so a failing run can be repeated from the seed
    //! it prints.

    #[derive(Debug, Clone)]
    pub struct SplitMix(u64);

    impl SplitMix {
        pub fn new(seed: u64) -> Self {
            SplitMix(seed)
        }

        /// A seed from the environment variable `name`, else from the clock.
        pub fn seed_from_env(name: &str) -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0x5eed, |d| d.as_nanos() as u64)
                })
        }

        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        /// Uniform in `lo..hi` (`hi > lo`).
        pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.next_u64() % (hi - lo)
        }
    }
}
