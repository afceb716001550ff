//! The field-mapping editor of one integration and entity: app field ↔ CRM field (chosen
//! from the CRM's live field catalogue), direction, transform and the entity's filter;
//! auto-map, a preview on real CRM records before saving, save, and re-apply to the data
//! already fetched. Every action goes through the same use cases as the mappings API, so
//! an expression is checked by the same rules and a refused one changes nothing.

use super::error::{PageError, PageResult};
use super::layout::{csrf_field, notice, page, page_status, Section};
use super::session::{Person, Posted, Writing};
use crate::error::ApiError;
use crate::routes::mappings::MappingBody;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use syncledger_domain::integration::FieldMapping;
use syncledger_engine::mappings::{Preview, PreviewInput};
use syncledger_engine::FieldInfo;

/// Blank rows under the mappings, for adding new ones without JavaScript.
const BLANK_ROWS: usize = 3;

/// Where the editor's script checks an expression as it is typed.
const CHECK: &str = "/mappings/check";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/integrations/{id}/mappings/{entity}",
            get(editor).post(save),
        )
        .route(
            "/integrations/{id}/mappings/{entity}/preview",
            post(preview),
        )
        .route("/integrations/{id}/mappings/{entity}/auto", post(auto))
        .route(
            "/integrations/{id}/mappings/{entity}/reapply",
            post(reapply),
        )
        .route(CHECK, post(check))
}

#[derive(Deserialize)]
struct CheckForm {
    #[serde(default)]
    expression: String,
}

/// `POST /mappings/check`: whether an expression would be accepted as a transform or a
/// filter, by the rules saving applies, as `{"ok": true}` or `{"ok": false, "error":
/// "…"}`. The editor's script calls it as a person types; nothing is stored.
async fn check(State(state): State<AppState>, posted: Posted<CheckForm>) -> Response {
    let source = posted.form.expression.trim();
    // An empty field is no expression: a mapping without a transform, or no filter.
    let checked = if source.is_empty() {
        Ok(())
    } else {
        state.engine.mappings().check_expression(source)
    };
    let answer = match checked {
        Ok(()) => serde_json::json!({"ok": true}),
        Err(error) => serde_json::json!({"ok": false, "error": error}),
    };
    axum::Json(answer).into_response()
}

/// An expression input's live check: the input names the URL, and the message goes to
/// the element its `aria-describedby` names (read out by screen readers as it changes).
fn checked(id: &str) -> Markup {
    html! { span.check id={ (id) "-check" } aria-live="polite" {} }
}

/// The editor's rows as posted: one value per row in each list, in order.
#[derive(Deserialize, Default)]
struct EditorForm {
    #[serde(default)]
    crm_field: Vec<String>,
    #[serde(default)]
    app_field: Vec<String>,
    #[serde(default)]
    direction: Vec<String>,
    #[serde(default)]
    transform: Vec<String>,
    #[serde(default)]
    filter: String,
}

impl EditorForm {
    /// The rows that say something (blank rows dropped), as the API's mapping bodies.
    fn mappings(&self) -> Result<Vec<MappingBody>, ApiError> {
        let mut out = Vec::new();
        for (i, crm) in self.crm_field.iter().enumerate() {
            let app = self.app_field.get(i).map(|s| s.trim()).unwrap_or_default();
            let crm = crm.trim();
            if crm.is_empty() && app.is_empty() {
                continue;
            }
            let direction = self.direction.get(i).map(String::as_str).unwrap_or("both");
            let transform = self
                .transform
                .get(i)
                .map(|t| t.trim())
                .filter(|t| !t.is_empty());
            let body = serde_json::json!({"crm_field": crm, "app_field": app,
                "direction": direction, "transform": transform});
            out.push(serde_json::from_value(body).map_err(|e| {
                ApiError::invalid_field(&format!("mappings[{}]", out.len()), e.to_string())
            })?);
        }
        Ok(out)
    }

    fn filter(&self) -> Option<String> {
        Some(self.filter.trim().to_string()).filter(|f| !f.is_empty())
    }
}

fn direction_of(m: &MappingBody) -> String {
    serde_json::to_value(m.direction)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn row(i: usize, m: Option<&MappingBody>) -> Markup {
    let direction = m.map(direction_of).unwrap_or_else(|| "both".into());
    html! {
        tr {
            td {
                label.visually-hidden for={ "crm-" (i) } { "CRM field, row " (i + 1) }
                input id={ "crm-" (i) } name="crm_field" list="crm-fields" value=[m.map(|m| &m.crm_field)];
            }
            td {
                label.visually-hidden for={ "app-" (i) } { "App field, row " (i + 1) }
                input id={ "app-" (i) } name="app_field" value=[m.map(|m| &m.app_field)];
            }
            td {
                label.visually-hidden for={ "dir-" (i) } { "Direction, row " (i + 1) }
                select id={ "dir-" (i) } name="direction" {
                    @for (value, text) in [("both", "both ways"), ("pull", "CRM → app"), ("push", "app → CRM"), ("none", "off")] {
                        option value=(value) selected[direction == value] { (text) }
                    }
                }
            }
            td {
                label.visually-hidden for={ "tf-" (i) } { "Transform (CEL), row " (i + 1) }
                input id={ "tf-" (i) } name="transform" placeholder="e.g. value.lowerAscii()"
                    data-check=(CHECK) aria-describedby={ "tf-" (i) "-check" }
                    value=[m.and_then(|m| m.transform.as_ref())];
                (checked(&format!("tf-{i}")))
            }
        }
    }
}

struct Editor<'a> {
    id: &'a str,
    entity: &'a str,
    mappings: &'a [MappingBody],
    filter: Option<&'a str>,
    catalogue: Result<Vec<FieldInfo>, String>,
    error: Option<&'a ApiError>,
    preview: Option<&'a Preview>,
    note: Option<&'a str>,
}

