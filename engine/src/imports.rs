//! The ways in for a CRM that publishes no API: a CSV export a person uploads
//! (`POST /v1/integrations/{id}/imports`, `syncledger import`) and the integration's
//! inbound webhook, which Zapier or Make call with records as JSON. Either becomes a
//! sync run of kind `import` whose pages are decided as a pull's are (the
//! integration's field mapping, links by id or match key, the three-way merge and the
//! conflict strategy), so it shows in the run history and the audit trail and rolls back
//! like any run. Records are told apart by their id field, else by email (domain for
//! companies), so importing the same records again updates them.
//!
//! Input is parsed and checked whole before anything is written: a bad file or payload
//! is refused naming its line or record, and changes nothing.

use std::time::Duration;

use base64::Engine as _;
use chrono::Utc;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use syncledger_crm::{Credentials, RemoteRecord};
use syncledger_domain::import::{self, ImportError, Row};
use syncledger_domain::integration::CredentialKind;
use syncledger_domain::integration::MappingDirection;
use syncledger_domain::provider;
use syncledger_domain::sync_run::{RunKind, RunOptions, SyncRun, Trigger};
use syncledger_domain::{Entity, Integration};
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::credentials::{open_credentials, seal_inbound_secret};
use crate::error::{entity_named, EngineError};
use crate::integrations::IntegrationState;
use crate::mapping::effective_mappings;
use crate::RunError;

/// How long a request waits for its import run to end before answering with the run
/// as it is (still running: the client follows it at `GET /v1/sync-runs/{id}`).
pub const WAIT_FOR_END: Duration = Duration::from_secs(20);
/// How long an inbound-webhook delivery waits for the run of an earlier delivery to the
/// same integration (in this process) to end; a CSV import running answers busy at once.
pub const WAIT_FOR_SLOT: Duration = Duration::from_secs(20);
/// The field that holds a record's id when the caller does not name one.
pub const DEFAULT_ID_FIELD: &str = "id";
/// What an inbound webhook's secret starts with.
const SECRET_PREFIX: &str = "slin_";

/// What an import takes besides its records; every part is optional.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// `contacts` (the default) or `companies`: one of the integration's entities.
    pub entity: Option<String>,
    /// The field (column) holding the CRM's id of a record; `id` when not given.
    pub id_field: Option<String>,
}

/// The import use cases; see [`Engine::imports`].
pub struct Imports<'a>(&'a Engine);

impl Engine {
    pub fn imports(&self) -> Imports<'_> {
        Imports(self)
    }
}

fn no_api(integration: &Integration) -> Result<(), EngineError> {
    if provider::publishes_no_api(&integration.provider) && integration.spec.is_none() {
        Ok(())
    } else {
        Err(EngineError::Unsupported(format!(
            "{} has an API: its records come in by sync runs; imports and inbound webhooks \
             are for CRMs without one",
            integration.provider
        )))
    }
}

fn refused(code: &'static str) -> impl Fn(ImportError) -> EngineError {
    move |e| EngineError::Refused {
        code,
        message: e.to_string(),
    }
}

/// The rejection of every inbound delivery that is not authenticated, whatever the
/// reason (unknown integration, no secret made yet, a wrong one): it tells nothing.
fn unauthenticated() -> EngineError {
    EngineError::Unauthenticated {
        code: "invalid_secret",
        message: "the inbound webhook's secret is missing or wrong".into(),
    }
}

/// The CRM field the integration maps to the entity's match field (email for
/// contacts, domain for companies); the match field's own name when none does.
fn match_column(integration: &Integration, entity: Entity) -> String {
    let (mappings, _) = effective_mappings(integration, entity);
    mappings
        .iter()
        .find(|m| {
            m.app_field == entity.match_field()
                && matches!(m.direction, MappingDirection::Pull | MappingDirection::Both)
        })
        .map_or_else(|| entity.match_field().to_owned(), |m| m.crm_field.clone())
}

