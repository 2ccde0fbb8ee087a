//! Running a driver's code with no span current.
//!
//! sqlx builds its inner futures lazily, on their first poll, and runs each
//! `in_current_span`: the request's span, which they then enter and leave on
//! every one of their polls (a few per row), each time through every layer of
//! the subscriber. Our own query span already times the query, so those
//! entries buy nothing; in the example shop they were a third of the SDK's
//! cost per request.
//!
//! There is no way to leave the current span for a while, so under the
//! subscriber `init()` installs, [`Quieter`] runs their code with a second
//! dispatcher as the default: [`Quiet`], which forwards
//! everything to that subscriber but reports no current span. Events logged
//! in there (sqlx's slow-statement warnings) still reach every layer, and the
//! registry still parents them to the request's span from its own stack.

use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::Registry;

/// The subscriber `init()` installed, known by its registry's address, and
/// its quiet twin.
struct Installed {
    registry: usize,
    quiet: Dispatch,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Remembers the subscriber `init()` just made the global default, with its
/// level hint (a `Dispatch` does not give it out).
pub(crate) fn install(global: &Dispatch, max_level: Option<LevelFilter>) {
    let Some(registry) = registry_address(global) else {
        return;
    };
    let quiet = Dispatch::new(Quiet {
        inner: global.clone(),
        max_level,
    });
    let _ = INSTALLED.set(Installed { registry, quiet });
}

/// Where `dispatch`'s registry lives, when it is a tracing-subscriber stack:
/// the same registry means the same stack.
fn registry_address(dispatch: &Dispatch) -> Option<usize> {
    dispatch
        .downcast_ref::<Registry>()
        .map(|registry| std::ptr::from_ref(registry).addr())
}

/// The quiet twin, when the current default is the subscriber it mirrors
/// (not, say, a test's scoped subscriber).
fn quiet_twin() -> Option<&'static Dispatch> {
    let installed = INSTALLED.get()?;
    let current = tracing::dispatcher::get_default(registry_address);
    (current == Some(installed.registry)).then_some(&installed.quiet)
}

/// How one query's code runs with no span current: under the quiet twin of
/// the current subscriber, looked up once as the query starts (its polls run
/// where it started).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quieter(Option<&'static Dispatch>);

impl Quieter {
    /// For the current default subscriber.
    pub(crate) fn for_current() -> Self {
        Self(quiet_twin())
    }

    /// Runs `build`, which only builds a lazy future or stream and logs
    /// nothing, with no span current under any subscriber.
    pub(crate) fn building<T>(self, build: impl FnOnce() -> T) -> T {
        match self.0 {
            Some(quiet) => tracing::dispatcher::with_default(quiet, build),
            None => tracing::dispatcher::with_default(&Dispatch::none(), build),
        }
    }

    /// Runs `poll` (which may log) with no span current under the
    /// subscriber `init()` installs; under any other, as it is.
    pub(crate) fn polling<T>(self, poll: impl FnOnce() -> T) -> T {
        match self.0 {
            Some(quiet) => tracing::dispatcher::with_default(quiet, poll),
            None => poll(),
        }
    }
}

/// `inner` in every respect but one: no span is ever current.
///
/// It cannot pass on `downcast_raw` (an `unsafe fn`, which this workspace
/// forbids writing), so a span created under it cannot be reached through
/// tracing-opentelemetry's `OpenTelemetrySpanExt` (`set_parent`, `context`):
/// none is, sqlx creates no spans of its own, and the query's own span is
/// created before its code runs here.
struct Quiet {
    inner: Dispatch,
    max_level: Option<LevelFilter>,
}

impl Subscriber for Quiet {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.max_level
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        self.inner.event(event);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> Current {
        Current::none()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    use super::*;

    /// An event's name and the name of its parent span.
    type Seen = (String, Option<String>);

    /// Every event seen.
    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<Seen>>>);

    impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Events {
        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let parent = ctx.event_span(event).map(|span| span.name().to_owned());
            let message = event.metadata().name().to_owned();
            self.0.lock().unwrap().push((message, parent));
        }
    }

    #[test]
    fn nothing_is_current_inside_and_events_keep_their_parent() {
        let events = Events::default();
        let stack = tracing_subscriber::registry().with(events.clone());
        let max_level = stack.max_level_hint();
        let global = Dispatch::new(stack);
        install(&global, max_level);
        tracing::dispatcher::with_default(&global, || {
            let request = tracing::info_span!("request");
            let _entered = request.enter();
            let quiet = Quieter::for_current();
            let (current_inside, child) = quiet.polling(|| {
                tracing::warn!(name: "slow statement", "inside");
                (
                    tracing::Span::current().is_none(),
                    tracing::info_span!("child"),
                )
            });
            assert!(current_inside, "no span current while polling");
            assert!(!child.is_none(), "spans still work inside");
            assert_eq!(tracing::Span::current().id(), request.id(), "and after");
            assert!(quiet.building(|| tracing::Span::current().is_none()));
        });
        let seen = events.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [("slow statement".to_owned(), Some("request".to_owned()))]
        );

        // Another subscriber as the default: left alone.
        let other = Dispatch::new(tracing_subscriber::registry());
        tracing::dispatcher::with_default(&other, || {
            let request = tracing::info_span!("request");
            let _entered = request.enter();
            let quiet = Quieter::for_current();
            assert!(!quiet.polling(|| tracing::Span::current().is_none()));
            assert!(quiet.building(|| tracing::Span::current().is_none()));
        });
    }
}
