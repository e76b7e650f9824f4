//! `pantheros provision list`: the servers pantheros created.

use super::cloud::{Cloud, LABEL_HOST, LABEL_MANAGED, Server};
use super::{Failure, exit};

pub async fn list(json: bool) -> Result<i32, Failure> {
    let cloud = super::connect().await?;
    let servers = ours(&cloud).await?;
    if json {
        let v: Vec<serde_json::Value> = servers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name, "id": s.id, "serverType": s.server_type, "location": s.location,
                    "status": s.status, "ipv4": s.ipv4, "ipv6": s.ipv6,
                    "host": s.labels.get(LABEL_HOST),
                })
            })
            .collect();
        crate::report::print_document(&serde_json::json!({ "servers": v }));
    } else {
        let rows: Vec<Vec<String>> = servers
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.id.to_string(),
                    s.server_type.clone(),
                    s.location.clone(),
                    s.status.clone(),
                    s.ipv4.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        print!(
            "{}",
            crate::report::table(&["NAME", "ID", "TYPE", "LOCATION", "STATUS", "IPV4"], &rows)
        );
    }
    Ok(exit::OK)
}

/// The servers labelled as pantheros'.
pub async fn ours(cloud: &impl Cloud) -> Result<Vec<Server>, Failure> {
    Ok(cloud
        .servers_labelled(&format!("{LABEL_MANAGED}==pantheros"))
        .await?)
}
