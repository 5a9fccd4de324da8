//! One result that many requests wait for, computed at most once at a time, and given up
//! as soon as nobody waits for it any more.

use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// A value computed by one job for every request that joined before it was ready.
pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
}

enum State<T> {
    /// No job: the next request to join starts one.
    Idle,
    /// A job is queued (`running == false`) or running; these requests wait for it.
    Waiting {
        waiters: Vec<oneshot::Sender<T>>,
        running: bool,
    },
    Ready(T),
}

// Not the value itself: a page can be megabytes.
impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Idle => "idle",
            State::Waiting { running: false, .. } => "queued",
            State::Waiting { running: true, .. } => "running",
            State::Ready(_) => "ready",
        };
        f.debug_struct("Shared").field("state", &state).finish()
    }
}

/// What joining a [`Shared`] gave.
#[derive(Debug)]
pub(crate) enum Joined<T> {
    /// The value, at once.
    Ready(T),
    /// A job is under way; the value arrives here (or the sender is dropped if the job is
    /// given up, and the caller joins again).
    Wait(oneshot::Receiver<T>),
    /// Nothing is under way: the caller must start the job; the value arrives here.
    Start(oneshot::Receiver<T>),
    /// A job is already reading and the caller may not take its result (see
    /// [`Shared::join`]).
    Refused,
}

impl<T: Clone> Shared<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::Idle),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the value. A caller that must see everything that happened before it arrived
    /// passes `late_ok = false`: it then never takes the result of a job that had already
    /// begun (it is [`Joined::Refused`]), only one that is still queued.
    pub(crate) fn join(&self, late_ok: bool) -> Joined<T> {
        let mut state = self.state();
        match &mut *state {
            State::Ready(value) => Joined::Ready(value.clone()),
            State::Waiting { running: true, .. } if !late_ok => Joined::Refused,
            State::Waiting { waiters, .. } => {
                // Requests that left are pruned now and then, so that many joining and
                // leaving around one slow job cannot grow the list without bound.
                if waiters.len() >= 64 && waiters.len().is_power_of_two() {
                    waiters.retain(|w| !w.is_closed());
                }
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Joined::Wait(rx)
            }
            State::Idle => {
                let (tx, rx) = oneshot::channel();
                *state = State::Waiting {
                    waiters: vec![tx],
                    running: false,
                };
                Joined::Start(rx)
            }
        }
    }

    /// Called by the job when it may run: `false` (and nothing under way any more) if every
    /// request that wanted it has gone.
    pub(crate) fn begin(&self) -> bool {
        let mut state = self.state();
        match &mut *state {
            State::Waiting { waiters, running } if waiters.iter().any(|w| !w.is_closed()) => {
                *running = true;
                true
            }
            State::Waiting { .. } => {
                *state = State::Idle;
                false
            }
            _ => false,
        }
    }

    /// Whether every request that wanted the value has gone (a running job checks this
    /// every few thousand entries and stops).
    pub(crate) fn abandoned(&self) -> bool {
        match &*self.state() {
            State::Waiting { waiters, .. } => waiters.iter().all(oneshot::Sender::is_closed),
            State::Idle | State::Ready(_) => true,
        }
    }

    /// Stores the value and hands it to every waiting request.
    pub(crate) fn finish(&self, value: T) {
        let previous = std::mem::replace(&mut *self.state(), State::Ready(value.clone()));
        if let State::Waiting { waiters, .. } = previous {
            for waiter in waiters {
                let _ = waiter.send(value.clone());
            }
        }
    }

    /// Drops the job (stopped, or failed without a value): requests still waiting see
    /// their sender dropped and join again, which starts a new job.
    pub(crate) fn give_up(&self) {
        let mut state = self.state();
        if matches!(*state, State::Waiting { .. }) {
            *state = State::Idle;
        }
    }

    /// The value, if there is one.
    pub(crate) fn get(&self) -> Option<T> {
        match &*self.state() {
            State::Ready(value) => Some(value.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_serves_every_waiter_and_late_joiners_can_be_refused() {
        let shared = Shared::<u32>::new();
        let Joined::Start(mut first) = shared.join(false) else {
            panic!("the first request starts the job")
        };
        let Joined::Wait(mut second) = shared.join(false) else {
            panic!("a queued job is joined")
        };
        assert!(shared.begin());
        assert!(matches!(shared.join(false), Joined::Refused));
        let Joined::Wait(mut late) = shared.join(true) else {
            panic!("a running job is joined when late is fine")
        };
        shared.finish(7);
        for rx in [&mut first, &mut second, &mut late] {
            assert_eq!(rx.try_recv().unwrap(), 7);
        }
        assert!(matches!(shared.join(false), Joined::Ready(7)));
    }

    #[test]
    fn a_job_nobody_waits_for_is_abandoned_and_can_start_again() {
        let shared = Shared::<u32>::new();
        let Joined::Start(rx) = shared.join(true) else {
            panic!()
        };
        assert!(!shared.abandoned());
        drop(rx);
        assert!(shared.abandoned());
        assert!(!shared.begin(), "nobody waits: the job must not run");
        assert!(matches!(shared.join(true), Joined::Start(_)));
        // Given up while someone waits: the waiter sees its sender dropped.
        let Joined::Wait(mut rx) = shared.join(true) else {
            panic!()
        };
        shared.give_up();
        assert!(rx.try_recv().is_err());
        assert!(matches!(shared.join(true), Joined::Start(_)));
    }
}
