//! Field mappings per integration and entity, as use cases: read the effective ones
//! (stored, else the provider's defaults), replace them with a filter, propose them from
//! the CRM's field catalogue, preview them on one page of CRM records, and re-apply them
//! to the data already fetched. (Compiling and applying a mapping is [`crate::mapping`].)
//!
//! Transforms and filters are compiled before anything is stored, so a bad expression is
//! refused with the rule it belongs to and writes nothing. Previews and proposals call the
//! provider but never write an event; a reapply never calls the provider.

use chrono::Utc;
use syncledger_crm::{FieldInfo, RemoteRecord};
use syncledger_domain::integration::FieldMapping;
use syncledger_domain::sync_run::SyncRun;
use syncledger_domain::{Aggregate, Entity, Integration, IntegrationCommand};
use syncledger_store::Metadata;

use crate::app::Engine;
use crate::error::{entity_named, EngineError};
use crate::mapping::{
    app_fields, auto_map, effective_mappings, unmapped_required, Mapped, Mapper, MappingError,
};
use crate::reapply::{Reapply, ReapplyError};
use crate::transform::{pool, TransformError};
use crate::Session;

const MAX_MAPPINGS: usize = 200;
const MAX_NAME: usize = 200;
const DEFAULT_PREVIEW: usize = 10;
const MAX_PREVIEW: usize = 50;

/// An entity's effective mappings and where they come from.
pub struct EntityMappings {
    pub entity: Entity,
    /// `custom` (stored) or `default` (the provider's).
    pub source: &'static str,
    pub filter: Option<String>,
    pub mappings: Vec<FieldMapping>,
}

/// A proposal from the CRM's field catalogue.
pub struct Proposal {
    pub mappings: Vec<FieldMapping>,
    /// Required CRM fields no mapping fills.
    pub unmapped_required: Vec<String>,
    /// App fields no pull mapping fills.
    pub unmapped_app_fields: Vec<String>,
}

/// One CRM record through the mappings.
pub struct PreviewRecord {
    pub record: RemoteRecord,
    pub app: Option<syncledger_domain::merge::Fields>,
    pub filtered: bool,
    pub error: Option<String>,
}

pub struct Preview {
    pub records: Vec<PreviewRecord>,
    pub unmapped_required: Vec<String>,
    pub unmapped_app_fields: Vec<String>,
}

/// What a preview tries instead of the stored mappings (`None`: the stored ones).
#[derive(Default)]
pub struct PreviewInput {
    pub mappings: Option<Vec<FieldMapping>>,
    /// `Some(None)` previews without a filter.
    pub filter: Option<Option<String>>,
    pub limit: Option<i64>,
}

fn view(integration: &Integration, entity: Entity) -> EntityMappings {
    let (mappings, filter) = effective_mappings(integration, entity);
    let source = if integration.mappings_for(entity).is_some() {
        "custom"
    } else {
        "default"
    };
    EntityMappings {
        entity,
        source,
        filter,
        mappings,
    }
}

/// The entity named `entity`, if the integration syncs it.
fn synced(integration: &Integration, entity: &str) -> Result<Entity, EngineError> {
    let entity = entity_named("entity", Some(entity))?;
    if !integration.sync_config.entities.contains(&entity) {
        return Err(EngineError::invalid(
            "entity",
            format!(
                "the integration does not sync {}; add it to sync_config.entities first",
                entity.as_str()
            ),
        ));
    }
    Ok(entity)
}

fn mapping_error(e: &MappingError, rules: usize) -> EngineError {
    if e.index >= rules {
        EngineError::invalid("filter", &e.error)
    } else {
        EngineError::invalid(
            &format!("mappings[{}].transform", e.index),
            format!("{} → {}: {}", e.crm_field, e.app_field, e.error),
        )
    }
}

fn check_sizes(mappings: &[FieldMapping]) -> Result<(), EngineError> {
    if mappings.len() > MAX_MAPPINGS {
        return Err(EngineError::invalid(
            "mappings",
            format!("at most {MAX_MAPPINGS} mappings"),
        ));
    }
    for (i, m) in mappings.iter().enumerate() {
        if m.crm_field.len() > MAX_NAME || m.app_field.len() > MAX_NAME {
            return Err(EngineError::invalid(
                &format!("mappings[{i}]"),
                format!("field names are at most {MAX_NAME} bytes"),
            ));
        }
    }
    Ok(())
}

