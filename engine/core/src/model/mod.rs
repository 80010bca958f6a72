//! The workflow language: reading a workflow document (JSON or YAML),
//! checking it, compiling its expressions, and identifying it by content hash.
//!
//! This module is pure: no IO, no clock, no randomness, no tokio (its one
//! concession is a short-lived thread with a large stack for the CEL parser,
//! see `stack`). Everything here is a function of the document's bytes, so the same document always
//! yields the same [`Workflow`] with the same version, on any machine. Maps
//! whose order can reach output are `BTreeMap`s.
//!
//! The pipeline, one module per stage:
//! - `document`: text → JSON value (duplicate keys refused; YAML scalar keys
//!   become strings), so JSON and YAML of one workflow are one workflow;
//!   bounded in size and depth before parsing costs much (`nesting`: how
//!   deep a YAML text nests, measured before the YAML parser reads it);
//! - `decode`, `decode_failure`, `fields`, `names`: JSON → [`WorkflowDefinition`],
//!   reporting every shape problem;
//! - `declared`, `compile`, `compile_step`: definition → [`Step`]s, reporting references
//!   that do not resolve or leave their scope, and bad expressions or paths
//!   (`expr`, `path`, `mapping`, `cel_json`), and bad JSON Schemas (`schema`);
//! - `budget`, `instrument`, `tree`, `pattern`: the cost budget of every
//!   expression evaluation, where a compiled expression charges it (walking
//!   the CEL tree), and the regular expressions of `matches`, compiled under
//!   size limits;
//! - `hash`: the canonical form and the version;
//! - `http`, `secret_ref`: the built-in `http` capability's input (checked
//!   where it is literal when a workflow is defined, and whole when the
//!   runtime performs the task), and secret references
//!   (`${ secret('NAME') }`), which mappings keep as written;
//! - `stack`: the large stack the CEL parser needs, so that no expression a
//!   user writes can overflow a thread's stack.
//!
//! Every problem is reported, never only the first, as a [`Problem`] whose
//! path is written like `steps[3].next` (see `problem`).

mod budget;
mod cel_json;
mod compile;
mod compile_step;
mod declared;
mod decode;
mod decode_failure;
mod definition;
mod dialect;
mod document;
mod expr;
mod fields;
mod graph;
mod hash;
mod http;
mod instrument;
mod language;
mod limits;
mod mapping;
mod names;
mod nesting;
mod path;
mod pattern;
mod problem;
mod references;
mod schema;
mod secret_ref;
mod stack;
mod step;
mod tree;
mod workflow;

pub use budget::{EVAL_DATA_MAX, EVAL_STEPS_MAX, RESULT_BYTES_MAX};
pub use compile::STEPS_MAX;
pub use decode::MAP_CONCURRENCY_MAX;
pub use decode_failure::MAX_ATTEMPTS_MAX;
pub use definition::{
    BranchDefinition, CompensateDefinition, DecisionDefinition, DetailedTimeout,
    ErrorHandlerDefinition, EventDefinition, MapDefinition, OnFailure, ParallelDefinition,
    RetryDefinition, StepDefinition, StepType, SubworkflowDefinition, TimeoutDefinition,
    WaitDefinition, WorkflowDefinition,
};
pub use document::{DOCUMENT_BYTES_MAX, DOCUMENT_DEPTH_MAX};
pub use expr::{EXPRESSION_DEPTH_MAX, EXPRESSION_LEN_MAX, EvalError, Expr, branch_key};
pub use graph::{Edge, EdgeKind, Graph, HANDLERS_NODE, Node, NodeKind, compensation_node};
pub use hash::canonical_string;
pub use http::{
    HTTP_CAPABILITY, HTTP_MANAGED_HEADERS, HTTP_METHODS, HTTP_TIMEOUT_MS_MAX, HTTP_URL_LEN_MAX,
    HttpBody, HttpRequest,
};
pub use language::Language;
pub use limits::{
    ConcurrencyDefinition, LIMIT_KEY_LEN_MAX, LIMIT_MAX, LIMIT_PERIOD_MS_MAX, Limit, LimitKind,
    RateLimitDefinition,
};
pub use mapping::Mapping;
pub use names::{
    NAME_LEN_MAX, check_capability, check_error_type, check_event_name, check_name_chars,
    check_text, check_token_name, check_workflow_name, escape_text,
};
pub use path::{ContextPath, Root, Segment};
pub use problem::{DefinitionError, Problem};
pub use references::{ReferenceKind, WorkflowReference};
pub use schema::{INPUT_PROBLEMS_MAX, InputSchema};
pub use secret_ref::{
    SECRET_NAME_LEN_MAX, SecretRef, SecretRefError, check_secret_name, is_secret_ref, secret_refs,
    substitute_secrets,
};
pub use step::{
    Branch, Compensation, ErrorHandler, HandlerTarget, MapSpec, RetryPolicy, Scope, Step, StepKind,
    Timeouts, Tolerance, WaitSpec,
};
pub use workflow::Workflow;
