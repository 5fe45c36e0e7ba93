//! What this crate knows about observation kinds: the empty payload of each kind in
//! [`rounds_protocol::obs::ALL_KINDS`], used to validate rules at load time (field names in
//! `evidence`, a dry run of every condition on an all-unknown observation).

use rounds_protocol::obs::{self, Payload};
use serde_json::Value;

/// The payload of `kind` with every field at its default (options `null`), or `None` for a
/// kind this build does not know.
pub fn empty_payload(kind: &str) -> Option<Value> {
    fn v<T: Payload + Default>() -> Value {
        serde_json::to_value(T::default()).unwrap_or(Value::Null)
    }
    let value = match kind {
        obs::Inventory::KIND => v::<obs::Inventory>(),
        obs::EncryptionVolume::KIND => v::<obs::EncryptionVolume>(),
        obs::EncryptionSwap::KIND => v::<obs::EncryptionSwap>(),
        obs::Firewall::KIND => v::<obs::Firewall>(),
        obs::Updates::KIND => v::<obs::Updates>(),
        obs::ScreenLock::KIND => v::<obs::ScreenLock>(),
        obs::Malware::KIND => v::<obs::Malware>(),
        obs::TimeSync::KIND => v::<obs::TimeSync>(),
        obs::PasswordPolicy::KIND => v::<obs::PasswordPolicy>(),
        obs::Accounts::KIND => v::<obs::Accounts>(),
        obs::LoginMonitoring::KIND => v::<obs::LoginMonitoring>(),
        obs::DiskSpace::KIND => v::<obs::DiskSpace>(),
        obs::Backup::KIND => v::<obs::Backup>(),
        obs::BackupDiscovered::KIND => v::<obs::BackupDiscovered>(),
        obs::EhrProbe::KIND => v::<obs::EhrProbe>(),
        obs::NetworkBaseline::KIND => v::<obs::NetworkBaseline>(),
        obs::ProbeSummary::KIND => v::<obs::ProbeSummary>(),
        obs::AuditLog::KIND => v::<obs::AuditLog>(),
        obs::AuditService::KIND => v::<obs::AuditService>(),
        obs::Mfa::KIND => v::<obs::Mfa>(),
        obs::UsbStorage::KIND => v::<obs::UsbStorage>(),
        obs::AdminAccounts::KIND => v::<obs::AdminAccounts>(),
        obs::AccountActivity::KIND => v::<obs::AccountActivity>(),
        obs::LogForwarding::KIND => v::<obs::LogForwarding>(),
        obs::OsRelease::KIND => v::<obs::OsRelease>(),
        obs::RemoteAccess::KIND => v::<obs::RemoteAccess>(),
        _ => return None,
    };
    Some(value)
}

/// Whether the payload of `kind` has a top-level field `field`.
pub fn has_field(kind: &str, field: &str) -> bool {
    empty_payload(kind).is_some_and(|v| v.get(field).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_kind_has_an_empty_payload() {
        for kind in obs::ALL_KINDS {
            let payload = empty_payload(kind);
            assert!(
                payload.as_ref().is_some_and(Value::is_object),
                "kind {kind} is in ALL_KINDS but not in kinds::empty_payload"
            );
        }
        assert!(empty_payload("no.such.kind").is_none());
        assert!(has_field("backup", "last_success_at"));
        assert!(!has_field("backup", "last_sucess_at"));
    }
}
