//! The stable hash of names: check offsets (`schedule`) and shards (`config`) both use it.
//!
//! A leaf: it imports nothing from the crate.

/// A stable 64-bit hash of a check name (FNV-1a): the same on every run, host and version,
/// so offsets and shards do not move on restart.
pub fn stable_hash(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
