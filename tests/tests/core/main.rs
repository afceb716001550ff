//! Event store, feed, projections, audit chain, rebuild and migrations, on SQLite and
//! PostgreSQL. One binary: this file only declares the modules.

mod append;
mod as_of;
mod audit;
mod credentials;
mod feed;
mod migrations;
mod query_plans;
mod read_models;
mod rebuild;
mod replay;
mod runner;
