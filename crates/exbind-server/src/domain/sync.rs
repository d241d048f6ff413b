//! The sync schedule (contract §4.7): `doing → cal_done → timespan_done → done`, or `err`.
//! Pure: given a binding's state, its scenario and the time, what steps happen.

use exbind_api::BindingStatus;
use serde::{Deserialize, Serialize};

use super::model::Step;

/// How one binding's sync behaves, fixed when the binding is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "scenario", rename_all = "snake_case")]
pub enum Scenario {
    #[default]
    Normal,
    /// Every stage at once.
    Instant,
    /// Goes to `err` instead of entering `stage`.
    Fail {
        stage: BindingStatus,
        reason: Option<String>,
    },
    /// Stops at `stage`.
    Stall { stage: BindingStatus },
}

impl Scenario {
    /// From the names a seed or the control plane uses (already checked).
    pub fn from_names(scenario: &str, stage: Option<&str>, reason: Option<&str>) -> Scenario {
        let stage = stage.and_then(BindingStatus::parse);
        match (scenario, stage) {
            ("instant", _) => Scenario::Instant,
            ("fail", Some(stage)) => Scenario::Fail {
                stage,
                reason: reason.map(str::to_string),
            },
            ("stall", Some(stage)) => Scenario::Stall { stage },
            _ => Scenario::Normal,
        }
    }
}

/// Time to reach each stage from the one before: `cal_done`, `timespan_done`, `done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub stage_ms: [i64; 3],
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            stage_ms: [5_000, 10_000, 30_000],
        }
    }
}

impl Schedule {
    /// Parses `5s,10s,30s` (units ms, s, m; a bare number is seconds).
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if parts.len() != 3 {
            return Err(format!(
                "expected three durations like 5s,10s,30s, got {s:?}"
            ));
        }
        let mut stage_ms = [0i64; 3];
        for (slot, p) in stage_ms.iter_mut().zip(&parts) {
            *slot = parse_duration_ms(p).ok_or_else(|| format!("bad duration {p:?} in {s:?}"))?;
        }
        Ok(Schedule { stage_ms })
    }

    /// How long a binding spends before entering the stage after `from`.
    fn wait(&self, scenario: &Scenario, from: BindingStatus) -> i64 {
        if *scenario == Scenario::Instant {
            return 0;
        }
        match from {
            BindingStatus::Doing => self.stage_ms[0],
            BindingStatus::CalDone => self.stage_ms[1],
            _ => self.stage_ms[2],
        }
    }

    /// When a binding that entered `status` at `at` takes its next step, if ever.
    pub fn next_at(&self, scenario: &Scenario, status: BindingStatus, at: i64) -> Option<i64> {
        if status.is_final() || matches!(scenario, Scenario::Stall { stage } if *stage == status) {
            return None;
        }
        Some(at + self.wait(scenario, status))
    }
}

/// Milliseconds of `250ms`, `5s`, `1m` or a bare number of seconds (fractions allowed).
pub(crate) fn parse_duration_ms(p: &str) -> Option<i64> {
    let (num, mult) = if let Some(n) = p.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = p.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = p.strip_suffix('m') {
        (n, 60_000)
    } else {
        (p, 1000)
    };
    let n: f64 = num.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * mult as f64).round() as i64)
}

/// Where a binding stands after catching up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: BindingStatus,
    pub next_at: Option<i64>,
    pub reason: Option<String>,
    /// The steps taken, each at its scheduled time.
    pub steps: Vec<Step>,
}

/// Every step that is due by `now`, in order, each at its scheduled deadline.
pub fn catch_up(
    schedule: &Schedule,
    scenario: &Scenario,
    mut status: BindingStatus,
    mut next_at: Option<i64>,
    now: i64,
) -> Progress {
    let mut steps = Vec::new();
    let mut reason = None;
    while let Some(at) = next_at.filter(|at| *at <= now) {
        let Some(next) = status.next() else { break };
        if let Scenario::Fail { stage, reason: r } = scenario {
            if *stage == next {
                status = BindingStatus::Err;
                reason = Some(
                    r.clone()
                        .unwrap_or_else(|| format!("sync failed before {next}")),
                );
                steps.push(Step { status, at });
                next_at = None;
                break;
            }
        }
        status = next;
        steps.push(Step { status, at });
        next_at = schedule.next_at(scenario, status, at);
    }
    Progress {
        status,
        next_at,
        reason,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BindingStatus::*;

    const S: Schedule = Schedule {
        stage_ms: [5, 10, 30],
    };

    fn statuses(p: &Progress) -> Vec<BindingStatus> {
        p.steps.iter().map(|s| s.status).collect()
    }

    #[test]
    fn normal_sync_steps_at_scheduled_times() {
        let n = Scenario::Normal;
        let start = S.next_at(&n, Doing, 100);
        assert_eq!(start, Some(105));
        assert!(catch_up(&S, &n, Doing, start, 104).steps.is_empty());
        let p = catch_up(&S, &n, Doing, start, 120);
        assert_eq!(statuses(&p), vec![CalDone, TimespanDone]);
        assert_eq!(p.steps[1].at, 115);
        assert_eq!(p.next_at, Some(145));
        // After long downtime every remaining stage is taken, in order, at its own time.
        let p = catch_up(&S, &n, Doing, start, 10_000);
        assert_eq!(statuses(&p), vec![CalDone, TimespanDone, Done]);
        assert_eq!(
            p.steps.iter().map(|s| s.at).collect::<Vec<_>>(),
            vec![105, 115, 145]
        );
        assert_eq!(p.next_at, None);
    }

    #[test]
    fn scenarios() {
        let instant = Scenario::Instant;
        let p = catch_up(&S, &instant, Doing, S.next_at(&instant, Doing, 7), 7);
        assert_eq!(statuses(&p), vec![CalDone, TimespanDone, Done]);

        let fail = Scenario::Fail {
            stage: TimespanDone,
            reason: Some("quota".into()),
        };
        let p = catch_up(&S, &fail, Doing, Some(5), 1000);
        assert_eq!(statuses(&p), vec![CalDone, Err]);
        assert_eq!(p.reason.as_deref(), Some("quota"));

        let stall = Scenario::Stall { stage: CalDone };
        let p = catch_up(&S, &stall, Doing, Some(5), 1000);
        assert_eq!(statuses(&p), vec![CalDone]);
        assert_eq!(p.next_at, None);
        assert_eq!(S.next_at(&Scenario::Stall { stage: Doing }, Doing, 0), None);
    }

    #[test]
    fn schedule_parsing() {
        assert_eq!(Schedule::parse("5s,10s,30s").unwrap(), Schedule::default());
        assert_eq!(
            Schedule::parse("0,250ms,1m").unwrap().stage_ms,
            [0, 250, 60_000]
        );
        assert!(Schedule::parse("5s,10s").is_err());
        assert!(Schedule::parse("5s,x,1s").is_err());
        assert!(Schedule::parse("-1s,1s,1s").is_err());
    }
}
