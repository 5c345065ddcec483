//! Framework calls (Accept and Decline are in `accept.rs`).

use std::collections::BTreeMap;

use proto::{
    ACKS_PER_CALL_MAX, Ack, AgentId, Call, CallReply, Capability, Event, FrameworkCall,
    FrameworkId, FrameworkInfo, Operation, Principal, StatusUuid, TaskId, TaskKind, TaskState,
    TaskStatus,
};

use super::{Action, FrameworkRecord, Master};
use crate::allocator::{FrameworkSlot, GpuAgents};
use crate::error::CallError;
use crate::tasks::TaskRecord;
use crate::time::Millis;

/// Reconciliations kept for the end of the re-registration window.
pub const DEFERRED_RECONCILES_MAX: usize = 4096;

impl Master {
    /// A framework's call from `caller`, as the transport proved it. The reply goes back
    /// to the caller at once; events and agent commands the call causes come out of
    /// [`Master::poll_action`]. A refused call changes nothing, with one exception: an
    /// `AcknowledgeMany` whose acknowledgements are refused only in part passes the others
    /// on, and its error says how many were refused ([`CallError::AcksRefused`]).
    pub fn handle_call(
        &mut self,
        now: Millis,
        caller: &Principal,
        call: FrameworkCall,
    ) -> Result<CallReply, CallError> {
        self.advance(now);
        let result = match call.call {
            Call::Subscribe { info } => self.subscribe(caller, call.framework_id, info),
            other => {
                let id = call.framework_id.ok_or(CallError::MissingFrameworkId)?;
                self.config.policy.check_owner(caller, &id)?;
                self.check_subscribed(&id)?;
                if let Call::Accept { operations, .. } = &other
                    && launches_oci(operations)
                {
                    self.config.policy.check_framework_oci(caller)?;
                }
                self.framework_call(&id, other).map(|()| CallReply::Ok)
            }
        };
        self.debug_check();
        result
    }

    /// The framework's connection is gone (its liveliness token vanished). Its offers
    /// return to the pool; it is torn down unless it subscribes again within its
    /// `failover_timeout_ms`.
    pub fn handle_framework_disconnected(&mut self, now: Millis, framework_id: &FrameworkId) {
        self.advance(now);
        self.disconnect(framework_id);
        self.debug_check();
    }

