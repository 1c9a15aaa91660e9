//! The life of one alert instance (one rule, one label set), with Prometheus' semantics: an
//! instance whose condition starts holding is `pending` until the condition has held for the
//! rule's `for` (at once `firing` when `for` is zero); a firing instance whose condition stops
//! holding stays firing for `keep_firing_for` (counted from the first evaluation that found it
//! clear, as Prometheus does) and then is `resolved`; a resolved instance is kept for
//! `resolved_retention` (so the API still lists it and a return counts as a flap) and then
//! forgotten; a pending instance whose condition clears is dropped without a trace, so a blip
//! shorter than `for` never produces a `resolved`.
//!
//! Two inputs move it: [`InstanceState::observe`], an evaluation of the condition (on a point,
//! or on the timer for conditions that change with time alone), and [`InstanceState::advance`],
//! the passing of time (`for` elapsing while the condition still holds, `keep_firing_for` and
//! the retention ending). Each returns the [`Transition`] it made, if any; the engine turns
//! `Pending`, `Firing` and `Resolved` into events and forgets the instance on `Dropped` and
//! `Expired`.

use pulsewire_model::AlertState;
use serde::{Deserialize, Serialize};

/// How many recent starts of firing an instance remembers for flap detection.
const FLAP_MEMORY: usize = 8;

/// Where an instance is. `Inactive` is only ever transient: the engine keeps no inactive
/// instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

/// A change of phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Inactive or resolved to pending.
    Pending,
    /// Inactive, resolved or pending to firing.
    Firing,
    /// Firing to resolved.
    Resolved,
    /// Pending to inactive: silent.
    Dropped,
    /// Resolved and past its retention: silent.
    Expired,
}

impl Transition {
    /// The state an event reports for this transition; `None` for the silent ones.
    pub fn reported(self) -> Option<AlertState> {
        match self {
            Transition::Pending => Some(AlertState::Pending),
            Transition::Firing => Some(AlertState::Firing),
            Transition::Resolved => Some(AlertState::Resolved),
            Transition::Dropped | Transition::Expired => None,
        }
    }
}

/// The durations a rule and the engine give the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub resolved_retention_ms: i64,
    /// An instance that started firing `flap_threshold` times within `flap_window_ms` is
    /// flapping.
    pub flap_window_ms: i64,
    pub flap_threshold: usize,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            for_ms: 0,
            keep_firing_for_ms: 0,
            resolved_retention_ms: 15 * 60_000,
            flap_window_ms: 10 * 60_000,
            flap_threshold: 4,
        }
    }
}

/// The state of one instance; serializable so that it survives a restart as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    pub phase: Phase,
    /// Unix ms since when the instance has been in `phase`.
    pub since: i64,
    /// Unix ms when the current (or, once resolved, the last) episode became active.
    pub active_since: i64,
    /// While firing: the first evaluation that found the condition clear, for `keep_firing_for`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_since: Option<i64>,
    /// Recent starts of firing, oldest first, at most [`FLAP_MEMORY`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fired_at: Vec<i64>,
}

impl Default for InstanceState {
    fn default() -> InstanceState {
        InstanceState::new()
    }
}

impl InstanceState {
    pub fn new() -> InstanceState {
        InstanceState {
            phase: Phase::Inactive,
            since: 0,
            active_since: 0,
            keep_since: None,
            fired_at: Vec::new(),
        }
    }

    /// The state an API shows; `None` while inactive.
    pub fn alert_state(&self) -> Option<AlertState> {
        match self.phase {
            Phase::Inactive => None,
            Phase::Pending => Some(AlertState::Pending),
            Phase::Firing => Some(AlertState::Firing),
            Phase::Resolved => Some(AlertState::Resolved),
        }
    }

    /// An evaluation of the condition at `now`.
    pub fn observe(&mut self, now: i64, active: bool, t: &Timing) -> Option<Transition> {
        match (self.phase, active) {
            (Phase::Inactive | Phase::Resolved, true) => {
                self.active_since = now;
                self.keep_since = None;
                if t.for_ms <= 0 {
                    Some(self.fire(now))
                } else {
                    self.enter(Phase::Pending, now);
                    Some(Transition::Pending)
                }
            }
            (Phase::Pending, true) => (now - self.active_since >= t.for_ms).then(|| self.fire(now)),
            (Phase::Pending, false) => {
                self.enter(Phase::Inactive, now);
                Some(Transition::Dropped)
            }
            (Phase::Firing, true) => {
                self.keep_since = None;
                None
            }
            (Phase::Firing, false) => {
                let keep_since = *self.keep_since.get_or_insert(now);
                (now - keep_since >= t.keep_firing_for_ms).then(|| self.resolve(now))
            }
            (Phase::Resolved, false) => self.advance(now, t),
            (Phase::Inactive, false) => None,
        }
    }

