//! The security suite: each test replays an attack a hostile tenant, a hostile provider or
//! a careless operator could mount, and asserts that the server refuses it and changes
//! nothing. One binary: this file only declares the modules. README's "Security model"
//! section says what a tenant can and cannot make the server do.

mod bus;
mod cel;
mod correlation;
mod creation;
mod csv_export;
mod files;
mod oauth_secrets;
mod outbound;
mod provider_text;
mod streams;
mod webhooks;
