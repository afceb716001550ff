//! The OpenAPI 3 document served at `GET /v1/openapi.json`.

use crate::routes::{
    audit, events, health, integrations, mappings, oauth, providers, records, sync_runs, tokens,
    webhooks,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "syncledger", description = "Event-sourced CRM sync engine: integrations, audit trail, live events."),
    paths(
        health::health,
        health::ready,
        providers::list,
        tokens::create, tokens::list, tokens::revoke,
        integrations::create, integrations::list, integrations::get, integrations::update,
        integrations::pause, integrations::resume, integrations::disconnect, integrations::credentials,
        oauth::connect, oauth::callback, oauth::test, oauth::fields,
        audit::list, audit::verify, audit::export,
        events::stream,
        webhooks::hubspot,
        records::create, records::list, records::get, records::edit, records::history,
        records::archive,
        sync_runs::start, sync_runs::list, sync_runs::get, sync_runs::cancel, sync_runs::retry, sync_runs::rollback,
        mappings::list, mappings::get, mappings::put, mappings::auto, mappings::preview,
        mappings::reapply,
        crate::routes::conflicts::list, crate::routes::conflicts::get_one,
        crate::routes::conflicts::resolve, crate::routes::conflicts::ignore,
        crate::routes::conflicts::rules, crate::routes::conflicts::set_rule,
        crate::routes::conflicts::remove_rule,
        crate::routes::diverged::list, crate::routes::diverged::settle,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