    /// The passing of time up to `now`, without a new evaluation.
    pub fn advance(&mut self, now: i64, t: &Timing) -> Option<Transition> {
        match self.phase {
            // Still pending means the last evaluation found the condition holding.
            Phase::Pending if now - self.active_since >= t.for_ms => Some(self.fire(now)),
            Phase::Firing => {
                let keep_since = self.keep_since?;
                (now - keep_since >= t.keep_firing_for_ms).then(|| self.resolve(now))
            }
            Phase::Resolved if now - self.since >= t.resolved_retention_ms => {
                self.enter(Phase::Inactive, now);
                Some(Transition::Expired)
            }
            _ => None,
        }
    }

    /// Whether the instance started firing at least `flap_threshold` times in the last
    /// `flap_window_ms`.
    pub fn is_flapping(&self, now: i64, t: &Timing) -> bool {
        t.flap_threshold > 0
            && self.fired_at.iter().filter(|&&at| now - at < t.flap_window_ms).count() >= t.flap_threshold
    }

    fn enter(&mut self, phase: Phase, now: i64) {
        self.phase = phase;
        self.since = now;
    }

    fn fire(&mut self, now: i64) -> Transition {
        self.enter(Phase::Firing, now);
        self.keep_since = None;
        if self.fired_at.len() >= FLAP_MEMORY {
            self.fired_at.remove(0);
        }
        self.fired_at.push(now);
        Transition::Firing
    }

    fn resolve(&mut self, now: i64) -> Transition {
        self.enter(Phase::Resolved, now);
        self.keep_since = None;
        Transition::Resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        for_ms: 30,
        keep_firing_for_ms: 20,
        resolved_retention_ms: 100,
        flap_window_ms: 1_000,
        flap_threshold: 3,
    };
    const NO_FOR: Timing = Timing {
        for_ms: 0,
        keep_firing_for_ms: 0,
        ..T
    };

    fn st(phase: Phase, since: i64, active_since: i64, keep_since: Option<i64>) -> InstanceState {
        InstanceState {
            phase,
            since,
            active_since,
            keep_since,
            fired_at: Vec::new(),
        }
    }

    enum Input {
        Obs(bool),
        Tick,
    }
    use Input::{Obs, Tick};

    /// What a row is about, the state before, the timings, when, the input, the transition
    /// expected and the state after.
    type Row = (
        &'static str,
        InstanceState,
        Timing,
        i64,
        Input,
        Option<Transition>,
        InstanceState,
    );

