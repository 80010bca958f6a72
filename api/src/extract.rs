//! Request extractors whose rejections are the API's [`Error`]: JSON bodies
//! (required or optional), events' bodies (signed ones verified first),
//! query strings, path segments, and the ids that path segments carry.
//!
//! Owns turning axum's rejections into stable codes: not JSON → `400
//! malformed_json`, JSON of the wrong shape (an array where an object is
//! expected included, at any depth: see [`crate::strict`]) → `422
//! invalid_body`, wrong content type → `415`, too large → `413`. It must
//! never look at what a valid body means; handlers do.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use retrace_engine::ExecutionId;
use retrace_engine::agents::AgentId;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::Error;
use crate::state::AppState;
use crate::strict;

/// A JSON body; the request must say `Content-Type: application/json`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let Body(bytes) = Body::from_request(req, state).await?;
        parse(&bytes).map(Json)
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`; a
/// body that is there must be JSON, as for [`Json`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let is_json = is_json(req.headers());
        let Body(bytes) = Body::from_request(req, state).await?;
        OptionalJson::from_bytes(&bytes, is_json).map(OptionalJson)
    }
}

impl<T: DeserializeOwned + Default> OptionalJson<T> {
    /// A body already read: empty is `T::default()`, anything else must be
    /// JSON (`is_json`: the request said so).
    pub fn from_bytes(bytes: &[u8], is_json: bool) -> Result<T, Error> {
        if bytes.is_empty() {
            return Ok(T::default());
        }
        if !is_json {
            return Err(not_json());
        }
        parse(bytes)
    }
}

/// Only `application/json` is read as JSON, never a form: browsers send
/// forms cross-origin without asking, so reading one would let any web page
/// start or cancel executions. The message tells curl users the fix.
fn not_json() -> Error {
    Error::UnsupportedMediaType(
        "a request body must be JSON, with `Content-Type: application/json` \
         (with curl, use `--json '{...}'` or add `-H 'Content-Type: application/json'`)"
            .into(),
    )
}

/// Reads a JSON body in two passes, so that a document that is not JSON at
/// all is always `malformed_json`, even where a one-pass reader would trip
/// over a wrong type or an unknown field first. The second pass is strict
/// (see [`crate::strict`]): where an object is expected, an array is refused
/// rather than read as the object's fields in order.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if let Err(e) = serde_json::from_slice::<IgnoredAny>(bytes) {
        return Err(Error::MalformedJson(format!(
            "the request body is not valid JSON: {e}"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = strict::deserialize(&mut deserializer).map_err(|rejected| {
        if rejected.error.is_syntax() || rejected.error.is_eof() {
            Error::MalformedJson(format!("the request body is not valid JSON: {rejected}"))
        } else {
            Error::InvalidBody(format!(
                "the request body does not have the expected shape: {rejected}"
            ))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Error::MalformedJson(format!("the request body is not valid JSON: {e}")))?;
    Ok(value)
}

/// The raw body, with the API's rejection.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|r| bytes_rejection(r, state.config.max_body_bytes))
    }
}

/// A query string.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|r: QueryRejection| Error::InvalidQuery(r.body_text()))
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|r: PathRejection| Error::Status {
                status: r.status(),
                message: r.body_text(),
            })
    }
}

/// Whether the request says its body is JSON (`application/json`, or any
/// `application/*+json`).
pub fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|m| {
        m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
    })
}

/// The request's media type, lowercase, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    Some(essence)
}

fn bytes_rejection(r: BytesRejection, limit_bytes: usize) -> Error {
    match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit_bytes },
        status => Error::Status {
            status,
            message: r.body_text(),
        },
    }
}

/// An execution id from a path segment; one that does not parse names no
/// execution, and neither does the nil id (no execution has it).
pub fn execution_id(text: &str) -> Result<ExecutionId, Error> {
    match text.parse() {
        Ok(id) if id != ExecutionId::NIL => Ok(id),
        Ok(_) => Err(Error::UnknownExecution(text.to_owned())),
        Err(_) => Err(Error::UnknownExecution(format!(
            "{text} (not an execution id)"
        ))),
    }
}

/// An agent id from a path segment or a body.
pub fn agent_id(text: &str) -> Result<AgentId, Error> {
    text.parse()
        .map_err(|_| Error::UnknownAgent(format!("{text} (not an agent id)")))
}

/// An event's body (optional JSON), verified first when its name has a
/// secret ([`crate::webhook`]). The name is the route's `{name}`.
#[derive(Debug)]
pub struct EventBody<T> {
    pub body: T,
    /// The `webhook-id` of a signed event: who sent it, as the history
    /// records it (`by`: `webhook:<id>`).
    pub signed: Option<String>,
}

impl<T> EventBody<T> {
    /// Who asked, as the history records it: the signed delivery, else the
    /// caller's `token` (its name).
    pub fn by(&self, token: Option<&str>) -> Option<String> {
        match &self.signed {
            Some(id) => Some(format!("webhook:{id}")),
            None => token.map(str::to_owned),
        }
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for EventBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let secrets = &state.config.event_secrets;
        // No event name has a secret (the usual case): a plain body.
        if secrets.is_empty() {
            let OptionalJson(body) = OptionalJson::from_request(req, state).await?;
            return Ok(EventBody { body, signed: None });
        }
        let (mut parts, body) = req.into_parts();
        let name = crate::webhook::event_name(&mut parts).await?;
        let headers = parts.headers.clone();
        let req = Request::from_parts(parts, body);
        let Some(key) = secrets.key(&name) else {
            let OptionalJson(body) = OptionalJson::from_request(req, state).await?;
            return Ok(EventBody { body, signed: None });
        };
        let is_json = is_json(&headers);
        let Body(bytes) = Body::from_request(req, state).await?;
        let now_s = state.engine.clock().now_ms() / 1000;
        secrets.verify(key, &headers, &bytes, now_s)?;
        let id = headers
            .get(crate::webhook::ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(EventBody {
            body: OptionalJson::from_bytes(&bytes, is_json)?,
            signed: Some(id),
        })
    }
}
