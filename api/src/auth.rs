//! Who is calling, and whether their role may make this request.
//!
//! Every route has one [`Access`] class in the router's table; each class
//! names the roles allowed ([`Access::roles`], the table `docs/api.md`
//! shows). Once the data folder holds a token, every route but the open
//! ones (`/healthz`, `/readyz`, `/openapi.json`) needs
//! `Authorization: Bearer <token>`: a missing or invalid token is `401
//! unauthenticated`, a role the route does not allow is `403 forbidden`
//! (an event whose name has a secret may come signed instead: see
//! [`crate::webhook`]),
//! and neither reaches a handler, so nothing is journaled. With no token at
//! all, every caller is anonymous and allowed (the server listens on
//! loopback only then, unless told `--insecure-no-auth`).
//!
//! Owns the route classes, their roles, and the [`Caller`] handlers read.
//! It must never read a body, nor decide anything a handler decides about
//! its own resource (whose task or agent it is).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use retrace_engine::runtime::Engine;
use retrace_engine::store::tokens::{Refused, Role, Token};

use crate::error::Error;

/// Who may call each route: the router's table
/// ([`crate::router::access_table`]), handed to what needs it (the OpenAPI
/// document) rather than imported from the router.
pub type AccessTable = [(Method, &'static str, Access)];

/// Which callers a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone, always: the probes and the API's description.
    Open,
    /// Reads and streams.
    Read,
    /// Starts executions, sends signals and events.
    Client,
    /// Defines workflows and commands executions.
    Operate,
    /// What agents do: register, poll, report tasks.
    Agent,
    /// Token administration.
    Admin,
}

impl Access {
    /// The roles allowed, most powerful first.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Access::Open => &[Admin, Operator, Client, Viewer, Agent],
            Access::Read => &[Admin, Operator, Client, Viewer],
            Access::Client => &[Admin, Operator, Client],
            Access::Operate => &[Admin, Operator],
            Access::Agent => &[Admin, Agent],
            Access::Admin => &[Admin],
        }
    }

    pub fn allows(self, role: Role) -> bool {
        self.roles().contains(&role)
    }
}

/// Who made a request: the token they presented, or nobody when the server
/// has no tokens.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub token: Option<Token>,
    /// Why, as the request's `Retrace-Reason` header says: recorded with
    /// what the request changes.
    pub reason: Option<String>,
}

impl Caller {
    /// The actor to record: the token's name.
    pub fn name(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.name.as_str())
    }

    pub fn role(&self) -> Option<Role> {
        self.token.as_ref().map(|t| t.role)
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Error> {
        // The middleware puts one on every routed request; a handler
        // reached without it (a test's own router) is anonymous.
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The middleware's state: the engine (its token table) and each route's
/// class.
#[derive(Debug, Clone)]
pub struct Gate {
    pub engine: Engine,
    pub routes: Arc<BTreeMap<(Method, &'static str), Access>>,
    /// Event names whose signed events need no token.
    pub secrets: crate::webhook::Secrets,
    /// Requests per second per token.
    pub limits: crate::limits::TokenLimits,
}

/// The routes that take an event, which a signature may authenticate.
const EVENT_ROUTES: [&str; 2] = ["/v1/events/{name}", "/v1/executions/{id}/signals/{name}"];

/// The middleware (a route layer, so the route is known).
pub async fn authenticate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(req.uri().path(), MatchedPath::as_str)
        .to_owned();
    // HEAD is answered by the GET route.
    let method = match *req.method() {
        Method::HEAD => Method::GET,
        ref m => m.clone(),
    };
    let mut access = gate
        .routes
        .get(&(method, route.as_str()))
        .copied()
        // A method the route lacks: the router answers 405 below.
        .unwrap_or(Access::Open);
    // A signed event needs no token: its signature is checked before its
    // body is read (see `crate::webhook`).
    if !gate.secrets.is_empty()
        && EVENT_ROUTES.contains(&route.as_str())
        && *req.method() == Method::POST
    {
        let (mut parts, body) = req.into_parts();
        let name = crate::webhook::event_name(&mut parts).await.ok();
        req = Request::from_parts(parts, body);
        if name.is_some_and(|n| crate::webhook::signed(&gate.secrets, &n, req.headers())) {
            access = Access::Open;
        }
    }
    let admitted =
        admit(&gate.engine, access, req.method(), &route, req.headers()).and_then(|caller| {
            match caller.name() {
                Some(name) => gate.limits.request(name).map(|()| caller),
                None => Ok(caller),
            }
        });
    match admitted {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The caller of a request to `route` of class `access`, or why not.
pub fn admit(
    engine: &Engine,
    access: Access,
    method: &Method,
    route: &str,
    headers: &HeaderMap,
) -> Result<Caller, Error> {
    // Only a change records a reason; reads never look at the header.
    let reason = match *method {
        Method::GET | Method::HEAD => None,
        _ => reason(headers)?,
    };
    if access == Access::Open || !engine.tokens_required() {
        return Ok(Caller {
            token: None,
            reason,
        });
    }
    let secret = bearer(headers)?;
    let token = engine.authenticate(secret).map_err(|why| {
        tracing::info!(?why, %route, "a request with an invalid token refused");
        let what = match why {
            Refused::Unknown | Refused::Revoked | Refused::Expired => {
                "the bearer token is not valid (unknown, revoked or expired)"
            }
        };
        Error::Unauthenticated(what.to_owned())
    })?;
    if !access.allows(token.role) {
        let allowed: Vec<&str> = access.roles().iter().map(|r| r.as_str()).collect();
        let allowed = match allowed.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        return Err(Error::Forbidden(format!(
            "the token `{}` has the role {}; {method} {route} needs {allowed}",
            token.name, token.role,
        )));
    }
    Ok(Caller {
        token: Some(token),
        reason,
    })
}

/// The header a change's reason comes in.
pub const REASON_HEADER: &str = "retrace-reason";

/// The longest reason a change may give, in characters (Unicode scalar
/// values, as JSON Schema's `maxLength` counts them): in a body's `reason`
/// or in `Retrace-Reason`.
pub const REASON_CHARS_MAX: usize = 1024;

/// A request's `Retrace-Reason`: free text as a command's `reason` is
/// (at most as long, no control characters but tab and line breaks),
/// percent-decoding not applied.
fn reason(headers: &HeaderMap) -> Result<Option<String>, Error> {
    let Some(value) = headers.get(REASON_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| {
        Error::InvalidHeader(format!(
            "`{REASON_HEADER}` must be visible ASCII (percent-encode the rest)"
        ))
    })?;
    let chars = text.chars().count();
    let max = REASON_CHARS_MAX;
    if chars == 0 || chars > max {
        return Err(Error::InvalidHeader(format!(
            "`{REASON_HEADER}` must be 1 to {max} characters, not {chars}"
        )));
    }
    retrace_engine::model::check_text(REASON_HEADER, text).map_err(Error::InvalidHeader)?;
    Ok(Some(text.to_owned()))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let missing = || {
        Error::Unauthenticated(
            "this server requires a token: send `Authorization: Bearer <token>` \
             (`retrace token create` makes one)"
                .to_owned(),
        )
    };
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::Unauthenticated(
            "the Authorization header must be `Bearer <token>`".to_owned(),
        ));
    }
    Ok(token.trim())
}
