//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`.
//!
//! Each operation names its own `operationId`, tag and the errors particular to it
//! (`response = NotFound`, …, the reusable responses below). The errors that come from the
//! extractors every operation of a kind goes through are added by [`ExtractorErrors`]
//! instead of being repeated on every route. The test suite checks the document with an
//! independent validator and generates a client from it (`tests/tests/api/openapi.rs`).

use crate::error_docs::*;
use crate::routes::{
    audit, conflicts, destinations, diverged, events, health, imports, integrations, mappings,
    oauth, provider_hooks, providers, records, sync_runs, tokens, webhook_endpoints, webhooks,
};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "syncledger",
        version = env!("CARGO_PKG_VERSION"),
        description = "Event-sourced CRM sync engine: integrations, mappings, sync runs, conflicts, \
            records, the audit trail and live events. Every error answers \
            `{\"error\": {\"code\": …, \"message\": …}}` (`ErrorBody`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "/", description = "The server that serves this document; every path starts with /v1")),
    tags(
        (name = "system", description = "Liveness, readiness and this document; no token needed"),
        (name = "providers", description = "The CRM providers this server can connect to"),
        (name = "tokens", description = "API tokens of the workspace"),
        (name = "integrations", description = "Connections to a CRM: lifecycle, credentials, OAuth, field catalogue"),
        (name = "mappings", description = "Field mappings and filters between records and a CRM entity"),
        (name = "sync runs", description = "Runs that pull from and push to a CRM"),
        (name = "records", description = "The app's own records and their history"),
        (name = "conflicts", description = "Fields changed on both sides, their resolution and standing rules"),
        (name = "audit", description = "The hash-chained audit trail (admin, auditor)"),
        (name = "events", description = "Committed events, live"),
        (name = "webhooks", description = "Deliveries from providers, authenticated by their signatures; the app's own endpoints, to which syncledger sends signed messages (Standard Webhooks) of the event types in WebhookEventType"),
        (name = "imports", description = "The ways in for a CRM that publishes no API: CSV imports and the integration's inbound webhook (called by Zapier or Make, authenticated by its own secret), each a sync run of kind import"),
        (name = "destinations", description = "The app's own PostgreSQL database (Supabase or any other), into whose tables records are written exactly once, in feed order"),
    ),
    paths(
        health::health,
        health::ready,
        document,
        providers::list, providers::get,
        tokens::create, tokens::list, tokens::revoke,
        integrations::create, integrations::list, integrations::get, integrations::update,
        integrations::pause, integrations::resume, integrations::disconnect, integrations::credentials,
        oauth::connect, oauth::callback, oauth::test, oauth::fields,
        diverged::list, diverged::settle,
        mappings::list, mappings::get, mappings::put, mappings::auto, mappings::preview,
        mappings::reapply,
        sync_runs::start, sync_runs::list, sync_runs::get, sync_runs::cancel, sync_runs::retry,
        sync_runs::rollback,
        records::create, records::list, records::get, records::edit, records::history,
        records::archive,
        conflicts::list, conflicts::get_one, conflicts::resolve, conflicts::ignore,
        conflicts::rules, conflicts::set_rule, conflicts::remove_rule,
        audit::list, audit::verify, audit::export,
        events::stream,
        webhooks::hubspot, provider_hooks::chatwoot, provider_hooks::set_secret,
        provider_hooks::tave, provider_hooks::create_hook_url,
        imports::csv, imports::create_inbound, imports::receive, imports::receive_with_secret,
        webhook_endpoints::create, webhook_endpoints::list, webhook_endpoints::get,
        webhook_endpoints::update, webhook_endpoints::delete, webhook_endpoints::rotate_secret,
        webhook_endpoints::deliveries, webhook_endpoints::resend, webhook_endpoints::replay,
        destinations::create, destinations::list, destinations::get, destinations::delete,
        destinations::held, destinations::rebuild,
    ),
    components(
        schemas(crate::error::ErrorBody, crate::error::ErrorDetail),
        responses(
            BadRequest, Unauthorized, PaymentRequired, Forbidden, NotFound, Conflict,
            PayloadTooLarge, UnsupportedMediaType, TooManyRequests, InternalError, BadGateway,
            ServiceUnavailable, PreconditionFailed, UnprocessableEntity,
        ),
    ),
    modifiers(&BearerAuth, &ExtractorErrors, &IdempotencyKeys, &ActingFor, &ReasonPhrases),
)]
pub struct ApiDoc;