    /// Every (phase, input) pair with the timings that decide it.
    #[test]
    fn every_transition() {
        use Phase::*;
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("inactive, clear: nothing", st(Inactive, 0, 0, None), T, 10, Obs(false), None, st(Inactive, 0, 0, None)),
            ("inactive, tick: nothing", st(Inactive, 0, 0, None), T, 10, Tick, None, st(Inactive, 0, 0, None)),
            ("inactive, active, for>0: pending", st(Inactive, 0, 0, None), T, 10, Obs(true), Some(Transition::Pending), st(Pending, 10, 10, None)),
            ("inactive, active, for=0: firing at once", st(Inactive, 0, 0, None), NO_FOR, 10, Obs(true), Some(Transition::Firing), st(Firing, 10, 10, None)),
            ("pending, active, for not elapsed: stays", st(Pending, 10, 10, None), T, 39, Obs(true), None, st(Pending, 10, 10, None)),
            ("pending, active, for elapsed: firing", st(Pending, 10, 10, None), T, 40, Obs(true), Some(Transition::Firing), st(Firing, 40, 10, None)),
            ("pending, tick, for not elapsed: stays", st(Pending, 10, 10, None), T, 39, Tick, None, st(Pending, 10, 10, None)),
            ("pending, tick, for elapsed: firing", st(Pending, 10, 10, None), T, 45, Tick, Some(Transition::Firing), st(Firing, 45, 10, None)),
            ("pending, clear: dropped silently", st(Pending, 10, 10, None), T, 20, Obs(false), Some(Transition::Dropped), st(Inactive, 20, 10, None)),
            ("firing, active: stays", st(Firing, 40, 10, None), T, 50, Obs(true), None, st(Firing, 40, 10, None)),
            ("firing, active again: keep_firing_for forgotten", st(Firing, 40, 10, Some(45)), T, 50, Obs(true), None, st(Firing, 40, 10, None)),
            ("firing, clear, keep_firing_for=0: resolved", st(Firing, 40, 10, None), NO_FOR, 50, Obs(false), Some(Transition::Resolved), st(Resolved, 50, 10, None)),
            ("firing, clear, keep_firing_for>0: keeps firing", st(Firing, 40, 10, None), T, 50, Obs(false), None, st(Firing, 40, 10, Some(50))),
            ("firing, clear again within keep_firing_for: keeps", st(Firing, 40, 10, Some(50)), T, 69, Obs(false), None, st(Firing, 40, 10, Some(50))),
            ("firing, clear again after keep_firing_for: resolved", st(Firing, 40, 10, Some(50)), T, 70, Obs(false), Some(Transition::Resolved), st(Resolved, 70, 10, None)),
            ("firing, tick, condition holding: stays", st(Firing, 40, 10, None), T, 1_000, Tick, None, st(Firing, 40, 10, None)),
            ("firing, tick within keep_firing_for: stays", st(Firing, 40, 10, Some(50)), T, 60, Tick, None, st(Firing, 40, 10, Some(50))),
            ("firing, tick after keep_firing_for: resolved", st(Firing, 40, 10, Some(50)), T, 75, Tick, Some(Transition::Resolved), st(Resolved, 75, 10, None)),
            ("resolved, clear within retention: stays", st(Resolved, 70, 10, None), T, 169, Obs(false), None, st(Resolved, 70, 10, None)),
            ("resolved, clear after retention: expired", st(Resolved, 70, 10, None), T, 170, Obs(false), Some(Transition::Expired), st(Inactive, 170, 10, None)),
            ("resolved, tick within retention: stays", st(Resolved, 70, 10, None), T, 169, Tick, None, st(Resolved, 70, 10, None)),
            ("resolved, tick after retention: expired", st(Resolved, 70, 10, None), T, 170, Tick, Some(Transition::Expired), st(Inactive, 170, 10, None)),
            ("resolved, active, for>0: pending again", st(Resolved, 70, 10, None), T, 80, Obs(true), Some(Transition::Pending), st(Pending, 80, 80, None)),
            ("resolved, active, for=0: firing again", st(Resolved, 70, 10, None), NO_FOR, 80, Obs(true), Some(Transition::Firing), st(Firing, 80, 80, None)),
        ];
        for (what, mut s, t, now, input, want, mut after) in table {
            let got = match input {
                Obs(a) => s.observe(now, a, &t),
                Tick => s.advance(now, &t),
            };
            assert_eq!(got, want, "{what}");
            // Firing starts are recorded for flap detection; compare them apart.
            if want == Some(Transition::Firing) {
                after.fired_at = vec![now];
            }
            assert_eq!(s, after, "{what}");
        }
    }

    #[test]
    fn only_state_changes_are_reported() {
        assert_eq!(Transition::Pending.reported(), Some(AlertState::Pending));
        assert_eq!(Transition::Firing.reported(), Some(AlertState::Firing));
        assert_eq!(Transition::Resolved.reported(), Some(AlertState::Resolved));
        assert_eq!(Transition::Dropped.reported(), None);
        assert_eq!(Transition::Expired.reported(), None);
    }

    #[test]
    fn flapping_needs_enough_recent_starts() {
        let mut s = InstanceState::new();
        for k in 0..3 {
            let at = k * 100;
            assert_eq!(s.observe(at, true, &NO_FOR), Some(Transition::Firing));
            assert_eq!(s.observe(at + 50, false, &NO_FOR), Some(Transition::Resolved));
        }
        assert!(s.is_flapping(300, &NO_FOR));
        // The first start leaves the flap window.
        assert!(!s.is_flapping(1_000, &NO_FOR));
        for k in 0..20 {
            s.observe(2_000 + k * 10, k % 2 == 0, &NO_FOR);
        }
        assert!(s.fired_at.len() <= FLAP_MEMORY);
    }

    #[test]
    fn a_whole_episode_keeps_its_start() {
        let mut s = InstanceState::new();
        assert_eq!(s.observe(0, true, &T), Some(Transition::Pending));
        assert_eq!(s.observe(30, true, &T), Some(Transition::Firing));
        assert_eq!(s.observe(60, false, &T), None);
        assert_eq!(s.advance(80, &T), Some(Transition::Resolved));
        assert_eq!((s.phase, s.since, s.active_since), (Phase::Resolved, 80, 0));
        // Serialized and read back (a restart), it goes on from where it was.
        let json = serde_json::to_string(&s).unwrap_or_default();
        let mut back: InstanceState = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, s);
        assert_eq!(back.advance(180, &T), Some(Transition::Expired));
    }
}
