//! Routes: OAuth, REST behind the session/limit guard, and the control API.

use axum::middleware::from_fn_with_state;
use axum::routing::{get, patch, post};
use axum::Router;

use super::error::SfError;
use super::state::AppState;
use super::{collections, control, guard, oauth, query, sobjects};

pub fn build(state: AppState) -> Router {
    let data = state.data_path();
    let rest = Router::new()
        .route(&format!("{data}/query"), get(query::query))
        .route(&format!("{data}/query/"), get(query::query))
        .route(&format!("{data}/query/{{locator}}"), get(query::more))
        .route(
            &format!("{data}/sobjects/{{object}}/describe"),
            get(sobjects::describe),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/describe/"),
            get(sobjects::describe),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/deleted/"),
            get(sobjects::deleted),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/deleted"),
            get(sobjects::deleted),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/updated/"),
            get(sobjects::updated),
        )
        .route(
            &format!("{data}/sobjects/{{object}}/updated"),
            get(sobjects::updated),
        )
        .route(
            &format!("{data}/composite/sobjects"),
            post(collections::create)
                .patch(collections::update)
                .delete(collections::delete),
        )
        .route(
            &format!("{data}/composite/sobjects/{{object}}"),
            get(collections::retrieve),
        )
        .route(
            &format!("{data}/composite/sobjects/{{object}}/{{field}}"),
            patch(collections::upsert),
        )
        .route_layer(from_fn_with_state(state.clone(), guard::rest));
    let oauth = Router::new()
        .route("/services/oauth2/authorize", get(oauth::authorize))
        .route("/services/oauth2/token", post(oauth::token))
        .route("/services/oauth2/revoke", post(oauth::revoke))
        .route("/services/oauth2/userinfo", get(oauth::userinfo));
    let control = Router::new()
        .route("/_sandbox/records/{object}", post(control::upsert_record))
        .route(
            "/_sandbox/records/{object}/{id}",
            get(control::get_record).delete(control::delete_record),
        )
        .route("/_sandbox/tokens", post(control::issue_tokens))
        .route("/_sandbox/tokens/expire", post(control::expire_tokens))
        .route("/_sandbox/rate-limit", post(control::set_rate_limit))
        .route("/_sandbox/daily-limit", post(control::set_daily_limit))
        .route(
            "/_sandbox/faults",
            post(control::add_faults).delete(control::clear_faults),
        )
        .route("/_sandbox/counters", get(control::counters))
        .route("/_sandbox/counters/reset", post(control::reset_counters));
    rest.merge(oauth)
        .merge(control)
        .fallback(not_found)
        .layer(from_fn_with_state(
            state.clone(),
            crate::faults::track::<super::state::Shared>,
        ))
        .with_state(state)
}

async fn not_found() -> SfError {
    SfError::not_found("The requested resource does not exist")
}
