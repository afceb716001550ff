//! The HTTP API end to end, on SQLite and PostgreSQL. One binary: this file only declares
//! the modules.

mod as_of;
mod audit;
mod audit_access;
mod audit_changes;
mod audit_export;
mod between_runs;
mod concurrency;
mod conflicts;
mod connect;
mod custom;
mod editing;
mod errors;
mod events;
mod group_commit;
mod health;
mod idempotency;
mod integrations;
mod isolation;
mod mappings;
mod metrics;
mod niche;
mod oauth_standards;
mod openapi;
mod outgoing_webhooks;
mod rate_limit;
mod rebuild;
mod records;
mod rollback;
mod run_options;
mod secrets;
mod sync;
mod sync_semantics;
mod sync_strategies;
mod tokens;
mod webhooks;
