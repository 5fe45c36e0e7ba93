//! The alert engine (issue 12): incidents opened, grouped, re-notified and resolved from the
//! collector's own evidence, with a probable cause in a technician's words.
//!
//! [`model`] holds the stored shapes (incidents, timeline, outbox, windows).
//! The engine is a domain service: it owns its state in the store, is driven by the
//! evaluator's change stream and a periodic tick on the collector's clock, and hands
//! notifications to a [`crate::notify::Notifier`] through the outbox.

pub mod cause;
pub mod cli;
pub mod config;
pub mod engine;
pub mod model;
// Runtime silences (issue 12).
pub mod silence;

pub use engine::{Engine, IncidentError};
pub use model::{
    AlertWindow, CauseKind, Incident, IncidentDetail, IncidentEvent, IncidentQuery, IncidentState, NewIncident,
    NewIncidentEvent, NewOutboxItem, OutboxItem, OutboxStatus, SilenceQuery, StoredSilence,
};
pub use silence::{SilenceError, SilenceRequest};

/// A notifier without channels: every incident is recorded, nothing is sent. What the engine
/// uses until channels are configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChannels;

#[async_trait::async_trait]
impl crate::notify::Notifier for NoChannels {
    fn channel_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn send(
        &self,
        channel: &str,
        _notification: &crate::notify::Notification,
    ) -> Result<(), crate::notify::DeliveryError> {
        Err(crate::notify::DeliveryError {
            message: format!("no channel named `{channel}` is configured"),
            retry_after: None,
            permanent: true,
        })
    }
}
