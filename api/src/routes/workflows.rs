//! `/v1/workflows`: define (JSON or YAML), validate, list and read workflow
//! definitions.
//!
//! Owns reading a definition body in the format its `Content-Type` names,
//! off the async workers (see `compile`). It must never check a definition
//! itself: the engine's model does, and reports every problem with its path —
//! a document that does not even parse, or is past the model's bounds on
//! size and depth, is one problem at the empty path, so it is `422
//! invalid_workflow` here too.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use retrace_engine::model::Workflow;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{Body, Path, is_json, media_type};
use crate::schemas::{self, WorkflowDefinition, WorkflowYaml};
use crate::state::AppState;
use crate::views::{VersionView, WorkflowView};

/// The two spellings of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

/// The body's format, from its `Content-Type`.
fn format(headers: &HeaderMap) -> Result<Format, Error> {
    if is_json(headers) {
        return Ok(Format::Json);
    }
    match media_type(headers).as_deref() {
        Some("application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml") => {
            Ok(Format::Yaml)
        }
        other => Err(Error::UnsupportedMediaType(format!(
            "a workflow definition is `application/json` or `application/yaml`, not {}",
            other.unwrap_or("a body without a Content-Type")
        ))),
    }
}

fn yaml_text(body: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(body)
        .map_err(|e| Error::MalformedJson(format!("a YAML definition must be UTF-8: {e}")))
}

/// Reads and compiles a definition on a blocking thread, not an async
/// worker: within the document's bounds (`DOCUMENT_BYTES_MAX`,
/// `DOCUMENT_DEPTH_MAX`) parsing is linear, but a large YAML document still
/// takes a good part of a second, and compiling its expressions more.
async fn compile(format: Format, body: Bytes) -> Result<Workflow, Error> {
    let compiled = tokio::task::spawn_blocking(move || match format {
        Format::Json => Ok(Workflow::from_json(&body)),
        Format::Yaml => yaml_text(&body).map(Workflow::from_yaml),
    })
    .await
    .map_err(|e| Error::Internal(format!("the definition could not be compiled: {e}")))??;
    compiled.map_err(|e| Error::InvalidWorkflow(e.problems))
}

/// A workflow name or version from a path. One with a control or
/// bidirectional character names no workflow (none can be defined so): `404`
/// at once, with the character named, not echoed into the answer and the log.
fn path_name(what: &str, name: String) -> Result<String, Error> {
    match retrace_engine::model::check_name_chars(what, &name) {
        Ok(()) => Ok(name),
        Err(why) => Err(Error::UnknownWorkflow(format!("so named ({why})"))),
    }
}

/// Something a valid definition names that does not exist (yet).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowWarning)]
struct WarningView {
    /// Where in the document, as a problem's `path`.
    path: String,
    message: String,
}

fn warnings(engine: &retrace_engine::runtime::Engine, workflow: &Workflow) -> Vec<WarningView> {
    engine
        .warnings(workflow)
        .into_iter()
        .map(|w| WarningView {
            path: w.path,
            message: w.message,
        })
        .collect()
}

/// A definition stored (or found stored before).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DefinedWorkflow)]
struct DefinedView {
    name: String,
    /// The hex BLAKE3 hash of the canonical definition (64 digits).
    version: String,
    /// The document's own `version` label, if it has one.
    #[schema(required = true)]
    label: Option<String>,
    /// `false` when the same document (same content hash) was defined before.
    created: bool,
    /// Workflows it names that are not defined (yet): it is stored anyway
    /// (see docs/dsl.md, Warnings). Empty when there are none.
    warnings: Vec<WarningView>,
}