fn editor_markup(person: &Person, e: &Editor) -> Markup {
    let base = format!("/integrations/{}/mappings/{}", e.id, e.entity);
    html! {
        p { a href={ "/integrations/" (e.id) } { "← The integration" } }
        h1 { "Field mappings: " (e.entity) }
        p {
            @for other in ["contacts", "companies"] {
                @if other != e.entity { a href={ "/integrations/" (e.id) "/mappings/" (other) } { (other) } }
            }
        }
        @if let Some(note) = e.note { p.notice role="status" { (note) } }
        @if let Some(err) = e.error {
            p.field-error role="alert" #mapping-error {
                @if let Some(f) = &err.field { code { (f) } ": " }
                (err.message)
            }
        }
        @match &e.catalogue {
            Ok(fields) => datalist #crm-fields {
                @for f in fields { option value=(f.name) { (f.label) @if f.required { " (required)" } } }
            },
            Err(why) => p.hint { "The CRM's field list is not available (" (why) "); type field names." },
        }
        // A viewer reads the mappings in a form that cannot post (its fields disabled).
        form.stack.wide method=[person.can_write().then_some("post")] action=(base) #mapping-editor {
            (csrf_field(person))
            fieldset.plain disabled[!person.can_write()] {
            legend.visually-hidden { "Mappings" }
            div.table-wrap { table #mappings {
                thead { tr { th { "CRM field" } th { "App field" } th { "Direction" } th { "Transform" } } }
                tbody {
                    @for (i, m) in e.mappings.iter().enumerate() { (row(i, Some(m))) }
                    @for i in e.mappings.len()..e.mappings.len() + BLANK_ROWS { (row(i, None)) }
                }
            } }
            div {
                label for="filter" { "Only sync CRM records where (CEL, optional)" }
                input #filter name="filter" value=[e.filter] placeholder="record.lifecyclestage == 'customer'"
                    data-check=(CHECK) aria-describedby="filter-check";
                (checked("filter"))
            }
            }
            @if person.can_write() {
                div.actions {
                    button type="submit" formaction={ (base) "/preview" } #preview-button { "Preview on real records" }
                    button type="submit" #save-button { "Save mappings" }
                    button type="submit" formaction={ (base) "/auto" } formnovalidate { "Auto-map (not saved)" }
                    button type="submit" formaction={ (base) "/reapply" } { "Re-apply saved mappings" }
                }
            }
        }
        @if let Some(p) = e.preview { (preview_markup(p)) }
    }
}

fn preview_markup(p: &Preview) -> Markup {
    html! {
        section #mapping-preview {
            h2 { "Preview (nothing saved)" }
            @if !p.unmapped_required.is_empty() {
                p.field-error { "Required CRM fields no mapping pushes: " (p.unmapped_required.join(", ")) }
            }
            @if p.records.is_empty() { p { "The CRM returned no records to preview." } }
            @for r in &p.records {
                article.preview-record {
                    h3 { "CRM record " code { (r.record.id) } }
                    @if r.filtered { p { "Left out by the filter." } }
                    @if let Some(err) = &r.error { p.field-error { (err) } }
                    @if let Some(app) = &r.app {
                        dl.facts { @for (k, v) in app { dt { (k) } dd { (v.as_deref().unwrap_or("—")) } } }
                    }
                }
            }
        }
    }
}

async fn catalogue(
    state: &AppState,
    person: &Person,
    id: &str,
    entity: &str,
) -> Result<Vec<FieldInfo>, String> {
    let entity = crate::extract::entity("entity", Some(entity)).map_err(|e| e.message)?;
    state
        .engine
        .oauth()
        .fields(&person.caller.metadata(), id, entity)
        .await
        .map_err(|e| ApiError::from(e).message)
}

#[derive(Deserialize, Default)]
struct Done {
    #[serde(default)]
    done: Option<String>,
}

