//! The body of a `/metrics` response. It holds the scrape's slot (see
//! [`MAX_SCRAPES_AT_ONCE`](crate::metrics::MAX_SCRAPES_AT_ONCE)) and its text,
//! and lets go of both when the client has read it all, when the client goes
//! away, or at the deadline. A client that stops reading must not keep a slot
//! and tens of megabytes for as long as its connection lives: past the
//! deadline the body fails, so the connection is cut rather than the scrape
//! ending early as if it were whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;

/// How long a client may take to read a scrape.
pub(super) const SCRAPE_DEADLINE: Duration = Duration::from_secs(30);

enum State {
    /// Chunks not yet handed to the connection, and the slot.
    Serving {
        chunks: VecDeque<Bytes>,
        _slot: OwnedSemaphorePermit,
    },
    /// The deadline passed first: the next read fails.
    Expired,
    Done,
}

/// The chunks of one scrape as a stream that gives its slot back when done.
pub(super) struct ScrapeBody {
    state: Arc<Mutex<State>>,
}

impl ScrapeBody {
    /// Serves `chunks`, holding `slot`, until they are read or `deadline`.
    pub(super) fn new(chunks: Vec<Bytes>, slot: OwnedSemaphorePermit, deadline: Duration) -> Self {
        let state = Arc::new(Mutex::new(State::Serving {
            chunks: chunks.into(),
            _slot: slot,
        }));
        // Weak: a body already read or dropped is not kept for the timer.
        let expiry = Arc::downgrade(&state);
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            if let Some(state) = expiry.upgrade() {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                if matches!(*state, State::Serving { .. }) {
                    *state = State::Expired;
                }
            }
        });
        Self { state }
    }
}

impl Stream for ScrapeBody {
    type Item = std::io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match &mut *state {
            State::Serving { chunks, .. } => match chunks.pop_front() {
                Some(chunk) => return Poll::Ready(Some(Ok(chunk))),
                None => None,
            },
            State::Expired => Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the scrape was not read within its deadline",
            ))),
            State::Done => None,
        };
        // Read to the end, or failed: the slot and what is left go now.
        *state = State::Done;
        Poll::Ready(next)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt as _;
    use tokio::sync::Semaphore;

    use super::*;

    fn chunks() -> Vec<Bytes> {
        vec![Bytes::from_static(b"a 1\n"), Bytes::from_static(b"# EOF\n")]
    }

    #[tokio::test]
    async fn a_body_read_to_the_end_gives_its_slot_back() {
        let slots = Arc::new(Semaphore::new(1));
        let slot = Arc::clone(&slots).try_acquire_owned().unwrap();
        let mut body = ScrapeBody::new(chunks(), slot, SCRAPE_DEADLINE);
        assert_eq!(body.next().await.unwrap().unwrap(), "a 1\n");
        assert_eq!(slots.available_permits(), 0, "held while serving");
        assert_eq!(body.next().await.unwrap().unwrap(), "# EOF\n");
        assert!(body.next().await.is_none());
        assert_eq!(slots.available_permits(), 1);
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_body_gives_its_slot_back() {
        let slots = Arc::new(Semaphore::new(1));
        let slot = Arc::clone(&slots).try_acquire_owned().unwrap();
        let mut body = ScrapeBody::new(chunks(), slot, SCRAPE_DEADLINE);
        let _ = body.next().await;
        drop(body);
        assert_eq!(slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_body_not_read_by_its_deadline_lets_go_and_then_fails() {
        let slots = Arc::new(Semaphore::new(1));
        let slot = Arc::clone(&slots).try_acquire_owned().unwrap();
        let mut body = ScrapeBody::new(chunks(), slot, Duration::from_millis(20));
        // Nobody reads: the slot comes back at the deadline all the same.
        let freed = tokio::time::timeout(Duration::from_secs(5), slots.acquire())
            .await
            .expect("the slot is given back at the deadline");
        drop(freed);
        let failed = body.next().await.expect("a last item");
        assert_eq!(failed.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert!(body.next().await.is_none());
    }
}
