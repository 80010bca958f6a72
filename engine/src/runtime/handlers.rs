//! In-process task handlers: an embedder can run a capability inside the
//! engine's process instead of through agents.

use crate::ExecutionId;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::machine::ErrorInfo;

/// One task handed to an in-process handler.
#[derive(Debug, Clone)]
pub struct HandlerTask {
    pub task: String,
    pub execution: ExecutionId,
    pub step: String,
    pub capability: String,
    pub attempt: u32,
    pub input: Value,
}

/// Runs tasks of one capability in-process.
pub trait TaskHandler: Send + Sync + 'static {
    fn call(&self, task: HandlerTask) -> BoxFuture<'static, Result<Value, ErrorInfo>>;
}

impl<F> TaskHandler for F
where
    F: Fn(HandlerTask) -> BoxFuture<'static, Result<Value, ErrorInfo>> + Send + Sync + 'static,
{
    fn call(&self, task: HandlerTask) -> BoxFuture<'static, Result<Value, ErrorInfo>> {
        self(task)
    }
}

impl std::fmt::Debug for dyn TaskHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskHandler")
    }
}
