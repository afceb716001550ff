//! Routes: OAuth, CRM objects behind the auth and rate-limit guard, and the control API.

use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{batch, control, faults, guard, oauth, objects, properties, search};

pub fn build(state: AppState) -> Router {
    let crm = Router::new()
        .route(
            "/crm/v3/objects/{type}",
            get(objects::list).post(objects::create),
        )
        .route("/crm/v3/objects/{type}/search", post(search::search))
        .route("/crm/v3/objects/{type}/batch/{op}", post(batch::batch))
        .route(
            "/crm/v3/objects/{type}/{id}",
            get(objects::get_one)
                .patch(objects::update)
                .delete(objects::archive),
        )
        .route("/crm/v3/properties/{type}", get(properties::list))
        .route_layer(from_fn_with_state(state.clone(), guard::guard));
    let oauth = Router::new()
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/v1/token", post(oauth::token))
        .route(
            "/oauth/v1/refresh-tokens/{token}",
            delete(oauth::revoke_refresh),
        )
        .route(
            "/oauth/v1/access-tokens/{token}",
            get(oauth::access_token_info),
        )
        .route("/oauth/v3/token/revoke", post(oauth::revoke_v3));
    let control = Router::new()
        .route("/_sandbox/records/{type}", post(control::upsert_record))
        .route(
            "/_sandbox/records/{type}/{id}",
            get(control::get_record).delete(control::delete_record),
        )
        .route("/_sandbox/tokens", post(control::issue_tokens))
        .route("/_sandbox/tokens/expire", post(control::expire_tokens))
        .route("/_sandbox/rate-limit", post(control::set_rate_limit))
        .route(
            "/_sandbox/faults",
            post(control::add_faults).delete(control::clear_faults),
        )
        .route("/_sandbox/counters", get(control::counters))
        .route("/_sandbox/counters/reset", post(control::reset_counters));
    crm.merge(oauth)
        .merge(control)
        .fallback(not_found)
        .layer(from_fn_with_state(
            state.clone(),
            faults::track::<crate::state::Shared>,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("No route matches this path")
}
