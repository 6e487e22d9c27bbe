//! A bounded cache of prepared plans keyed by input shape, least recently used out first.
//!
//! Every session that sees many shapes (BERT over sentence lengths, seq2seq over batch shapes, a
//! decoder over cache lengths) keeps at most `capacity` plans, so the GPU memory held by plans stays
//! flat over any sequence of shapes: a plan's buffers are freed when it is evicted and the last
//! run using it ends (plans are handed out as `Arc`s).
//!
//! ```
//! use heedful::graph::PlanCache;
//! let cache: PlanCache<usize, String> = PlanCache::new(2);
//! for len in [1, 2, 1, 3] {
//!     cache.get_or_try_insert(len, || Ok::<_, heedful::Error>(format!("plan {len}")))?;
//! }
//! assert_eq!(cache.len(), 2); // 2 was least recently used when 3 came
//! assert!(cache.contains(&1) && cache.contains(&3));
//! # Ok::<(), heedful::Error>(())
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Plans kept by a session unless it asks for another bound.
pub const DEFAULT_PLAN_CAPACITY: usize = 16;

struct Entries<K, V> {
    /// Key -> (plan, last use tick).
    map: HashMap<K, (Arc<V>, u64)>,
    tick: u64,
}

/// At most `capacity` plans by key; the least recently used goes when a new one is built.
pub struct PlanCache<K, V> {
    capacity: usize,
    entries: Mutex<Entries<K, V>>,
}

impl<K, V> std::fmt::Debug for PlanCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.entries.lock().map(|e| e.map.len()).unwrap_or(0);
        f.debug_struct("PlanCache")
            .field("capacity", &self.capacity)
            .field("held", &held)
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V> PlanCache<K, V> {
    /// An empty cache holding at most `capacity` plans (at least one).
    pub fn new(capacity: usize) -> Self {
        PlanCache {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                tick: 0,
            }),
        }
    }

    /// The most plans kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Plans held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no plan is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a plan for `key` is held (does not count as a use).
    pub fn contains(&self, key: &K) -> bool {
        self.lock().map.contains_key(key)
    }

    /// Drops every plan.
    pub fn clear(&self) {
        self.lock().map.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        // A panic while holding the lock leaves the map consistent (entries are inserted whole).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plan for `key`, built by `build` on a miss (evicting the least recently used plan when
    /// full). The lock is not held while building, so two threads may build the same plan; one
    /// of them is kept.
    pub fn get_or_try_insert<E>(
        &self,
        key: K,
        build: impl FnOnce() -> Result<V, E>,
    ) -> Result<Arc<V>, E> {
        {
            let mut e = self.lock();
            e.tick += 1;
            let tick = e.tick;
            if let Some((v, used)) = e.map.get_mut(&key) {
                *used = tick;
                return Ok(v.clone());
            }
        }
        let v = Arc::new(build()?);
        let mut e = self.lock();
        e.tick += 1;
        let tick = e.tick;
        if let Some((v, used)) = e.map.get_mut(&key) {
            *used = tick;
            return Ok(v.clone());
        }
        while e.map.len() >= self.capacity {
            let oldest = e
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => e.map.remove(&k),
                None => break,
            };
        }
        e.map.insert(key, (v.clone(), tick));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let c: PlanCache<u32, u32> = PlanCache::new(3);
        let mut builds = 0;
        for k in [1, 2, 3, 1, 4, 2, 1] {
            c.get_or_try_insert(k, || {
                builds += 1;
                Ok::<_, ()>(k * 10)
            })
            .unwrap();
        }
        // 1 2 3 built; 1 hit; 4 evicts 2; 2 evicts 3; 1 hit.
        assert_eq!(builds, 5);
        assert_eq!(c.len(), 3);
        assert!(c.contains(&1) && c.contains(&2) && c.contains(&4) && !c.contains(&3));
    }

    #[test]
    fn failed_builds_insert_nothing() {
        let c: PlanCache<u32, u32> = PlanCache::new(2);
        assert!(c.get_or_try_insert(1, || Err("no")).is_err());
        assert!(c.is_empty());
    }
}