    pub(super) fn disconnect(&mut self, framework_id: &FrameworkId) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.torn_down {
            return;
        }
        fw.connected = false;
        let failover_at = self.now.plus_ms(fw.info.failover_timeout_ms);
        self.failovers.set(framework_id.clone(), failover_at);
        self.update_wants(framework_id);
        for offer_id in self.offers.of_framework(framework_id) {
            self.withdraw_offer(&offer_id, false);
        }
    }

    fn framework_call(&mut self, id: &FrameworkId, call: Call) -> Result<(), CallError> {
        match call {
            Call::Subscribe { .. } => Ok(()),
            Call::Accept {
                offer_ids,
                operations,
                filters,
            } => self.accept(id, offer_ids, operations, filters),
            Call::Decline { offer_ids, filters } => self.decline(id, offer_ids, filters),
            Call::Revive => {
                self.set_suppressed(id, false);
                self.clear_filters(id);
                self.want_allocation_all();
                Ok(())
            }
            Call::Suppress => {
                self.set_suppressed(id, true);
                Ok(())
            }
            Call::Kill { task_id } => self.kill(id, &task_id),
            Call::Acknowledge {
                task_id,
                status_uuid,
            } => self.acknowledge(
                id,
                vec![Ack {
                    task_id,
                    status_uuid,
                }],
            ),
            Call::AcknowledgeMany { acks } => self.acknowledge(id, acks),
            Call::Reconcile { tasks } => {
                if self.offers_held() {
                    self.defer_reconcile(id, tasks);
                } else {
                    self.reconcile(id, tasks);
                }
                Ok(())
            }
            Call::Teardown => {
                self.teardown(id);
                Ok(())
            }
        }
    }

    fn check_subscribed(&self, id: &FrameworkId) -> Result<(), CallError> {
        match self.frameworks.get(id) {
            Some(fw) if fw.connected && !fw.torn_down => Ok(()),
            Some(fw) if fw.torn_down => Err(CallError::TornDown(id.clone())),
            None if self.removed_frameworks.contains(id) => Err(CallError::TornDown(id.clone())),
            _ => Err(CallError::NotSubscribed(id.clone())),
        }
    }

    fn subscribe(
        &mut self,
        caller: &Principal,
        from: Option<FrameworkId>,
        info: FrameworkInfo,
    ) -> Result<CallReply, CallError> {
        info.check_labels().map_err(CallError::InvalidLabel)?;
        self.config.policy.check_register(caller, &info.role)?;
        let id = self.subscription_id(caller, from, &info)?;
        self.admit(&id, info);
        let heartbeat_interval_ms = self.config.heartbeat_interval_ms;
        self.send(
            &id,
            Event::Subscribed {
                framework_id: id.clone(),
                heartbeat_interval_ms,
            },
        );
        self.want_allocation_all();
        Ok(CallReply::Subscribed {
            framework_id: id,
            heartbeat_interval_ms,
        })
    }

    /// Checks a `Subscribe` and gives the id the framework is to have: the one it named,
    /// or a new one. Nothing changes when it is refused.
    fn subscription_id(
        &mut self,
        caller: &Principal,
        from: Option<FrameworkId>,
        info: &FrameworkInfo,
    ) -> Result<FrameworkId, CallError> {
        if !(info.weight > 0.0 && info.weight.is_finite()) {
            return Err(CallError::InvalidWeight(info.weight));
        }
        if info.role.is_empty() {
            return Err(CallError::EmptyRole);
        }
        let named = match (from, info.framework_id.clone()) {
            (Some(from), Some(named)) if from != named => {
                return Err(CallError::IdMismatch { named, from });
            }
            (from, named) => named.or(from),
        };
        // An id this master did not issue, or knows only from adverts: it replaces an
        // earlier master.
        let returning = named
            .as_ref()
            .is_some_and(|id| self.frameworks.get(id).is_none_or(|f| f.recovered));
        let id = match named {
            Some(id) => {
                self.config.policy.check_owner(caller, &id)?;
                self.resubscribe_id(id, info)?
            }
            None => self.new_framework_id(caller),
        };
        self.check_role_weight(&id, info)?;
        if returning {
            self.note_recovery_evidence();
        }
        Ok(id)
    }

    /// Puts a subscribing framework on the books: its allocator slot (new, or replacing
    /// its earlier one) and its record, keeping the tasks it has.
    fn admit(&mut self, id: &FrameworkId, info: FrameworkInfo) {
        let id = id.clone();
        let seq = match self.book.snapshot().frameworks.get(&id) {
            Some(slot) => slot.subscribed_seq,
            None => {
                self.subscriptions += 1;
                self.subscriptions
            }
        };
        // A failed-over scheduler does not know the offers of its predecessor.
        for offer_id in self.offers.of_framework(&id) {
            self.withdraw_offer(&offer_id, false);
        }
        let tasks = self
            .frameworks
            .get(&id)
            .map(|f| f.tasks.clone())
            .unwrap_or_default();
        let suppressed = self.frameworks.get(&id).is_some_and(|f| f.suppressed);
        if !self.config.role_weights.contains_key(&info.role)
            && self.book.snapshot().role_weights.get(&info.role) != Some(&info.weight)
        {
            // No other framework holds the role (checked above): the weight is this one's.
            self.book.set_role_weight(&info.role, info.weight);
        }
        // A framework recovered from adverts has no slot yet: its tasks are its allocation.
        let allocation = match self.book.snapshot().frameworks.get(&id) {
            Some(slot) => slot.allocation.clone(),
            None => self.tasks_quantities(&tasks),
        };
        // In a role whose weight the operator set, the weight a framework gives orders it
        // among the role's frameworks; otherwise it is the role's weight (the first
        // framework's, which later ones must repeat) and frameworks weigh alike inside it.
        let weight = if self.config.role_weights.contains_key(&info.role) {
            info.weight
        } else {
            1.0
        };
        let slot = FrameworkSlot {
            role: info.role.clone(),
            weight,
            subscribed_seq: seq,
            allocation,
            wants_offers: !suppressed,
            constraints: info.constraints.clone(),
            min_offer: info.min_offer.clone(),
            filters: BTreeMap::new(),
            gpu_agents: self.gpu_agents(&info),
        };
        self.book.put_framework(&id, slot);
        let info = FrameworkInfo {
            framework_id: Some(id.clone()),
            ..info
        };
        let record = FrameworkRecord {
            info,
            connected: true,
            suppressed,
            torn_down: false,
            tasks,
            below_fair_since: None,
            recovered: false,
        };
        tracing::info!(framework_id = %id, name = %record.info.name, role = %record.info.role, "framework subscribed");
        self.frameworks.insert(id.clone(), record);
        self.failovers.remove(&id);
        self.await_token(&id);
    }

    /// Whether a framework is offered agents with free GPUs: when it declares the GPU
    /// capability, or as a last resort when the operator allows it.
    fn gpu_agents(&self, info: &FrameworkInfo) -> GpuAgents {
        if info.has(Capability::GpuResources) {
            GpuAgents::Offered
        } else if self.config.gpu_agents_last_resort {
            GpuAgents::LastResort
        } else {
            GpuAgents::NotOffered
        }
    }

    /// A framework subscribing with an id: a failover, or a framework re-registering with
    /// a restarted master (adopted as it is).
    fn resubscribe_id(
        &self,
        id: FrameworkId,
        info: &FrameworkInfo,
    ) -> Result<FrameworkId, CallError> {
        if self.removed_frameworks.contains(&id)
            || self.frameworks.get(&id).is_some_and(|f| f.torn_down)
        {
            return Err(CallError::TornDown(id));
        }
        if let Some(fw) = self.frameworks.get(&id)
            && !fw.recovered
            && fw.info.role != info.role
        {
            return Err(CallError::RoleChange {
                framework: id,
                has: fw.info.role.clone(),
                asked: info.role.clone(),
            });
        }
        Ok(id)
    }

    /// A new id, owned by the caller (see [`FrameworkId::owner`]).
    fn new_framework_id(&mut self, caller: &Principal) -> FrameworkId {
        self.frameworks_created += 1;
        let rest = format!(
            "fw{:x}-{}",
            self.config.incarnation, self.frameworks_created
        );
        FrameworkId::owned_by(&caller.name, &rest)
    }

    /// A role's weight is the operator's if set, else the one its first framework gave;
    /// later frameworks of the role must agree.
    fn check_role_weight(&self, id: &FrameworkId, info: &FrameworkInfo) -> Result<(), CallError> {
        if self.config.role_weights.contains_key(&info.role) {
            return Ok(());
        }
        let others = self
            .book
            .snapshot()
            .frameworks
            .iter()
            .any(|(other, s)| other != id && s.role == info.role);
        match self.book.snapshot().role_weights.get(&info.role) {
            Some(has) if others && *has != info.weight => Err(CallError::RoleWeightMismatch {
                role: info.role.clone(),
                has: *has,
            }),
            _ => Ok(()),
        }
    }

    fn set_suppressed(&mut self, id: &FrameworkId, suppressed: bool) {
        if let Some(fw) = self.frameworks.get_mut(id) {
            fw.suppressed = suppressed;
        }
        self.update_wants(id);
    }

    /// A framework wants offers while connected, not torn down and not suppressed.
    pub(super) fn update_wants(&mut self, id: &FrameworkId) {
        let wants = self
            .frameworks
            .get(id)
            .is_some_and(|f| f.connected && !f.torn_down && !f.suppressed);
        let changed = self
            .book
            .snapshot()
            .frameworks
            .get(id)
            .is_some_and(|slot| slot.wants_offers != wants);
        if changed && let Some(slot) = self.book.framework_mut(id) {
            slot.wants_offers = wants;
            if wants {
                self.want_allocation_all();
            }
        }
    }

    fn kill(&mut self, id: &FrameworkId, task_id: &TaskId) -> Result<(), CallError> {
        if self.kill_unreachable(id, task_id)? {
            return Ok(());
        }
        let task = self
            .tasks
            .get_mut(task_id)
            .ok_or_else(|| CallError::UnknownTask(task_id.clone()))?;
        if &task.framework_id != id {
            return Err(CallError::NotYourTask(task_id.clone()));
        }
        task.kill_requested = true;
        let (agent_id, grace_ms) = (task.agent_id.clone(), self.config.kill_grace_ms);
        self.actions.push_back(Action::KillTask {
            agent_id,
            task_id: task_id.clone(),
            grace_ms,
        });
        Ok(())
    }

    /// Passes each acknowledgement on to its task's agent, one command per agent. Those
    /// of tasks the master does not know or the framework does not own are refused: the
    /// reply names the first, and the others are passed on all the same.
    fn acknowledge(&mut self, id: &FrameworkId, acks: Vec<Ack>) -> Result<(), CallError> {
        if acks.len() > ACKS_PER_CALL_MAX {
            return Err(CallError::TooManyAcks(acks.len()));
        }
        let total = acks.len();
        let mut by_agent: BTreeMap<AgentId, Vec<Ack>> = BTreeMap::new();
        let (mut refused, mut first_refusal) = (0, None);
        for ack in acks {
            match self.ack_destination(id, &ack.task_id) {
                Ok(Some(agent_id)) => by_agent.entry(agent_id).or_default().push(ack),
                Ok(None) => {}
                Err(e) => {
                    refused += 1;
                    first_refusal.get_or_insert(e);
                }
            }
        }
        for (agent_id, acks) in by_agent {
            self.actions.push_back(Action::AckStatus { agent_id, acks });
        }
        match first_refusal {
            None => Ok(()),
            Some(first) if total == 1 => Err(first),
            Some(first) => Err(CallError::AcksRefused {
                refused,
                total,
                first: Box::new(first),
            }),
        }
    }

    /// The agent an acknowledgement of `task_id` by framework `id` goes to; `None` when
    /// that agent is gone (nothing to tell it).
    fn ack_destination(
        &self,
        id: &FrameworkId,
        task_id: &TaskId,
    ) -> Result<Option<AgentId>, CallError> {
        let Some((owner, agent_id)) = self.tasks.owner(task_id) else {
            return Err(CallError::UnknownTask(task_id.clone()));
        };
        if owner != id {
            return Err(CallError::NotYourTask(task_id.clone()));
        }
        Ok(self.agents.contains_key(agent_id).then(|| agent_id.clone()))
    }

    /// Keeps a reconciliation asked during the re-registration window for its end; at
    /// most [`DEFERRED_RECONCILES_MAX`] are kept, later ones are answered at once.
    fn defer_reconcile(&mut self, id: &FrameworkId, task_ids: Vec<TaskId>) {
        if self.deferred_reconciles.len() >= DEFERRED_RECONCILES_MAX {
            self.reconcile(id, task_ids);
            return;
        }
        self.deferred_reconciles.push((id.clone(), task_ids));
    }

    /// Sends the latest known status of each named task (all of the framework's live tasks
    /// when none is named); a task the master does not know is reported lost, and that end
    /// is remembered as one the master declared: should the task's agent come back with it
    /// (one cut off across a master restart), the lost-agent rule kills it rather than
    /// adopt it, and its framework keeps the `lost` it was told.
    pub(super) fn reconcile(&mut self, id: &FrameworkId, task_ids: Vec<TaskId>) {
        let task_ids = if task_ids.is_empty() {
            self.frameworks
                .get(id)
                .map(|f| f.tasks.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            task_ids
        };
        for task_id in task_ids {
            let status = match (self.tasks.get(&task_id), self.tasks.ended(&task_id)) {
                (Some(t), _) if &t.framework_id == id => {
                    let uuid = StatusUuid(self.rng.next_u128());
                    t.latest_status()
                        .unwrap_or_else(|| synthetic_status(t, t.state, "", uuid))
                }
                (None, Some(e)) if e.framework_id() == id => e.latest.clone(),
                _ => {
                    let status = TaskStatus {
                        task_id,
                        framework_id: id.clone(),
                        agent_id: AgentId::no_agent(),
                        state: TaskState::Lost,
                        exit_code: None,
                        reason: "the master does not know this task".to_owned(),
                        uuid: StatusUuid(self.rng.next_u128()),
                        timestamp_ms: 0,
                    };
                    let kept_max = self.config.ended_tasks_kept_max;
                    (self.tasks).remember_ended(
                        status.clone(),
                        String::new(),
                        proto::Resources::new(),
                        kept_max,
                    );
                    status
                }
            };
            self.send(id, Event::Update { status });
        }
    }

    /// Removes the framework: its offers return to the pool, its tasks are killed, and it
    /// is forgotten once they have ended. Its id is never admitted again.
    pub(super) fn teardown(&mut self, id: &FrameworkId) {
        let Some(fw) = self.frameworks.get_mut(id) else {
            return;
        };
        fw.torn_down = true;
        fw.connected = false;
        let tasks: Vec<TaskId> = fw.tasks.iter().cloned().collect();
        self.failovers.remove(id);
        self.update_wants(id);
        self.clear_filters(id);
        for offer_id in self.offers.of_framework(id) {
            self.withdraw_offer(&offer_id, false);
        }
        for task_id in tasks {
            if let Some(t) = self.tasks.get(&task_id) {
                let (agent_id, grace_ms) = (t.agent_id.clone(), self.config.kill_grace_ms);
                self.actions.push_back(Action::KillTask {
                    agent_id,
                    task_id,
                    grace_ms,
                });
            }
        }
        self.forget_if_drained(id);
    }

    /// A torn-down framework whose tasks have all ended is forgotten.
    pub(super) fn forget_if_drained(&mut self, id: &FrameworkId) {
        if self
            .frameworks
            .get(id)
            .is_some_and(|f| f.torn_down && f.tasks.is_empty())
        {
            self.frameworks.remove(id);
            self.book.remove_framework(id);
            self.forget_liveness(id);
            self.removed_frameworks.insert(id.clone());
        }
    }
}

/// A status the master makes up for a task (reconciliation, agent lost).
pub(super) fn synthetic_status(
    t: &TaskRecord,
    state: TaskState,
    reason: &str,
    uuid: StatusUuid,
) -> TaskStatus {
    TaskStatus {
        task_id: t.task_id.clone(),
        framework_id: t.framework_id.clone(),
        agent_id: t.agent_id.clone(),
        state,
        exit_code: None,
        reason: reason.to_owned(),
        uuid,
        timestamp_ms: 0,
    }
}

fn launches_oci(operations: &[Operation]) -> bool {
    operations
        .iter()
        .any(|Operation::Launch { tasks }| tasks.iter().any(|t| matches!(t.kind, TaskKind::Oci(_))))
}
