use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A workspace's subscription plan; it caps how many integrations may be active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Free,
    Starter,
    Professional,
    Scale,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 5] = [
        Plan::Free,
        Plan::Starter,
        Plan::Professional,
        Plan::Scale,
        Plan::Enterprise,
    ];

    /// `None` means unlimited.
    pub fn max_integrations(self) -> Option<usize> {
        match self {
            Plan::Free => Some(0),
            Plan::Starter => Some(1),
            Plan::Professional => Some(3),
            Plan::Scale => Some(5),
            Plan::Enterprise => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Starter => "starter",
            Plan::Professional => "professional",
            Plan::Scale => "scale",
            Plan::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown plan {s:?}: expected one of free, starter, professional, scale, enterprise"))
    }
}
