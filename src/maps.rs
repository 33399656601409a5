//! Hash map housekeeping shared by the v1 and v2 registries.

use std::collections::HashMap;

/// A hash map keeps the capacity of its busiest moment, so after a burst of tunnels closes the
/// table would stay sized for the burst (about 1.3 MB after 9,000 tunnels). Halving it once it
/// is a quarter full gives that back; each shrink rehashes a quarter of the entries the map grew
/// to hold, so the cost stays constant per removal.
pub(crate) fn shrink_when_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    const MIN_CAPACITY: usize = 64;
    if map.capacity() > MIN_CAPACITY && map.len() < map.capacity() / 4 {
        map.shrink_to((map.len() * 2).max(MIN_CAPACITY));
    }
}
