//! The workspace: a tenant, its plan, its integration slots and its API tokens.

use crate::aggregate::{Aggregate, DomainEvent};
use crate::plan::Plan;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a bearer token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkspaceEvent {
    WorkspaceCreated {
        workspace_id: String,
        name: String,
        plan: Plan,
        at: DateTime<Utc>,
    },
    IntegrationSlotReserved {
        integration_id: String,
        name: String,
    },
    IntegrationSlotReleased {
        integration_id: String,
    },
    /// The integration holding the slot was renamed: the name it keeps unique.
    IntegrationSlotRenamed {
        integration_id: String,
        name: String,
    },
    TokenIssued {
        token_id: String,
        role: Role,
        label: String,
        at: DateTime<Utc>,
        /// When the token stops working (absent: never; and in events written before
        /// tokens could expire).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<DateTime<Utc>>,
    },
    TokenRevoked {
        token_id: String,
        /// The role the token held (absent in events written before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        at: DateTime<Utc>,
    },
    /// A one-time dashboard sign-in link was made (by `syncledger dashboard link` or
    /// `workspace create`); it grants `role` to whoever opens it first before `expires_at`.
    SignInLinkIssued {
        link_id: String,
        role: Role,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for WorkspaceEvent {
    fn event_type(&self) -> &'static str {
        match self {
            WorkspaceEvent::WorkspaceCreated { .. } => "WorkspaceCreated",
            WorkspaceEvent::IntegrationSlotReserved { .. } => "IntegrationSlotReserved",
            WorkspaceEvent::IntegrationSlotReleased { .. } => "IntegrationSlotReleased",
            WorkspaceEvent::IntegrationSlotRenamed { .. } => "IntegrationSlotRenamed",
            WorkspaceEvent::TokenIssued { .. } => "TokenIssued",
            WorkspaceEvent::TokenRevoked { .. } => "TokenRevoked",
            WorkspaceEvent::SignInLinkIssued { .. } => "SignInLinkIssued",
        }
    }

    fn summary(&self) -> String {
        match self {
            WorkspaceEvent::WorkspaceCreated { name, plan, .. } => {
                format!("workspace {name:?} created on the {plan} plan")
            }
            WorkspaceEvent::IntegrationSlotReserved {
                integration_id,
                name,
            } => format!("integration slot reserved for {name:?} ({integration_id})"),
            WorkspaceEvent::IntegrationSlotReleased { integration_id } => {
                format!("integration slot released by {integration_id}")
            }
            WorkspaceEvent::IntegrationSlotRenamed {
                integration_id,
                name,
            } => format!("integration {integration_id} renamed to {name:?}"),
            WorkspaceEvent::TokenIssued {
                token_id,
                role,
                label,
                expires_at,
                ..
            } => format!(
                "API token {token_id} issued with role {} ({label:?}){}",
                role.as_str(),
                expires_at
                    .map(|t| format!(", expires {}", t.to_rfc3339()))
                    .unwrap_or_default()
            ),
            WorkspaceEvent::TokenRevoked {
                token_id,
                role: Some(role),
                ..
            } => format!("API token {token_id} with role {} revoked", role.as_str()),
            WorkspaceEvent::TokenRevoked { token_id, .. } => {
                format!("API token {token_id} revoked")
            }
            WorkspaceEvent::SignInLinkIssued {
                link_id,
                role,
                expires_at,
                ..
            } => format!(
                "dashboard sign-in link {link_id} issued with role {} (valid until {})",
                role.as_str(),
                expires_at.to_rfc3339()
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkspaceCommand {
    Create {
        workspace_id: String,
        name: String,
        plan: Plan,
        at: DateTime<Utc>,
    },
    ReserveIntegration {
        integration_id: String,
        name: String,
    },
    ReleaseIntegration {
        integration_id: String,
    },
    /// Rename the integration holding a slot; the new name must be unique too.
    RenameIntegration {
        integration_id: String,
        name: String,
    },
    IssueToken {
        token_id: String,
        role: Role,
        label: String,
        at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    },
    RevokeToken {
        token_id: String,
        at: DateTime<Utc>,
    },
    IssueSignInLink {
        link_id: String,
        role: Role,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    #[error("workspace already exists")]
    AlreadyExists,
    #[error("workspace not found")]
    NotFound,
    #[error("workspace name must be 1 to 200 characters")]
    InvalidName,
    #[error("the {plan} plan allows {limit} integration(s); upgrade the plan to add more")]
    PlanLimit { plan: Plan, limit: usize },
    #[error("an integration named {0:?} already exists in this workspace")]
    DuplicateIntegrationName(String),
    #[error("integration name must be 1 to 200 characters")]
    InvalidIntegrationName,
    /// The integration holds no slot in the workspace (it never did, or was disconnected).
    #[error("the integration is not active in this workspace")]
    IntegrationNotActive,
    #[error("token not found")]
    TokenNotFound,
    #[error("token label must be at most 200 characters")]
    InvalidTokenLabel,
    #[error("a token must expire after it is issued")]
    InvalidTokenExpiry,
    #[error(
        "this is the workspace's last active admin token; issue another admin token before revoking it"
    )]
    LastAdminToken,
    #[error("a sign-in link must expire after it is issued")]
    InvalidSignInLink,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: Option<String>,
    pub name: String,
    pub plan: Plan,
    /// Active integrations: id → connection name.
    pub integrations: BTreeMap<String, String>,
    /// Live tokens: id → role.
    pub tokens: BTreeMap<String, Role>,
    /// When the live tokens that expire do.
    #[serde(default)]
    pub token_expiry: BTreeMap<String, DateTime<Utc>>,
}

fn valid_name(s: &str) -> bool {
    let n = s.trim().chars().count();
    (1..=200).contains(&n)
}

impl Workspace {
    /// Whether an integration other than `except` holds `name` (names compare trimmed
    /// and case-insensitively).
    fn name_taken(&self, name: &str, except: &str) -> bool {
        let wanted = name.trim().to_lowercase();
        self.integrations
            .iter()
            .any(|(id, n)| id != except && n.trim().to_lowercase() == wanted)
    }

    fn rename(
        &self,
        integration_id: String,
        name: String,
    ) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        if !valid_name(&name) {
            return Err(WorkspaceError::InvalidIntegrationName);
        }
        let Some(current) = self.integrations.get(&integration_id) else {
            return Err(WorkspaceError::IntegrationNotActive);
        };
        if *current == name {
            return Ok(vec![]);
        }
        if self.name_taken(&name, &integration_id) {
            return Err(WorkspaceError::DuplicateIntegrationName(name));
        }
        Ok(vec![WorkspaceEvent::IntegrationSlotRenamed {
            integration_id,
            name,
        }])
    }

    fn reserve(
        &self,
        integration_id: String,
        name: String,
    ) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        if !valid_name(&name) {
            return Err(WorkspaceError::InvalidIntegrationName);
        }
        if self.integrations.contains_key(&integration_id) {
            return Ok(vec![]);
        }
        if self.name_taken(&name, &integration_id) {
            return Err(WorkspaceError::DuplicateIntegrationName(name));
        }
        if let Some(limit) = self.plan.max_integrations() {
            if self.integrations.len() >= limit {
                return Err(WorkspaceError::PlanLimit {
                    plan: self.plan,
                    limit,
                });
            }
        }
        Ok(vec![WorkspaceEvent::IntegrationSlotReserved {
            integration_id,
            name,
        }])
    }
}

impl Aggregate for Workspace {
    const TYPE: &'static str = "workspace";
    type Command = WorkspaceCommand;
    type Event = WorkspaceEvent;
    type Error = WorkspaceError;

    fn decide(&self, command: WorkspaceCommand) -> Result<Vec<WorkspaceEvent>, WorkspaceError> {
        use WorkspaceCommand as C;
        if self.id.is_none() && !matches!(command, C::Create { .. }) {
            return Err(WorkspaceError::NotFound);
        }
        match command {
            C::Create {
                workspace_id,
                name,
                plan,
                at,
            } => {
                if self.id.is_some() {
                    return Err(WorkspaceError::AlreadyExists);
                }
                if !valid_name(&name) {
                    return Err(WorkspaceError::InvalidName);
                }
                Ok(vec![WorkspaceEvent::WorkspaceCreated {
                    workspace_id,
                    name,
                    plan,
                    at,
                }])
            }
            C::ReserveIntegration {
                integration_id,
                name,
            } => self.reserve(integration_id, name),
            C::RenameIntegration {
                integration_id,
                name,
            } => self.rename(integration_id, name),
            C::ReleaseIntegration { integration_id } => {
                if self.integrations.contains_key(&integration_id) {
                    Ok(vec![WorkspaceEvent::IntegrationSlotReleased {
                        integration_id,
                    }])
                } else {
                    Ok(vec![])
                }
            }
            C::IssueToken {
                token_id,
                role,
                label,
                at,
                expires_at,
            } => {
                if label.chars().count() > 200 {
                    return Err(WorkspaceError::InvalidTokenLabel);
                }
                if expires_at.is_some_and(|e| e <= at) {
                    return Err(WorkspaceError::InvalidTokenExpiry);
                }
                Ok(vec![WorkspaceEvent::TokenIssued {
                    token_id,
                    role,
                    label,
                    at,
                    expires_at,
                }])
            }
            C::RevokeToken { token_id, at } => {
                let Some(role) = self.tokens.get(&token_id).copied() else {
                    return Err(WorkspaceError::TokenNotFound);
                };
                // Without an admin token nobody can issue tokens, manage integrations
                // or undo a bad run: the workspace would be locked out.
                // An admin token that will have expired by then does not count.
                let other_admin = self.tokens.iter().any(|(id, r)| {
                    *r == Role::Admin
                        && *id != token_id
                        && self.token_expiry.get(id).is_none_or(|e| *e > at)
                });
                if role == Role::Admin && !other_admin {
                    return Err(WorkspaceError::LastAdminToken);
                }
                Ok(vec![WorkspaceEvent::TokenRevoked {
                    token_id,
                    role: Some(role),
                    at,
                }])
            }
            C::IssueSignInLink {
                link_id,
                role,
                expires_at,
                at,
            } => {
                if expires_at <= at {
                    return Err(WorkspaceError::InvalidSignInLink);
                }
                Ok(vec![WorkspaceEvent::SignInLinkIssued {
                    link_id,
                    role,
                    expires_at,
                    at,
                }])
            }
        }
    }

    fn apply(&mut self, event: &WorkspaceEvent) {
        match event {
            WorkspaceEvent::WorkspaceCreated {
                workspace_id,
                name,
                plan,
                ..
            } => {
                self.id = Some(workspace_id.clone());
                self.name = name.clone();
                self.plan = *plan;
            }
            WorkspaceEvent::IntegrationSlotReserved {
                integration_id,
                name,
            } => {
                self.integrations
                    .insert(integration_id.clone(), name.clone());
            }
            WorkspaceEvent::IntegrationSlotReleased { integration_id } => {
                self.integrations.remove(integration_id);
            }
            WorkspaceEvent::IntegrationSlotRenamed {
                integration_id,
                name,
            } => {
                self.integrations
                    .insert(integration_id.clone(), name.clone());
            }
            WorkspaceEvent::TokenIssued {
                token_id,
                role,
                expires_at,
                ..
            } => {
                self.tokens.insert(token_id.clone(), *role);
                if let Some(e) = expires_at {
                    self.token_expiry.insert(token_id.clone(), *e);
                }
            }
            WorkspaceEvent::TokenRevoked { token_id, .. } => {
                self.tokens.remove(token_id);
                self.token_expiry.remove(token_id);
            }
            // A link is a one-time grant kept outside the aggregate's state (the engine's
            // `sign_in_links` table); the event is its audit record.
            WorkspaceEvent::SignInLinkIssued { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::testing::{given, given_nothing};

    fn t0() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn created(plan: Plan) -> WorkspaceEvent {
        WorkspaceEvent::WorkspaceCreated {
            workspace_id: "ws1".into(),
            name: "Acme".into(),
            plan,
            at: t0(),
        }
    }

    fn reserve(id: &str, name: &str) -> WorkspaceCommand {
        WorkspaceCommand::ReserveIntegration {
            integration_id: id.into(),
            name: name.into(),
        }
    }

    fn reserved(id: &str, name: &str) -> WorkspaceEvent {
        WorkspaceEvent::IntegrationSlotReserved {
            integration_id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn create_emits_created() {
        let cmd = WorkspaceCommand::Create {
            workspace_id: "ws1".into(),
            name: "Acme".into(),
            plan: Plan::Starter,
            at: t0(),
        };
        assert_eq!(
            given_nothing::<Workspace>().when(cmd),
            Ok(vec![created(Plan::Starter)])
        );
    }

    #[test]
    fn create_twice_is_rejected() {
        let cmd = WorkspaceCommand::Create {
            workspace_id: "ws1".into(),
            name: "Acme".into(),
            plan: Plan::Starter,
            at: t0(),
        };
        assert_eq!(
            given::<Workspace>([created(Plan::Free)]).when(cmd),
            Err(WorkspaceError::AlreadyExists)
        );
    }

    #[test]
    fn create_with_blank_name_is_rejected() {
        let cmd = WorkspaceCommand::Create {
            workspace_id: "ws1".into(),
            name: "  ".into(),
            plan: Plan::Starter,
            at: t0(),
        };
        assert_eq!(
            given_nothing::<Workspace>().when(cmd),
            Err(WorkspaceError::InvalidName)
        );
    }

    #[test]
    fn commands_on_missing_workspace_are_rejected() {
        assert_eq!(
            given_nothing::<Workspace>().when(reserve("i1", "Main")),
            Err(WorkspaceError::NotFound)
        );
    }

    #[test]
    fn plans_cap_integrations() {
        for plan in Plan::ALL {
            let mut events = vec![created(plan)];
            let cap = plan.max_integrations().unwrap_or(25);
            for n in 0..cap {
                events.push(reserved(&format!("i{n}"), &format!("CRM {n}")));
            }
            let result = given::<Workspace>(events).when(reserve("next", "One more"));
            match plan.max_integrations() {
                Some(limit) => assert_eq!(result, Err(WorkspaceError::PlanLimit { plan, limit })),
                None => assert_eq!(result, Ok(vec![reserved("next", "One more")])),
            }
        }
    }

    fn rename(id: &str, name: &str) -> WorkspaceCommand {
        WorkspaceCommand::RenameIntegration {
            integration_id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_rename_keeps_names_unique_and_frees_the_old_one() {
        let events = vec![
            created(Plan::Enterprise),
            reserved("i1", "Sales"),
            reserved("i2", "Support"),
        ];
        let g = given::<Workspace>(events.clone());
        assert_eq!(
            g.when(rename("i1", " support ")),
            Err(WorkspaceError::DuplicateIntegrationName(" support ".into()))
        );
        let renamed = WorkspaceEvent::IntegrationSlotRenamed {
            integration_id: "i1".into(),
            name: "Sales EU".into(),
        };
        assert_eq!(
            given::<Workspace>(events.clone()).when(rename("i1", "Sales EU")),
            Ok(vec![renamed.clone()])
        );
        // The old name is free again, for a new integration or a rename.
        let mut after = events.clone();
        after.push(renamed);
        assert_eq!(
            given::<Workspace>(after.clone()).when(rename("i2", "sales")),
            Ok(vec![WorkspaceEvent::IntegrationSlotRenamed {
                integration_id: "i2".into(),
                name: "sales".into(),
            }])
        );
        assert_eq!(
            given::<Workspace>(after).when(reserve("i3", "Sales")),
            Ok(vec![reserved("i3", "Sales")])
        );
    }

    #[test]
    fn a_rename_to_its_own_name_in_another_case_is_allowed_and_the_same_name_is_a_no_op() {
        let events = vec![created(Plan::Starter), reserved("i1", "Sales")];
        assert_eq!(
            given::<Workspace>(events.clone()).when(rename("i1", "Sales")),
            Ok(vec![])
        );
        assert_eq!(
            given::<Workspace>(events.clone()).when(rename("i1", "SALES")),
            Ok(vec![WorkspaceEvent::IntegrationSlotRenamed {
                integration_id: "i1".into(),
                name: "SALES".into(),
            }])
        );
        assert_eq!(
            given::<Workspace>(events.clone()).when(rename("i1", "   ")),
            Err(WorkspaceError::InvalidIntegrationName)
        );
        assert_eq!(
            given::<Workspace>(events).when(rename("gone", "Other")),
            Err(WorkspaceError::IntegrationNotActive)
        );
    }

    #[test]
    fn released_slots_free_the_cap_and_the_name() {
        let events = vec![
            created(Plan::Starter),
            reserved("i1", "Main"),
            WorkspaceEvent::IntegrationSlotReleased {
                integration_id: "i1".into(),
            },
        ];
        assert_eq!(
            given::<Workspace>(events).when(reserve("i2", "Main")),
            Ok(vec![reserved("i2", "Main")])
        );
    }

    #[test]
    fn names_are_unique_ignoring_case_and_spaces() {
        let events = vec![created(Plan::Scale), reserved("i1", "Main HubSpot")];
        assert_eq!(
            given::<Workspace>(events).when(reserve("i2", " main hubspot")),
            Err(WorkspaceError::DuplicateIntegrationName(
                " main hubspot".into()
            ))
        );
    }

    #[test]
    fn reserving_the_same_integration_twice_is_idempotent() {
        let events = vec![created(Plan::Starter), reserved("i1", "Main")];
        assert_eq!(
            given::<Workspace>(events).when(reserve("i1", "Main")),
            Ok(vec![])
        );
    }

    #[test]
    fn tokens_are_issued_and_revoked_once() {
        let issued = WorkspaceEvent::TokenIssued {
            token_id: "t1".into(),
            role: Role::Viewer,
            label: "ci".into(),
            at: t0(),
            expires_at: None,
        };
        let revoke = || WorkspaceCommand::RevokeToken {
            token_id: "t1".into(),
            at: t0(),
        };
        assert_eq!(
            given::<Workspace>([created(Plan::Free), issued.clone()]).when(revoke()),
            Ok(vec![WorkspaceEvent::TokenRevoked {
                token_id: "t1".into(),
                role: Some(Role::Viewer),
                at: t0()
            }])
        );
        let revoked = WorkspaceEvent::TokenRevoked {
            token_id: "t1".into(),
            role: None,
            at: t0(),
        };
        assert_eq!(
            revoked.summary(),
            "API token t1 revoked",
            "an event written before the role was kept"
        );
        assert_eq!(
            given::<Workspace>([created(Plan::Free), issued, revoked]).when(revoke()),
            Err(WorkspaceError::TokenNotFound)
        );
    }

    fn issued(id: &str, role: Role) -> WorkspaceEvent {
        WorkspaceEvent::TokenIssued {
            token_id: id.into(),
            role,
            label: String::new(),
            at: t0(),
            expires_at: None,
        }
    }

    #[test]
    fn an_admin_token_that_expires_does_not_keep_the_workspace_open() {
        let expiring = WorkspaceEvent::TokenIssued {
            token_id: "short".into(),
            role: Role::Admin,
            label: String::new(),
            at: t0(),
            expires_at: Some(t0() + chrono::Duration::hours(1)),
        };
        let history = || {
            [
                created(Plan::Free),
                issued("a1", Role::Admin),
                expiring.clone(),
            ]
        };
        let revoke_at = |at| WorkspaceCommand::RevokeToken {
            token_id: "a1".into(),
            at,
        };
        assert!(given::<Workspace>(history()).when(revoke_at(t0())).is_ok());
        assert_eq!(
            given::<Workspace>(history()).when(revoke_at(t0() + chrono::Duration::hours(2))),
            Err(WorkspaceError::LastAdminToken),
            "the other admin token has expired by then"
        );
    }

    fn revoke(id: &str) -> WorkspaceCommand {
        WorkspaceCommand::RevokeToken {
            token_id: id.into(),
            at: t0(),
        }
    }

    #[test]
    fn the_last_admin_token_cannot_be_revoked() {
        let events = [
            created(Plan::Free),
            issued("a1", Role::Admin),
            issued("v1", Role::Viewer),
            issued("o1", Role::Operator),
        ];
        assert_eq!(
            given::<Workspace>(events.clone()).when(revoke("a1")),
            Err(WorkspaceError::LastAdminToken)
        );
        // Other roles go freely, and with a second admin either admin may go.
        assert!(given::<Workspace>(events.clone())
            .when(revoke("v1"))
            .is_ok());
        let mut two = events.to_vec();
        two.push(issued("a2", Role::Admin));
        assert!(given::<Workspace>(two.clone()).when(revoke("a1")).is_ok());
        two.push(WorkspaceEvent::TokenRevoked {
            token_id: "a2".into(),
            role: Some(Role::Admin),
            at: t0(),
        });
        assert_eq!(
            given::<Workspace>(two).when(revoke("a1")),
            Err(WorkspaceError::LastAdminToken),
            "a revoked admin token does not count"
        );
    }

    #[test]
    fn overlong_token_label_is_rejected() {
        let cmd = WorkspaceCommand::IssueToken {
            token_id: "t1".into(),
            role: Role::Admin,
            label: "x".repeat(201),
            at: t0(),
            expires_at: None,
        };
        assert_eq!(
            given::<Workspace>([created(Plan::Free)]).when(cmd),
            Err(WorkspaceError::InvalidTokenLabel)
        );
        for expires in [t0(), t0() - chrono::Duration::seconds(1)] {
            let cmd = WorkspaceCommand::IssueToken {
                token_id: "t1".into(),
                role: Role::Admin,
                label: "short-lived".into(),
                at: t0(),
                expires_at: Some(expires),
            };
            assert_eq!(
                given::<Workspace>([created(Plan::Free)]).when(cmd),
                Err(WorkspaceError::InvalidTokenExpiry)
            );
        }
    }
}
