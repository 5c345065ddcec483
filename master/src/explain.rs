//! Why a task waits (`wasmos explain`): the facts about placing a task's resources under
//! its constraints for its framework, per agent and for the framework, from the master's
//! own books. Sans-IO: the caller gives the time; nothing here changes the master.

use proto::explain::{AHEAD_LISTED_MAX, AgentFit, Fit, FrameworkFacts, FrameworkShare, Shortfall};
use proto::operator::AgentState;
use proto::resources::{SCALAR_MILLIS_PER_UNIT, dominant_share_of};
use proto::{AgentId, Constraint, FrameworkId, Resources, TaskState};

use crate::master::Master;
use crate::time::Millis;
use crate::view::WallClock;

/// What a waiting task needs, as its framework holds it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Needs {
    pub resources: Resources,
    pub constraints: Vec<Constraint>,
    /// Agents its framework will not place it on, and until when (wall clock): the job's
    /// quarantine.
    pub avoided: Vec<(AgentId, u64)>,
}

impl Master {
    /// Every agent's fit for `needs` (fitting ones first, then the closest), and the
    /// framework's place in DRF.
    pub fn placement_facts(
        &self,
        now: Millis,
        wall: WallClock,
        framework_id: &FrameworkId,
        needs: &Needs,
    ) -> (Vec<AgentFit>, Option<FrameworkFacts>) {
        let mut fits: Vec<AgentFit> = (self.agents.keys())
            .filter_map(|id| self.agent_fit(now, wall, framework_id, id, needs))
            .collect();
        fits.extend(self.lost_agents.rows().map(|row| AgentFit {
            agent_id: row.agent_id.clone(),
            hostname: row.hostname.clone(),
            fit: Fit::Unreachable {
                state: AgentState::Lost,
            },
            message: "lost".to_owned(),
        }));
        fits.sort_by(|a, b| fit_rank(&a.fit).total_cmp(&fit_rank(&b.fit)));
        (fits, self.framework_facts(framework_id))
    }

    fn agent_fit(
        &self,
        now: Millis,
        wall: WallClock,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        needs: &Needs,
    ) -> Option<AgentFit> {
        let record = self.agents.get(agent_id)?;
        let books = self.book.agent(agent_id)?;
        let slot = self.book.snapshot().frameworks.get(framework_id);
        let standing = slot.map(|s| s.constraints.as_slice()).unwrap_or_default();
        let fit = if self.agent_token_missing(agent_id) {
            Fit::Unreachable {
                state: AgentState::Disconnected,
            }
        } else if let Some(c) = (needs.constraints.iter().chain(standing))
            .find(|c| !books.attributes.satisfies(std::slice::from_ref(*c)))
        {
            Fit::Constraint {
                constraint: c.to_string(),
            }
        } else if let Some((_, until)) = needs.avoided.iter().find(|(a, _)| a == agent_id) {
            Fit::Quarantined {
                until_at_ms: *until,
            }
        } else if let Some(short) = shortest(&needs.resources, books.free, books.offered) {
            short
        } else if let Some(until) = (slot.and_then(|s| s.filters.get(agent_id)))
            .and_then(|fs| fs.iter().filter(|f| f.until > now).map(|f| f.until).max())
        {
            Fit::Filtered {
                until_at_ms: wall.wall(until),
            }
        } else {
            Fit::Fits
        };
        Some(AgentFit {
            agent_id: agent_id.clone(),
            hostname: record.hostname.clone(),
            message: fit_message(&fit, wall.wall(now)),
            fit,
        })
    }

    fn framework_facts(&self, framework_id: &FrameworkId) -> Option<FrameworkFacts> {
        let record = self.frameworks.get(framework_id)?;
        let snapshot = self.book.snapshot();
        let weighted = |id: &FrameworkId| {
            let slot = snapshot.frameworks.get(id)?;
            let role_weight = snapshot
                .role_weights
                .get(&slot.role)
                .copied()
                .unwrap_or(1.0);
            let share = dominant_share_of(&slot.allocation, &snapshot.total);
            Some((
                share,
                share / (slot.weight * role_weight).max(f64::MIN_POSITIVE),
            ))
        };
        let (dominant_share, weighted_share) = weighted(framework_id)?;
        let mut ahead: Vec<FrameworkShare> = (snapshot.frameworks.iter())
            .filter(|(id, slot)| *id != framework_id && slot.wants_offers)
            .filter_map(|(id, _)| {
                let (_, share) = weighted(id)?;
                (share < weighted_share).then(|| FrameworkShare {
                    framework_id: id.clone(),
                    name: (self.frameworks.get(id)).map_or(String::new(), |f| f.info.name.clone()),
                    weighted_share: share,
                })
            })
            .collect();
        ahead.sort_by(|a, b| a.weighted_share.total_cmp(&b.weighted_share));
        ahead.truncate(AHEAD_LISTED_MAX);
        Some(FrameworkFacts {
            framework_id: framework_id.clone(),
            name: record.info.name.clone(),
            connected: record.connected,
            suppressed: record.suppressed,
            dominant_share,
            weighted_share,
            ahead,
        })
    }
}