fn pool_error(e: TransformError) -> EngineError {
    match e {
        TransformError::Busy => EngineError::Unavailable {
            code: "busy",
            message: e.to_string(),
        },
        other => EngineError::Internal(other.to_string()),
    }
}

async fn compile(mappings: &[FieldMapping], filter: Option<&str>) -> Result<Mapper, EngineError> {
    check_sizes(mappings)?;
    let (owned_mappings, owned_filter) = (mappings.to_vec(), filter.map(str::to_owned));
    let compiled = pool::run(move || Mapper::compile(&owned_mappings, owned_filter.as_deref()))
        .await
        .map_err(pool_error)?;
    compiled.map_err(|e| mapping_error(&e, mappings.len()))
}

async fn catalogue(
    session: &mut Session,
    meta: &Metadata,
    entity: Entity,
) -> Result<Vec<FieldInfo>, EngineError> {
    session
        .call(meta, |adapter, credentials| {
            adapter.fields(credentials, entity)
        })
        .await
}

/// App fields of the entity that no pull mapping fills.
fn unfilled(mapper: &Mapper, entity: Entity) -> Vec<String> {
    let filled: Vec<&str> = mapper.pulled_app_fields().collect();
    app_fields(entity)
        .iter()
        .filter(|f| !filled.contains(f))
        .map(|f| (*f).to_owned())
        .collect()
}

fn preview_one(mapper: &Mapper, record: RemoteRecord) -> PreviewRecord {
    let (app, filtered, error) = match mapper.to_app(&record) {
        Ok(Mapped::Fields(fields)) => (Some(fields), false, None),
        Ok(Mapped::Filtered) => (None, true, None),
        Err(e) => (None, false, Some(e.to_string())),
    };
    PreviewRecord {
        record,
        app,
        filtered,
        error,
    }
}

fn reapply_error(e: ReapplyError) -> EngineError {
    match e {
        ReapplyError::Engine(e) => e,
        ReapplyError::Mapping(m) => EngineError::NotNow {
            code: "invalid_mapping",
            message: format!(
                "{}; replace the mappings with PUT first",
                ReapplyError::Mapping(m)
            ),
        },
        ReapplyError::ReadModelBehind => EngineError::Unavailable {
            code: "read_model_behind",
            message: "the records read model is catching up; retry shortly".into(),
        },
    }
}

/// The mappings use cases; see [`Engine::mappings`].
pub struct Mappings<'a>(&'a Engine);

impl Engine {
    pub fn mappings(&self) -> Mappings<'_> {
        Mappings(self)
    }
}

