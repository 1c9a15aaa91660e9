//! A map split into independently locked shards, so that operations on different keys rarely
//! contend. Used for subscriptions (hub) and channel histories (in-process broker).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};

use parking_lot::Mutex;

const SHARDS: usize = 64;

pub(crate) struct Sharded<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The shard that holds `key`.
    pub fn shard(&self, key: &K) -> &Mutex<HashMap<K, V>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub fn shards(&self) -> impl Iterator<Item = &Mutex<HashMap<K, V>>> {
        self.shards.iter()
    }
}