/// This API's OpenAPI 3.1 document (`GET /v1/openapi.json`). It lives here rather than
/// with the router: the router's query check reads this document, so the document must
/// not depend on the router.
#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "getOpenApiDocument", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

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

/// The errors an operation can answer because of the extractors it goes through, added to
/// every operation they apply to (an operation's own response for the same status wins):
///
/// - with a bearer token (`Caller`, `Writer`, `Admin`): 401 without a valid token, 403 for a
///   role the route refuses (every route refuses an auditor but the audit trail's, so this
///   holds for all of them), 429 over the token's rate limit, and 500 when the store fails
///   while the token is looked up;
/// - with a request body: 400 for malformed JSON or a bad field, 413 over 1 MiB; 415 when
///   it is not JSON (`Body`, on the routes that take a token);
/// - with query parameters (`Query`): 400 for a parameter that does not parse.
struct ExtractorErrors;

impl Modify for ExtractorErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        operations(openapi).for_each(add_extractor_errors);
    }
}

/// The operations that create (`crate::idempotency::CREATING`) take an `Idempotency-Key`
/// header, and can answer 422 (the key was used for another request) and 409 (its first
/// request is still running).
struct IdempotencyKeys;

impl Modify for IdempotencyKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterBuilder;
        use utoipa::openapi::{Object, Required, Type};
        for (method, path) in crate::idempotency::CREATING {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let op = match method {
                "POST" => item.post.as_mut(),
                _ => None,
            };
            let Some(op) = op else { continue };
            let header = ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1 to 255 visible ASCII characters (a UUID, say): a retry with the same key \
                     and request gets the first answer again (Idempotent-Replayed: true) and \
                     creates nothing; kept 24 hours",
                ))
                .schema(Some(Object::with_type(Type::String)))
                .build();
            op.parameters.get_or_insert_with(Vec::new).push(header);
            for (status, name) in [("409", "Conflict"), ("422", "UnprocessableEntity")] {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
}

/// Every operation that takes a token takes `X-Acting-For`: the end user an app acts for,
/// recorded beside the token in the events the request causes (`crate::auth`).
struct ActingFor;

impl Modify for ActingFor {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterBuilder;
        use utoipa::openapi::{Object, Required, Type};
        for op in operations(openapi) {
            if op.security.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            let header = ParameterBuilder::new()
                .name("X-Acting-For")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The end user an app acts for (1 to 254 visible ASCII characters, e.g. an \
                     email): recorded in the audit trail beside the token; 400 otherwise",
                ))
                .schema(Some(Object::with_type(Type::String)))
                .build();
            op.parameters.get_or_insert_with(Vec::new).push(header);
        }
    }
}

/// Every operation of the document.
fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// A response the route gave no description of (`description` is required, and utoipa
/// leaves it empty) says its status's reason phrase: "OK", "Created", …
struct ReasonPhrases;

impl Modify for ReasonPhrases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations(openapi) {
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if response.description.is_empty() {
                    let reason = status
                        .parse()
                        .ok()
                        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                        .and_then(|code| code.canonical_reason());
                    response.description = reason.unwrap_or("The answer").to_owned();
                }
            }
        }
    }
}

fn add_extractor_errors(op: &mut Operation) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let mut add = |status: &str, name: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    };
    if has_body || has_query {
        add("400", "BadRequest");
    }
    if has_body {
        add("413", "PayloadTooLarge");
    }
    if has_body && authenticated {
        add("415", "UnsupportedMediaType");
    }
    if authenticated {
        add("401", "Unauthorized");
        add("403", "Forbidden");
        add("429", "TooManyRequests");
        add("500", "InternalError");
    }
}
