//! The output of ended tasks, kept for `agents/<id>/logs`: at most [`OUTPUTS_KEPT_MAX`]
//! tasks and [`OUTPUTS_KEPT_BYTES_MAX`] bytes together, the oldest dropped first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use proto::TaskId;
use proto::admin::TaskOutput;

use crate::{OUTPUTS_KEPT_BYTES_MAX, OUTPUTS_KEPT_MAX};

#[derive(Default)]
pub(crate) struct EndedOutputs {
    outputs: BTreeMap<TaskId, Arc<TaskOutput>>,
    /// Oldest first.
    order: VecDeque<TaskId>,
    /// Bytes the kept outputs hold, both streams.
    bytes: usize,
}

impl EndedOutputs {
    pub(crate) fn get(&self, task_id: &TaskId) -> Option<&Arc<TaskOutput>> {
        self.outputs.get(task_id)
    }

    /// Keeps `output` (replacing any earlier one of the task), dropping the oldest until
    /// both bounds hold; one output over the byte bound on its own is kept alone.
    pub(crate) fn insert(&mut self, task_id: TaskId, output: TaskOutput) {
        self.remove(&task_id);
        let size = kept_bytes(&output);
        while !self.order.is_empty()
            && (self.order.len() >= OUTPUTS_KEPT_MAX || self.bytes + size > OUTPUTS_KEPT_BYTES_MAX)
        {
            if let Some(oldest) = self.order.pop_front()
                && let Some(dropped) = self.outputs.remove(&oldest)
            {
                self.bytes -= kept_bytes(&dropped);
            }
        }
        self.bytes += size;
        self.outputs.insert(task_id.clone(), Arc::new(output));
        self.order.push_back(task_id);
    }

    pub(crate) fn remove(&mut self, task_id: &TaskId) {
        if let Some(output) = self.outputs.remove(task_id) {
            self.bytes -= kept_bytes(&output);
            self.order.retain(|id| id != task_id);
        }
    }
}

fn kept_bytes(output: &TaskOutput) -> usize {
    (output.stdout.pieces.iter())
        .chain(&output.stderr.pieces)
        .map(|p| p.bytes.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::TaskState;
    use proto::admin::{OutputPart, OutputPiece};

    fn output(bytes: usize) -> TaskOutput {
        let piece = OutputPiece {
            offset: 0,
            bytes: vec![b'x'; bytes],
        };
        TaskOutput {
            state: TaskState::Finished,
            stdout: OutputPart::new([piece], bytes as u64),
            stderr: OutputPart::new([], 0),
        }
    }

    /// Regression: 256 ended tasks that each wrote their 1 MiB per stream held 512 MiB of
    /// the agent's memory, counted nowhere.
    #[test]
    fn kept_outputs_stay_within_the_byte_bound_oldest_dropped_first() {
        let mut kept = EndedOutputs::default();
        let each = OUTPUTS_KEPT_BYTES_MAX / 4;
        for n in 0..10 {
            kept.insert(TaskId::new(format!("t{n}")), output(each));
            assert!(kept.bytes <= OUTPUTS_KEPT_BYTES_MAX);
        }
        assert_eq!(kept.order.len(), 4);
        assert!(kept.get(&TaskId::new("t5")).is_none());
        assert!(kept.get(&TaskId::new("t6")).is_some());
        kept.remove(&TaskId::new("t9"));
        assert_eq!(kept.bytes, 3 * each);
        for n in 0..OUTPUTS_KEPT_MAX + 5 {
            kept.insert(TaskId::new(format!("s{n}")), output(1));
        }
        assert_eq!(kept.order.len(), OUTPUTS_KEPT_MAX);
        assert_eq!(kept.bytes, OUTPUTS_KEPT_MAX);
    }
}