/// `POST /v1/workflows`: `201` when new, `200` when defined before.
#[utoipa::path(
    post,
    path = "/v1/workflows",
    operation_id = "defineWorkflow",
    tag = "workflows",
    summary = "Define a workflow",
    description = "Stores a definition in the workflow language (`docs/dsl.md`), \
        sent as JSON or as YAML. A definition with problems is refused with every \
        problem in `details` (`422 invalid_workflow`); one that does not even parse \
        is one problem at the empty path.",
    request_body(
        description = "A workflow definition: JSON (`application/json`, or any \
            `application/*+json`) or YAML (`application/yaml`, `application/x-yaml`, \
            `text/yaml`, `text/x-yaml`).",
        content(
            (WorkflowDefinition = "application/json"),
            (WorkflowYaml = "application/yaml"),
            (WorkflowYaml = "application/x-yaml"),
            (WorkflowYaml = "text/yaml"),
            (WorkflowYaml = "text/x-yaml"),
        ),
    ),
    responses(
        (status = 201, description = "Defined: a new version.", body = DefinedView),
        (status = 200, description = "The same document (same content hash, whatever its \
            spelling) was defined before; nothing changed (`created: false`).", body = DefinedView),
    ),
)]
pub async fn define(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, Error> {
    let workflow = compile(format(&headers)?, body).await?;
    let defined = state
        .engine
        .acting_as(caller.name())
        .because(caller.reason())
        .define(workflow)
        .await?;
    let status = if defined.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let view = DefinedView {
        name: defined.workflow.name().to_owned(),
        version: defined.workflow.version().to_owned(),
        label: defined.workflow.label().map(str::to_owned),
        created: defined.created,
        warnings: defined
            .warnings
            .into_iter()
            .map(|w| WarningView {
                path: w.path,
                message: w.message,
            })
            .collect(),
    };
    Ok((status, axum::Json(view)))
}

/// A definition that passed every check.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ValidWorkflow)]
struct ValidView {
    /// Always `true` (problems are a `422 invalid_workflow`).
    valid: bool,
    name: String,
    /// The version it would be defined as (64 hex digits).
    version: String,
    /// Workflows it names that are not defined (yet) on this server.
    warnings: Vec<WarningView>,
}

/// `POST /v1/workflows/validate`: the same checks as a definition; stores
/// nothing.
#[utoipa::path(
    post,
    path = "/v1/workflows/validate",
    operation_id = "validateWorkflow",
    tag = "workflows",
    summary = "Check a workflow definition without storing it",
    description = "The same body and the same checks as `POST /v1/workflows`; \
        nothing is stored.",
    request_body(
        description = "A workflow definition: JSON (`application/json`, or any \
            `application/*+json`) or YAML (`application/yaml`, `application/x-yaml`, \
            `text/yaml`, `text/x-yaml`).",
        content(
            (WorkflowDefinition = "application/json"),
            (WorkflowYaml = "application/yaml"),
            (WorkflowYaml = "application/x-yaml"),
            (WorkflowYaml = "text/yaml"),
            (WorkflowYaml = "text/x-yaml"),
        ),
    ),
    responses(
        (status = 200, description = "The definition is valid.", body = ValidView),
    ),
)]
pub async fn validate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<impl IntoResponse, Error> {
    let workflow = compile(format(&headers)?, body).await?;
    Ok(axum::Json(ValidView {
        valid: true,
        name: workflow.name().to_owned(),
        version: workflow.version().to_owned(),
        warnings: warnings(&state.engine, &workflow),
    }))
}

/// A workflow and its versions.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowListEntry)]
struct ListEntry {
    name: String,
    /// The newest version.
    #[schema(required = true)]
    latest: Option<VersionView>,
    /// Every version, oldest first.
    versions: Vec<VersionView>,
}

/// Every workflow.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowList)]
struct ListView {
    /// By name.
    workflows: Vec<ListEntry>,
}

/// `GET /v1/workflows`: every workflow, by name, with its versions (oldest
/// first).
#[utoipa::path(
    get,
    path = "/v1/workflows",
    operation_id = "listWorkflows",
    tag = "workflows",
    summary = "List every workflow with its versions",
    responses(
        (status = 200, description = "Every workflow, by name; versions oldest first.", body = ListView),
    ),
)]
pub async fn list(State(state): State<AppState>) -> impl IntoResponse {
    let workflows = state
        .engine
        .workflows()
        .into_iter()
        .map(|w| ListEntry {
            name: w.name,
            latest: w.versions.last().map(|v| VersionView::from(v.as_ref())),
            versions: w
                .versions
                .iter()
                .map(|v| VersionView::from(v.as_ref()))
                .collect(),
        })
        .collect();
    axum::Json(ListView { workflows })
}

/// A workflow's newest version with its definition, and every version.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NamedWorkflow)]
struct NamedView {
    name: String,
    latest: WorkflowView,
    /// Every version, oldest first.
    versions: Vec<VersionView>,
}

