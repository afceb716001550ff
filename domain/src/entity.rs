//! The kinds of record syncledger syncs, and how a record of each is identified.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Contacts,
    Companies,
}

impl Entity {
    pub const ALL: [Entity; 2] = [Entity::Contacts, Entity::Companies];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Contacts => "contacts",
            Entity::Companies => "companies",
        }
    }

    /// The field that identifies a record across CRMs: email for contacts, domain for
    /// companies.
    pub fn match_field(self) -> &'static str {
        match self {
            Entity::Contacts => "email",
            Entity::Companies => "domain",
        }
    }

    /// The match key a value of [`Entity::match_field`] gives: trimmed, in lower case;
    /// `None` when empty (an empty key matches nothing).
    pub fn match_key(value: Option<&str>) -> Option<String> {
        value
            .map(|v| v.trim().to_lowercase())
            .filter(|v| !v.is_empty())
    }

    /// The entity of this name (`contacts`, `companies`), if any.
    pub fn parse(name: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == name)
    }
}
