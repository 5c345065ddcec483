//! `wasmos explain TASK|JOB`: the jobs framework says which copies wait and what each
//! needs, the master core why nothing places them (`Master::placement_facts`, and the
//! words from `master::explain`); a task the core knows is explained by its own row.

use jobs::waiting::Waiting;
use master::explain::{Needs, job_summary, waiting_reason};
use master::view::WallClock;
use net::clock::unix_ms;
use proto::explain::{AgentFit, CopyExplanation, Explanation, FrameworkFacts};
use proto::operator::{OperatorError, TaskRow};
use proto::{FrameworkId, TaskId, TaskState};

use crate::operator::{OperatorContext, fresh, read};

pub(crate) async fn explain(
    ctx: &OperatorContext,
    subject: String,
) -> Result<Explanation, OperatorError> {
    let jobs = ctx.jobs.borrow().clone();
    let waiting = match &jobs {
        Some(jobs) => jobs.waiting(&subject).await?,
        None => None,
    };
    let rows = fresh(ctx).await?.tasks.clone();
    if let Some(waiting) = waiting {
        return explain_waiting(ctx, subject, waiting, &rows).await;
    }
    let task_id = TaskId::new(subject.clone());
    let row = rows.iter().find(|r| r.task_id == task_id).ok_or_else(|| {
        OperatorError::NotFound(format!(
            "no task or job {subject}: see `wasmos ps` and `wasmos job list`"
        ))
    })?;
    let copy = from_row(row);
    Ok(Explanation {
        subject,
        summary: copy.reason.clone(),
        copies: vec![copy],
    })
}

/// A task the core knows, in its own words.
fn from_row(row: &TaskRow) -> CopyExplanation {
    let agent = row.agent_id.as_str();
    let state = row.state.as_str();
    let reason = match row.state {
        s if s.is_terminal() => match row.reason.as_str() {
            "" => format!("ended {state} on {agent}"),
            why => format!("ended {state} on {agent}: {why}"),
        },
        TaskState::Unreachable => {
            format!("unreachable: its agent {agent} was lost; it may come back")
        }
        _ => format!("{state} on {agent}"),
    };
    CopyExplanation {
        task_id: row.task_id.clone(),
        state: row.state,
        reason,
        agent_id: (!agent.is_empty()).then(|| row.agent_id.clone()),
        framework: None,
        agents: Vec::new(),
    }
}

/// The core's facts about placing `needs` for the waiting copies' framework.
async fn facts(
    ctx: &OperatorContext,
    framework_id: Option<FrameworkId>,
    needs: &Needs,
) -> Result<(Vec<AgentFit>, Option<FrameworkFacts>), OperatorError> {
    let framework_id = framework_id.unwrap_or_else(|| FrameworkId::new(""));
    let asked = needs.clone();
    read(ctx, move |core, now| {
        let wall = WallClock {
            wall_ms: unix_ms(),
            master_now: now,
        };
        core.placement_facts(now, wall, &framework_id, &asked)
    })
    .await
}

/// Why a per-agent job has no copy: what no agent offers a copy.
async fn unplaced(
    ctx: &OperatorContext,
    framework_id: Option<FrameworkId>,
    resources: proto::Resources,
    constraints: Vec<proto::Constraint>,
) -> Result<String, OperatorError> {
    let needs = Needs {
        resources,
        constraints,
        avoided: Vec::new(),
    };
    let (agents, framework) = facts(ctx, framework_id, &needs).await?;
    Ok(waiting_reason(
        unix_ms(),
        None,
        &needs,
        &agents,
        framework.as_ref(),
    ))
}

async fn explain_waiting(
    ctx: &OperatorContext,
    subject: String,
    waiting: Waiting,
    rows: &[TaskRow],
) -> Result<Explanation, OperatorError> {
    let mut copies = Vec::new();
    for copy in waiting.copies {
        let needs = Needs {
            resources: copy.resources,
            constraints: copy.constraints,
            avoided: copy.avoided,
        };
        let (agents, framework) = facts(ctx, waiting.framework_id.clone(), &needs).await?;
        let reason = waiting_reason(
            unix_ms(),
            copy.restart_at_ms,
            &needs,
            &agents,
            framework.as_ref(),
        );
        copies.push(CopyExplanation {
            task_id: copy.task_id,
            state: TaskState::Pending,
            reason,
            agent_id: None,
            framework,
            agents,
        });
    }
    let unplaced = match waiting.per_agent_unplaced.clone() {
        Some((resources, constraints)) => {
            Some(unplaced(ctx, waiting.framework_id.clone(), resources, constraints).await?)
        }
        None => None,
    };
    // Then the copies that run (a job's restarted copies are found under their new ids).
    let waiting_reasons: Vec<String> = copies.iter().map(|c| c.reason.clone()).collect();
    for task_id in &waiting.live {
        if let Some(row) = rows.iter().find(|r| &r.task_id == task_id) {
            copies.push(from_row(row));
        }
    }
    let task_asked = copies.len() == 1 && copies[0].task_id.as_str() == subject;
    let summary = match task_asked {
        true => copies[0].reason.clone(),
        false => {
            let summary = job_summary(
                &waiting.job,
                waiting.desired,
                waiting.running,
                &waiting_reasons,
                &waiting.ended,
            );
            match unplaced {
                Some(why) => format!("{summary}; no agent takes a copy: {why}"),
                None => summary,
            }
        }
    };
    // A task asked about that no longer waits (placed meanwhile) is the core's.
    if copies.is_empty()
        && let Some(row) = rows.iter().find(|r| r.task_id.as_str() == subject)
    {
        let copy = from_row(row);
        return Ok(Explanation {
            subject,
            summary: copy.reason.clone(),
            copies: vec![copy],
        });
    }
    Ok(Explanation {
        subject,
        summary,
        copies,
    })
}
