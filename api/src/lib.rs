//! syncledger's HTTP API, CLI and process wiring.

pub mod app;
pub mod auth;
pub mod bench;
pub mod bench_asof;
pub mod bench_rebuild;
pub mod bench_sync;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod replay;
pub mod rollback_cmd;
pub mod routes;
pub mod state;
pub mod streams;
pub mod telemetry;
pub mod trail;
pub mod worker;

pub use app::Application;
pub use config::Settings;
