//! A provider's field catalogue per entity, kept for a while.
//!
//! Adapters live as long as their integration's process (the engine keeps one per
//! integration), so a catalogue fetched once would otherwise never see a field
//! added in the CRM later. Entries expire after [`Catalogue::TTL`]; listing the
//! fields explicitly (the API's field catalogue, mapping previews) always asks the
//! provider and refreshes the entry.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use syncledger_domain::Entity;

#[derive(Debug)]
pub struct Catalogue<T> {
    ttl: Duration,
    entries: Mutex<HashMap<Entity, (Instant, T)>>,
}

impl<T: Clone> Default for Catalogue<T> {
    fn default() -> Self {
        Self::new(Self::TTL)
    }
}

impl<T: Clone> Catalogue<T> {
    /// How long a fetched catalogue is used before it is fetched again.
    pub const TTL: Duration = Duration::from_secs(15 * 60);

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The entity's catalogue if it was fetched less than the TTL ago.
    pub fn get(&self, entity: Entity) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&entity)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    pub fn put(&self, entity: Entity, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.insert(entity, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let fresh: Catalogue<u8> = Catalogue::new(Duration::from_secs(60));
        fresh.put(Entity::Contacts, 1);
        assert_eq!(fresh.get(Entity::Contacts), Some(1));
        assert_eq!(fresh.get(Entity::Companies), None);
        let stale: Catalogue<u8> = Catalogue::new(Duration::ZERO);
        stale.put(Entity::Contacts, 1);
        assert_eq!(stale.get(Entity::Contacts), None);
    }
}
