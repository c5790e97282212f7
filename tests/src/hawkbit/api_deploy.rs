//! The test-facing API for deployments: storing distribution sets (hashing their
//! artifacts), assigning them to targets, playing the operator on the resulting actions
//! (cancel, force-quit, action type, maintenance window, corrupting an artifact), and
//! reading actions back with their status history and feedback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::{
    ActionType, ActionView, Assignment, DistributionSet, FakeHawkbit, Feedback, Hashes,
    MaintenanceWindow, StatusEntry, content, state,
};

impl FakeHawkbit {
    /// Stores a distribution set with its software modules and artifacts; returns its id.
    /// Artifact hashes are computed here (outside the fake's lock) unless given.
    pub fn create_distribution_set(&self, set: DistributionSet) -> u64 {
        let prepared: Vec<Vec<(content::Blob, Hashes)>> = set
            .chunks
            .iter()
            .map(|c| {
                c.artifacts
                    .iter()
                    .map(|a| {
                        let blob = content::Blob::from(&a.content);
                        let hashes = a.hashes.clone().unwrap_or_else(|| blob.hashes());
                        (blob, hashes)
                    })
                    .collect()
            })
            .collect();
        let created = SystemTime::now();
        let mut g = self.lock();
        let ddi = &mut g.ddi;
        let mut modules = Vec::new();
        for (chunk, blobs) in set.chunks.iter().zip(prepared) {
            ddi.next_module += 1;
            let module = ddi.next_module;
            let mut artifacts = Vec::new();
            for (a, (blob, hashes)) in chunk.artifacts.iter().zip(blobs) {
                assert!(
                    chunk
                        .artifacts
                        .iter()
                        .filter(|b| b.filename == a.filename)
                        .nth(1)
                        .is_none(),
                    "fake hawkBit: two artifacts named {:?} in one chunk",
                    a.filename
                );
                artifacts.push(Arc::new(content::StoredArtifact {
                    filename: a.filename.clone(),
                    module,
                    blob,
                    hashes,
                    omit_sha256: a.omit_sha256,
                    corrupt: a.corrupt.into(),
                    external: a.external,
                    created,
                }));
            }
            ddi.modules.insert(
                module,
                state::Module {
                    part: chunk.part.clone(),
                    name: chunk.name.clone(),
                    version: chunk.version.clone(),
                    encrypted: chunk.encrypted,
                    metadata: chunk.metadata.clone(),
                    artifacts,
                },
            );
            modules.push(module);
        }
        ddi.next_set += 1;
        let id = ddi.next_set;
        ddi.sets.insert(
            id,
            state::SetRecord {
                name: set.name,
                version: set.version,
                modules,
            },
        );
        id
    }

    /// The software module ids of a distribution set, in chunk order.
    pub fn modules(&self, set: u64) -> Vec<u64> {
        self.lock()
            .ddi
            .sets
            .get(&set)
            .map(|s| s.modules.clone())
            .unwrap_or_default()
    }

    /// Assigns a stored set to a known target; returns the new action's id.
    pub fn assign(&self, controller_id: &str, set: u64, how: Assignment) -> u64 {
        let mut g = self.lock();
        assert!(
            g.targets.contains_key(controller_id),
            "fake hawkBit: unknown target {controller_id:?} (insert it first)"
        );
        g.ddi.assign(controller_id, set, how)
    }

    /// [`create_distribution_set`](Self::create_distribution_set) + [`assign`](Self::assign).
    pub fn deploy(&self, controller_id: &str, set: DistributionSet, how: Assignment) -> u64 {
        let set = self.create_distribution_set(set);
        self.assign(controller_id, set, how)
    }

    /// Operator cancel: the open action goes to canceling (the poll then shows
    /// `cancelAction`). Panics if the action is closed or already canceling.
    pub fn cancel(&self, action: u64) {
        if let Err(e) = self.lock().ddi.cancel(action) {
            panic!("fake hawkBit: cannot cancel: {e}");
        }
    }

    /// Operator force-quit of a canceling action: canceled without the device's word.
    pub fn force_quit(&self, action: u64) {
        if let Err(e) = self.lock().ddi.force_quit(action) {
            panic!("fake hawkBit: cannot force-quit: {e}");
        }
    }

    /// Operator cancel and force-quit in one step, so the device never sees the action
    /// canceling: it is canceled without the device's word, gone from the poll, and the
    /// device's next feedback for it is answered 410. Panics if the action is not open.
    pub fn cancel_and_force_quit(&self, action: u64) {
        let mut g = self.lock();
        if let Err(e) = g.ddi.cancel(action).and_then(|()| g.ddi.force_quit(action)) {
            panic!("fake hawkBit: cannot cancel and force-quit: {e}");
        }
    }

    /// Changes the action type (e.g. soft → forced; the deploymentBase link's `c` changes).
    pub fn set_action_type(&self, action: u64, action_type: ActionType) {
        self.with_action(action, |a| a.action_type = action_type);
    }

    /// Opens or closes the maintenance window (`None`: no schedule).
    pub fn set_maintenance_window(&self, action: u64, window: Option<MaintenanceWindow>) {
        self.with_action(action, |a| a.window = window);
    }

    fn with_action<T>(&self, action: u64, f: impl FnOnce(&mut state::Action) -> T) -> T {
        let mut g = self.lock();
        let a = g
            .ddi
            .actions
            .get_mut(&action)
            .unwrap_or_else(|| panic!("fake hawkBit: no action {action}"));
        f(a)
    }

    /// A snapshot of the action. Panics if there is none.
    pub fn action(&self, action: u64) -> ActionView {
        self.with_action(action, |a| a.view())
    }

    /// The target's actions, oldest first.
    pub fn actions(&self, controller_id: &str) -> Vec<ActionView> {
        self.lock()
            .ddi
            .actions
            .values()
            .filter(|a| a.controller_id == controller_id)
            .map(state::Action::view)
            .collect()
    }

    /// Every well-formed feedback posted for the action, with the status it got.
    pub fn feedback(&self, action: u64) -> Vec<Feedback> {
        self.action(action).feedback
    }

    /// The action's status history, oldest first.
    pub fn statuses(&self, action: u64) -> Vec<StatusEntry> {
        self.action(action).statuses
    }

    /// Serves every artifact named `filename` with (or again without) a flipped byte.
    pub fn set_corrupted(&self, filename: &str, on: bool) {
        let g = self.lock();
        for a in g
            .ddi
            .modules
            .values()
            .flat_map(|m| &m.artifacts)
            .filter(|a| a.filename == filename)
        {
            a.corrupt.store(on, Ordering::Relaxed);
        }
    }
}
