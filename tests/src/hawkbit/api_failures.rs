//! The test-facing API for failures and observation: injected answers and download
//! faults, throttling, a server that is down (closing or hanging connections), and the
//! log of every answered request.

use std::time::Duration;

use super::{DownMode, DownloadFault, FakeHawkbit, Fault, RequestRecord, Route};

impl FakeHawkbit {
    // -- Failures ------------------------------------------------------------------------

    /// Answers the next `fault.times` matching device requests with `fault.status`.
    /// Faults are consulted in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        self.lock().ddi.faults.push(fault);
    }

    /// Makes the next `fault.times` matching artifact responses drop or stall.
    pub fn inject_download(&self, fault: DownloadFault) {
        self.lock().ddi.download_faults.push(fault);
    }

    /// Throttles every artifact response started from now on (`None`: full speed).
    pub fn set_download_rate(&self, bytes_per_second: Option<u64>) {
        self.lock().ddi.download_rate = bytes_per_second;
    }

    /// Forgets injected request and download faults.
    pub fn clear_faults(&self) {
        let mut g = self.lock();
        g.ddi.faults.clear();
        g.ddi.download_faults.clear();
    }

    /// The server goes down until [`set_up`](Self::set_up). Requests that never got an
    /// answer are not in the request log.
    pub fn set_down(&self, mode: DownMode) {
        self.net.set(Some(mode));
    }

    pub fn set_up(&self) {
        self.net.set(None);
    }

    /// Down now, up again after `period` (without blocking the test).
    pub fn down_for(&self, period: Duration, mode: DownMode) {
        self.net.set(Some(mode));
        let net = self.net.clone();
        std::thread::spawn(move || {
            std::thread::sleep(period);
            net.set(None);
        });
    }

    pub fn down_mode(&self) -> Option<DownMode> {
        self.net.mode()
    }

    // -- Request log ---------------------------------------------------------------------

    /// Every answered request, oldest first (Management API included).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().ddi.log.clone()
    }

    /// The answered requests of one route.
    pub fn requests_to(&self, route: Route) -> Vec<RequestRecord> {
        self.lock()
            .ddi
            .log
            .iter()
            .filter(|r| r.route == route)
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.lock().ddi.log.clear();
    }

    /// DDI requests refused with 401.
    pub fn ddi_unauthorized_calls(&self) -> usize {
        self.lock().ddi.unauthorized
    }
}