/// The scalars of `needs` short of what is free, the most short first, if any is.
fn shortest(needs: &Resources, free: &Resources, offered: &Resources) -> Option<Fit> {
    let units = |millis: u64| millis as f64 / SCALAR_MILLIS_PER_UNIT as f64;
    let mut short: Vec<(&proto::Kind, u64, u64)> = (needs.scalars.iter())
        .map(|(name, need)| (name, need.0, free.scalar(name).0))
        .filter(|(_, need, free)| free < need)
        .collect();
    // The most short relative to what is needed first.
    short.sort_by(|a, b| {
        let lack = |(_, need, free): &(&proto::Kind, u64, u64)| (need - free) as f64 / *need as f64;
        lack(b).total_cmp(&lack(a))
    });
    let Some(((name, need, have), rest)) = short.split_first() else {
        return (!free.contains(needs)).then(|| Fit::Short {
            resource: "ports or devices".to_owned(),
            need: 0.0,
            free: 0.0,
            offered: 0.0,
            also: Vec::new(),
        });
    };
    Some(Fit::Short {
        resource: name.to_string(),
        need: units(*need),
        free: units(*have),
        offered: units(offered.scalar(name).0),
        also: (rest.iter())
            .map(|(name, need, have)| Shortfall {
                resource: name.to_string(),
                need: units(*need),
                free: units(*have),
            })
            .collect(),
    })
}

/// Lower is closer to running.
fn fit_rank(fit: &Fit) -> f64 {
    match fit {
        Fit::Fits => 0.0,
        Fit::Filtered { .. } => 1.0,
        Fit::Short { need, free, .. } if *need > 0.0 => 2.0 + (need - free) / need,
        Fit::Short { .. } => 3.0,
        Fit::Quarantined { .. } => 4.0,
        Fit::Constraint { .. } => 5.0,
        Fit::Unreachable { .. } => 6.0,
    }
}

/// `until` from `now` (wall clock, ms), for people: `12 s`.
fn seconds(until: u64, now: u64) -> String {
    format!("{} s", until.saturating_sub(now).div_ceil(1_000))
}

/// An agent's fit in words, `now` the wall clock.
pub fn fit_message(fit: &Fit, now: u64) -> String {
    match fit {
        Fit::Fits => "fits: its next offer can take it".to_owned(),
        Fit::Unreachable { state } => format!("{}: the master cannot reach it", state.as_str()),
        Fit::Constraint { constraint } => format!("constraint {constraint} does not hold"),
        Fit::Short {
            resource,
            need,
            free,
            offered,
            also,
        } => {
            let offered = match *offered > 0.0 {
                true => format!(" ({offered} more offered, not yet answered)"),
                false => String::new(),
            };
            let mut text = format!("{resource}: needs {need}, {free} free{offered}");
            for s in also {
                text.push_str(&format!(
                    "; {}: needs {}, {} free",
                    s.resource, s.need, s.free
                ));
            }
            text
        }
        Fit::Filtered { until_at_ms } => format!(
            "the framework declined its offers: filtered for {} more",
            seconds(*until_at_ms, now)
        ),
        Fit::Quarantined { until_at_ms } => format!(
            "quarantined for the job (its tasks kept failing there) for {} more",
            seconds(*until_at_ms, now)
        ),
    }
}

/// Why one waiting copy waits, in a line, from its agents' fits and its framework.
pub fn waiting_reason(
    now_wall_ms: u64,
    restart_at_ms: Option<u64>,
    needs: &Needs,
    fits: &[AgentFit],
    framework: Option<&FrameworkFacts>,
) -> String {
    let placement = placement_reason(now_wall_ms, needs, fits, framework);
    match restart_at_ms {
        Some(at) => format!(
            "restarts after its backoff, in {}; then {placement}",
            seconds(at, now_wall_ms)
        ),
        None => placement,
    }
}

