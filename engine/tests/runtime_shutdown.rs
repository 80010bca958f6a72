//! Shutting an engine down stops everything it runs in the background and
//! waits for it: no task it spawned outlives `Engine::shutdown`.

#![allow(clippy::unwrap_used)]

use super::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use retrace_engine::runtime::{HandlerTask, TaskHandler};
use serde_json::json;
use support::*;
use tokio::sync::Notify;

/// Sets its flag when dropped: the future that owns it has stopped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn shutdown_stops_and_awaits_every_background_task() {
    let w = World::new().await;
    let called = Arc::new(Notify::new());
    let dropped = Arc::new(AtomicBool::new(false));
    let (c, d) = (called.clone(), dropped.clone());
    // An in-process handler that never answers: its call runs as a
    // background task of the engine until shutdown stops it.
    let handler: Arc<dyn TaskHandler> = Arc::new(move |_: HandlerTask| {
        let (called, guard) = (c.clone(), Dropped(d.clone()));
        async move {
            let _guard = guard;
            called.notify_one();
            std::future::pending::<()>().await;
            Ok(json!(null))
        }
        .boxed()
    });
    w.engine.register_handler("forever", handler);
    w.define(json!({"name": "stuck", "steps": [
        {"id": "t", "type": "task", "capability": "forever", "next": "nap"},
        {"id": "nap", "type": "wait", "wait": {"seconds": 60}}
    ]}))
    .await;
    let id = w.start("stuck", json!({})).await;
    called.notified().await;
    assert!(!dropped.load(Ordering::SeqCst), "the call is running");

    w.engine.shutdown().await.unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "shutdown returned while the handler's call was still running"
    );
    // The execution is as the journal has it: still waiting on its task.
    assert_eq!(
        w.kinds(id).await.last().map(String::as_str),
        Some("task_scheduled")
    );
}

#[tokio::test]
async fn commands_still_record_after_shutdown_and_a_restart_runs_on() {
    let w = World::new().await;
    w.define(json!({"name": "napper", "steps": [
        {"id": "nap", "type": "wait", "wait": {"seconds": 60}}
    ]}))
    .await;
    w.engine.shutdown().await.unwrap();
    // A start still records its events (commands work after shutdown)...
    let id = w.start("napper", json!({})).await;
    assert_eq!(
        w.kinds(id).await.last().map(String::as_str),
        Some("timer_started")
    );
    // ...and a recovered engine, which runs its loops again, fires the timer
    // the stopped one would have.
    let mut w = w;
    w.crash_and_recover().await;
    let skipper = spawn_time_skipper(&w.engine, &w.clock);
    let end = w.ended(id).await;
    assert_completed(&end);
    skipper.abort();
}
