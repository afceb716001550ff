//! Unknown query parameters are refused with 400 naming them, on every operation that takes
//! a bearer token. What an operation accepts is what the OpenAPI document lists for it, so
//! the document and the server cannot drift apart: a parameter a handler reads but the
//! document does not name is refused (and a test notices). Operations without a token
//! (the OAuth callback, provider webhooks) are left alone: providers add parameters of
//! their own (`scope`, `accounts-server`, …) that must not break them.

use crate::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::OpenApi;

/// Per route template, per method: the query parameters the operation takes. Keyed by the
/// route so that a request's lookup borrows its matched path instead of building a key.
#[derive(Debug, Default)]
pub struct QueryRules(HashMap<String, Vec<(Method, BTreeSet<String>)>>);

impl QueryRules {
    pub fn from_doc(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut rules: HashMap<String, Vec<(Method, BTreeSet<String>)>> = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let shared = query_names(item.parameters.as_deref());
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, op) in operations {
                let Some(op) = op.as_ref().filter(|op| takes_a_token(op)) else {
                    continue;
                };
                let mut names = shared.clone();
                names.extend(query_names(op.parameters.as_deref()));
                rules.entry(path.clone()).or_default().push((method, names));
            }
        }
        QueryRules(rules)
    }

    /// The parameters of `query` that `method route` does not take, in order, each once;
    /// `None` when the operation is not checked here.
    pub fn unknown(&self, method: &Method, route: &str, query: &str) -> Option<Vec<String>> {
        let allowed = self.names(method, route)?;
        let mut unknown: Vec<String> = Vec::new();
        for (name, _) in form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(name.as_ref()) && !unknown.iter().any(|u| *u == name) {
                unknown.push(name.into_owned());
            }
        }
        Some(unknown)
    }

    /// What `method route` takes, for the error message.
    fn allowed(&self, method: &Method, route: &str) -> Vec<&str> {
        self.names(method, route)
            .map(|names| names.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn names(&self, method: &Method, route: &str) -> Option<&BTreeSet<String>> {
        self.0
            .get(route)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, names)| names)
    }
}

fn takes_a_token(op: &Operation) -> bool {
    op.security.as_ref().is_some_and(|s| !s.is_empty())
}

fn query_names(params: Option<&[utoipa::openapi::path::Parameter]>) -> BTreeSet<String> {
    params
        .unwrap_or_default()
        .iter()
        .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
        .map(|p| p.name.clone())
        .collect()
}

static RULES: LazyLock<QueryRules> =
    LazyLock::new(|| QueryRules::from_doc(&crate::openapi::ApiDoc::openapi()));

/// Middleware: 400 `validation_failed` naming the unknown parameters (`field`: the first),
/// before the handler runs (so nothing changes).
pub async fn refuse_unknown(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    if let (Some(route), Some(query)) = (route, req.uri().query()) {
        if let Some(unknown) = RULES.unknown(req.method(), route, query) {
            if let Some(first) = unknown.first() {
                let allowed = RULES.allowed(req.method(), route);
                let takes = if allowed.is_empty() {
                    "no query parameters".to_string()
                } else {
                    allowed.join(", ")
                };
                let error = ApiError::invalid_field(
                    first,
                    format!(
                        "unknown query parameter{} {}; this endpoint takes {takes}",
                        if unknown.len() > 1 { "s" } else { "" },
                        unknown.join(", "),
                    ),
                );
                return error.into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checked_operation_is_a_documented_route_with_its_parameters() {
        let rules = &*RULES;
        let list = rules
            .unknown(
                &Method::GET,
                "/v1/records",
                "entity=contacts&bogus=1&limit=5&bogus=2",
            )
            .expect("GET /v1/records is checked");
        assert_eq!(list, ["bogus"]);
        assert_eq!(
            rules.unknown(&Method::GET, "/v1/records", "integration_id=x&q=a&cursor=c"),
            Some(vec![])
        );
        // Without a token: not checked (providers add their own parameters).
        assert_eq!(
            rules.unknown(&Method::GET, "/v1/oauth/callback", "code=x&scope=y"),
            None
        );
        let none = rules
            .unknown(&Method::POST, "/v1/integrations/{id}/pause", "force=true")
            .expect("pause is checked");
        assert_eq!(none, ["force"]);
    }
}
