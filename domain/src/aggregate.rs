//! The decide / evolve contract every aggregate follows.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// An event an aggregate emits. `event_type` names the variant in the store.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync
{
    fn event_type(&self) -> &'static str;
    fn event_version(&self) -> &'static str {
        "1"
    }
    /// A one-line, human-readable description for the audit log. Never contains a secret.
    fn summary(&self) -> String;
}

/// A consistency boundary: decides commands against its state and evolves by events.
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync {
    const TYPE: &'static str;
    type Command: Clone + Send + Sync;
    type Event: DomainEvent;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decide which events a command produces. Pure: no IO, no clock.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolve the state by one event. Must accept every event `decide` ever produced.
    fn apply(&mut self, event: &Self::Event);
}

/// Given / when / then for aggregates: `given(events).when(command)`.
pub mod testing {
    use super::Aggregate;

    pub struct Given<A: Aggregate> {
        state: A,
    }

    pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
        let mut state = A::default();
        for e in events {
            state.apply(&e);
        }
        Given { state }
    }

    pub fn given_nothing<A: Aggregate>() -> Given<A> {
        Given {
            state: A::default(),
        }
    }

    impl<A: Aggregate> Given<A> {
        pub fn when(self, command: A::Command) -> Result<Vec<A::Event>, A::Error> {
            self.state.decide(command)
        }
        pub fn state(&self) -> &A {
            &self.state
        }
    }
}