/// A task that fits `first` waits for the offer: why it has not come yet.
fn fitting_reason(first: &AgentFit, framework: Option<&FrameworkFacts>) -> String {
    match framework {
        Some(fw) if fw.suppressed => format!(
            "fits {} but the framework {} asked for no offers",
            first.hostname, fw.name
        ),
        Some(fw) if !fw.ahead.is_empty() => {
            let ahead: Vec<String> = (fw.ahead.iter())
                .map(|a| format!("{} (share {:.2})", a.name, a.weighted_share))
                .collect();
            format!(
                "fits {}; DRF offers first to {} before {} (share {:.2})",
                first.hostname,
                ahead.join(", "),
                fw.name,
                fw.weighted_share
            )
        }
        _ => format!("fits {}: waiting for its next offer", first.hostname),
    }
}

fn placement_reason(
    now_wall_ms: u64,
    needs: &Needs,
    fits: &[AgentFit],
    framework: Option<&FrameworkFacts>,
) -> String {
    if let Some(first) = fits.iter().find(|f| f.fit == Fit::Fits) {
        return fitting_reason(first, framework);
    }
    let wanted = wanted_text(needs);
    if let Some(until) = fits.iter().find_map(|f| match f.fit {
        Fit::Filtered { until_at_ms } => Some(until_at_ms),
        _ => None,
    }) {
        return format!(
            "the framework declined the offers of the agents that fit, for {} more",
            seconds(until, now_wall_ms)
        );
    }
    let closest = fits.iter().find_map(|f| match &f.fit {
        Fit::Short { resource, free, .. } => {
            Some(format!("closest: {}, {free} {resource} free", f.hostname))
        }
        _ => None,
    });
    if let Some(closest) = closest {
        return format!("no agent{wanted} has {} free ({closest})", needs.resources);
    }
    if fits
        .iter()
        .any(|f| matches!(f.fit, Fit::Quarantined { .. }))
    {
        return format!("every agent{wanted} with room is quarantined for the job");
    }
    if fits
        .iter()
        .any(|f| matches!(f.fit, Fit::Unreachable { .. }))
        && !fits.iter().any(|f| matches!(f.fit, Fit::Constraint { .. }))
    {
        return "every agent is unreachable or lost".to_owned();
    }
    match (needs.constraints.len(), fits.is_empty()) {
        (_, true) => "no agent has joined the cluster".to_owned(),
        (1, false) => {
            let constraint = needs
                .constraints
                .iter()
                .map(ToString::to_string)
                .collect::<String>();
            let checked = (fits.iter())
                .filter(|f| matches!(f.fit, Fit::Constraint { .. }))
                .count();
            format!("no agent has {constraint} ({checked} checked)")
        }
        _ => format!("no agent{wanted}: {}", most_failed_constraint(fits)),
    }
}

/// ` with arch=aarch64, has=camera`, or nothing.
fn wanted_text(needs: &Needs) -> String {
    match needs.constraints.is_empty() {
        true => String::new(),
        false => {
            let c: Vec<String> = needs.constraints.iter().map(ToString::to_string).collect();
            format!(" with {}", c.join(", "))
        }
    }
}

fn most_failed_constraint(fits: &[AgentFit]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for f in fits {
        if let Fit::Constraint { constraint } = &f.fit {
            *counts.entry(constraint.as_str()).or_default() += 1;
        }
    }
    match counts.iter().max_by_key(|(_, n)| **n) {
        Some((c, n)) => format!("{c} holds on none of {n} agent(s)"),
        None => "none matches".to_owned(),
    }
}

/// A job's state in a line: "3 of 6 running; 3 wait: …" (the first waiting copy's
/// reason), and its copies that ended for good by state ("2 ended: 2 failed").
pub fn job_summary(
    job: &str,
    desired: u32,
    running: u32,
    reasons: &[String],
    ended: &[TaskState],
) -> String {
    let mut line = format!("job {job}: {running} of {desired} running");
    if !ended.is_empty() {
        let by_state: Vec<String> = (TaskState::ALL.iter())
            .map(|s| (s, ended.iter().filter(|e| *e == s).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{n} {}", s.as_str()))
            .collect();
        line.push_str(&format!("; {} ended: {}", ended.len(), by_state.join(", ")));
    }
    match reasons.first() {
        None => line.push_str("; none waits"),
        Some(reason) => line.push_str(&format!("; {} wait: {reason}", reasons.len())),
    }
    line
}
