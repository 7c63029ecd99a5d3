//! Queued handlers (Enfyra's gateway convention): ack at once, result later.

use super::controller::JobHandler;
use super::*;

/// The event that carries a queued job's result.
pub const JOB_RESULT_EVENT: &str = "ws:result";
/// The event that carries a queued job's error.
pub const JOB_ERROR_EVENT: &str = "ws:error";

/// One held job of a socket, released when the job ends however it ends.
struct Held(Arc<super::Counts>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SocketIo {
    /// Starts `job` for `incoming` (see [`Handler::queued`]).
    pub(super) fn start_job(
        &self,
        socket: Socket,
        mut incoming: Incoming,
        job: JobHandler,
        limits: JobLimits,
    ) -> Result<(), HandlerError> {
        let Some((held, n)) = socket.with_state(|s| {
            s.jobs_started += 1;
            (s.counts.clone(), s.jobs_started)
        }) else {
            return Ok(());
        };
        if held.jobs.fetch_add(1, Ordering::Relaxed) >= limits.per_socket {
            held.jobs.fetch_sub(1, Ordering::Relaxed);
            return Err(AppError::new(
                "QUEUE_FULL",
                format!(
                    "Too many queued jobs: at most {} per connection.",
                    limits.per_socket
                ),
            )
            .into());
        }
        let held = Held(held);
        let request_id = format!("{}-{n}", socket.id());
        let event = incoming.name.clone();
        let mut queued = Map::new();
        queued.insert("queued".into(), Value::Bool(true));
        queued.insert("requestId".into(), Value::from(request_id.as_str()));
        queued.insert("eventName".into(), Value::from(event.as_str()));
        let _ = incoming.ack(&Value::Object(queued));
        // The ack is answered: the job cannot answer it again.
        incoming.ack = None;
        let deadline = self.now() + limits.timeout;
        let timer = self.inner.host.sleep_until(deadline);
        let run = CatchPanic(job(socket.clone(), incoming));
        let io = self.clone();
        self.inner.host.spawn(Box::pin(async move {
            let _held = held;
            let outcome = crate::before(run, timer).await;
            let error = match outcome {
                Some(Ok(Ok(result))) => {
                    let mut m = Map::new();
                    m.insert("requestId".into(), Value::from(request_id));
                    m.insert("result".into(), result);
                    let _ = socket.emit(JOB_RESULT_EVENT, &Value::Object(m));
                    return;
                }
                Some(Ok(Err(error))) => error,
                Some(Err(panic)) => HandlerError::Panic(panic),
                None => HandlerError::App(AppError::new(
                    "TIMEOUT",
                    format!(
                        "The job did not finish within {} s.",
                        limits.timeout.as_secs_f64()
                    ),
                )),
            };
            if error.is_internal() {
                tracing::error!(sid = %socket.id(), event, %error, "queued job failed");
            }
            let mut m = Map::new();
            m.insert("requestId".into(), Value::from(request_id));
            m.insert("error".into(), io.render_error(&socket, &event, &error));
            let _ = socket.emit(JOB_ERROR_EVENT, &Value::Object(m));
        }));
        Ok(())
    }
}