/// `GET /v1/workflows/{name}`: the newest version with its definition, and
/// every version.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}",
    operation_id = "getWorkflow",
    tag = "workflows",
    summary = "Read a workflow: its newest version and every version",
    params(("name" = String, Path, min_length = 1, max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description = "The workflow's name (no workflow has a name spelled otherwise: \
        `404 unknown_workflow`).")),
    responses(
        (status = 200, description = "The newest version with its canonical definition, \
            and every version (oldest first).", body = NamedView),
    ),
)]
pub async fn by_name(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, Error> {
    let name = path_name("workflow name", name)?;
    let entry = state
        .engine
        .workflows()
        .into_iter()
        .find(|w| w.name == name)
        .ok_or_else(|| Error::UnknownWorkflow(name.clone()))?;
    let latest = entry
        .versions
        .last()
        .ok_or_else(|| Error::UnknownWorkflow(name.clone()))?;
    Ok(axum::Json(NamedView {
        latest: WorkflowView::from(latest.as_ref()),
        versions: entry
            .versions
            .iter()
            .map(|v| VersionView::from(v.as_ref()))
            .collect(),
        name,
    }))
}

/// The version a path names (both segments checked).
fn pinned(state: &AppState, name: String, version: String) -> Result<Arc<Workflow>, Error> {
    let name = path_name("workflow name", name)?;
    let version = path_name("version", version)?;
    state
        .engine
        .workflow(&name, Some(&version))
        .ok_or_else(|| Error::UnknownWorkflow(format!("{name} at version {version}")))
}

/// `GET /v1/workflows/{name}/versions/{version}`.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}/versions/{version}",
    operation_id = "getWorkflowVersion",
    tag = "workflows",
    summary = "Read one version of a workflow",
    params(
        ("name" = String, Path, min_length = 1, max_length = 128,
            pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            description = "The workflow's name (no workflow has a name spelled otherwise: \
            `404 unknown_workflow`)."),
        ("version" = String, Path, pattern = "^[0-9a-f]{64}$",
            description = "The version: the 64-digit lowercase hex hash of the canonical \
            definition (`404 unknown_workflow` for another)."),
    ),
    responses(
        (status = 200, description = "That version with its canonical definition.", body = WorkflowView),
    ),
)]
pub async fn version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, Error> {
    let workflow = pinned(&state, name, version)?;
    Ok(axum::Json(WorkflowView::from(workflow.as_ref())))
}

/// `GET /v1/workflows/{name}/versions/{version}/graph`.
#[utoipa::path(
    get,
    path = "/v1/workflows/{name}/versions/{version}/graph",
    operation_id = "getWorkflowGraph",
    tag = "workflows",
    summary = "Read one version of a workflow as a graph",
    description = "The version's steps as nodes and every way control can go between \
        them as edges: what the dashboard draws. Nodes inside a parallel step's branch \
        name the parallel step as `parent`.",
    params(
        ("name" = String, Path, min_length = 1, max_length = 128,
            pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            description = "The workflow's name (no workflow has a name spelled otherwise: \
            `404 unknown_workflow`)."),
        ("version" = String, Path, pattern = "^[0-9a-f]{64}$",
            description = "The version: the 64-digit lowercase hex hash of the canonical \
            definition (`404 unknown_workflow` for another)."),
    ),
    responses(
        (status = 200, description = "The version's graph.", body = schemas::WorkflowGraph),
    ),
)]
pub async fn graph(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<impl IntoResponse, Error> {
    let workflow = pinned(&state, name, version)?;
    Ok(axum::Json(workflow.graph()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        h
    }

    #[test]
    fn the_content_type_picks_the_format() {
        assert_eq!(format(&headers("application/json")).unwrap(), Format::Json);
        assert_eq!(
            format(&headers("application/json; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert_eq!(format(&headers("application/yaml")).unwrap(), Format::Yaml);
        assert_eq!(format(&headers("text/yaml")).unwrap(), Format::Yaml);
        assert!(matches!(
            format(&headers("text/plain")),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            format(&HeaderMap::new()),
            Err(Error::UnsupportedMediaType(_))
        ));
    }
}
