//! The error responses of the OpenAPI document, one per status, each an `ErrorBody`: what
//! the routes name in their `responses(…)` and the document lists once under
//! `components.responses`. A module of their own, so that the routes (which the document
//! lists) do not depend on the document.

use crate::error::ErrorBody;
use utoipa::ToResponse;

/// The request or one of its fields is invalid: `validation_failed` (with `field`),
/// `malformed_json`, or a code of the operation's own.
#[derive(ToResponse)]
pub struct BadRequest(pub ErrorBody);

/// No valid bearer token (`unauthorized`).
#[derive(ToResponse)]
pub struct Unauthorized(pub ErrorBody);

/// The workspace's plan allows no more of this (`plan_limit`).
#[derive(ToResponse)]
pub struct PaymentRequired(pub ErrorBody);

/// The token's role may not do this (`forbidden`). An auditor token reads the audit trail
/// only.
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// Nothing with that id in the caller's workspace (`not_found`).
#[derive(ToResponse)]
pub struct NotFound(pub ErrorBody);

/// The resource's state does not allow this now, or it changed concurrently
/// (`version_conflict`: retry); the code says which.
#[derive(ToResponse)]
pub struct Conflict(pub ErrorBody);

/// `If-Match` names a version the resource is no longer at (`precondition_failed`): read
/// it again (its `ETag`) and reapply the change. Nothing was changed.
#[derive(ToResponse)]
pub struct PreconditionFailed(pub ErrorBody);

/// The `Idempotency-Key` was used for a different request (`idempotency_key_reused`).
#[derive(ToResponse)]
pub struct UnprocessableEntity(pub ErrorBody);

/// The request body is larger than 1 MiB (`payload_too_large`).
#[derive(ToResponse)]
pub struct PayloadTooLarge(pub ErrorBody);

/// The body was not sent as `application/json` (`unsupported_media_type`).
#[derive(ToResponse)]
pub struct UnsupportedMediaType(pub ErrorBody);

/// Too many requests for this token (`rate_limited`), or the provider's quota is used up
/// (`provider_quota_exhausted`).
#[derive(ToResponse)]
pub struct TooManyRequests(pub ErrorBody);

/// An internal error (`internal`); its cause is logged under the answer's `request_id`.
#[derive(ToResponse)]
pub struct InternalError(pub ErrorBody);

/// The provider refused or failed the call made on the request's behalf (`provider_error`,
/// `provider_unauthorized`, …).
#[derive(ToResponse)]
pub struct BadGateway(pub ErrorBody);

/// Not now: the workspace is busy, or a dependency is unavailable; retry later.
#[derive(ToResponse)]
pub struct ServiceUnavailable(pub ErrorBody);
