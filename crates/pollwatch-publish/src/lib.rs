//! What a field device (or an SMS gateway) embeds to send reports: an [`Outbox`] that keeps each
//! report on the device until the broker has confirmed it, and [`flush`], which publishes the
//! outbox with publisher confirms over a window of outstanding messages.
//!
//! A report is validated with the model before it is queued, so the device learns at once, with
//! the field's path, why a report would be refused. Resending is always safe: the worker stores a
//! report id and revision once.
//!
//! [`connect`] is how every pollwatch process reaches the broker, the worker and the operators'
//! tools included.
//!
//! Only what a device runs lives here; the election-day simulator is `pollwatch-sim`.

pub mod outbox;
pub mod publisher;

pub use outbox::{Outbox, OutboxError, Pending};
pub use publisher::{
    CONNECT_TIMEOUT, ConnectError, Flushed, Message, Nodes, PublishError, PublisherConfig, connect, flush,
    flush_with_progress, publish_all,
};
