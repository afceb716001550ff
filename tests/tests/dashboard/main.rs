//! The dashboard over HTTP, on SQLite and PostgreSQL: signing in and out, sessions and
//! form tokens, roles, and the pages over a synced workspace. (The browser suite drives
//! the same pages in Chromium.)

mod conflicts;
mod connect;
mod destinations;
mod mappings;
mod pages;
mod people;
mod records;
mod sessions;
mod settings;
mod webhooks;