/// The rows as records of the CRM, told apart as [`import::identify`] says.
fn to_records(
    integration: &Integration,
    entity: Entity,
    rows: Vec<Row>,
    id_field: &str,
    code: &'static str,
) -> Result<Vec<RemoteRecord>, EngineError> {
    let column = match_column(integration, entity);
    let identified = import::identify(rows, entity, id_field, &column).map_err(refused(code))?;
    let now = Utc::now();
    Ok(identified
        .into_iter()
        .map(|i| RemoteRecord {
            id: i.remote_id,
            properties: i.row.values,
            created_at: now,
            updated_at: now,
            archived: false,
        })
        .collect())
}

fn options_of(
    integration: &Integration,
    options: &ImportOptions,
) -> Result<(Entity, String), EngineError> {
    let entity = match &options.entity {
        Some(name) => entity_named("entity", Some(name))?,
        None => Entity::Contacts,
    };
    if !integration.sync_config.entities.contains(&entity) {
        return Err(EngineError::invalid(
            "entity",
            format!("the integration does not sync {}", entity.as_str()),
        ));
    }
    let id_field = options
        .id_field
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_ID_FIELD);
    if id_field.is_empty() || id_field.chars().count() > 200 {
        return Err(EngineError::invalid(
            "id_field",
            "must be 1 to 200 characters",
        ));
    }
    Ok((entity, id_field.to_owned()))
}

