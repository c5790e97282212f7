//! The test-facing API for the DDI server's settings, as a hawkBit tenant configures them:
//! the tenant, accepted authentication, auto-registration, the polling sleep, download
//! link relations, multi-assignment and quotas.

use std::time::Duration;

use super::{DdiAuth, DownloadLinks, FakeHawkbit, polling_sleep, state};

impl FakeHawkbit {
    /// The tenant of DDI paths (default `DEFAULT`; compared case-insensitively).
    pub fn set_tenant(&self, tenant: &str) {
        self.lock().ddi.tenant = tenant.to_owned();
    }

    pub fn tenant(&self) -> String {
        self.lock().ddi.tenant.clone()
    }

    /// `{url}/{tenant}/controller/v1/{controllerId}`: the base a device is configured with.
    pub fn controller_url(&self, controller_id: &str) -> String {
        let tenant = self.tenant();
        format!(
            "{}/{}/controller/v1/{}",
            self.url,
            state::encode_segment(&tenant),
            state::encode_segment(controller_id)
        )
    }

    /// Which authentication modes DDI accepts (default: target tokens only).
    pub fn set_auth(&self, auth: DdiAuth) {
        self.lock().ddi.auth = auth;
    }

    /// Whether a poll by an unknown (but authenticated) controller registers it (default
    /// on, as hawkBit does); off: 404.
    pub fn set_auto_register(&self, on: bool) {
        self.lock().ddi.auto_register = on;
    }

    /// `config.polling.sleep` (default `00:05:00`), formatted by [`polling_sleep`].
    pub fn set_polling_sleep(&self, every: Duration) {
        self.set_polling_sleep_raw(&polling_sleep(every));
    }

    /// `config.polling.sleep` verbatim, also nonsense, to test a client's parser.
    pub fn set_polling_sleep_raw(&self, value: &str) {
        self.lock().ddi.sleep = value.to_owned();
    }

    pub fn set_download_links(&self, links: DownloadLinks) {
        self.lock().ddi.links = links;
    }

    /// hawkBit's multi-assignment mode. Off (default): a new assignment sets the target's
    /// older open actions to canceling.
    pub fn set_multi_assignment(&self, on: bool) {
        self.lock().ddi.multi_assignment = on;
    }

    /// hawkBit's quotas (defaults 1000 and 50); exceeding one answers 429.
    pub fn set_quotas(&self, max_status_entries_per_action: usize, max_messages_per_status: usize) {
        let mut g = self.lock();
        g.ddi.max_status_entries = max_status_entries_per_action;
        g.ddi.max_messages = max_messages_per_status;
    }
}