impl Mappings<'_> {
    /// Whether `source` may be a mapping's transform or filter, by the rules saving
    /// applies (its length and nesting, no comprehensions, CEL syntax); why not when not.
    /// For checking an expression as it is typed; nothing is stored.
    pub fn check_expression(&self, source: &str) -> Result<(), String> {
        crate::transform::Expression::compile(source)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The effective mappings of every entity the integration syncs.
    pub async fn list(
        &self,
        workspace_id: &str,
        id: &str,
    ) -> Result<Vec<EntityMappings>, EngineError> {
        let integration = self.0.integrations().owned(workspace_id, id).await?;
        Ok(integration
            .sync_config
            .entities
            .iter()
            .map(|e| view(&integration, *e))
            .collect())
    }

    /// The effective mappings of one synced entity.
    pub async fn get(
        &self,
        workspace_id: &str,
        id: &str,
        entity: &str,
    ) -> Result<EntityMappings, EngineError> {
        let integration = self.0.integrations().owned(workspace_id, id).await?;
        Ok(view(&integration, synced(&integration, entity)?))
    }

    /// Replace an entity's mappings and filter; they must compile first.
    pub async fn replace(
        &self,
        meta: &Metadata,
        id: &str,
        entity: &str,
        mappings: Vec<FieldMapping>,
        filter: Option<String>,
    ) -> Result<EntityMappings, EngineError> {
        let integration = self.0.integrations().owned(&meta.workspace_id, id).await?;
        let entity = synced(&integration, entity)?;
        compile(&mappings, filter.as_deref()).await?;
        let command = IntegrationCommand::ChangeFieldMappings {
            entity,
            mappings,
            filter,
            at: Utc::now(),
        };
        self.0
            .integrations
            .execute(id, command, meta)
            .await
            .map_err(EngineError::command)?;
        self.0
            .fresh
            .settle("integration_status", Integration::TYPE, id)
            .await?;
        self.get(&meta.workspace_id, id, entity.as_str()).await
    }

    /// Propose mappings from the CRM's field catalogue (calls the provider).
    pub async fn propose(
        &self,
        meta: &Metadata,
        id: &str,
        entity: &str,
    ) -> Result<Proposal, EngineError> {
        let integration = self.0.integrations().owned(&meta.workspace_id, id).await?;
        let entity = synced(&integration, entity)?;
        let mut session = self.0.connections.session(id).await?;
        let fields = catalogue(&mut session, meta, entity).await?;
        let proposal = auto_map(&fields, app_fields(entity));
        let mapper = compile(&proposal, None).await?;
        Ok(Proposal {
            unmapped_required: unmapped_required(&fields, &proposal),
            unmapped_app_fields: unfilled(&mapper, entity),
            mappings: proposal,
        })
    }

    /// Map one page of CRM records with the given (or stored) mappings; writes nothing.
    pub async fn preview(
        &self,
        meta: &Metadata,
        id: &str,
        entity: &str,
        input: PreviewInput,
    ) -> Result<Preview, EngineError> {
        let integration = self.0.integrations().owned(&meta.workspace_id, id).await?;
        let entity = synced(&integration, entity)?;
        let limit = match input.limit {
            None => DEFAULT_PREVIEW,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_PREVIEW).contains(n))
                .ok_or_else(|| {
                    EngineError::invalid("limit", format!("must be between 1 and {MAX_PREVIEW}"))
                })?,
        };
        let (stored, stored_filter) = effective_mappings(&integration, entity);
        let mappings = input.mappings.unwrap_or(stored);
        let filter = input.filter.unwrap_or(stored_filter);
        let mapper = compile(&mappings, filter.as_deref()).await?;
        let mut session = self.0.connections.session(id).await?;
        let fields = catalogue(&mut session, meta, entity).await?;
        let page = session
            .call(meta, |adapter, credentials| {
                adapter.pull_page(credentials, entity, None, None)
            })
            .await?;
        let sample: Vec<RemoteRecord> = page.records.into_iter().take(limit).collect();
        let sample_mapper = mapper.clone();
        // CEL evaluation blocks: keep it off the async runtime, on the bounded pool.
        let records = pool::run(move || {
            sample
                .into_iter()
                .map(|r| preview_one(&sample_mapper, r))
                .collect()
        })
        .await
        .map_err(pool_error)?;
        Ok(Preview {
            records,
            unmapped_required: unmapped_required(&fields, &mappings),
            unmapped_app_fields: unfilled(&mapper, entity),
        })
    }

    /// Re-apply the stored mappings to the CRM data already fetched (never calls the
    /// provider); answers the reapply run.
    pub async fn reapply(
        &self,
        meta: &Metadata,
        id: &str,
        entity: &str,
    ) -> Result<(SyncRun, Entity), EngineError> {
        let integration = self.0.integrations().owned(&meta.workspace_id, id).await?;
        let entity = synced(&integration, entity)?;
        let worker = format!("api:{}", std::process::id());
        let run = Reapply::new(&self.0.store, worker)
            .waking(self.0.fresh.wake().clone())
            .run(id, entity, meta)
            .await
            .map_err(reapply_error)?;
        let run_id = run.id.clone().unwrap_or_default();
        // The run's end follows every record it wrote: once the read models show it,
        // lists of runs and records agree with this answer.
        self.0
            .fresh
            .settle("sync_runs", SyncRun::TYPE, &run_id)
            .await?;
        self.0
            .fresh
            .settle("records", Integration::TYPE, id)
            .await?;
        Ok((run, entity))
    }
}
