//! The `syncledger` binary end to end: workspace creation, serving and graceful shutdown,
//! secrets kept out of logs and storage, audit verification, replay and master-key
//! rotation, on SQLite and (when reachable) PostgreSQL.

#[path = "cli/audit.rs"]
mod audit;
#[path = "cli/bench.rs"]
mod bench;
#[path = "cli/cel_memory.rs"]
mod cel_memory;
#[path = "cli/config.rs"]
mod config;
#[path = "cli/creation.rs"]
mod creation;
#[path = "cli/dashboard.rs"]
mod dashboard;
#[path = "cli/deploy.rs"]
mod deploy;
#[path = "cli/destinations.rs"]
mod destinations;
#[path = "cli/diverged.rs"]
mod diverged;
#[path = "cli/files.rs"]
mod files;
#[path = "cli/import.rs"]
mod import;
#[path = "cli/keys.rs"]
mod keys;
#[path = "cli/logs.rs"]
mod logs;
#[path = "cli/migrations.rs"]
mod migrations;
#[path = "cli/quickstart.rs"]
mod quickstart;
#[path = "cli/replay.rs"]
mod replay;
#[path = "cli/replay_into.rs"]
mod replay_into;
#[path = "cli/sandbox.rs"]
mod sandbox;
#[path = "cli/secrets.rs"]
mod secrets;
#[path = "cli/shutdown.rs"]
mod shutdown;
#[path = "cli/tokens.rs"]
mod tokens;
#[path = "cli/webhooks.rs"]
mod webhooks;
#[path = "cli/workspace.rs"]
mod workspace;