impl Imports<'_> {
    /// Imports a CSV file into the integration as a run of kind `import`, started by
    /// `meta`'s actor; answers the run once it ended, or after [`WAIT_FOR_END`].
    pub async fn csv(
        &self,
        meta: &Metadata,
        integration_id: &str,
        bytes: &[u8],
        options: &ImportOptions,
    ) -> Result<SyncRun, RunError> {
        self.csv_waiting(meta, integration_id, bytes, options, WAIT_FOR_END)
            .await
    }

    /// [`Self::csv`], waiting up to `wait` for the run to end (the command line waits
    /// for its end).
    pub async fn csv_waiting(
        &self,
        meta: &Metadata,
        integration_id: &str,
        bytes: &[u8],
        options: &ImportOptions,
        wait: Duration,
    ) -> Result<SyncRun, RunError> {
        let integration = self
            .0
            .integrations()
            .owned(&meta.workspace_id, integration_id)
            .await?;
        no_api(&integration)?;
        let (entity, id_field) = options_of(&integration, options)?;
        let rows = import::parse_csv(bytes).map_err(refused("invalid_csv"))?;
        let records = to_records(&integration, entity, rows, &id_field, "invalid_csv")?;
        let run_id = self
            .0
            .runs
            .trigger_with(
                integration_id,
                RunKind::Import,
                Trigger::Manual,
                only(entity),
                meta,
            )
            .await?;
        self.execute(run_id, records, wait, None).await
    }

    /// A delivery to the integration's inbound webhook: authenticated by `secret`
    /// (compared in constant time), one record as a JSON object or an array of them,
    /// imported as a run of kind `import` (trigger `webhook`). Waits up to
    /// [`WAIT_FOR_SLOT`] for an earlier delivery's run to end.
    pub async fn deliver(
        &self,
        integration_id: &str,
        secret: Option<&str>,
        body: &[u8],
        options: &ImportOptions,
    ) -> Result<SyncRun, RunError> {
        let integration = self.authenticate(integration_id, secret).await?;
        no_api(&integration)?;
        let (entity, id_field) = options_of(&integration, options)?;
        let rows = import::parse_json(body).map_err(refused("invalid_payload"))?;
        let records = to_records(&integration, entity, rows, &id_field, "invalid_payload")?;
        let meta = Metadata::new(
            "inbound-webhook",
            integration.workspace_id.clone(),
            uuid::Uuid::now_v7().to_string(),
        );
        // Deliveries to one integration arrive together (a Zap replaying a batch): each
        // waits for the run of the one before to end, on the slot that run holds.
        let busy = || {
            RunError::Engine(EngineError::Unavailable {
                code: "busy",
                message: "another run of the integration is still active; send the records \
                          again shortly"
                    .into(),
            })
        };
        let slot = self.0.runs.import_slot(integration_id);
        let held = tokio::time::timeout(WAIT_FOR_SLOT, slot.lock_owned())
            .await
            .map_err(|_| busy())?;
        let run_id = match self
            .0
            .runs
            .trigger_with(
                integration_id,
                RunKind::Import,
                Trigger::Webhook,
                only(entity),
                &meta,
            )
            .await
        {
            Ok(run_id) => run_id,
            // A CSV import (here or in another process) is running.
            Err(RunError::Active { .. }) => return Err(busy()),
            Err(e) => return Err(e),
        };
        self.execute(run_id, records, WAIT_FOR_END, Some(held))
            .await
    }

    /// The integration whose inbound webhook `secret` opens; the same 401 for every
    /// failure.
    async fn authenticate(
        &self,
        integration_id: &str,
        secret: Option<&str>,
    ) -> Result<Integration, EngineError> {
        let Some(given) = secret.filter(|s| !s.is_empty() && s.len() <= 256) else {
            return Err(unauthenticated());
        };
        let integration = self
            .0
            .integrations
            .load(integration_id)
            .await
            .map_err(EngineError::command)?;
        let (Some(CredentialKind::InboundWebhook), Some(sealed)) =
            (integration.credential_kind, &integration.secret)
        else {
            return Err(unauthenticated());
        };
        let stored = open_credentials(
            &self.0.vault,
            &integration.workspace_id,
            CredentialKind::InboundWebhook,
            sealed,
            None,
        )
        .await?;
        let Credentials::ApiKey(stored) = stored else {
            return Err(unauthenticated());
        };
        let (a, b) = (
            Sha256::digest(stored.expose_secret().as_bytes()),
            Sha256::digest(given.as_bytes()),
        );
        if bool::from(a.as_slice().ct_eq(b.as_slice())) {
            Ok(integration)
        } else {
            Err(unauthenticated())
        }
    }

    /// Makes the integration's inbound webhook a new secret (the one before stops
    /// working at once), sealed like any credential; answers it, the only time it is
    /// shown, with the integration.
    pub async fn new_inbound_secret(
        &self,
        meta: &Metadata,
        integration_id: &str,
    ) -> Result<(SecretString, IntegrationState), EngineError> {
        let integration = self
            .0
            .integrations()
            .owned(&meta.workspace_id, integration_id)
            .await?;
        no_api(&integration)?;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = SecretString::from(format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ));
        let sealed = seal_inbound_secret(&self.0.vault, &meta.workspace_id, &secret).await?;
        let command = integration.credentials_command(
            CredentialKind::InboundWebhook,
            sealed,
            None,
            None,
            Utc::now(),
        );
        let state = self
            .0
            .integrations()
            .execute(meta, integration_id, command)
            .await?;
        Ok((secret, state))
    }

    /// Executes the queued import run `run_id` in this process (it alone holds the
    /// records), on a task of its own so that a client that stops waiting does not stop
    /// the import; answers the run once it ended or after `wait`.
    async fn execute(
        &self,
        run_id: String,
        records: Vec<RemoteRecord>,
        wait: Duration,
        slot: Option<tokio::sync::OwnedMutexGuard<()>>,
    ) -> Result<SyncRun, RunError> {
        let runs = self.0.runs.clone();
        runs.hold_import(&run_id, records);
        let task = {
            let (runs, run_id) = (runs.clone(), run_id.clone());
            tokio::spawn(async move {
                let ended = crate::workers::execute_logged(&runs, &run_id).await;
                runs.release_import(&run_id);
                // The slot frees when the run ends, not when the caller stops waiting.
                drop(slot);
                ended
            })
        };
        // The task goes on if the wait ends first.
        let _ = tokio::time::timeout(wait, task).await;
        runs.load(&run_id).await?.ok_or(RunError::RunNotFound)
    }
}

fn only(entity: Entity) -> RunOptions {
    RunOptions {
        entities: Some(vec![entity]),
        ..RunOptions::default()
    }
}
