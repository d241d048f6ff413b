use serde::{Deserialize, Serialize};

/// Sync status of a binding (contract §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingStatus {
    Doing,
    CalDone,
    TimespanDone,
    Done,
    Err,
}

impl BindingStatus {
    pub const ALL: [BindingStatus; 5] = [
        BindingStatus::Doing,
        BindingStatus::CalDone,
        BindingStatus::TimespanDone,
        BindingStatus::Done,
        BindingStatus::Err,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            BindingStatus::Doing => "doing",
            BindingStatus::CalDone => "cal_done",
            BindingStatus::TimespanDone => "timespan_done",
            BindingStatus::Done => "done",
            BindingStatus::Err => "err",
        }
    }

    pub fn parse(s: &str) -> Option<BindingStatus> {
        BindingStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The stage a normal sync moves to next, if any.
    pub const fn next(self) -> Option<BindingStatus> {
        match self {
            BindingStatus::Doing => Some(BindingStatus::CalDone),
            BindingStatus::CalDone => Some(BindingStatus::TimespanDone),
            BindingStatus::TimespanDone => Some(BindingStatus::Done),
            BindingStatus::Done | BindingStatus::Err => None,
        }
    }

    /// `done` and `err` end a sync.
    pub const fn is_final(self) -> bool {
        matches!(self, BindingStatus::Done | BindingStatus::Err)
    }
}

impl std::fmt::Display for BindingStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The binding object (contract §4.5); field order is the wire order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_account: Option<String>,
    pub user_id: String,
    pub status: BindingStatus,
    pub exchange_binding_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_wire_order_and_omits_hidden_accounts() {
        let b = Binding {
            admin_account: Some("a@x".into()),
            exchange_account: Some("e@x".into()),
            user_id: "ou_1".into(),
            status: BindingStatus::TimespanDone,
            exchange_binding_id: "id".into(),
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"admin_account":"a@x","exchange_account":"e@x","user_id":"ou_1","status":"timespan_done","exchange_binding_id":"id"}"#
        );
        let hidden = Binding {
            admin_account: None,
            exchange_account: None,
            ..b
        };
        assert_eq!(
            serde_json::to_string(&hidden).unwrap(),
            r#"{"user_id":"ou_1","status":"timespan_done","exchange_binding_id":"id"}"#
        );
    }

    #[test]
    fn statuses_parse_back() {
        for s in BindingStatus::ALL {
            assert_eq!(BindingStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(BindingStatus::parse("DONE"), None);
    }
}
