use serde::{Deserialize, Serialize};

/// The `error` object of an error answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    #[serde(default)]
    pub log_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub troubleshooter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_violations: Vec<FieldViolation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permission_violations: Vec<PermissionViolation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub helps: Vec<Help>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FieldViolation {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PermissionViolation {
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Help {
    pub url: String,
    pub description: String,
}
