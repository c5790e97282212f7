//! The test-facing API for targets: the Management API's target table (targets created
//! out of band, their security tokens, the bridge's calls and injected Management API
//! failures) and what the DDI side knows about each controller (attributes, polls,
//! installedBase, auto-confirm).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{FakeHawkbit, Target};

impl FakeHawkbit {
    // -- Management API (targets) --------------------------------------------------------

    /// All targets, ordered by controller id.
    pub fn targets(&self) -> Vec<Target> {
        self.lock().targets.values().cloned().collect()
    }

    /// Authenticated `POST /rest/v1/targets` calls so far.
    pub fn create_calls(&self) -> usize {
        self.lock().create_calls
    }

    /// Authenticated `PUT /rest/v1/targets/{id}` calls so far.
    pub fn update_calls(&self) -> usize {
        self.lock().update_calls
    }

    /// Authenticated `DELETE /rest/v1/targets/{id}` calls so far (also those answered 404).
    pub fn delete_calls(&self) -> usize {
        self.lock().delete_calls
    }

    /// Controller ids whose target was deleted through the Management API, in order.
    pub fn deleted_targets(&self) -> Vec<String> {
        self.lock().deleted.clone()
    }

    /// Management API calls refused with 401.
    pub fn unauthorized_calls(&self) -> usize {
        self.lock().unauthorized
    }

    /// The next authenticated Management API call gets this status (and an error body)
    /// and changes nothing.
    pub fn fail_next(&self, status: u16) {
        self.lock().failures.push_back(status);
    }

    /// A target created out of band (by an operator, or by an earlier bridge), with a
    /// generated security token.
    pub fn insert_target(&self, controller_id: &str) {
        let mut g = self.lock();
        let token = g.token();
        drop(g);
        self.insert_target_with_token(controller_id, &token);
    }

    /// A target with a known security token (for `TargetToken` authentication).
    pub fn insert_target_with_token(&self, controller_id: &str, token: &str) {
        let mut g = self.lock();
        g.targets.insert(
            controller_id.to_owned(),
            Target {
                controller_id: controller_id.to_owned(),
                name: controller_id.to_owned(),
                description: None,
                security_token: token.to_owned(),
            },
        );
        g.ddi.controller(controller_id);
    }

    /// The target's `securityToken`.
    pub fn security_token(&self, controller_id: &str) -> Option<String> {
        self.lock()
            .targets
            .get(controller_id)
            .map(|t| t.security_token.clone())
    }

    // -- DDI controller state ------------------------------------------------------------

    /// The attributes the device sent with configData.
    pub fn attributes(&self, controller_id: &str) -> BTreeMap<String, String> {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .map(|c| c.attributes.clone())
            .unwrap_or_default()
    }

    /// Ask the device for its attributes again (the poll shows `configData`).
    pub fn request_attributes(&self, controller_id: &str) {
        self.lock().ddi.controller(controller_id).request_attributes = true;
    }

    /// Whether the poll shows `configData` now.
    pub fn attributes_requested(&self, controller_id: &str) -> bool {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .is_some_and(|c| c.request_attributes)
    }

    /// Successful polls of the controller's base.
    pub fn polls(&self, controller_id: &str) -> usize {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .map_or(0, |c| c.polls)
    }

    pub fn last_poll(&self, controller_id: &str) -> Option<SystemTime> {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .and_then(|c| c.last_poll)
    }

    /// The action installedBase points at: the last one closed with success.
    pub fn installed_action(&self, controller_id: &str) -> Option<u64> {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .and_then(|c| c.installed)
    }

    pub fn auto_confirm_active(&self, controller_id: &str) -> bool {
        self.lock()
            .ddi
            .controllers
            .get(controller_id)
            .is_some_and(|c| c.auto_confirm.is_some())
    }
}
