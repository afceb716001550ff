//! Postgres destinations of a workspace: create (the mappings checked against the target's
//! catalogue, its tables created when asked), list, read with how far the sink has come,
//! the records held back, a rebuild, delete. Writing is [`crate::sink`].

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use syncledger_domain::destination::{self, Destination, DestinationCommand, TableMapping};
use syncledger_domain::Aggregate;
use syncledger_projections::destinations::{self as projection, Query};
use syncledger_store::{Metadata, Position};

use crate::app::Engine;
use crate::error::EngineError;
use crate::sink::target::{self, Held, Standing};

/// The use cases; see [`Engine::destinations`].
pub struct Destinations<'a>(&'a Engine);

impl Engine {
    pub fn destinations(&self) -> Destinations<'_> {
        Destinations(self)
    }
}

/// What a caller asks for.
pub struct DestinationInput {
    pub name: String,
    pub database_url: SecretString,
    /// `public` unless given.
    pub schema: Option<String>,
    pub mappings: Vec<TableMapping>,
    /// Create each mapped table that does not exist yet.
    pub create_tables: bool,
}

/// A destination with how its sink stands, as its database tells (or why it could not
/// be asked), and the feed's head to compare with.
pub struct DestinationView {
    pub destination: Destination,
    pub standing: Result<Standing, String>,
    pub head: Position,
}

impl Destinations<'_> {
    pub async fn create(
        &self,
        meta: &Metadata,
        input: DestinationInput,
    ) -> Result<Destination, EngineError> {
        let (id, cmd) = self.checked(meta, input).await?;
        self.apply(meta, &id, cmd).await?;
        self.get(&meta.workspace_id, &id).await
    }

    /// The creation command for `input`, after every check (the rules, the database
    /// reachable under the outbound policy, each mapping against its catalogue; tables
    /// created when asked) and the URL sealed: the new destination's id and the command.
    pub async fn checked(
        &self,
        meta: &Metadata,
        input: DestinationInput,
    ) -> Result<(String, DestinationCommand), EngineError> {
        let schema = input.schema.unwrap_or_else(|| "public".into());
        destination::validate(&input.name, &schema, &input.mappings)?;
        let url = input.database_url.expose_secret();
        let described = target::describe(url)?;
        let pool = target::connect(url, self.0.destination_policy)
            .await
            .map_err(|e| {
                // A URL that cannot be reached is the caller's to fix.
                match e {
                    EngineError::Unavailable { message, .. } => {
                        EngineError::invalid("database_url", message)
                    }
                    e => e,
                }
            })?;
        let mut problems = Vec::new();
        for m in &input.mappings {
            let mut found = target::table(&pool, &schema, &m.table).await?;
            if found.is_none() && input.create_tables {
                target::create_table(&pool, &schema, m).await?;
                found = target::table(&pool, &schema, &m.table).await?;
            }
            problems.extend(m.check(found.as_ref().map(|(t, _)| t)));
        }
        pool.close().await;
        if !problems.is_empty() {
            return Err(EngineError::invalid("mappings", problems.join("; ")));
        }
        let sealed = self
            .0
            .vault
            .seal(&meta.workspace_id, url.as_bytes())
            .await?;
        let id = uuid::Uuid::now_v7().to_string();
        let cmd = DestinationCommand::Create {
            destination_id: id.clone(),
            workspace_id: meta.workspace_id.clone(),
            name: input.name,
            url: syncledger_domain::integration::EncryptedSecret {
                key_id: sealed.key_id,
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
            },
            target: described,
            schema,
            mappings: input.mappings,
            at: Utc::now(),
        };
        Ok((id, cmd))
    }

    /// Runs `cmd` and waits until the read model shows it.
    async fn apply(
        &self,
        meta: &Metadata,
        id: &str,
        cmd: DestinationCommand,
    ) -> Result<(), EngineError> {
        self.0
            .store
            .cqrs::<Destination>()
            .execute(id, cmd, meta)
            .await?;
        self.0
            .fresh
            .settle(projection::TABLE, Destination::TYPE, id)
            .await
    }

    pub async fn list(
        &self,
        workspace_id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Destination>, EngineError> {
        Ok(Query(&self.0.store.any)
            .list(workspace_id, after, limit)
            .await?)
    }

    pub async fn get(&self, workspace_id: &str, id: &str) -> Result<Destination, EngineError> {
        Query(&self.0.store.any)
            .get(workspace_id, id)
            .await?
            .ok_or(EngineError::Missing("destination"))
    }

    /// The destination and how far its sink has come.
    pub async fn view(&self, workspace_id: &str, id: &str) -> Result<DestinationView, EngineError> {
        let destination = self.get(workspace_id, id).await?;
        let head = self.0.store.feed().head().await?;
        let standing = match self.pool(&destination).await {
            Ok(pool) => {
                let s = target::standing(&pool, id).await;
                pool.close().await;
                s.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        Ok(DestinationView {
            destination,
            standing,
            head,
        })
    }

    async fn pool(&self, destination: &Destination) -> Result<sqlx::PgPool, EngineError> {
        let id = destination.id.as_deref().unwrap_or_default();
        let sealed: Destination = self.0.store.cqrs().load(id).await?;
        let url = crate::sink::open_url(self.0, &sealed).await?;
        let pool = target::connect(&url, self.0.destination_policy).await?;
        target::prepare(&pool).await?;
        Ok(pool)
    }

    /// Up to `limit` records held back from the live tables, after `after` (record id).
    pub async fn held(
        &self,
        workspace_id: &str,
        id: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<Held>, EngineError> {
        let destination = self.get(workspace_id, id).await?;
        let pool = self.pool(&destination).await?;
        let held = target::held(&pool, id, after, limit).await;
        pool.close().await;
        held
    }

    /// Asks for a rebuild: the sink refills fresh copies of the tables from the feed's
    /// beginning and swaps them in; the answer is the rebuild's generation.
    pub async fn rebuild(&self, meta: &Metadata, id: &str) -> Result<Destination, EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let cmd = DestinationCommand::Rebuild {
            actor: meta.actor.clone(),
            at: Utc::now(),
        };
        self.apply(meta, id, cmd).await?;
        self.get(&meta.workspace_id, id).await
    }

    /// Stops writing into the destination; its tables and rows stay as they are.
    pub async fn delete(&self, meta: &Metadata, id: &str) -> Result<(), EngineError> {
        self.get(&meta.workspace_id, id).await?;
        let cmd = DestinationCommand::Delete { at: Utc::now() };
        self.apply(meta, id, cmd).await
    }
}
