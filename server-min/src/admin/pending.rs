//! Deciding the enrollments held by the collision gate.

use super::{Actor, AdminError, AdminService, commit, record};
use crate::db::pending::{self, PendingRow};

/// An administrator's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

impl AdminService {
    /// Pending enrollments in `state` (default: still waiting), oldest first.
    pub async fn list_pending(&self, state: Option<&str>) -> Result<Vec<PendingRow>, AdminError> {
        if let Some(s) = state
            && ![
                pending::STATE_PENDING,
                pending::STATE_APPROVED,
                pending::STATE_REJECTED,
                pending::STATE_COMPLETED,
            ]
            .contains(&s)
        {
            return Err(AdminError::InvalidField {
                field: "state",
                reason: format!("{s:?} is not one of pending, approved, rejected, completed"),
            });
        }
        let mut conn = self.db.acquire().await?;
        Ok(pending::list(&mut conn, state).await?)
    }

    /// Approves (the device's next identical request completes its enrollment, with the same
    /// id and address, and the old certificate revoked) or rejects (it is answered 403).
    pub async fn decide_pending(
        &self,
        id: &str,
        verdict: Verdict,
        actor: &Actor,
    ) -> Result<PendingRow, AdminError> {
        let (state, action) = match verdict {
            Verdict::Approve => (pending::STATE_APPROVED, "enrollment.approved"),
            Verdict::Reject => (pending::STATE_REJECTED, "enrollment.rejected"),
        };
        let mut tx = self.db.begin_write().await?;
        let row = pending::get(&mut tx, id)
            .await?
            .ok_or_else(|| AdminError::PendingUnknown(id.into()))?;
        if !pending::decide(&mut tx, id, state, &actor.name, self.now()).await? {
            return Err(AdminError::PendingDecided {
                id: id.into(),
                state: row.state,
            });
        }
        record(
            &mut tx,
            actor,
            action,
            Some(&row.device_id),
            serde_json::json!({
                "pending_id": id,
                "machine_uid": row.machine_uid,
                "hostname": row.hostname,
                "requested_from": row.source,
                "outcome": state,
            }),
        )
        .await?;
        commit(tx, "committing a pending enrollment's decision").await?;
        tracing::info!(pending_id = id, device = %row.device_id, decision = state, by = %actor.name, "pending enrollment decided");
        let mut conn = self.db.acquire().await?;
        pending::get(&mut conn, id)
            .await?
            .ok_or_else(|| AdminError::PendingUnknown(id.into()))
    }
}
