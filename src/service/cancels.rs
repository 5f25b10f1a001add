//! The runs executing in this process and how to stop each: what `cancel` reaches.

use tokio_util::sync::CancellationToken;

use crate::domain::RunId;

/// The runs executing in this process, so that `cancel` can stop them.
#[derive(Debug, Default)]
pub struct Cancels {
    running: std::sync::Mutex<std::collections::HashMap<RunId, (CancellationToken, String)>>,
}

impl Cancels {
    pub(crate) fn register(&self, run_id: RunId, stop: CancellationToken) {
        self.lock().insert(run_id, (stop, String::new()));
    }

    pub(crate) fn unregister(&self, run_id: RunId) -> Option<String> {
        self.lock()
            .remove(&run_id)
            .map(|(_, by)| by)
            .filter(|by| !by.is_empty())
    }

    /// Stops run `run_id` (its steps' process groups are killed); `reason` (`cancelled by
    /// alice`) becomes the run's error. False when it is not running here.
    pub fn cancel(&self, run_id: RunId, reason: &str) -> bool {
        let mut running = self.lock();
        match running.get_mut(&run_id) {
            Some((stop, why)) => {
                *why = reason.to_string();
                stop.cancel();
                true
            }
            None => false,
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<RunId, (CancellationToken, String)>>
    {
        // A panic while holding this lock leaves a plain map behind: keep using it.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
