//! What apply reports as it goes, and the record of changes done that every step keeps.

use crate::plan::Address;
use std::sync::Arc;

/// What apply reports as it goes (a progress bar on a terminal, log lines otherwise).
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step begins: `what` says which AWS action, on how many instances.
    Started {
        address: String,
        what: String,
    },
    /// An asynchronous operation changed state.
    Operation {
        stack_set: String,
        operation_id: String,
        status: String,
    },
    Done {
        address: String,
    },
    Failed {
        address: String,
        message: String,
    },
}

/// Progress that discards events (library callers that do not care).
pub struct Silent;
impl Progress for Silent {
    fn event(&self, _: Event) {}
}

/// The changes carried out, in order. Each is reported as `Event::Done` the moment it is
/// recorded, so progress, and a stop or failure part-way, know how much live has moved.
pub(crate) struct Done<'a> {
    addresses: Vec<Address>,
    progress: &'a dyn Progress,
}

impl<'a> Done<'a> {
    pub(crate) fn new(progress: &'a dyn Progress) -> Self {
        Done {
            addresses: Vec::new(),
            progress,
        }
    }

    pub(crate) fn push(&mut self, address: &Address) {
        self.progress.event(Event::Done {
            address: address.to_string(),
        });
        self.addresses.push(address.clone());
    }

    /// Adds changes another `Done` already reported.
    pub(crate) fn append(&mut self, reported: Vec<Address>) {
        self.addresses.extend(reported);
    }

    pub(crate) fn into_vec(self) -> Vec<Address> {
        self.addresses
    }
}

/// Shared so progress reporters can be passed across tasks.
pub type SharedProgress = Arc<dyn Progress>;