async fn editor(
    State(state): State<AppState>,
    person: Person,
    Path((id, entity)): Path<(String, String)>,
    Query(q): Query<Done>,
) -> PageResult<Response> {
    let found = state
        .engine
        .mappings()
        .get(&person.caller.workspace_id, &id, &entity)
        .await?;
    let view = crate::routes::mappings::EntityMappings::from(found);
    let e = Editor {
        id: &id,
        entity: &view.entity,
        mappings: &view.mappings,
        filter: view.filter.as_deref(),
        catalogue: catalogue(&state, &person, &id, &entity).await,
        error: None,
        preview: None,
        note: None,
    };
    let body = html! { (notice(q.done.as_deref())) (editor_markup(&person, &e)) };
    Ok(page(&person, Section::Overview, "Field mappings", body))
}

/// The editor shown again with what was posted, an error and/or a preview.
async fn again(
    state: &AppState,
    person: &Person,
    (id, entity): (&str, &str),
    form: &EditorForm,
    mappings: &[MappingBody],
    outcome: (
        StatusCode,
        Option<&ApiError>,
        Option<&Preview>,
        Option<&str>,
    ),
) -> Response {
    let (status, error, preview, note) = outcome;
    let e = Editor {
        id,
        entity,
        mappings,
        filter: Some(form.filter.as_str()).filter(|f| !f.is_empty()),
        catalogue: catalogue(state, person, id, entity).await,
        error,
        preview,
        note,
    };
    page_status(
        status,
        person,
        Section::Overview,
        "Field mappings",
        editor_markup(person, &e),
    )
}

fn domain(mappings: &[MappingBody]) -> Vec<FieldMapping> {
    mappings.iter().cloned().map(Into::into).collect()
}

async fn preview(
    State(state): State<AppState>,
    Path((id, entity)): Path<(String, String)>,
    Writing(posted): Writing<EditorForm>,
) -> PageResult<Response> {
    let person = posted.person;
    let form = posted.form;
    let mappings = match form.mappings() {
        Ok(m) => m,
        Err(e) => {
            let out = (StatusCode::BAD_REQUEST, Some(&e), None, None);
            return Ok(again(&state, &person, (&id, &entity), &form, &[], out).await);
        }
    };
    let input = PreviewInput {
        mappings: Some(domain(&mappings)),
        filter: Some(form.filter()),
        limit: Some(10),
    };
    let result = state
        .engine
        .mappings()
        .preview(&person.caller.metadata(), &id, &entity, input)
        .await
        .map_err(ApiError::from);
    Ok(match result {
        Ok(p) => {
            let out = (StatusCode::OK, None, Some(&p), None);
            again(&state, &person, (&id, &entity), &form, &mappings, out).await
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let out = (StatusCode::BAD_REQUEST, Some(&e), None, None);
            again(&state, &person, (&id, &entity), &form, &mappings, out).await
        }
        Err(e) => return Err(PageError(e)),
    })
}

async fn save(
    State(state): State<AppState>,
    Path((id, entity)): Path<(String, String)>,
    Writing(posted): Writing<EditorForm>,
) -> PageResult<Response> {
    let person = posted.person;
    let form = posted.form;
    let mappings = match form.mappings() {
        Ok(m) => m,
        Err(e) => {
            let out = (StatusCode::BAD_REQUEST, Some(&e), None, None);
            return Ok(again(&state, &person, (&id, &entity), &form, &[], out).await);
        }
    };
    let saved = state
        .engine
        .mappings()
        .replace(
            &person.caller.metadata(),
            &id,
            &entity,
            domain(&mappings),
            form.filter(),
        )
        .await
        .map_err(ApiError::from);
    match saved {
        Ok(_) => Ok(
            Redirect::to(&format!("/integrations/{id}/mappings/{entity}?done=saved"))
                .into_response(),
        ),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let out = (StatusCode::BAD_REQUEST, Some(&e), None, None);
            Ok(again(&state, &person, (&id, &entity), &form, &mappings, out).await)
        }
        Err(e) => Err(PageError(e)),
    }
}

async fn auto(
    State(state): State<AppState>,
    Path((id, entity)): Path<(String, String)>,
    Writing(posted): Writing<EditorForm>,
) -> PageResult<Response> {
    let person = posted.person;
    let proposal = state
        .engine
        .mappings()
        .propose(&person.caller.metadata(), &id, &entity)
        .await?;
    let mappings: Vec<MappingBody> = proposal.mappings.iter().map(MappingBody::from).collect();
    let note = "Proposed from the CRM's field names. Nothing is saved until you save.";
    let out = (StatusCode::OK, None, None, Some(note));
    Ok(again(
        &state,
        &person,
        (&id, &entity),
        &posted.form,
        &mappings,
        out,
    )
    .await)
}

async fn reapply(
    State(state): State<AppState>,
    Path((id, entity)): Path<(String, String)>,
    Writing(posted): Writing<EditorForm>,
) -> PageResult<Response> {
    let (run, _) = state
        .engine
        .mappings()
        .reapply(&posted.person.caller.metadata(), &id, &entity)
        .await?;
    let run_id = crate::routes::sync_runs::view(&run).id;
    Ok(Redirect::to(&format!("/runs/{run_id}?done=reapplied")).into_response())
}
